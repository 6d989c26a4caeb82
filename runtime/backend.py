"""One interface for every inference engine, so the Decoder never tells them apart.

A :class:`Backend` turns a bundle graph into a :class:`Runner`; a runner maps named
float32 arrays to named float32 arrays. ONNX Runtime (``runtime/ort_backend.py``) and
TensorRT engines (``runtime/trt_backend.py``) implement the same two methods.
Graphs are loaded lazily, on first use: a Decoder that only classifies never pays for
the synthesis graph.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .bundle import Bundle, GraphInfo


class BackendError(RuntimeError):
    """An engine cannot be loaded or run; the message names the graph and the cause."""


class Runner(Protocol):
    graph: GraphInfo

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by name → outputs by name (float32, C-contiguous)."""


class Backend(Protocol):
    name: str

    def load(self, graph: GraphInfo) -> Runner:
        """Prepare one graph for running (may take seconds: compile, allocate)."""

    def describe(self) -> dict:
        """What this backend runs on (for `edge-sdk doctor` and per-item JSON)."""


class GraphSet:
    """The bundle's graphs on one backend, each loaded on first use."""

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.backend = backend
        self._runners: dict[str, Runner] = {}

    def runner(self, name: str) -> Runner:
        if name not in self._runners:
            self._runners[name] = self.backend.load(self.bundle.graphs[name])
        return self._runners[name]

    def run(self, name: str, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        graph = self.bundle.graphs[name]
        expected = [t.name for t in graph.inputs]
        if sorted(feeds) != sorted(expected):
            raise BackendError(f"{name} takes {expected}, got {sorted(feeds)}")
        return self.runner(name).run({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()})


def default_backend(device: str = "auto", threads: int | None = None) -> Backend:
    """ONNX Runtime on CUDA when asked for (or available with ``auto``), else on the CPU."""
    from .ort_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(device=device, threads=threads)
