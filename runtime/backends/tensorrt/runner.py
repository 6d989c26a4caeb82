"""TensorRT engines from ``edge-sdk build`` behind the same Backend interface as ONNX Runtime.

Written against the TensorRT 10 and 11 Python APIs (named I/O tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with device memory from cuda-python
(:mod:`.cuda`). A runner's engine, execution context, CUDA stream and device buffers are
acquired in ``activate`` and released in ``deactivate``, which ``TensorRTBackend.close``
(or leaving its ``with`` block) calls for every runner. **Not run on a GPU yet**: no
machine this project was developed on had TensorRT (docs/tensorrt.md says exactly what was
and was not exercised). Everything that does not need TensorRT, the engine keys, the cache,
the profiles, the precision plan and the error mapping, is unit-tested.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ...bundle import Bundle, GraphInfo
from ...errors import BackendError, EngineMismatchError
from ..base import Backend, Runner
from .api import current_device, make_logger, tensorrt_module
from .build import DEFAULT_PROFILE_SIZES, build_engines, rebuild_command
from .cache import EngineDir, explain_tensorrt_error
from .cuda import CudaRuntime


class TensorRTRunner(Runner):
    """One engine; float32 arrays in and out, device buffers reused across runs."""

    def __init__(self, graph: GraphInfo, engine_path: Path, trt, cuda: CudaRuntime, rebuild: str):
        super().__init__(graph)
        self.engine_path = engine_path
        self._trt, self._cuda, self._rebuild = trt, cuda, rebuild
        self.engine = self.context = None
        self._runtime = self._logger = self._stream = None
        self._buffers: dict[str, tuple[Any, int]] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def _mismatch(self, detail: str) -> EngineMismatchError:
        return EngineMismatchError(f"{self.engine_path.name}: {detail}")

    def activate_impl(self) -> None:
        trt, graph = self._trt, self.graph
        logger = make_logger(trt)
        runtime = trt.Runtime(logger)
        if hasattr(runtime, "engine_host_code_allowed"):  # version-compatible engines (10 → 11)
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise self._mismatch(explain_tensorrt_error(logger.text, self._rebuild))
        context = engine.create_execution_context()
        if context is None:
            raise self._mismatch(explain_tensorrt_error(logger.text, self._rebuild))
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        expected = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
        if set(names) != expected:
            raise self._mismatch(f"has tensors {sorted(names)}, graph {graph.name} has {sorted(expected)}; "
                                 f"{self._rebuild}")
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._logger, self._runtime, self.engine, self.context = logger, runtime, engine, context
        self._stream = self._cuda.stream()

    def _buffer(self, name: str, nbytes: int):
        buf, size = self._buffers.get(name, (None, 0))
        if buf is None or size < nbytes:
            if buf is not None:
                self._cuda.free(buf)
            buf = self._cuda.malloc(nbytes)
            self._buffers[name] = (buf, nbytes)
        return buf

    def run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
        return {n: h for n, (h, _) in outs.items()}

    def deactivate_impl(self) -> None:
        """Device buffers and the stream first, then the context before its engine and runtime."""
        try:
            while self._buffers:
                buf, _ = self._buffers.popitem()[1]
                self._cuda.free(buf)
            if self._stream is not None:
                self._cuda.destroy_stream(self._stream)
        finally:
            self._stream = None
            self.context = None
            self.engine = None
            self._runtime = None


class TensorRTBackend(Backend):
    """Engines from an engine folder (``edge-sdk build --out DIR``), checked before loading.

    A missing, stale (other bundle graph, TensorRT version or GPU) or damaged engine is
    rebuilt with a message when ``rebuild`` is set (needs the bundle's ONNX and, for FP16 on
    TensorRT 11, the conversion tools; INT8 engines need calibration feeds, so they are
    refused), otherwise refused with the command that rebuilds it. Never loaded blindly.
    """

    name = "tensorrt"

    def __init__(self, engine_dir: str | Path, bundle: Optional[Bundle] = None, *, rebuild: bool = True,
                 message: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
        super().__init__()
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

    def runner_impl(self, graph: GraphInfo) -> TensorRTRunner:
        precision = self._precision_of(graph.name)
        command = rebuild_command(self.bundle, self.engine_dir.root, precision)
        path, reasons = self.engine_dir.check(graph.name, graph.sha256, self.device)
        if path is None:
            if not self.rebuild or self.bundle is None:
                raise EngineMismatchError(f"engine for {graph.name} cannot be used: {'; '.join(reasons)}. "
                                          f"Rebuild: {command}")
            self.message(f"rebuilding the {graph.name} engine ({'; '.join(reasons)})")
            sizes = tuple(tuple(hw) for hw in self.engine_dir.profile_sizes) or DEFAULT_PROFILE_SIZES
            build_engines(self.bundle, self.engine_dir.root, precision, sizes=sizes, graphs=(graph.name,))
            self.engine_dir = EngineDir.open(self.engine_dir.root)
            path, reasons = self.engine_dir.check(graph.name, graph.sha256, self.device)
            if path is None:
                raise EngineMismatchError(f"rebuilt engine for {graph.name} still unusable: {'; '.join(reasons)}")
        return TensorRTRunner(graph, path, self.trt, self.cuda, command)

    def describe(self) -> dict:
        return {"backend": self.name, "version": self.device.tensorrt_version, "device": self.device.name,
                "compute_capability": self.device.compute_capability, "engines": str(self.engine_dir.root)}
