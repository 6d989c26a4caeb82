"""The one interface every inference engine implements, so the Decoder never tells them apart.

Two levels, in the style of Polygraphy's runners:

* a :class:`Backend` (ONNX Runtime on CPU or CUDA, a folder of TensorRT engines) turns a
  bundle graph into a :class:`Runner` with :meth:`Backend.load`, remembers every runner it
  handed out, and frees them all on :meth:`Backend.close` (or on leaving a ``with`` block);
* a :class:`Runner` is one graph on that backend: :meth:`Runner.activate` acquires what it
  needs (a session; an engine, an execution context, a CUDA stream and device buffers),
  :meth:`Runner.run` maps named float32 arrays to named float32 arrays, and
  :meth:`Runner.deactivate` releases it all, deterministically rather than at garbage
  collection.

The public methods check state (a closed backend loads nothing, an inactive runner runs
nothing) and the manifest's tensor contract (names, rank, fixed sizes, float32 in and out);
subclasses implement only the ``*_impl`` hooks. :class:`GraphSet` binds one bundle to one
backend and loads each graph on first use: a Decoder that only classifies never pays for
the synthesis graph.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..bundle import Bundle, GraphInfo, TensorSpec
from ..errors import BackendError
from ..manifest import LATENT_STRIDE
from ..tiling import DEFAULT_CLASSIFIER_TILE_PIXELS, pooled_features


def _check_shape(graph: str, spec: TensorSpec, shape: tuple[int, ...], role: str) -> None:
    if len(shape) != len(spec.shape) or any(isinstance(want, int) and want != have
                                            for want, have in zip(spec.shape, shape)):
        raise BackendError(f"{graph}: {role} {spec.name} has shape {tuple(shape)}, the manifest says "
                           f"{tuple(spec.shape)}")


class Runner:
    """One graph on one backend. Subclasses implement ``activate_impl``, ``run_impl`` and
    ``deactivate_impl``; ``run_impl`` gets float32 C-contiguous inputs, exactly the graph's."""

    def __init__(self, graph: GraphInfo):
        self.graph = graph
        self.is_active = False

    def activate(self) -> "Runner":
        """Acquire the session / engine and its memory; a no-op when already active."""
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    #: whether ``run_impl`` takes ``release_memory=True`` (return the working memory this call grew)
    can_release_memory = False

    def run(self, feeds: dict[str, np.ndarray], release_memory: bool = False) -> dict[str, np.ndarray]:
        """Inputs by name → outputs by name, float32 and C-contiguous, checked against the manifest.

        ``release_memory``: hand the working memory this call needed back when it ends (the last
        tile of a stage), where the backend can; otherwise it is kept for the next call."""
        name = self.graph.name
        if not self.is_active:
            raise BackendError(f"{name}: the runner is not active (its backend was closed, or activate() "
                               "was never called)")
        expected = [t.name for t in self.graph.inputs]
        if sorted(feeds) != sorted(expected):
            raise BackendError(f"{name} takes {expected}, got {sorted(feeds)}")
        arrays = {}
        for spec in self.graph.inputs:
            value = np.asarray(feeds[spec.name])
            if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
                raise BackendError(f"{name}: input {spec.name} must be numeric, got {value.dtype}")
            _check_shape(name, spec, value.shape, "input")
            arrays[spec.name] = np.ascontiguousarray(value, dtype=np.float32)
        outputs = self.run_impl(arrays, release_memory=True) if release_memory and self.can_release_memory \
            else self.run_impl(arrays)
        missing = [t.name for t in self.graph.outputs if t.name not in outputs]
        if missing:
            raise BackendError(f"{name}: the backend returned no {missing}")
        result = {}
        for spec in self.graph.outputs:
            value = np.ascontiguousarray(outputs[spec.name], dtype=np.float32)
            _check_shape(name, spec, value.shape, "output")
            result[spec.name] = value
        return result

    def deactivate(self) -> None:
        """Release everything ``activate`` acquired; a no-op when not active."""
        if self.is_active:
            self.is_active = False
            self.deactivate_impl()

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # --- hooks ----------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        raise NotImplementedError

    def run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError


class Backend:
    """An inference engine for bundle graphs; open one with :func:`~edge_sdk.runtime.backends.open_backend`.

    Subclasses set ``name`` and implement ``runner_impl`` (an inactive :class:`Runner` for a
    graph) and ``describe``; ``close_impl`` releases backend-wide resources, if any.
    """

    name = "backend"

    def __init__(self) -> None:
        self._runners: list[Runner] = []
        self.closed = False

    def load(self, graph: GraphInfo) -> Runner:
        """An active runner for ``graph`` (may take seconds: compile, allocate); freed by ``close``."""
        if self.closed:
            raise BackendError(f"{graph.name}: the {self.name} backend is closed")
        runner = self.runner_impl(graph)
        runner.activate()
        self._runners.append(runner)
        return runner

    def describe(self) -> dict:
        """What this backend runs on (for `edge-sdk doctor` and per-item JSON)."""
        raise NotImplementedError

    def close(self) -> None:
        """Deactivate every runner this backend loaded (newest first), then the backend itself."""
        if self.closed:
            return
        self.closed = True
        while self._runners:
            self._runners.pop().deactivate()
        self.close_impl()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- hooks ----------------------------------------------------------------------------------
    def runner_impl(self, graph: GraphInfo) -> Runner:
        raise NotImplementedError

    def close_impl(self) -> None:
        pass


class GraphSet:
    """The bundle's graphs on one backend, each loaded on first use."""

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.backend = backend
        self._runners: dict[str, Runner] = {}
        # Decoder.fetch_many decodes on several threads: a graph must still be loaded once
        self._load_lock = threading.Lock()

    def runner(self, name: str) -> Runner:
        runner = self._runners.get(name)
        if runner is None or not runner.is_active:
            with self._load_lock:
                runner = self._runners.get(name)
                if runner is None or not runner.is_active:
                    runner = self._runners[name] = self.backend.load(self.bundle.graphs[name])
        return runner

    def run(self, name: str, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner(name).run(feeds)

    def run_releasing(self, name: str, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`run`, then give the graph's working memory back (the last tile of a stage: the
        next stage's graph then grows into that memory instead of beside it)."""
        return self.runner(name).run(feeds, release_memory=True)

    def logits(self, y_hat: np.ndarray, tile_pixels: int = DEFAULT_CLASSIFIER_TILE_PIXELS) -> np.ndarray:
        """The classifier's logits (num_classes,) for ŷ (1, C, H, W).

        A latent larger than one trunk tile of a bundle with ``classifier_trunk`` is classified
        in overlapping tiles (``tiling.pooled_features``) and the pooled features go through
        ``classifier_head``, so memory follows the tile; smaller latents, and bundles without
        the trunk graphs, run the whole ``classifier`` graph."""
        tiling = self.bundle.manifest.classifier_tiling
        if tiling is None or y_hat.shape[2] * y_hat.shape[3] * LATENT_STRIDE ** 2 <= tile_pixels:
            return self.run("classifier", y_hat=y_hat)["logits"][0]
        pooled = pooled_features(lambda tile: self.run("classifier_trunk", y_hat=tile)["features"], y_hat,
                                 scale_num=tiling.scale_num, scale_den=tiling.scale_den, margin=tiling.margin,
                                 tile_pixels=tile_pixels, latent_stride=LATENT_STRIDE,
                                 run_last=lambda tile: self.run_releasing("classifier_trunk", y_hat=tile)["features"])
        return self.run("classifier_head", pooled=pooled)["logits"][0]
