"""Measure a bundle's memory per operation and store it in its manifest (``runtime.memory``).

Each operation (encode, decode, run) runs once per probe size in a fresh Python process
(``python -m edge_sdk.runtime.memory_probe``), so one probe's arenas and caches never count in
the next. A probe reports two peaks: the process's resident peak (its own ``getrusage``) and
NumPy's traced peak. The photo-sized arrays (the image, the entropy coder's state, the prior's
work arrays, ŷ, the reconstruction) are NumPy's, linear in the photo, and give the slope; the
rest (ONNX Runtime's arenas at one tile, libraries) grows in steps but is bounded by the tiles,
and the intercept covers the largest of it seen. Both probe sizes exceed every tile, so the
line holds for larger photos; smaller photos get an over-estimate, which is the safe side.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from edge_sdk.runtime.bundle import read_manifest, write_manifest
from edge_sdk.runtime.images import padded_size
from edge_sdk.runtime.memory import OPERATIONS, MemoryModel, fit_line
from edge_sdk.runtime.tiling import DEFAULT_CLASSIFIER_TILE_PIXELS, DEFAULT_TILE_PIXELS

#: (height, width) of the probe photos: each side above the largest default tile's side
#: (the classifier trunk's 2 Mi pixels, about 1450 pixels square)
DEFAULT_PROBE_SIZES = ((1536, 2048), (2048, 3072))
#: seconds one probe may take before the measurement is abandoned
PROBE_TIMEOUT_S = 900

__all__ = ["DEFAULT_PROBE_SIZES", "MemoryProbeError", "attach_memory", "measure_memory"]


class MemoryProbeError(RuntimeError):
    """A probe process failed; the message carries its error output."""


def _probe(argv: list[str]) -> dict:
    try:
        done = subprocess.run([sys.executable, "-m", "edge_sdk.runtime.memory_probe", *argv], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise MemoryProbeError(f"memory probe {' '.join(argv[:1])} took more than {PROBE_TIMEOUT_S} s") from exc
    if done.returncode:
        raise MemoryProbeError(f"memory probe {argv[0]} at {argv[4]}×{argv[5]} failed (exit {done.returncode}): "
                               f"{done.stderr.strip()[-600:]}")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"before": int(result["before"]), "peak": int(result["peak"]), "traced_peak": int(result["traced_peak"])}
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise MemoryProbeError(f"memory probe {argv[0]} printed no result ({done.stdout.strip()[-200:]!r}; "
                               f"{done.stderr.strip()[-400:]})") from exc


def measure_memory(bundle_dir: str | Path, *, sizes: Sequence[tuple[int, int]] = DEFAULT_PROBE_SIZES,
                   backend: str = "ort:cpu", threads: int = 0,
                   progress: Optional[Callable[[str], None]] = None) -> MemoryModel:
    """Probe every operation at every size; the fitted line per operation."""
    if len(sizes) < 2:
        raise ValueError("a memory line needs at least two probe sizes")
    manifest = read_manifest(bundle_dir)
    largest_tile = max(DEFAULT_TILE_PIXELS, DEFAULT_CLASSIFIER_TILE_PIXELS if manifest.classifier_tiling else 0)
    tile_side = int(largest_tile ** 0.5)
    if min(min(s) for s in sizes) <= tile_side:
        raise ValueError(f"probe sizes must exceed {tile_side} pixels on each side (the largest tile), got {sizes}")
    step = progress or (lambda _msg: None)
    points: dict[str, list[tuple[int, int, int]]] = {op: [] for op in OPERATIONS}
    with tempfile.TemporaryDirectory(prefix="edge-sdk-memory-") as tmp:
        for height, width in sizes:
            pixels = padded_size(height, width, manifest.image.padding_multiple, manifest.image.min_size)
            stream = str(Path(tmp) / f"{height}x{width}.edgt")
            for op in OPERATIONS:  # encode first: decode reads the stream it wrote
                step(f"{op} at {width}×{height}")
                got = _probe([op, str(bundle_dir), backend, str(threads), str(height), str(width), stream])
                points[op].append((pixels[0] * pixels[1], got["peak"] - got["before"], got["traced_peak"]))
    return MemoryModel(lines={op: fit_line(p) for op, p in points.items()}, backend=backend,
                       threads=threads or (os.cpu_count() or 1), sizes=tuple((int(h), int(w)) for h, w in sizes))


def attach_memory(bundle_dir: str | Path, model: MemoryModel) -> None:
    """Store ``model`` as the manifest's ``memory`` section (written atomically; nothing else changes)."""
    write_manifest(bundle_dir, dataclasses.replace(read_manifest(bundle_dir), memory=model))
