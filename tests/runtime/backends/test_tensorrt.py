"""Everything around TensorRT that runs without it: keys, cache, profiles, plans, error mapping,
and the runner's activate/run/deactivate life cycle on a fake TensorRT and CUDA."""

import dataclasses
import json

import pytest

from edge_sdk.runtime.backends.tensorrt.api import build_strategy
from edge_sdk.runtime.backends.tensorrt.build import layer_precision_counts, precision_took_effect, profile_shapes
from edge_sdk.runtime.backends.tensorrt.cache import (
    DeviceInfo,
    EngineDir,
    EngineKey,
    default_cache_dir,
    differences,
    explain_tensorrt_error,
)
from edge_sdk.runtime.backends.tensorrt.precision import precision_plan
from edge_sdk.runtime.bundle import GraphInfo, TensorSpec
from edge_sdk.runtime.errors import BackendError, EngineMismatchError

ORIN = DeviceInfo("Orin", "8.7", "10.3.0")


def key(**changes):
    base = EngineKey(graph="classifier", source_sha256="a" * 64, onnx_sha256="b" * 64, precision="fp16",
                     profile={"y_hat": [[1, 128, 4, 4], [1, 128, 32, 48], [1, 128, 128, 128]]}, device=ORIN,
                     edge_sdk_version="0.1.0")
    return dataclasses.replace(base, **changes)


def test_every_field_changes_the_key():
    digests = {key().digest}
    # the key's system defaults to this machine's: the other of x86-64 and aarch64 (on a Jetson,
    # a fixed "Linux-aarch64" was this machine's own and changed nothing; found under qemu, issue 21)
    elsewhere = "Linux-x86_64" if key().system.endswith("aarch64") else "Linux-aarch64"
    for change in (dict(source_sha256="c" * 64), dict(onnx_sha256="d" * 64), dict(precision="int8"),
                   dict(profile={"y_hat": [[1, 128, 4, 4]] * 3}), dict(device=DeviceInfo("Orin", "8.6", "10.3.0")),
                   dict(device=DeviceInfo("RTX 4090", "8.7", "10.3.0")), dict(device=DeviceInfo("Orin", "8.7", "11.4.1")),
                   dict(builder_optimization_level=5), dict(edge_sdk_version="0.2.0"), dict(system=elsewhere)):
        digests.add(key(**change).digest)
    assert len(digests) == 11
    assert EngineKey.from_dict(json.loads(json.dumps(key().to_dict()))) == key()
    with pytest.raises(ValueError, match="precision"):
        key(precision="bf16")


def test_differences_name_the_fields():
    lines = differences(key(), key(device=DeviceInfo("Orin", "8.7", "11.4.1"), precision="int8"))
    assert lines[0] == "tensorrt version: engine 10.3.0, here 11.4.1"
    assert any(line.startswith("precision") for line in lines)
    assert differences(key(), key()) == []


