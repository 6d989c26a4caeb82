"""CUDA memory and streams for the TensorRT runner and the INT8 calibrator, through cuda-python.

TensorRT 10.14 replaced every pycuda use in its samples with cuda-python
(``cuda.bindings.runtime``); pycuda is still accepted where cuda-python is missing (older
JetPack images). Both are imported when a :class:`CudaRuntime` is made, never at module
import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import BackendError


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

    def destroy_stream(self, stream) -> None:
        if self._pycuda is None:  # a pycuda Stream is freed with its Python object
            self._check(self._rt.cudaStreamDestroy(stream))

    def synchronize(self, stream) -> None:
        if self._pycuda is not None:
            stream.synchronize()
        else:
            self._check(self._rt.cudaStreamSynchronize(stream))
