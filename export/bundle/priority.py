"""Channel priorities for the channel-weighted symbol order (docs/bitstream.md 5.2).

The trit-plane order ranks elements by the latent variance a trit removes per bit. Latent
channels differ a great deal in what a unit of their error costs in pixels (lite0: about
5 octaves between the least and the most expensive channel), so that rank is not the pixel
rank. A channel's *gain* is the synthesis' pixel MSE per unit of latent noise variance put
into that channel alone, measured around the latents of the export's reference images; its
priority is ``log2(gain / geometric mean of the gains)`` in priority-key units (512 per
octave), which the decoder adds to every key of that channel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from edge_sdk.runtime.codec import MAX_CHANNEL_PRIORITY
from edge_sdk.runtime.tables import PRIO_STEPS_PER_OCTAVE

#: latent noise standard deviation of the probe: about one quantiser step, where the order acts
PROBE_STD = 0.5
#: priorities are rounded to this many key units (1/8 octave), so that the last bits of a float
#: synthesis on another machine cannot move a priority (the bundle's codec id depends on them)
PRIORITY_QUANTUM = 64
#: channels probed per synthesis call
_BATCH = 16


@torch.no_grad()
def channel_gains(synthesis, y_hats: Sequence[torch.Tensor], seed: int = 0) -> np.ndarray:
    """Pixel MSE per unit latent noise variance, per channel, averaged over ``y_hats``
    (each (1, C, H, W)); ``synthesis`` maps a latent batch to images."""
    channels = int(y_hats[0].shape[1])
    gains = np.zeros(channels, np.float64)
    gen = torch.Generator().manual_seed(seed)
    for y_hat in y_hats:
        clean = synthesis(y_hat).double()
        for first in range(0, channels, _BATCH):
            picked = range(first, min(first + _BATCH, channels))
            batch = y_hat.repeat(len(picked), 1, 1, 1)
            for row, c in enumerate(picked):
                batch[row, c] += PROBE_STD * torch.randn(y_hat.shape[2:], generator=gen, dtype=y_hat.dtype)
            err = (synthesis(batch).double() - clean) ** 2
            # MSE per image pixel and colour, divided by the noise variance the channel received
            gains[first: first + len(picked)] += (err.mean(dim=(1, 2, 3)) * channels / PROBE_STD**2).numpy()
    return gains / len(y_hats)


def priorities_from_gains(gains: np.ndarray) -> list[int]:
    """Integer key offsets (docs/bitstream.md 5.2) from channel gains: log2 relative to their
    geometric mean, 512 per octave, rounded to PRIORITY_QUANTUM and clipped."""
    gains = np.asarray(gains, np.float64)
    if gains.ndim != 1 or not gains.size or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise ValueError("channel gains must be finite and positive, one per channel")
    log_gain = np.log2(gains)
    units = (log_gain - log_gain.mean()) * PRIO_STEPS_PER_OCTAVE
    rounded = np.rint(units / PRIORITY_QUANTUM) * PRIORITY_QUANTUM
    return [int(v) for v in np.clip(rounded, -MAX_CHANNEL_PRIORITY, MAX_CHANNEL_PRIORITY)]


def channel_priority(model, quality: float, y_hats: Sequence[torch.Tensor]) -> list[int]:
    """The bundle's ``entropy.channel_priority`` for ``model`` at ``quality``."""
    gains = channel_gains(lambda y: model.synthesis(y, quality), y_hats)
    # a channel the synthesis ignores would get log2(0): give it the smallest gain seen instead
    positive = gains[gains > 0]
    floor = positive.min() if positive.size else 1.0
    return priorities_from_gains(np.where(gains > 0, gains, floor * 2.0**-16))  # clipped to the limit
