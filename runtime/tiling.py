"""Run a fully convolutional graph over a large image in overlapping tiles, so memory follows the
tile, not the image.

The analysis (image → y, stride 16) and synthesis (ŷ → image, ×16) transforms are stacks of
5×5 convolutions and GDN, which is per position: an output depends only on inputs within a
fixed receptive field. A tile extended by a margin at least that wide gives its core outputs
from exactly the inputs the whole image would, so stitching the cores reproduces the whole
image's result up to floating-point summation order (ONNX Runtime picks kernels by size). The
stream is coded from whatever y the encoder produced, so any decoder decodes a tiled encoder's
stream; ``docs/architecture.md`` ("Memory") gives the measured differences.

Receptive fields of the lite0-style transforms (``conv``/``deconv``: kernel 5, stride 2, four
layers): analysis 2 + 4 + 8 + 16 = 30 input pixels each side, so a 32-pixel margin (a multiple
of the stride 16, which keeps the output grid aligned) suffices; synthesis 1 + 1/2 + 1/4 + 1/8
< 2 latent positions, so 2 suffice. Both margins below are doubled for safety.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

#: input pixels of margin around an analysis tile (a multiple of 16: y's grid stays aligned)
ANALYSIS_MARGIN = 64
#: latent positions of margin around a synthesis tile
SYNTHESIS_MARGIN = 4
#: default size of one graph call, in image pixels, margins included: about 0.45 GB of ONNX
#: Runtime working memory for lite0's synthesis, less for its analysis (docs/architecture.md)
DEFAULT_TILE_PIXELS = 1 << 19

#: default size of one classifier-trunk call, in image pixels the latent tile stands for,
#: margins included (docs/architecture.md, "Memory")
DEFAULT_CLASSIFIER_TILE_PIXELS = 1 << 21

__all__ = ["ANALYSIS_MARGIN", "DEFAULT_CLASSIFIER_TILE_PIXELS", "DEFAULT_TILE_PIXELS", "SYNTHESIS_MARGIN", "core_for",
           "pooled_features", "run_tiled", "tile_spans", "tiles"]


def tile_spans(length: int, core: int, margin: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start, stop, core_start, core_stop)`` along one axis: cores of at most ``core`` that
    cover ``0..length`` exactly once, each extended by ``margin`` within the axis."""
    if core < 1 or margin < 0:
        raise ValueError(f"core must be >= 1 and margin >= 0, got {core} and {margin}")
    for core_start in range(0, length, core):
        core_stop = min(length, core_start + core)
        yield max(0, core_start - margin), min(length, core_stop + margin), core_start, core_stop


def tiles(
    run: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    scale_num: int,
    scale_den: int,
    core: int,
    margin: int,
    align: int = 1,
    run_last: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> Iterator[tuple[np.ndarray, slice, slice]]:
    """``run`` over an NCHW ``x`` tile by tile: yields each tile's core output and the rows and
    columns it fills in the whole output, which is ``scale_num / scale_den`` times the input's
    height and width (1/16 for an analysis, 16 for a synthesis). A consumer that converts or
    stores each piece as it comes never holds the whole output in the graph's precision.

    ``core`` and ``margin`` are in input positions and must be multiples of ``align`` (for a
    strided graph the tile origin must fall on the output grid: ``align`` = ``scale_den``).

    ``run_last``, when given, runs the last of several tiles instead of ``run``: a backend can
    release the working memory the stage grew (ONNX Runtime's arena), so the arenas of the
    stages that follow do not pile up on it. A single tile always goes to ``run``.
    """
    if x.ndim != 4:
        raise ValueError(f"tiles takes an NCHW array, got shape {x.shape}")
    if core % align or margin % align:
        raise ValueError(f"core {core} and margin {margin} must be multiples of {align}")
    _, _, height, width = x.shape

    def out(v: int) -> int:
        return v * scale_num // scale_den

    if height <= core and width <= core:
        yield run(x), slice(0, out(height)), slice(0, out(width))
        return
    spans = [(row, col) for row in tile_spans(height, core, margin) for col in tile_spans(width, core, margin)]
    for i, ((r0, r1, cr0, cr1), (c0, c1, cc0, cc1)) in enumerate(spans):
        run_tile = run_last if run_last is not None and i == len(spans) - 1 else run
        piece = run_tile(np.ascontiguousarray(x[:, :, r0:r1, c0:c1]))
        yield (piece[:, :, out(cr0 - r0):out(cr1 - r0), out(cc0 - c0):out(cc1 - c0)],
               slice(out(cr0), out(cr1)), slice(out(cc0), out(cc1)))


def run_tiled(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, **how) -> np.ndarray:
    """The whole output of :func:`tiles` (same arguments) as one array; one tile is a plain ``run(x)``."""
    if x.ndim == 4 and x.shape[2] <= how["core"] and x.shape[3] <= how["core"]:
        return run(x)
    whole = None
    for piece, rows, cols in tiles(run, x, **how):
        if whole is None:
            scale = (how["scale_num"], how["scale_den"])
            whole = np.empty(piece.shape[:2] + tuple(v * scale[0] // scale[1] for v in x.shape[2:]), dtype=piece.dtype)
        whole[:, :, rows, cols] = piece
    return whole


def core_for(tile_pixels: int, margin: int, align: int, pixels_per_position: int = 1) -> int:
    """The largest square core (in input positions, a multiple of ``align``) whose tile, margins
    included, holds at most ``tile_pixels`` image pixels (``pixels_per_position``: image pixels
    one input position stands for, 256 for a latent position)."""
    side = int((tile_pixels / pixels_per_position) ** 0.5) - 2 * margin
    return max(align, side // align * align)


def pooled_features(run_trunk: Callable[[np.ndarray], np.ndarray], y_hat: np.ndarray, *, scale_num: int,
                    scale_den: int, margin: int, tile_pixels: int, latent_stride: int = 16,
                    run_last: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """The global average of a convolutional trunk's feature map over a (1, C, H, W) latent,
    computed tile by tile: each tile's core features are summed (in float64) as they come, so
    no more than one tile's features exist at once. Returns (1, features) float32, what the
    classifier's head takes.

    With ``margin`` at least the trunk's receptive field the result equals the whole latent's
    pooling up to summation order; lite0's margin is narrower than its theoretical field and
    was chosen by measurement (docs/architecture.md gives the logit differences)."""
    core = core_for(tile_pixels, margin, scale_den, latent_stride ** 2)
    total, count = None, 0
    for piece, _, _ in tiles(run_trunk, y_hat, scale_num=scale_num, scale_den=scale_den, core=core,
                             margin=margin, align=scale_den, run_last=run_last):
        part = piece.sum(axis=(0, 2, 3), dtype=np.float64)
        total = part if total is None else total + part
        count += piece.shape[2] * piece.shape[3]
    return (total / count).astype(np.float32)[None]