def test_engine_dir_stores_atomically_and_refuses_stale_foreign_or_damaged(tmp_path):
    engines = EngineDir.open(tmp_path)
    assert engines.check("classifier", "a" * 64, ORIN)[0] is None
    path = engines.store(key(), b"engine bytes")
    assert path.name == key().file_name and not list(tmp_path.glob(".*tmp*"))
    reopened = EngineDir.open(tmp_path)
    assert reopened.check("classifier", "a" * 64, ORIN) == (path, [])
    assert reopened.is_current(key()) and not reopened.is_current(key(precision="int8"))
    _, reasons = reopened.check("classifier", "f" * 64, ORIN)
    assert "the bundle has ffffffffffff" in reasons[0]
    _, reasons = reopened.check("classifier", "a" * 64, DeviceInfo("Orin Nano", "8.7", "10.3.0"))
    assert reasons == ["name: engine Orin, here Orin Nano"]
    _, reasons = reopened.check("classifier", "a" * 64, DeviceInfo("Orin", "8.7", "10.4.0"))
    assert reasons == ["tensorrt version: engine 10.3.0, here 10.4.0"]
    path.write_bytes(b"engine bytez")
    _, reasons = reopened.check("classifier", "a" * 64, ORIN)
    assert "damaged or replaced" in reasons[0] and not reopened.is_current(key())
    path.unlink()
    assert "missing" in reopened.check("classifier", "a" * 64, ORIN)[1][0]
    reopened.entries["synthesis"] = {"onnx": "synthesis.fp16.onnx", "onnx_sha256": "e" * 64, "precision": "fp16"}
    assert "--convert-only" in reopened.check("synthesis", "a" * 64, ORIN)[1][0]
    reopened.profile_sizes = [[64, 64], [512, 768], [2048, 2048]]
    reopened.save()
    assert EngineDir.open(tmp_path).profile_sizes == [[64, 64], [512, 768], [2048, 2048]]
    (tmp_path / "engines.json").write_text("{not json")
    with pytest.raises(EngineMismatchError, match="damaged"):
        EngineDir.open(tmp_path)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "engines"
    monkeypatch.delenv("EDGE_SDK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "edge-sdk" / "engines"


@pytest.mark.parametrize("log,expected", [
    ("The engine plan file is generated on an incompatible device, expecting compute 6.1 got compute 7.5, "
     "please rebuild.", "built for a GPU of compute capability 6.1, this one is 7.5"),
    ("the engine plan file is not compatible with this version of TensorRT, expecting library version 10.4.0 "
     "got 10.3.0", "built with TensorRT 10.3.0, this is TensorRT 10.4.0"),
    ("Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match.",
     "serialized by another TensorRT version"),
    ("[E] 1: [runtime.cpp::deserializeCudaEngine] Error Code 1: magic tag does not match",
     "not a TensorRT engine or is damaged"),
    ("", "TensorRT logged nothing"),
])
def test_tensorrt_errors_become_actionable(log, expected):
    text = explain_tensorrt_error(log, "edge-sdk build --bundle b --precision fp16 --out e")
    assert expected in text and text.endswith("edge-sdk build --bundle b --precision fp16 --out e")


def test_profiles_follow_the_manifest_dims():
    graph = GraphInfo("classifier", None, "", (TensorSpec("y_hat", (1, 128, "H/16", "W/16")),),
                      (TensorSpec("logits", (1, 1000)),), 0.0)
    shapes = profile_shapes(graph, ((64, 64), (512, 768), (1024, 2048)))
    assert shapes == {"y_hat": [[1, 128, 4, 4], [1, 128, 32, 48], [1, 128, 64, 128]]}
    image = GraphInfo("analysis", None, "", (TensorSpec("image", (1, 3, "H", "W")),), (), 0.0)
    assert profile_shapes(image, ((64, 64), (64, 128), (128, 128)))["image"][1] == [1, 3, 64, 128]


def test_precision_plan_keeps_the_hyperprior_in_fp32():
    graphs = ("analysis", "hyper_analysis", "hyper_synthesis", "classifier", "synthesis", "pixel_classifier")
    plan = precision_plan("int8", graphs)
    assert [plan[g] for g in graphs] == ["fp32", "fp32", "fp32", "int8", "int8", "int8"]
    assert set(precision_plan("fp32", graphs).values()) == {"fp32"}
    with pytest.raises(ValueError):
        precision_plan("fp8", graphs)


def test_build_strategy_by_tensorrt_version():
    assert build_strategy("10.3.0.30") == "builder-flags"
    assert build_strategy("11.4.1") == "strongly-typed"
    assert build_strategy("12.0") == "strongly-typed"
    with pytest.raises(BackendError, match="not supported"):
        build_strategy("8.6.1")


def test_tensorrt_backend_says_how_to_install_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from edge_sdk.runtime.backends import open_backend

    with pytest.raises(BackendError, match="TensorRT is not installed.*edge-sdk\\[trt\\]"):
        open_backend(f"trt:{tmp_path}")


def test_cuda_runtime_without_a_gpu_raises_a_clear_error():
    from edge_sdk.runtime.backends.tensorrt.cuda import CudaRuntime

    try:
        cuda = CudaRuntime()
    except BackendError as exc:
        assert "cuda-python" in str(exc)
        return
    try:
        name, cc = cuda.device()
    except BackendError as exc:
        assert str(exc).startswith(("CUDA:", "no CUDA device"))
        return
    pytest.skip(f"a GPU is present here ({name}, {cc})")


def test_inspector_layer_types_are_counted():
    info = json.dumps({"Layers": [
        {"Name": "conv1", "Outputs": [{"Name": "a", "Format/Datatype": "Half format with 8 channel vectors"}]},
        {"Name": "conv2", "Outputs": [{"Name": "b", "Format/Datatype": "Int8 NC32HW32"}]},
        {"Name": "head", "Outputs": [{"Name": "c", "Format/Datatype": "Row major linear FP32"}]},
    ]})
    counts = layer_precision_counts(info)
    assert counts == {"fp16": 1, "int8": 1, "fp32": 1}
    assert precision_took_effect("fp16", counts) and precision_took_effect("int8", counts)
    assert not precision_took_effect("fp16", {"fp32": 40})
    assert layer_precision_counts("not json") == {}
