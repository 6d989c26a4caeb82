"""Adaptive decoding controller at run time (PICM-Net §3.4, Algorithm 2), NumPy only.

The controller is a logistic regression on 12 statistics of the classifier's logits
(PICM-Net Table S1), optionally followed by a monotone piecewise-linear recalibration of its
probability (``edge-sdk calibrate --recalibration isotonic``, opt-in; docs/controller.md
measures when it helps). ``edge-sdk calibrate`` fits it (``edge_sdk.calibration``, with
scikit-learn) and stores it in the bundle as ``controller.json``; this module only reads
that file and evaluates ``P(prediction is correct | features)``, so a Jetson needs
neither scikit-learn nor torch.

Two Table S1 features are functions of a third (``margin_ce = logit_delta12`` exactly and
``conf_ratio = exp(logit_delta12)``); they are kept so the feature vector is the paper's.
``conf_ratio`` is unbounded (``exp`` of a margin), so every feature is clipped to the range
seen at fit time before standardisation: an extreme logit margin then reads as the most
confident case the fit saw, instead of an extrapolation far outside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .fileio import atomic_write

CONTROLLER_FORMAT = "edge-sdk-controller"
CONTROLLER_VERSION = 2  # 2 adds the optional recalibration; version 1 files still load
READABLE_VERSIONS = (1, 2)
#: how many times per stream Algorithm 2 consults the controller by default. A stream has about
#: 56 levels; running the classifier at every one would cost up to 56 classifier
#: passes where a full decode costs one, so the checks are spread over the bytes instead.
DEFAULT_CHECKPOINTS = 8

#: PICM-Net Table S1, in this order.
FEATURE_NAMES = (
    "conf_max",  # p(1)
    "conf_std",  # std of the probabilities
    "conf_entropy",  # -sum p log p
    "conf_ratio",  # p(1) / p(2)
    "top10_sum",  # sum of the 10 largest p
    "logit_mean",
    "logit_max",  # z(1)
    "logit_std",
    "logit_delta12",  # z(1) - z(2)
    "loss_pseudo_ce",  # -log p(1)
    "margin_ce",  # -log p(2) + log p(1)
    "energy",  # -log sum exp z
)


class ControllerError(ValueError):
    """A controller file that is damaged, foreign, or does not fit its bundle."""


def logit_features(logits: np.ndarray) -> np.ndarray:
    """The 12 Table S1 features of logits ``(..., K)``, as float64 ``(..., 12)``.

    Log-probabilities come from a max-shifted log-sum-exp, so no feature overflows for
    any finite logits (``conf_ratio`` is computed as ``exp`` of the log-ratio, capped at
    the float64 maximum).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] < 10:
        raise ValueError(f"logits need at least 10 classes on the last axis, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinity")
    top = -np.sort(-z, axis=-1)[..., :10]
    z_max = top[..., 0]
    lse = z_max + np.log(np.exp(z - z_max[..., None]).sum(axis=-1))
    log_p = z - lse[..., None]
    p = np.exp(log_p)
    log_p1 = top[..., 0] - lse
    log_p2 = top[..., 1] - lse
    delta12 = top[..., 0] - top[..., 1]
    feats = np.stack([
        np.exp(log_p1),
        p.std(axis=-1),
        -(p * log_p).sum(axis=-1),
        np.exp(np.minimum(log_p1 - log_p2, math.log(np.finfo(np.float64).max))),
        np.exp(top - lse[..., None]).sum(axis=-1),
        z.mean(axis=-1),
        z_max,
        z.std(axis=-1),
        delta12,
        -log_p1,
        log_p1 - log_p2,
        -lse,
    ], axis=-1)
    return feats


