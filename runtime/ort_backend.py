"""ONNX Runtime behind the :class:`~edge_sdk.runtime.backend.Backend` interface.

Sessions are tuned for small edge CPUs running several graphs in a chain: no spinning
between runs (a finished session's spinning threads otherwise steal the cores from the
next one — measured 2× slower on 2 cores, see ../shared/notes/cpu-baselines.md), one
inter-op thread, sequential execution, full graph optimisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pathlib import Path

import numpy as np

from .backend import BackendError
from .bundle import GraphInfo


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


@dataclass
class OrtRunner:
    graph: GraphInfo
    session: object

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self.session.run(None, feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{self.graph.name}: ONNX Runtime failed: {exc}") from exc
        return {t.name: out for t, out in zip(self.graph.outputs, outputs)}


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, device: str = "auto", threads: int | None = None,
                 graph_files: dict[str, Path] | None = None):
        """``graph_files`` runs other ONNX files for some graphs (the FP16 / Q/DQ copies
        ``edge-sdk build --convert-only`` writes) in place of the bundle's, same tensor names."""
        self.graph_files = dict(graph_files or {})
        ort = _ort()
        available = ort.get_available_providers()
        if device not in ("auto", "cpu", "cuda"):
            raise BackendError(f"device must be auto, cpu or cuda, got {device!r}")
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise BackendError(f"CUDA was asked for but ONNX Runtime offers only {available} "
                               "(install onnxruntime-gpu with a matching CUDA)")
        use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        self.providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        self.threads = threads or physical_cores()

    def _options(self):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return opts

    def load(self, graph: GraphInfo) -> OrtRunner:
        ort = _ort()
        path = self.graph_files.get(graph.name, graph.path)
        try:
            session = ort.InferenceSession(str(path), self._options(), providers=self.providers)
        except Exception as exc:
            raise BackendError(f"{graph.name}: ONNX Runtime cannot load {path.name}: {exc}") from exc
        names = [i.name for i in session.get_inputs()]
        if names != [t.name for t in graph.inputs]:
            raise BackendError(f"{graph.name}: {graph.path.name} takes {names}, the manifest says "
                               f"{[t.name for t in graph.inputs]}")
        return OrtRunner(graph, session)

    def describe(self) -> dict:
        ort = _ort()
        out = {"backend": self.name, "version": ort.__version__, "providers": self.providers,
               "threads": self.threads, "device": "cuda" if self.providers[0].startswith("CUDA") else "cpu"}
        if self.graph_files:
            out["graph_files"] = {k: str(v) for k, v in self.graph_files.items()}
        return out
