"""The controller's measures: ECE, its decisions per τ, fixed-depth and oracle points.

Definitions (``docs/controller.md`` restates them):

- **ECE** (Guo et al. 2017): equal-width confidence bins over [0, 1]; the bin-size
  weighted mean of |accuracy − mean confidence|. Reported two ways: over every
  (image, level) sample with out-of-sample probabilities (how good the filter ``g`` is),
  and over the controller's decisions at each τ (the probability at the level where
  Algorithm 2 stopped, against whether that prediction was right).
- **Fixed-depth curve**: every image decoded to the same fraction of its levels
  (levels differ per image); mean bpp against accuracy.
- **Controller curve**: Algorithm 2 over a sweep of τ; mean bpp against accuracy.
- **BD-rate** of the controller curve against the fixed-depth one: ``calibration.bdrate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from edge_sdk.runtime.controller import DEFAULT_CHECKPOINTS, checkpoint_levels

from .collect import LevelSamples


def expected_calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE and the reliability table (one row per non-empty bin)."""
    p = np.asarray(probabilities, dtype=np.float64)
    c = np.asarray(correct, dtype=np.float64)
    if p.shape != c.shape or p.ndim != 1:
        raise ValueError("probabilities and correct must be 1-D arrays of the same length")
    if p.size == 0:
        raise ValueError("no samples")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        conf, acc, n = float(p[mask].mean()), float(c[mask].mean()), int(mask.sum())
        ece += n / p.size * abs(acc - conf)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n, "confidence": conf,
                      "accuracy": acc})
    return float(ece), table


def ece_noise_floor(probabilities: np.ndarray, bins: int = 15, draws: int = 200, seed: int = 0) -> float:
    """The ECE a *perfectly* calibrated predictor would still show on this many samples: the
    mean ECE of these probabilities against outcomes drawn as Bernoulli(p). A measured ECE
    near it is as calibrated as the sample size can tell; samples from one stream or photo
    are correlated, so the true floor of the filter ECE is higher than this independent one."""
    p = np.asarray(probabilities, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error(p, rng.random(p.size) < p, bins)[0] for _ in range(draws)]))


def ece_photo_interval(probabilities: np.ndarray, correct: np.ndarray, groups: np.ndarray, bins: int = 15,
                       draws: int = 200, seed: int = 0) -> tuple[float, float]:
    """5th and 95th percentile of the ECE when the photos are resampled with replacement.

    Samples of one photo move together: how differently the classifier behaves from photo to
    photo, not the sample count, is what limits an ECE measured on a few dozen photos.
    """
    p, c, g = (np.asarray(a) for a in (probabilities, correct, groups))
    photos = np.unique(g)
    rows = {k: np.flatnonzero(g == k) for k in photos}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        idx = np.concatenate([rows[k] for k in rng.choice(photos, photos.size)])
        values.append(expected_calibration_error(p[idx], c[idx], bins)[0])
    low, high = np.percentile(values, [5, 95])
    return float(low), float(high)


@dataclass
class Decisions:
    """Algorithm 2 run on collected samples at one τ: one entry per image."""

    threshold: float
    level: np.ndarray
    num_levels: np.ndarray
    probability: np.ndarray
    correct: np.ndarray
    bytes_used: np.ndarray
    bytes_total: np.ndarray
    pixels: np.ndarray
    stopped_early: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def bpp(self) -> float:
        return float((self.bytes_used * 8.0 / self.pixels).mean())

    @property
    def bytes_saved(self) -> float:
        """Fraction of bytes not requested, against decoding every stream to the end."""
        return float(1.0 - self.bytes_used.sum() / self.bytes_total.sum())


def stream_ids(samples: LevelSamples) -> np.ndarray:
    """A distinct id per stream (views of one photo are separate streams): samples are
    kept in collection order, so a new stream starts wherever the level restarts at 0."""
    return np.cumsum(samples.level == 0) - 1


def _per_stream(samples: LevelSamples) -> list[np.ndarray]:
    """Row indices of each stream, in level order."""
    ids = stream_ids(samples)
    order = np.lexsort((samples.level, ids))
    return np.split(order, np.flatnonzero(np.diff(ids[order])) + 1)


def decide(samples: LevelSamples, probabilities: np.ndarray, threshold: float,
           checkpoints: int = DEFAULT_CHECKPOINTS) -> Decisions:
    """Algorithm 2 per stream, as ``Decoder.classify`` runs it: the first checkpoint level
    (``checkpoint_levels``; 0: every level) with p ≥ τ, else the last level."""
    picks, early = [], []
    for rows in _per_stream(samples):
        rows = rows[checkpoint_levels(samples.bytes_used[rows].tolist(), checkpoints)]
        hit = np.flatnonzero(probabilities[rows] >= threshold)
        picks.append(rows[hit[0]] if hit.size else rows[-1])
        early.append(bool(hit.size) and hit[0] < rows.size - 1)
    idx = np.asarray(picks)
    return Decisions(threshold=float(threshold), level=samples.level[idx], num_levels=samples.num_levels[idx],
                     probability=probabilities[idx], correct=samples.correct[idx], bytes_used=samples.bytes_used[idx],
                     bytes_total=samples.bytes_total[idx], pixels=samples.pixels[idx], stopped_early=np.asarray(early))


def fixed_depth_curve(samples: LevelSamples, fractions: Optional[Sequence[float]] = None) -> list[dict]:
    """Every stream decoded to the same fraction of its levels: (fraction, bpp, accuracy)."""
    fractions = np.linspace(0, 1, 21) if fractions is None else fractions
    streams = _per_stream(samples)
    out = []
    for f in fractions:
        idx = np.asarray([rows[int(round(f * (rows.size - 1)))] for rows in streams])
        out.append({"fraction": float(f), "bpp": float((samples.bytes_used[idx] * 8.0 / samples.pixels[idx]).mean()),
                    "accuracy": float(samples.correct[idx].mean())})
    return out


def oracle_point(samples: LevelSamples) -> dict:
    """A controller that knows the answers: stop at the first level from which every
    deeper prediction is correct (the last level when the final one is wrong)."""
    used, right, pixels = [], [], []
    for rows in _per_stream(samples):
        c = samples.correct[rows]
        k = rows.size - 1
        while k > 0 and c[k - 1] and c[k]:
            k -= 1
        if not c[-1]:
            k = rows.size - 1
        used.append(samples.bytes_used[rows[k]])
        right.append(c[k])
        pixels.append(samples.pixels[rows[k]])
    used, pixels = np.asarray(used, float), np.asarray(pixels, float)
    return {"bpp": float((used * 8 / pixels).mean()), "accuracy": float(np.mean(right))}
