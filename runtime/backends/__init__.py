"""Inference backends, the bottom layer under Encoder and Decoder; one factory opens any of them.

    backend = open_backend("auto")            # ONNX Runtime on CUDA when it offers it, else the CPU
    backend = open_backend("ort:cpu", threads=2)
    with open_backend("trt:engines/lite0-fp16", bundle=bundle) as backend:
        pred = Decoder(bundle, backend).classify(data)   # engines and device memory freed on exit

Specs: ``auto`` (= ``ort``), ``ort`` / ``ort:auto``, ``ort:cpu``, ``ort:cuda``, and ``trt:DIR`` for
a TensorRT engine folder written by ``edge-sdk build --out DIR``. onnxruntime, tensorrt and
cuda-python are imported by the backend that needs them, when it is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..bundle import Bundle
from ..errors import BackendError
from .base import Backend, GraphSet, Runner

__all__ = ["Backend", "GraphSet", "Runner", "SPECS", "open_backend"]

#: what ``open_backend`` accepts (DIR: an engine folder)
SPECS = ("auto", "ort", "ort:auto", "ort:cpu", "ort:cuda", "trt:DIR")


def open_backend(spec: str = "auto", *, threads: int = 0, graph_files: Optional[dict[str, Path]] = None,
                 bundle: Optional[Bundle] = None, rebuild: bool = True,
                 message: Optional[Callable[[str], None]] = None) -> Backend:
    """The backend ``spec`` names; raises :class:`BackendError` for an unknown spec, a missing
    package (onnxruntime, tensorrt, cuda-python) or a missing engine folder.

    ONNX Runtime: ``threads`` intra-op threads (0: one per core); ``graph_files`` runs other
    ONNX files for some graphs (the converted copies of ``edge-sdk build --convert-only``).
    TensorRT: ``bundle`` lets stale engines be rebuilt (``rebuild``), ``message`` hears about it.
    """
    kind, _, arg = str(spec).partition(":")
    if kind in ("auto", "ort"):
        if kind == "auto" and arg:
            raise BackendError(f"backend spec {spec!r}: 'auto' takes no argument; use one of {', '.join(SPECS)}")
        if arg not in ("", "auto", "cpu", "cuda"):
            raise BackendError(f"backend spec {spec!r}: ONNX Runtime runs on auto, cpu or cuda")
        if bundle is not None:
            raise BackendError(f"backend spec {spec!r}: bundle= is for TensorRT engine folders (trt:DIR)")
        from .ort import OnnxRuntimeBackend

        return OnnxRuntimeBackend(device=arg or "auto", threads=threads, graph_files=graph_files)
    if kind == "trt":
        if not arg:
            raise BackendError(f"backend spec {spec!r} names no engine folder: use trt:DIR "
                               "(DIR from `edge-sdk build --out DIR`)")
        if graph_files:
            raise BackendError(f"backend spec {spec!r}: graph_files= is for ONNX Runtime (ort:...)")
        if not Path(arg).is_dir():
            raise BackendError(f"engine folder {arg} does not exist; build it with "
                               f"`edge-sdk build --bundle BUNDLE --out {arg}`")
        from .tensorrt import TensorRTBackend

        options = {} if message is None else {"message": message}
        return TensorRTBackend(arg, bundle, rebuild=rebuild, **options)
    raise BackendError(f"unknown backend spec {spec!r}; use one of {', '.join(SPECS)}")
