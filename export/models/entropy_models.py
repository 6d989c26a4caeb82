"""The factorized ("entropy bottleneck") prior on z, with CompressAI-compatible parameter names.

Written here rather than imported from compressai: compressai hard-imports
torch-geometric, pandas and friends and pins numpy<2, and all we need is the density
model itself. Keeping the names ``_matrix{i}``, ``_bias{i}``, ``_factor{i}`` and
``quantiles`` lets official POLC/TinyLIC checkpoints load without a key map.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class EntropyBottleneck(nn.Module):
    """Ballé et al. (2018) non-parametric factorized density, one per channel."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9):
        super().__init__()
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.tail_mass = float(tail_mass)
        dims = (1,) + self.filters + (1,)
        scale = init_scale ** (1.0 / (len(self.filters) + 1))
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.register_parameter(f"_matrix{i}", nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.register_parameter(f"_bias{i}", nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(self.filters):
                self.register_parameter(f"_factor{i}", nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        target = math.log(2.0 / self.tail_mass - 1.0)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]), persistent=False)

    # Buffers an official checkpoint carries that we recompute from the parameters.
    DERIVED_KEYS = ("_quantized_cdf", "_offset", "_cdf_length")

    def _logits_cumulative(self, inputs: torch.Tensor, stop_gradient: bool) -> torch.Tensor:
        logits = inputs
        for i in range(len(self.filters) + 1):
            matrix = getattr(self, f"_matrix{i}")
            bias = getattr(self, f"_bias{i}")
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.filters):
                factor = getattr(self, f"_factor{i}")
                if stop_gradient:
                    factor = factor.detach()
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def medians(self) -> torch.Tensor:
        """(C,) median of each channel's density."""
        return self.quantiles[:, 0, 1]

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(z ∈ [v - 1/2, v + 1/2]) for NCHW ``z`` (any real values, typically noisy or rounded)."""
        n, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(v - 0.5, stop_gradient=False)
        upper = self._logits_cumulative(v + 0.5, stop_gradient=False)
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.reshape(c, n, h, w).permute(1, 0, 2, 3).clamp_min(1e-9)

    def aux_loss(self) -> torch.Tensor:
        """Pulls ``quantiles`` to the tail_mass/2, median and 1 - tail_mass/2 points."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def settle_quantiles(self, max_steps: int = 5000, lr: float = 0.2, tolerance: float = 1e-2) -> float:
        """Fit the quantiles to the current density with the auxiliary loss alone; returns the final loss.

        CompressAI trains them alongside the codec at lr 1e-3, which needs far more steps than
        a short run has; the density is fixed here, so a few thousand large steps settle them.
        """
        opt = torch.optim.Adam([self.quantiles], lr=lr)
        loss = self.aux_loss()
        with torch.enable_grad():
            for _ in range(max_steps):
                loss = self.aux_loss()
                if float(loss.detach()) < tolerance:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def pmf_table(self, max_support: int = 4096) -> tuple[list[np.ndarray], list[int]]:
        """Per channel, the pmf of the integer symbol s = round(z - median) and its first value.

        The support spans the learned tail quantiles; mass outside it goes to the runtime's
        escape bin, so z values outside stay losslessly codable.
        """
        q = self.quantiles[:, 0, :].double()
        med = q[:, 1]
        lo = torch.ceil(med - q[:, 0]).clamp(0, max_support).long()
        hi = torch.ceil(q[:, 2] - med).clamp(0, max_support).long()
        pmfs, offsets = [], []
        for c in range(self.channels):
            values = torch.arange(-int(lo[c]), int(hi[c]) + 1, dtype=torch.float32) + self.quantiles[c, 0, 1].float()
            v = values.view(1, 1, -1).expand(self.channels, 1, -1).contiguous()
            lower = self._logits_cumulative(v - 0.5, stop_gradient=True)[c, 0]
            upper = self._logits_cumulative(v + 0.5, stop_gradient=True)[c, 0]
            sign = -torch.sign(lower + upper)
            pmf = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).double().numpy()
            pmfs.append(pmf)
            offsets.append(-int(lo[c]))
        return pmfs, offsets


def gaussian_likelihood(residual: torch.Tensor, scales: torch.Tensor, scale_bound: float) -> torch.Tensor:
    """P(r ∈ [v - 1/2, v + 1/2]) under N(0, σ²) with σ ≥ scale_bound, for mean-shifted residuals."""
    scales = lower_bound(scales, scale_bound)
    v = residual.abs()
    upper = torch.special.ndtr((0.5 - v) / scales)
    lower = torch.special.ndtr((-0.5 - v) / scales)
    return (upper - lower).clamp_min(1e-9)


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it would push x up (as in CompressAI)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)).to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Plain clamp when tracing or in inference (exports as Max), gradient-friendly when training."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _LowerBound.apply(x, bound)
    return x.clamp_min(bound)
