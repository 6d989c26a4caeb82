"""BD-rate (Bjøntegaard 2001) with accuracy, agreement or PSNR as the quality axis.

Cubic fits of log-rate as a function of quality, integrated over the quality range both
curves share; ``exp(mean difference) − 1``. Positive: the test curve needs more bytes.
Used by the controller's report (controller against fixed depth) and by ``edge-sdk eval``
(our streams against JPEG, WebP and the non-progressive codec).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["bd_rate"]


def bd_rate(rate_ref: Sequence[float], acc_ref: Sequence[float], rate_test: Sequence[float],
            acc_test: Sequence[float]) -> Optional[float]:
    """Bjøntegaard delta rate (fraction) of ``test`` against ``ref`` on the accuracy axis.

    Each curve is reduced to strictly increasing accuracy (keeping the lowest rate per
    accuracy), then log-rate is fitted as a cubic in accuracy (a lower degree when fewer
    than 4 points remain). Returns None when the curves share no accuracy range.
    """
    def prepare(rate, acc):
        rate, acc = np.asarray(rate, float), np.asarray(acc, float)
        if np.any(rate <= 0):
            raise ValueError("rates must be positive")
        order = np.lexsort((rate, acc))
        acc, rate = acc[order], rate[order]
        keep_acc, keep_rate = [], []
        for a, r in zip(acc, rate):
            if keep_acc and a <= keep_acc[-1] + 1e-12:
                keep_rate[-1] = min(keep_rate[-1], r)
                continue
            keep_acc.append(a)
            keep_rate.append(r)
        return np.asarray(keep_acc), np.log(np.asarray(keep_rate))

    a1, l1 = prepare(rate_ref, acc_ref)
    a2, l2 = prepare(rate_test, acc_test)
    if a1.size < 2 or a2.size < 2:
        return None
    low, high = max(a1.min(), a2.min()), min(a1.max(), a2.max())
    if high <= low:
        return None
    p1 = np.polyfit(a1, l1, min(3, a1.size - 1))
    p2 = np.polyfit(a2, l2, min(3, a2.size - 1))
    i1, i2 = np.polyint(p1), np.polyint(p2)
    mean_diff = ((np.polyval(i2, high) - np.polyval(i2, low)) - (np.polyval(i1, high) - np.polyval(i1, low))) / (high - low)
    return float(np.exp(mean_diff) - 1.0)
