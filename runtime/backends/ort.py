"""ONNX Runtime behind the :class:`~edge_sdk.runtime.backends.base.Backend` interface, on the CPU or CUDA.

Sessions are tuned for small edge CPUs running several graphs in a chain: no spinning
between runs (a finished session's spinning threads otherwise steal the cores from the
next one — measured 2× slower on 2 cores, see ../shared/notes/cpu-baselines.md), one
inter-op thread, sequential execution, full graph optimisation. ``onnxruntime`` is
imported when a backend is opened, never at module import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..bundle import GraphInfo
from ..errors import BackendError
from .base import Backend, Runner

DEVICES = ("auto", "cpu", "cuda")


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError("the ONNX Runtime backend needs 'onnxruntime' (pip install onnxruntime, "
                           "or onnxruntime-gpu for CUDA)") from exc
    return onnxruntime


def physical_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OrtRunner(Runner):
    """One ONNX file in one ``InferenceSession``."""

    def __init__(self, graph: GraphInfo, path: Path, backend: "OnnxRuntimeBackend"):
        super().__init__(graph)
        self.path = path
        self._backend = backend
        self.session = None

    def activate_impl(self) -> None:
        ort = _ort()
        try:
            session = ort.InferenceSession(str(self.path), self._backend.session_options(),
                                           providers=self._backend.providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{self.graph.name}: ONNX Runtime cannot load {self.path.name}: {exc}") from exc
        names = [i.name for i in session.get_inputs()]
        if names != [t.name for t in self.graph.inputs]:
            raise BackendError(f"{self.graph.name}: {self.path.name} takes {names}, the manifest says "
                               f"{[t.name for t in self.graph.inputs]}")
        self.session = session

    can_release_memory = True

    def run_impl(self, feeds: dict[str, np.ndarray], release_memory: bool = False) -> dict[str, np.ndarray]:
        names = [t.name for t in self.graph.outputs]
        options = None
        if release_memory:
            # the arena keeps what a large tile grew; shrinking it at the end of the stage's last
            # tile lets the next stage's graph reuse that memory instead of adding its own
            options = _ort().RunOptions()
            device = "cpu:0;gpu:0" if self.session.get_providers()[0].startswith("CUDA") else "cpu:0"
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", device)
        try:
            outputs = self.session.run(names, feeds, options)
        except Exception as exc:
            raise BackendError(f"{self.graph.name}: ONNX Runtime failed: {exc}") from exc
        return dict(zip(names, outputs))

    def deactivate_impl(self) -> None:
        self.session = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, device: str = "auto", threads: int = 0,
                 graph_files: Optional[dict[str, Path]] = None):
        """``device``: cpu, cuda, or auto (CUDA when ONNX Runtime offers it); ``threads``: intra-op
        threads, 0 for one per core. ``graph_files`` runs other ONNX files for some graphs (the
        FP16 / Q/DQ copies ``edge-sdk build --convert-only`` writes) in place of the bundle's,
        same tensor names."""
        super().__init__()
        if device not in DEVICES:
            raise BackendError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        self.graph_files = {name: Path(path) for name, path in (graph_files or {}).items()}
        ort = _ort()
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise BackendError(f"CUDA was asked for but ONNX Runtime offers only {available} "
                               "(install onnxruntime-gpu with a matching CUDA)")
        use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        self.providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        self.threads = threads or physical_cores()

    def session_options(self):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return opts

    def runner_impl(self, graph: GraphInfo) -> OrtRunner:
        return OrtRunner(graph, self.graph_files.get(graph.name, graph.path), self)

    def describe(self) -> dict:
        ort = _ort()
        out = {"backend": self.name, "version": ort.__version__, "providers": self.providers,
               "threads": self.threads, "device": "cuda" if self.providers[0].startswith("CUDA") else "cpu"}
        if self.graph_files:
            out["graph_files"] = {k: str(v) for k, v in self.graph_files.items()}
        return out
