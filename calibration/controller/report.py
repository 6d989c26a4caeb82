"""The calibration report of ``edge-sdk calibrate``: numbers (JSON) and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edge_sdk.runtime.controller import DEFAULT_CHECKPOINTS
from edge_sdk.runtime.fileio import atomic_file

from ..bdrate import bd_rate
from .collect import LevelSamples
from .metrics import (decide, ece_noise_floor, ece_photo_interval, expected_calibration_error, fixed_depth_curve, oracle_point,
                      stream_ids)

DEFAULT_TAUS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: the τ sweep that traces the controller's rate–accuracy curve
SWEEP_TAUS = tuple(np.round(np.concatenate([np.linspace(0.05, 0.9, 18), [0.925, 0.95, 0.975, 0.99]]), 4))


def build_report(samples: LevelSamples, probabilities: np.ndarray, taus: Sequence[float] = DEFAULT_TAUS,
                 bins: int = 15, checkpoints: int = DEFAULT_CHECKPOINTS) -> dict:
    """Everything ``edge-sdk calibrate`` prints, from samples and their out-of-sample P(correct)."""
    ece, table = expected_calibration_error(probabilities, samples.correct, bins)
    full = decide(samples, np.zeros_like(probabilities), 2.0)  # never confident: every stream to its end
    per_tau = []
    for tau in taus:
        d = decide(samples, probabilities, tau, checkpoints)
        d_ece, _ = expected_calibration_error(d.probability, d.correct, bins)
        early = d.stopped_early
        per_tau.append({
            "tau": float(tau), "accuracy": d.accuracy, "bpp": d.bpp, "bytes_saved": d.bytes_saved,
            "decision_ece": d_ece, "decision_ece_floor": ece_noise_floor(d.probability, bins),
            "mean_confidence": float(d.probability.mean()),
            "stopped_early": float(early.mean()),
            "accuracy_stopped_early": float(d.correct[early].mean()) if early.any() else None,
            "level_fraction_hist": np.histogram(d.level / np.maximum(d.num_levels - 1, 1), bins=10,
                                                range=(0, 1))[0].tolist(),
        })
    fixed = fixed_depth_curve(samples)
    sweep = []
    for tau in SWEEP_TAUS:
        d = decide(samples, probabilities, float(tau), checkpoints)
        sweep.append({"tau": float(tau), "bpp": d.bpp, "accuracy": d.accuracy})
    oracle = oracle_point(samples)
    bd = bd_rate([r["bpp"] for r in fixed], [r["accuracy"] for r in fixed],
                 [r["bpp"] for r in sweep], [r["accuracy"] for r in sweep])
    return {
        "samples": int(samples.correct.size), "photos": len(samples.names),
        "streams": int(stream_ids(samples).max() + 1), "positive_rate": float(samples.correct.mean()),
        "filter_ece": ece, "filter_ece_floor": ece_noise_floor(probabilities, bins, draws=50),
        "filter_ece_photo_interval": ece_photo_interval(probabilities, samples.correct, samples.group, bins), "reliability": table,
        "decision_ece_max": max(t["decision_ece"] for t in per_tau),
        "decision_ece_mean": float(np.mean([t["decision_ece"] for t in per_tau])),
        "taus": per_tau,
        "full_depth": {"accuracy": full.accuracy, "bpp": full.bpp},
        "fixed_depth_curve": fixed, "controller_curve": sweep, "oracle": oracle,
        "bd_rate_vs_fixed_depth": bd, "checkpoints": checkpoints,
    }


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def write_plots(report: dict, out_dir: str | Path) -> list[Path]:
    """reliability.png, levels.png, tau.png, rate_accuracy.png (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    rows = report["reliability"]
    ax.bar([(r["low"] + r["high"]) / 2 for r in rows], [r["accuracy"] for r in rows],
           width=[(r["high"] - r["low"]) * 0.9 for r in rows], alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "r--", lw=1, label="ideal")
    ax.scatter([r["confidence"] for r in rows], [r["accuracy"] for r in rows], s=[8 + r["count"] / 4 for r in rows],
               c="k", zorder=3, label="bins (size ∝ samples)")
    ax.set(xlabel="controller P(correct)", ylabel="observed accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"reliability, ECE {report['filter_ece']:.1%}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "reliability.png"))
    plt.close(fig)

    taus = report["taus"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    width = 0.8 / max(1, len(taus))
    centers = np.arange(10) / 10 + 0.05
    for i, t in enumerate(taus):
        h = np.asarray(t["level_fraction_hist"], float)
        ax.bar(centers - 0.4 / 10 + i * width / 10 + width / 20, h / max(h.sum(), 1), width=width / 10,
               label=f"τ={t['tau']:g}")
    ax.set(xlabel="chosen level (fraction of the stream's levels)", ylabel="share of images",
           title="where the controller stops")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "levels.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    x = [t["tau"] for t in taus]
    ax.plot(x, [t["accuracy"] for t in taus], "o-", label="accuracy")
    ax.plot(x, [t["mean_confidence"] for t in taus], "s--", label="mean P at the decision")
    ax.plot([0, 1], [0, 1], "r:", lw=1, label="y = τ")
    ax.set(xlabel="τ", ylabel="accuracy", xlim=(min(x) - 0.05, max(x) + 0.05), ylim=(0, 1.02),
           title="accuracy against τ")
    ax2 = ax.twinx()
    ax2.plot(x, [t["bytes_saved"] for t in taus], "g^-", alpha=0.6, label="bytes saved")
    ax2.set_ylabel("bytes saved vs full decode", color="g")
    ax2.set_ylim(0, 1)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "tau.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    fixed, sweep = report["fixed_depth_curve"], report["controller_curve"]
    ax.plot([r["bpp"] for r in fixed], [r["accuracy"] for r in fixed], "o-", ms=3, label="fixed depth")
    ax.plot([r["bpp"] for r in sweep], [r["accuracy"] for r in sweep], "s-", ms=3, label="controller (τ sweep)")
    ax.plot([report["oracle"]["bpp"]], [report["oracle"]["accuracy"]], "r*", ms=12, label="oracle stop")
    bd = report["bd_rate_vs_fixed_depth"]
    ax.set(xlabel="bpp (every byte of the prefix)", ylabel="top-1 accuracy",
           title="rate–accuracy" + (f" (BD-rate {bd:+.1%})" if bd is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "rate_accuracy.png"))
    plt.close(fig)
    return paths