@dataclass(frozen=True)
class Controller:
    """A fitted filter ``g``: clip → standardise → logistic regression."""

    feature_names: tuple[str, ...]
    clip_low: np.ndarray
    clip_high: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    #: how the labels were made and on what data; informational
    fitted_on: dict[str, Any]
    #: sha256 of the classifier graph the logits came from; a bundle with another
    #: classifier must not use this controller
    classifier_sha256: str = ""
    #: the τ ``Decoder.classify`` uses when the caller names none
    default_threshold: float = 0.8
    #: how many checkpoint levels ``Decoder.classify`` consults by default (0: every level);
    #: the calibration report's decisions were simulated with this schedule
    checkpoints: int = 8
    #: monotone knots (x, y) applied to the regression's probability with linear
    #: interpolation, clamped at the ends (what sklearn's IsotonicRegression predicts); None: none
    recalibration: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if tuple(self.feature_names) != FEATURE_NAMES:
            raise ControllerError(f"controller features {tuple(self.feature_names)} are not PICM-Net's Table S1 set")
        n = len(self.feature_names)
        for name in ("clip_low", "clip_high", "mean", "scale", "coef"):
            arr = getattr(self, name)
            if arr.shape != (n,) or not np.all(np.isfinite(arr)):
                raise ControllerError(f"controller field {name!r} must be {n} finite numbers")
        if np.any(self.scale <= 0):
            raise ControllerError("controller scales must be positive")
        if not math.isfinite(self.intercept):
            raise ControllerError("controller intercept must be finite")
        if self.checkpoints < 0:
            raise ControllerError(f"controller checkpoints must be >= 0, got {self.checkpoints}")
        if not 0.0 <= self.default_threshold <= 1.0:
            raise ControllerError(f"controller default_threshold must lie in [0, 1], got {self.default_threshold}")
        if self.recalibration is not None:
            x, y = (np.asarray(a, dtype=np.float64) for a in self.recalibration)
            ok = (x.ndim == 1 and x.shape == y.shape and x.size >= 2 and np.all(np.isfinite(x)) and np.all(np.isfinite(y))
                  and np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0) and x.min() >= 0 and x.max() <= 1
                  and y.min() >= 0 and y.max() <= 1)
            if not ok:
                raise ControllerError("controller recalibration must be >= 2 knots in [0, 1], x strictly and "
                                      "y weakly increasing")
            object.__setattr__(self, "recalibration", (x, y))

    def decision(self, feats: np.ndarray) -> np.ndarray:
        """The logistic regression's log-odds for raw (unclipped) features ``(..., 12)``."""
        x = (np.clip(feats, self.clip_low, self.clip_high) - self.mean) / self.scale
        return x @ self.coef + self.intercept

    def probability(self, logits: np.ndarray) -> np.ndarray | float:
        """P(the classifier's top-1 is correct) for logits ``(K,)`` or ``(N, K)``."""
        return self.probability_from_features(logit_features(logits))

    def probability_from_features(self, feats: np.ndarray) -> np.ndarray | float:
        t = self.decision(np.asarray(feats, dtype=np.float64))
        # the two-branch logistic avoids overflow in exp for large |t|
        e = np.exp(-np.abs(t))
        p = np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        if self.recalibration is not None:
            p = np.interp(p, *self.recalibration)
        return float(p) if np.ndim(p) == 0 else p

    # --- file form ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        extra = {}
        if self.recalibration is not None:
            extra["recalibration"] = {"x": self.recalibration[0].tolist(), "y": self.recalibration[1].tolist()}
        return {
            "format": CONTROLLER_FORMAT,
            "version": CONTROLLER_VERSION if self.recalibration is not None else 1,
            "features": list(self.feature_names),
            "clip_low": self.clip_low.tolist(),
            "clip_high": self.clip_high.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": float(self.intercept),
            "classifier_sha256": self.classifier_sha256,
            "default_threshold": self.default_threshold,
            "checkpoints": self.checkpoints,
            "fitted_on": self.fitted_on,
            **extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Controller":
        if not isinstance(data, dict) or data.get("format") != CONTROLLER_FORMAT:
            raise ControllerError("not an edge-sdk controller (format field missing or wrong)")
        if data.get("version") not in READABLE_VERSIONS:
            raise ControllerError(f"controller version {data.get('version')!r} is not supported "
                                  f"(this edge-sdk reads versions {READABLE_VERSIONS})")
        if data.get("version") == 1 and "recalibration" in data:
            raise ControllerError("controller file is damaged: a version 1 controller has no recalibration")
        try:
            names = tuple(str(n) for n in data["features"])
            if names != FEATURE_NAMES:
                raise ControllerError(f"controller features {names} are not PICM-Net's Table S1 set")
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in ("clip_low", "clip_high", "mean", "scale", "coef")}
            recal = data.get("recalibration")
            if recal is not None:
                recal = (np.asarray(recal["x"], dtype=np.float64), np.asarray(recal["y"], dtype=np.float64))
            return cls(recalibration=recal, feature_names=names, intercept=float(data["intercept"]),
                       fitted_on=dict(data.get("fitted_on", {})),
                       classifier_sha256=str(data.get("classifier_sha256", "")),
                       default_threshold=float(data.get("default_threshold", 0.8)),
                       checkpoints=int(data.get("checkpoints", DEFAULT_CHECKPOINTS)), **arrays)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ControllerError):
                raise
            raise ControllerError(f"controller file is damaged: {exc}") from exc

    def save(self, path: str | Path) -> None:
        """Write atomically (runtime/fileio.py)."""
        atomic_write(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Controller":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ControllerError(f"cannot read controller {path}: {exc}") from exc
        return cls.from_dict(data)


def checkpoint_levels(ends: Sequence[int], checkpoints: int = DEFAULT_CHECKPOINTS) -> list[int]:
    """Levels at which the controller is consulted: for k = 1..n, the first level whose
    prefix holds at least k/n of the stream's bytes (the last level always among them).

    ``ends`` are the stream's level boundaries (``level_boundaries``); ``checkpoints <= 0``
    means every level.
    """
    if not ends:
        return []
    if checkpoints <= 0 or checkpoints >= len(ends):
        return list(range(len(ends)))
    total = ends[-1]
    ends_arr = np.asarray(ends)
    picks = {int(np.searchsorted(ends_arr, total * k / checkpoints - 1e-9)) for k in range(1, checkpoints + 1)}
    return sorted(min(p, len(ends) - 1) for p in picks)
