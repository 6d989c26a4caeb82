"""Small building blocks shared by the model definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import select_quality_row


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """Conv with 'same'-style padding; stride 2 halves each side."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed conv that exactly doubles each side for stride 2."""
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016); ``inverse=True`` gives IGDN.

    β and γ are stored reparametrized (square root with a pedestal) the way CompressAI does,
    so they stay non-negative under plain SGD. ``effective_params`` exposes the values a
    graph needs; export folds them to constants.
    """

    _pedestal = (2.0 ** -18) ** 2

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self._beta_bound = (beta_min + self._pedestal) ** 0.5
        self._gamma_bound = self._pedestal ** 0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._pedestal))

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta.clamp_min(self._beta_bound) ** 2 - self._pedestal
        gamma = self.gamma.clamp_min(self._gamma_bound) ** 2 - self._pedestal
        return beta, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective_params()
        c = x.shape[1]
        norm = F.conv2d(x * x, gamma.reshape(c, c, 1, 1), beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class QualityGain(nn.Module):
    """Per-channel gain |G[q-1]| (geometric interpolation for fractional q), as in POLC's Gain tables.

    ``spread`` starts row q at ``spread ** (q - centre)``: with every row at 1 the qualities begin
    as one model and, at a codec's learning rate, the rows barely move apart (lite0's first
    weights ended with all four qualities at the same bpp, measured). √2 per quality is the
    quantiser step change that halving λ asks for at high rate; an inverse table takes 1/spread.
    """

    def __init__(self, levels: int, channels: int, spread: float = 1.0):
        super().__init__()
        exponents = torch.arange(levels, dtype=torch.float32) - (levels - 1) / 2
        self.table = nn.Parameter((spread ** exponents).view(-1, 1).repeat(1, channels))

    def row(self, quality: float) -> torch.Tensor:
        return select_quality_row(self.table, quality)

    def forward(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        return x * self.row(quality).view(1, -1, 1, 1)
