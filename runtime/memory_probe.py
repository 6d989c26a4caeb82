"""One memory probe: run an operation once in this fresh process and report its peak
resident size (``runtime.memory`` says what the probes are for; ``calibration.memory`` runs
them). ``python -m edge_sdk.runtime.memory_probe OPERATION BUNDLE BACKEND THREADS HEIGHT WIDTH
STREAM`` prints one JSON line. Torch-free."""

from __future__ import annotations

import json
import sys
import tracemalloc
from typing import Optional

import numpy as np

from .memory import OPERATIONS, peak_resident_bytes, resident_bytes

__all__ = ["probe", "probe_photo"]


def probe_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 image: smooth colour fields, edges and fine noise (its
    stream is about as large as a real photo's, so the coder's state is too)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, height // 64), max(2, width // 64), 3))
    rows = np.linspace(0, coarse.shape[0] - 1, height).round().astype(int)
    cols = np.linspace(0, coarse.shape[1] - 1, width).round().astype(int)
    img = coarse[rows][:, cols] * 200 + rng.normal(0, 12, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def probe(bundle_dir: str, operation: str, backend_name: str, threads: int, *, size: tuple[int, int] = (0, 0),
          stream_path: Optional[str] = None) -> dict:
    """Run ``operation`` once in this (fresh) process and report the resident bytes before it
    and the peak during it: ``encode`` and ``run`` on a ``size`` probe photo (``encode`` writes
    its stream to ``stream_path``), ``decode`` on the stream at ``stream_path``."""
    from .backends import open_backend
    from .bundle import Bundle
    from .fileio import atomic_write
    from .pipeline import Decoder, Encoder

    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    bundle = Bundle.load(bundle_dir)
    photo = stream = None
    if operation == "decode":
        with open(stream_path, "rb") as f:
            stream = f.read()
    else:
        photo = probe_photo(*size)
    backend = open_backend(backend_name, threads=threads)
    before = resident_bytes()
    # NumPy reports its buffers to tracemalloc: their peak is the part that grows with the photo,
    # exactly and linearly; the resident peak adds the backend's arenas and libraries, which grow
    # in steps (arena doubling, allocator thresholds) and are bounded by the tile size
    tracemalloc.start()
    if operation in ("encode", "run"):
        stream = Encoder(bundle, backend, max_memory=None).encode(photo)
        if operation == "encode" and stream_path:
            atomic_write(stream_path, stream)
    if operation in ("decode", "run"):
        _decode(Decoder(bundle, backend, max_memory=None), stream, operation)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"before": before, "peak": peak_resident_bytes(), "traced_peak": traced, "stream_bytes": len(stream)}


def _decode(decoder, stream: bytes, operation: str) -> None:
    """What the CLI does with a stream: ``decode`` reconstructs every level's picture, ``run``
    (``--full-depth``) classifies the fully decoded latent."""
    session = decoder.session()
    session.feed(stream)
    if operation == "run":
        session.logits()
    else:
        session.reconstruct()


def _main(argv: list[str]) -> None:
    """``python -m edge_sdk.runtime.memory OPERATION BUNDLE BACKEND THREADS HEIGHT WIDTH STREAM``:
    one probe (``decode`` ignores the size), one JSON line on stdout."""
    op, bundle, backend, threads, height, width, stream = argv
    try:
        result = probe(bundle, op, backend, int(threads), size=(int(height), int(width)), stream_path=stream)
    except Exception as exc:  # the parent reports the probe that failed; the error's own words are what it needs
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
