"""TensorRT: the runner and its backend, engine builds, the engine cache, precision planning
and CUDA memory, all torch-free (a Jetson builds and runs engines with no torch installed).

* :mod:`.runner`: :class:`TensorRTBackend` / :class:`TensorRTRunner` (``open_backend("trt:DIR")``)
* :mod:`.build`: :func:`build_engines` (``edge-sdk build``), shape profiles, inspector checks
* :mod:`.cache`: :class:`EngineKey`, :class:`EngineDir`, :func:`default_cache_dir`, error mapping
* :mod:`.precision`: :func:`precision_plan`, FP16 conversion and INT8 Q/DQ ONNX
* :mod:`.api`: importing TensorRT, its version and build strategy, the logger, the GPU
* :mod:`.cuda`: :class:`CudaRuntime` (cuda-python, or pycuda)

TensorRT, cuda-python, onnx and onnxruntime are imported only when used.
"""

from .api import INSTALL_HINT, build_strategy, current_device, tensorrt_module
from .build import DEFAULT_PROFILE_SIZES, CalibrationFeeds, build_engines, profile_shapes
from .cache import PRECISIONS, DeviceInfo, EngineDir, EngineKey, default_cache_dir
from .cuda import CudaRuntime
from .precision import FP32_GRAPHS, precision_plan
from .runner import TensorRTBackend, TensorRTRunner

__all__ = [
    "CalibrationFeeds",
    "CudaRuntime",
    "DEFAULT_PROFILE_SIZES",
    "DeviceInfo",
    "EngineDir",
    "EngineKey",
    "FP32_GRAPHS",
    "INSTALL_HINT",
    "PRECISIONS",
    "TensorRTBackend",
    "TensorRTRunner",
    "build_engines",
    "build_strategy",
    "current_device",
    "default_cache_dir",
    "precision_plan",
    "profile_shapes",
    "tensorrt_module",
]
