"""The slim runtime must never pull in torch (nor scipy: it is NumPy + numba only)."""

import subprocess
import sys

import pytest

#: side → (modules it imports, modules that must stay out of sys.modules)
LIGHT_SIDES = {
    "runtime": ("edge_sdk, edge_sdk.runtime, edge_sdk.runtime.codec, edge_sdk.runtime.coders",
                ("torch", "torchvision", "timm", "scipy", "onnx", "urllib3")),
    # a Jetson builds and runs engines with TensorRT and ONNX but no torch
    "engine side": ("edge_sdk.runtime.integer_prior, edge_sdk.runtime.backends, edge_sdk.runtime.backends.ort, "
                    "edge_sdk.runtime.backends.tensorrt, edge_sdk.calibration.int8, edge_sdk.cli",
                    ("torch", "torchvision", "timm")),
}


@pytest.mark.parametrize("side", sorted(LIGHT_SIDES))
def test_runtime_and_engine_side_import_torch_free(side):
    modules, forbidden = LIGHT_SIDES[side]
    code = f"import sys, {modules}; print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{side} import pulled in: {out.stdout.strip()}"


def test_runtime_installs_under_edge_sdk_namespace(tmp_path):
    import edge_sdk.runtime as rt

    assert rt.__name__ == "edge_sdk.runtime"
    # Outside the source tree, only the edge_sdk namespace may be importable.
    out = subprocess.run([sys.executable, "-c", "import runtime"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0, "a generic top-level 'runtime' module leaked into the environment"
