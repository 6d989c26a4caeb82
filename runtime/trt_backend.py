"""TensorRT backend: engines from ``edge-sdk build`` behind the same Backend interface as ONNX Runtime.

Written against the TensorRT 10 and 11 Python APIs (named I/O tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with device memory from cuda-python
(``cuda.bindings.runtime``; pycuda where that is missing). **Not run on a GPU yet**: no
machine this project was developed on had TensorRT (docs/tensorrt.md says exactly what was
and was not exercised). Everything that does not need TensorRT, the engine keys, the cache,
the profiles, the precision plan and the error mapping, is unit-tested.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .backend import BackendError
from .bundle import Bundle, GraphInfo
from .engine_cache import (
    FP32_GRAPHS,
    PRECISIONS,
    DeviceInfo,
    EngineDir,
    EngineMismatchError,
    explain_tensorrt_error,
)

#: padded image sizes (height, width) of the default shape profile: min, opt, max
DEFAULT_PROFILE_SIZES = ((64, 64), (512, 768), (2048, 2048))
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


def precision_plan(precision: str, graphs: tuple[str, ...]) -> dict[str, str]:
    """The precision each graph is built in: the hyperprior side always FP32 (docs/tensorrt.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {g: "fp32" if g in FP32_GRAPHS else precision for g in graphs}


def _dim(value: int | str, height: int, width: int) -> int:
    if isinstance(value, int):
        return value
    text = str(value).replace(" ", "")
    base, _, div = text.partition("/")
    if base not in ("H", "W"):
        raise ValueError(f"cannot resolve dimension {value!r}")
    side = height if base == "H" else width
    return side // int(div) if div else side


def profile_shapes(graph: GraphInfo, sizes=DEFAULT_PROFILE_SIZES) -> dict[str, list[list[int]]]:
    """min/opt/max shape of every input for padded image sizes ``sizes`` (from the manifest's
    symbolic dims such as ``H/16``)."""
    out = {}
    for spec in graph.inputs:
        out[spec.name] = [[_dim(d, h, w) for d in spec.shape] for h, w in sizes]
    return out


def rebuild_command(bundle: Bundle | None, engine_dir: Path, precision: str) -> str:
    where = bundle.path if bundle is not None else "BUNDLE"
    return f"edge-sdk build --bundle {where} --precision {precision} --out {engine_dir}"


# --- CUDA memory through cuda-python (pycuda accepted) ----------------------------------------
class CudaRuntime:
    """The few CUDA runtime calls a TensorRT runner needs."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6 layout
            except ImportError:
                cudart = None
        self._rt = cudart
        if cudart is None:
            try:
                import pycuda.autoinit  # noqa: F401  (creates the context)
                import pycuda.driver as pycuda_driver
            except ImportError as exc:
                raise BackendError("the TensorRT backend needs cuda-python (pip install cuda-python) or pycuda") from exc
            self._pycuda = pycuda_driver
        else:
            self._pycuda = None

    def _check(self, result) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, name = self._rt.cudaGetErrorString(err)
            raise BackendError(f"CUDA: {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else rest

    def device(self) -> tuple[str, str]:
        """(GPU name, compute capability 'major.minor') of the current device."""
        if self._pycuda is not None:
            dev = self._pycuda.Context.get_device()
            major, minor = dev.compute_capability()
            return dev.name(), f"{major}.{minor}"
        count = self._check(self._rt.cudaGetDeviceCount())
        if count < 1:
            raise BackendError("no CUDA device found")
        props = self._check(self._rt.cudaGetDeviceProperties(self._check(self._rt.cudaGetDevice())))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00"), f"{props.major}.{props.minor}"

    def stream(self):
        if self._pycuda is not None:
            return self._pycuda.Stream()
        return self._check(self._rt.cudaStreamCreate())

    def stream_handle(self, stream) -> int:
        return int(stream.handle) if self._pycuda is not None else int(stream)

    def malloc(self, nbytes: int):
        if self._pycuda is not None:
            return self._pycuda.mem_alloc(max(nbytes, 1))
        return self._check(self._rt.cudaMalloc(max(nbytes, 1)))

    def pointer(self, buffer) -> int:
        return int(buffer)

    def free(self, buffer) -> None:
        if self._pycuda is not None:
            buffer.free()
        else:
            self._check(self._rt.cudaFree(buffer))

    def to_device(self, buffer, host: np.ndarray, stream) -> None:
        if self._pycuda is not None:
            self._pycuda.memcpy_htod_async(buffer, host, stream)
        else:
            kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self._rt.cudaMemcpyAsync(buffer, host.ctypes.data, host.nbytes, kind, stream))

    def to_host(self, host: np.ndarray, buffer, stream) -> None:
        if self._pycuda is not None:
            self._pycuda.memcpy_dtoh_async(host, buffer, stream)
        else:
            kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self._rt.cudaMemcpyAsync(host.ctypes.data, buffer, host.nbytes, kind, stream))

    def synchronize(self, stream) -> None:
        if self._pycuda is not None:
            stream.synchronize()
        else:
            self._check(self._rt.cudaStreamSynchronize(stream))


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


class TensorRTRunner:
    """One deserialized engine; float32 arrays in and out, device buffers reused across runs."""

    def __init__(self, graph: GraphInfo, engine_path: Path, trt, cuda: CudaRuntime, rebuild: str):
        self.graph = graph
        self._trt, self._cuda = trt, cuda
        logger = make_logger(trt)
        self._runtime = trt.Runtime(logger)
        if hasattr(self._runtime, "engine_host_code_allowed"):  # version-compatible engines (10 → 11)
            self._runtime.engine_host_code_allowed = True
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"{engine_path.name}: {explain_tensorrt_error(logger.text, rebuild)}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineMismatchError(f"{engine_path.name}: {explain_tensorrt_error(logger.text, rebuild)}")
        self._logger = logger
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        expected = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
        if set(names) != expected:
            raise EngineMismatchError(f"{engine_path.name} has tensors {sorted(names)}, graph {graph.name} has "
                                      f"{sorted(expected)}; {rebuild}")
        self._stream = cuda.stream()
        self._buffers: dict[str, tuple[Any, int]] = {}

    def _buffer(self, name: str, nbytes: int):
        buf, size = self._buffers.get(name, (None, 0))
        if buf is None or size < nbytes:
            if buf is not None:
                self._cuda.free(buf)
            buf = self._cuda.malloc(nbytes)
            self._buffers[name] = (buf, nbytes)
        return buf

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, cuda = self._trt, self._cuda
        hosts = {}
        for name in self.inputs:
            arr = np.ascontiguousarray(feeds[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
                raise BackendError(f"{self.graph.name}: input {name} of shape {arr.shape} is outside the engine's "
                                   f"profile {tuple(lo)}..{tuple(hi)}; build with a larger --max-size")
            buf = self._buffer(name, arr.nbytes)
            cuda.to_device(buf, arr, self._stream)
            self.context.set_tensor_address(name, cuda.pointer(buf))
            hosts[name] = arr  # keep alive until the copy is done
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            buf = self._buffer(name, host.nbytes)
            self.context.set_tensor_address(name, cuda.pointer(buf))
            outs[name] = (host, buf)
        if not self.context.execute_async_v3(cuda.stream_handle(self._stream)):
            raise BackendError(f"{self.graph.name}: TensorRT execution failed: {self._logger.text[-500:]}")
        for host, buf in outs.values():
            cuda.to_host(host, buf, self._stream)
        cuda.synchronize(self._stream)
        return {n: np.ascontiguousarray(h, dtype=np.float32) for n, (h, _) in outs.items()}

    def __del__(self) -> None:
        for buf, _ in getattr(self, "_buffers", {}).values():
            try:
                self._cuda.free(buf)
            except Exception:  # interpreter shutdown: the context may be gone
                pass


class TensorRTBackend:
    """Engines from an engine folder (``edge-sdk build --out DIR``), checked before loading.

    A missing, stale (other bundle graph, TensorRT version or GPU) or damaged engine is
    rebuilt with a message when ``rebuild`` is set (needs the bundle's ONNX and, for FP16
    or INT8 on TensorRT 11, the conversion tools), otherwise refused with the command that
    rebuilds it. Never loaded blindly.
    """

    name = "tensorrt"

    def __init__(self, engine_dir: str | Path, bundle: Optional[Bundle] = None, *, rebuild: bool = True,
                 message: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
        self.trt = tensorrt_module()
        self.cuda = CudaRuntime()
        self.device = current_device(self.trt, self.cuda)
        self.engine_dir = EngineDir.open(engine_dir)
        self.bundle = bundle
        self.rebuild = rebuild
        self.message = message

    def _precision_of(self, graph: str) -> str:
        entry = self.engine_dir.entries.get(graph, {})
        return entry.get("key", {}).get("precision", "fp32")

    def load(self, graph: GraphInfo) -> TensorRTRunner:
        precision = self._precision_of(graph.name)
        command = rebuild_command(self.bundle, self.engine_dir.root, precision)
        path, reasons = self.engine_dir.check(graph.name, graph.sha256, self.device)
        if path is None:
            if not self.rebuild or self.bundle is None:
                raise EngineMismatchError(f"engine for {graph.name} cannot be used: {'; '.join(reasons)}. "
                                          f"Rebuild: {command}")
            self.message(f"rebuilding the {graph.name} engine ({'; '.join(reasons)})")
            from edge_sdk.export.engine import build_engines

            sizes = tuple(tuple(hw) for hw in self.engine_dir.profile_sizes) or DEFAULT_PROFILE_SIZES
            build_engines(self.bundle, self.engine_dir.root, precision, sizes=sizes, graphs=(graph.name,))
            self.engine_dir = EngineDir.open(self.engine_dir.root)
            path, reasons = self.engine_dir.check(graph.name, graph.sha256, self.device)
            if path is None:
                raise EngineMismatchError(f"rebuilt engine for {graph.name} still unusable: {'; '.join(reasons)}")
        return TensorRTRunner(graph, path, self.trt, self.cuda, command)

    def describe(self) -> dict:
        return {"backend": "tensorrt", "version": self.device.tensorrt_version, "device": self.device.name,
                "compute_capability": self.device.compute_capability, "engines": str(self.engine_dir.root)}
