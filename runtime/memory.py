"""How much memory a command will need, predicted before anything is allocated.

Analysis, synthesis and the classifier's trunk run in tiles (``runtime.tiling``), so what a
command holds is a fixed working set (each graph's ONNX Runtime arena at one tile, which the
arena keeps between calls, the loaded weights) plus what grows with the photo: the image in
float32, the entropy coder's state per latent element, ŷ and the reconstruction. Both parts
depend on the bundle, the backend and its thread count, so they are measured, not derived:
``calibration.memory`` runs each operation in a fresh process (``python -m
edge_sdk.runtime.memory_probe``) at two photo sizes, both larger than any tile, and stores a line per
operation in the bundle manifest's ``memory`` section: ``base_bytes + bytes_per_pixel ×
padded pixels`` above the process's resident size before the operation began.

The prediction for one item is that line plus the process's resident size when the Encoder or
Decoder was made; work whose prediction exceeds ``max_memory`` is refused with
:class:`LimitError` before its arrays exist (the CLI reports the item and goes on). The default
limit is :data:`DEFAULT_MEMORY_SHARE` of the machine's physical memory. Bundles without a
``memory`` section are bounded by ``max_pixels`` alone. Torch-free.
"""

from __future__ import annotations

import math
import os
import re
import resource
import sys
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from .errors import BundleError, LimitError

#: the operations the manifest's ``memory`` section measures, each what a CLI command does per
#: item: ``encode``; ``decode`` (every level, then the picture); ``run`` (encode, then classify
#: the fully decoded latent). A Decoder checks a stream against ``decode``; one that also
#: classifies holds the classifier trunk's tile arena besides (a few hundred MB for lite0)
OPERATIONS = ("encode", "decode", "run")
#: share of the machine's physical memory one command may plan to use by default
DEFAULT_MEMORY_SHARE = 0.5
#: the largest photo side the probe uses; bounds a damaged section's sizes too
MAX_PROBE_SIDE = 1 << 14

__all__ = ["DEFAULT_MEMORY_SHARE", "OPERATIONS", "MemoryBudget", "MemoryLine", "MemoryModel", "MemoryLimit",
           "default_max_memory", "format_bytes", "parse_bytes", "physical_memory", "resident_bytes"]


def physical_memory() -> Optional[int]:
    """The machine's physical memory in bytes, or None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def default_max_memory() -> Optional[int]:
    """:data:`DEFAULT_MEMORY_SHARE` of physical memory (None, no limit, where it is unknown)."""
    total = physical_memory()
    return None if total is None else int(total * DEFAULT_MEMORY_SHARE)


def resident_bytes() -> int:
    """This process's resident set now (Linux ``/proc/self/statm``; elsewhere its peak so far,
    which over-predicts and so errs on the safe side)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return peak_resident_bytes()


