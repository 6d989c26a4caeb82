"""Fit the controller's filter ``g`` (Algorithm 1, step 12) with scikit-learn.

scikit-learn is needed only here, at fit time; the fitted numbers go into the bundle and
``edge_sdk.runtime.controller`` evaluates them in NumPy.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edge_sdk.runtime.controller import DEFAULT_CHECKPOINTS, FEATURE_NAMES, Controller

from .collect import LevelSamples


def _sklearn():
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise ImportError("fitting the controller needs scikit-learn: pip install 'edge-sdk[calibrate]'") from exc
    return LogisticRegression, GroupKFold, make_pipeline, StandardScaler


def make_estimator(c: float = 1.0):
    """StandardScaler → L2 logistic regression (lbfgs); the runtime mirrors exactly this."""
    LogisticRegression, _, make_pipeline, StandardScaler = _sklearn()
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def _clip_bounds(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.min(axis=0), features.max(axis=0)


RECALIBRATIONS = ("isotonic", "none")
#: the inverse L2 strengths ``c=None`` chooses among
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def select_c(samples: LevelSamples, folds: int = 5, grid: tuple[float, ...] = C_GRID) -> float:
    """The C of the grid with the lowest grouped-cross-validated log-loss on ``samples``.

    Chosen on the fit data only (folds by photo), so an outer cross-validation that calls
    ``fit_controller(c=None)`` per fold still scores photos the choice never saw.
    """
    _, GroupKFold, _, _ = _sklearn()
    n_groups = np.unique(samples.group).size
    if n_groups < 2:
        return 1.0
    splits = list(GroupKFold(n_splits=min(folds, n_groups)).split(samples.features, groups=samples.group))
    best, best_loss = 1.0, np.inf
    for c in grid:
        losses = []
        for train, test in splits:
            sub = samples.rows(train)
            if sub.correct.all() or not sub.correct.any():
                p = np.full(test.size, sub.correct.mean())
            else:
                p = fit_controller(sub, c=c).probability_from_features(samples.features[test])
            p = np.clip(p, 1e-6, 1 - 1e-6)
            y = samples.correct[test]
            losses.append(-np.sum(np.where(y, np.log(p), np.log1p(-p))))
        loss = float(np.sum(losses))
        if loss < best_loss:
            best, best_loss = c, loss
    return best


def fit_controller(samples: LevelSamples, *, c: Optional[float] = 1.0, classifier_sha256: str = "",
                   default_threshold: float = 0.8, checkpoints: int = DEFAULT_CHECKPOINTS,
                   fitted_on: Optional[dict[str, Any]] = None, recalibration: str = "none",
                   folds: int = 5) -> Controller:
    """Fit ``g`` on every (image, level) sample; returns the runtime form.

    ``recalibration="isotonic"`` then maps the regression's probability through an isotonic
    regression fitted on its *out-of-fold* probabilities (grouped by photo, ``folds`` folds),
    the way scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does, so the map learns
    how the regression errs on photos it has not seen, not on the ones it fitted.
    ``c=None`` picks the L2 strength by grouped cross-validated log-loss (``select_c``).
    """
    if recalibration not in RECALIBRATIONS:
        raise ValueError(f"recalibration must be one of {RECALIBRATIONS}, got {recalibration!r}")
    if samples.correct.all() or not samples.correct.any():
        raise ValueError("calibration needs both right and wrong predictions among the samples; "
                         f"got {int(samples.correct.sum())} right of {samples.correct.size} (add images or levels)")
    chosen_by = "given"
    if c is None:
        c, chosen_by = select_c(samples, folds), "grouped cross-validated log-loss"
    low, high = _clip_bounds(samples.features)
    est = make_estimator(c).fit(np.clip(samples.features, low, high), samples.correct.astype(int))
    scaler, logreg = est[0], est[-1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # sklearn leaves constant features at scale 1 too
    knots = None
    if recalibration == "isotonic":
        if np.unique(samples.group).size < 2:
            raise ValueError("isotonic recalibration needs photos from at least 2 sources (it is fitted on "
                             "out-of-fold probabilities); use recalibration='none'")
        knots = _isotonic_knots(cross_validated_probabilities(samples, folds=folds, c=c), samples.correct)
    return Controller(
        recalibration=knots, feature_names=FEATURE_NAMES, clip_low=low, clip_high=high, mean=scaler.mean_.astype(np.float64),
        scale=scale.astype(np.float64), coef=logreg.coef_[0].astype(np.float64),
        intercept=float(logreg.intercept_[0]), classifier_sha256=classifier_sha256,
        default_threshold=default_threshold, checkpoints=checkpoints,
        fitted_on={"samples": int(samples.correct.size), "images": len(samples.names),
                   "positive_rate": float(samples.correct.mean()), "C": c, "C_chosen_by": chosen_by,
                   "recalibration": recalibration, **(fitted_on or {})})


def _isotonic_knots(probabilities: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knots of sklearn's IsotonicRegression (clipped to [0, 1]); ``np.interp`` over them
    reproduces its ``predict`` with ``out_of_bounds="clip"``."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probabilities, correct.astype(float))
    x, y = np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)
    if x.size < 2:  # every probability equal: a flat map at the base rate
        x, y = np.array([0.0, 1.0]), np.full(2, float(correct.mean()))
    return x, y


def cross_validated_probabilities(samples: LevelSamples, *, folds: int = 5, c: Optional[float] = 1.0,
                                  recalibration: str = "none") -> np.ndarray:
    """Out-of-sample P(correct) for every sample: grouped K-fold by source photo, so no
    photo (nor any view of it) is scored by a filter that saw it. With a recalibration the
    whole fit, its own inner cross-validation included, sees only the training folds."""
    _, GroupKFold, _, _ = _sklearn()
    groups = samples.group
    n_groups = np.unique(groups).size
    if n_groups < 2:
        raise ValueError("cross-validation needs images from at least 2 photos")
    out = np.empty(samples.correct.size)
    for train, test in GroupKFold(n_splits=min(folds, n_groups)).split(samples.features, groups=groups):
        sub = samples.rows(train)
        if sub.correct.all() or not sub.correct.any():
            out[test] = sub.correct.mean()  # a fold with one class: its base rate is all it can say
            continue
        inner = recalibration if np.unique(sub.group).size >= 2 else "none"
        out[test] = fit_controller(sub, c=c, recalibration=inner, folds=folds).probability_from_features(
            samples.features[test])
    return out
