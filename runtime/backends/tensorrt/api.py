"""The TensorRT library itself: importing it (lazily, with an install hint), its version and
the build strategy that follows from it, the logger that keeps its messages, and the GPU it
runs on. Written against the TensorRT 10 and 11 Python APIs (../shared/notes/deployment.md §1, §3).
"""

from __future__ import annotations

import sys
from typing import Optional

from ...errors import BackendError
from .cache import DeviceInfo
from .cuda import CudaRuntime

INSTALL_HINT = ("TensorRT is not installed: on JetPack use the system python3-libnvinfer (a venv with "
                "--system-site-packages), on desktops `pip install 'edge-sdk[trt]' --extra-index-url "
                "https://pypi.nvidia.com`")


def tensorrt_module():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(INSTALL_HINT) from exc
    return tensorrt


def tensorrt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError as exc:
        raise BackendError(f"cannot read TensorRT version {version!r}") from exc


def build_strategy(version: str) -> str:
    """TensorRT 10: FP32 ONNX plus FP16/INT8 builder flags (and the INT8 calibrator);
    TensorRT 11+: strongly typed networks from ONNX whose precision is already baked in."""
    major = tensorrt_major(version)
    if major < 10:
        raise BackendError(f"TensorRT {version} is not supported: edge-sdk needs TensorRT 10 (JetPack 6) or 11")
    return "builder-flags" if major == 10 else "strongly-typed"


def current_device(trt, cuda: Optional[CudaRuntime] = None) -> DeviceInfo:
    name, cc = (cuda or CudaRuntime()).device()
    return DeviceInfo(name=name, compute_capability=cc, tensorrt_version=str(trt.__version__))


def make_logger(trt):
    """A TensorRT logger that keeps every message (TensorRT reports failures only there)."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, msg) -> None:
            self.messages.append(f"[{severity.name}] {msg}")
            if int(severity) <= int(trt.ILogger.Severity.ERROR):  # INTERNAL_ERROR = 0, ERROR = 1
                print(f"TensorRT: {msg}", file=sys.stderr)

        @property
        def text(self) -> str:
            return "\n".join(self.messages)

    return Logger()