def peak_resident_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"1.5G"``, ``"800M"``, ``"800MiB"``, ``"1073741824"`` → bytes (units are binary: 1K = 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: write a number with an optional unit, such as 1.5G, 800M or 512MiB")
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{text!r} is not a usable memory size")
    return int(value)


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class MemoryLine:
    """One operation's memory above the process's starting resident size."""

    base_bytes: int
    bytes_per_pixel: float

    def at(self, pixels: int) -> int:
        return int(self.base_bytes + self.bytes_per_pixel * pixels)


@dataclass(frozen=True)
class MemoryModel:
    """The manifest's ``memory`` section: a line per operation and how it was measured."""

    lines: dict[str, MemoryLine]
    backend: str
    threads: int
    sizes: tuple[tuple[int, int], ...]

    @classmethod
    def from_dict(cls, doc: Any) -> "MemoryModel":
        w = "manifest memory"
        if not isinstance(doc, dict):
            raise BundleError(f"{w} must be a JSON object")
        lines = {}
        for op in OPERATIONS:
            entry = doc.get(op)
            if not isinstance(entry, dict):
                raise BundleError(f"{w} lacks the operation {op!r} (an object with base_bytes and bytes_per_pixel)")
            base, slope = entry.get("base_bytes"), entry.get("bytes_per_pixel")
            if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base < 1 << 50:
                raise BundleError(f"{w} {op} field 'base_bytes' must be a non-negative integer, got {base!r}")
            if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 <= slope < 1 << 20:
                raise BundleError(f"{w} {op} field 'bytes_per_pixel' must be a non-negative number, got {slope!r}")
            lines[op] = MemoryLine(int(base), float(slope))
        backend, threads, sizes = doc.get("backend"), doc.get("threads"), doc.get("sizes")
        if not isinstance(backend, str):
            raise BundleError(f"{w} field 'backend' must be a string, got {backend!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise BundleError(f"{w} field 'threads' must be a positive integer, got {threads!r}")
        if (not isinstance(sizes, list) or len(sizes) < 2
                or not all(isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and 1 <= v <= MAX_PROBE_SIDE
                                                                       for v in s) for s in sizes)):
            raise BundleError(f"{w} field 'sizes' must list at least two [height, width] pairs, got {sizes!r}")
        return cls(lines, backend, threads, tuple((int(h), int(w_)) for h, w_ in sizes))

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"backend": self.backend, "threads": self.threads, "sizes": [list(s) for s in self.sizes]}
        for op, line in self.lines.items():
            doc[op] = {"base_bytes": line.base_bytes, "bytes_per_pixel": round(line.bytes_per_pixel, 3)}
        return doc

    def predict(self, operation: str, pixels: int, resident: int) -> int:
        """Peak resident bytes of ``operation`` on a photo of ``pixels`` padded pixels, in a process
        that held ``resident`` bytes before the operation's graphs were loaded."""
        return resident + self.lines[operation].at(pixels)

    def check(self, operation: str, pixels: int, resident: int, limit: Optional[int], what: str) -> int:
        """The prediction, or :class:`LimitError` naming it when it exceeds ``limit`` (None: no limit)."""
        need = self.predict(operation, pixels, resident)
        if limit is not None and need > limit:
            line = self.lines[operation]
            raise LimitError(
                f"{what} would need about {format_bytes(need)} ({format_bytes(resident)} already held, "
                f"{format_bytes(line.base_bytes)} of graphs and {line.bytes_per_pixel:.0f} bytes per pixel for "
                f"{pixels / 1e6:.1f} MP), more than the memory limit of {format_bytes(limit)} "
                "(raise max_memory / --max-memory, or downscale with short_side / --short-side)")
        return need


MemoryLimit = Union[int, str, None, "MemoryBudget"]


class MemoryBudget:
    """A memory limit and the resident size predictions start from; one per process, shared by
    the Encoder and Decoder it runs (``max_memory=budget``) so both count from the same start.

    ``limit``: bytes, a size such as ``"1.5G"``, ``"auto"`` (:data:`DEFAULT_MEMORY_SHARE` of the
    machine's memory) or None (no limit). The starting resident size is taken when the budget is
    made, before any graph is loaded: graphs' arenas are part of each operation's measured line.
    """

    def __init__(self, limit: Union[int, str, None] = "auto"):
        if limit == "auto":
            self.limit = default_max_memory()
        elif isinstance(limit, str):
            self.limit = parse_bytes(limit)
        elif limit is None:
            self.limit = None
        elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_memory must be a positive number of bytes, a size such as '1.5G', 'auto' or None, "
                             f"got {limit!r}")
        else:
            self.limit = int(limit)
        self.start = resident_bytes()

    @classmethod
    def of(cls, limit: MemoryLimit) -> "MemoryBudget":
        return limit if isinstance(limit, MemoryBudget) else cls(limit)

    def check(self, model: Optional[MemoryModel], operation: str, pixels: int, what: str) -> Optional[int]:
        """The predicted peak of ``operation`` on ``pixels`` padded pixels (None without a
        measured model); :class:`LimitError` before any allocation when it exceeds the limit."""
        if model is None:
            return None
        return model.check(operation, pixels, self.start, self.limit, what)

    def __repr__(self) -> str:
        return f"MemoryBudget(limit={self.limit}, start={self.start})"


def fit_line(points: list[tuple[int, int, int]]) -> MemoryLine:
    """A line that lies on or above every probe point ``(pixels, resident bytes above the start,
    NumPy's traced peak)``.

    The slope comes from NumPy's peak, which is linear in the photo's size; the resident peak
    is not (ONNX Runtime's arenas grow by doubling, the allocator returns memory in steps), so
    its slope between two probes can be anything from a tenth to twice the true one, and a line
    through it extrapolates badly. The intercept is then the largest remainder, resident minus
    slope × pixels: the arenas and libraries, which the tiles bound.
    """
    px = np.array([p[0] for p in points], dtype=np.float64)
    rss = np.array([p[1] for p in points], dtype=np.float64)
    traced = np.array([p[2] for p in points], dtype=np.float64)
    slope = max(0.0, float(np.polyfit(px, traced, 1)[0])) if len(set(px.tolist())) > 1 else 0.0
    base = max(0.0, float(np.max(rss - slope * px)))
    return MemoryLine(int(math.ceil(base)), slope)
