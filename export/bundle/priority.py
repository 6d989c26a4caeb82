"""Channel priorities for the channel-weighted symbol order (docs/bitstream.md 5.2).

The trit-plane order ranks elements by the latent variance a trit removes per bit. Latent
channels differ a great deal in what a unit of their error costs in pixels (lite0: about
5 octaves between the least and the most expensive channel), so that rank is not the pixel
rank. A channel's *gain* is the squared pixel error one unit of error in one of its elements
makes, averaged over the channel (the synthesis' Jacobian around the latents of the export's
reference images); its priority is ``log2(gain / geometric mean of the gains)`` in
priority-key units (512 per octave), which the decoder adds to every key of that channel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from edge_sdk.runtime.codec import MAX_CHANNEL_PRIORITY
from edge_sdk.runtime.tables import PRIO_STEPS_PER_OCTAVE

#: random pixel-space probes per reference latent (one backward pass each)
PROBES = 8
#: the probe runs on a centre crop of at most this many latent positions a side: a gain is a
#: local property, and a crop keeps a POLC export from spending minutes here
PROBE_SIDE = 16
#: priorities are rounded to this many key units (1/8 octave), so that the last bits of a float
#: synthesis on another machine cannot move a priority (the bundle's codec id depends on them)
PRIORITY_QUANTUM = 64


def channel_gains(synthesis, y_hats: Sequence[torch.Tensor], probes: int = PROBES, seed: int = 0) -> np.ndarray:
    """Per channel, the mean over its latent elements of ``||J_e||^2``, the squared pixel error
    that one unit of error in element ``e`` makes (``J`` the synthesis' Jacobian at ``y_hats``,
    each (1, C, H, W)). Estimated with random vector-Jacobian products, ``E_v[(J^T v)_e^2] =
    ||J_e||^2`` for ``v ~ N(0, I)``, so all channels together cost a few backward passes instead
    of a synthesis per channel."""
    channels = int(y_hats[0].shape[1])
    gains = np.zeros(channels, np.float64)
    gen = torch.Generator().manual_seed(seed)
    for y_hat in y_hats:
        # one probe per backward pass: a batch of them through a POLC synthesis needed over 16 GB
        for _ in range(probes):
            y = y_hat.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                out = synthesis(y)
                v = torch.randn(out.shape, generator=gen, dtype=out.dtype)
                (grad,) = torch.autograd.grad((out * v).sum(), y)
            gains += (grad[0].double() ** 2).mean(dim=(1, 2)).numpy()
    return gains / (len(y_hats) * probes)


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


def centre_crop(y_hat: torch.Tensor, side: int = PROBE_SIDE) -> torch.Tensor:
    h, w = y_hat.shape[2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return y_hat[:, :, top: top + side, left: left + side]


def channel_priority(model, quality: float, y_hats: Sequence[torch.Tensor]) -> list[int]:
    """The bundle's ``entropy.channel_priority`` for ``model`` at ``quality``, probed on centre
    crops of the reference latents."""
    gains = channel_gains(lambda y: model.synthesis(y, quality), [centre_crop(y) for y in y_hats])
    # a channel the synthesis ignores would get log2(0): give it the smallest gain seen instead
    positive = gains[gains > 0]
    floor = positive.min() if positive.size else 1.0
    return priorities_from_gains(np.where(gains > 0, gains, floor * 2.0**-16))  # clipped to the limit
