"""The TensorRT 11 half of `edge-sdk build` that runs without TensorRT: FP16 and Q/DQ INT8 ONNX,
checked under ONNX Runtime against the bundle's FP32 graphs, and `verify` on them."""

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edge_sdk.calibration.int8 import int8_calibration_feeds
from edge_sdk.calibration.verify import verify_backends
from edge_sdk.cli import app
from edge_sdk.runtime import BackendError, Bundle
from edge_sdk.runtime.backends import GraphSet, open_backend
from edge_sdk.runtime.backends.tensorrt import EngineDir, build_engines

SIZES = ((64, 64), (128, 128), (256, 256))


@pytest.fixture(scope="module")
def photos():
    skimage_data = pytest.importorskip("skimage.data")
    return [skimage_data.chelsea()[:160, :200], skimage_data.coffee()[100:260, 150:350]]


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return Bundle.load(tiny_bundle)


def converted_backend(folder):
    entries = EngineDir.open(folder).entries
    return open_backend("ort:cpu", threads=1,
                        graph_files={g: folder / e["onnx"] for g, e in entries.items() if e.get("onnx")})


def test_fp16_copies_keep_float32_io_and_track_fp32(bundle, photos, tmp_path):
    engines = build_engines(bundle, tmp_path, "fp16", sizes=SIZES, convert_only=True)
    converted = {g for g, e in engines.entries.items() if e["onnx"]}
    assert converted == {"classifier", "synthesis", "pixel_classifier", "classifier_trunk"}
    for g in ("analysis", "hyper_analysis", "hyper_synthesis", "classifier_head"):
        assert engines.entries[g]["precision"] == "fp32" and engines.entries[g]["onnx_sha256"] == bundle.graphs[g].sha256
    model = onnx.load(str(tmp_path / engines.entries["synthesis"]["onnx"]))
    io_types = {v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    assert io_types == {onnx.TensorProto.FLOAT}
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    fp32, fp16 = GraphSet(bundle, open_backend("ort:cpu", threads=1)), GraphSet(bundle, converted_backend(tmp_path))
    from edge_sdk.runtime.images import pad_image, read_image

    for photo in photos:
        x, _ = pad_image(read_image(photo), bundle.padding_multiple, bundle.min_size)
        a, b = fp32.run("pixel_classifier", image=x)["logits"], fp16.run("pixel_classifier", image=x)["logits"]
        assert np.argmax(a) == np.argmax(b)
        assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_int8_refuses_to_run_without_real_calibration_photos(bundle, tmp_path):
    with pytest.raises(BackendError, match="calibration photos"):
        build_engines(bundle, tmp_path, "int8", sizes=SIZES, convert_only=True)


def test_int8_copies_are_symmetric_qdq(bundle, photos, tmp_path):
    graphs = ("classifier", "hyper_synthesis")
    calibration = int8_calibration_feeds(bundle, photos, SIZES[1], graphs)
    assert set(calibration) == {"classifier"}  # the hyperprior side stays FP32: nothing to calibrate
    engines = build_engines(bundle, tmp_path, "int8", sizes=SIZES, convert_only=True, calibration=calibration,
                            graphs=graphs)
    assert engines.entries["hyper_synthesis"]["onnx"] is None
    model = onnx.load(str(tmp_path / engines.entries["classifier"]["onnx"]))
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant, "no Q/DQ nodes"
    inits = {i.name: i for i in model.graph.initializer}
    for node in quant:
        if len(node.input) > 2 and node.input[2] in inits:
            zero = onnx.numpy_helper.to_array(inits[node.input[2]])
            assert zero.dtype == np.int8 and not zero.any(), "TensorRT needs zero points of 0"
    feeds = {"y_hat": np.random.default_rng(0).normal(size=(1, bundle.latent_channels, 8, 8)).astype(np.float32)}
    out = GraphSet(bundle, converted_backend(tmp_path)).run("classifier", **feeds)["logits"]
    assert out.shape == (1, len(bundle.class_names)) and np.all(np.isfinite(out))


def test_verify_compares_graphs_and_crosses_streams(bundle, photos, tmp_path):
    build_engines(bundle, tmp_path, "fp16", sizes=SIZES, convert_only=True, graphs=("classifier", "synthesis"))
    report = verify_backends(bundle, open_backend("ort:cpu", threads=1), converted_backend(tmp_path), photos)
    graphs = report["graphs"]
    assert graphs["hyper_synthesis"]["max_abs_diff"] == 0.0  # not converted: the same ONNX
    assert graphs["classifier"]["inputs"] == 4 * len(photos) and 0 < graphs["classifier"]["max_abs_diff"] < 1
    assert "top1_agreement" in graphs["classifier"] and graphs["synthesis"]["min_psnr_db"] > 30
    assert report["streams"] == {"pairs": 4 * len(photos), "failed_decodes": 0, "different_residuals": 0}


def test_build_without_tensorrt_exits_with_the_install_hint(tiny_bundle, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    result = CliRunner().invoke(app, ["build", "--bundle", str(tiny_bundle), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "TensorRT is not installed" in result.output
    result = CliRunner().invoke(app, ["build", "--bundle", str(tiny_bundle), "--precision", "fp8"])
    assert result.exit_code == 2 and "--precision" in result.output
