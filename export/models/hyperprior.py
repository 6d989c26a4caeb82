"""The GDN mean-scale hyperprior codec with per-quality gains that lite0 and the test model share.

A subclass builds ``g_a``, ``g_s``, ``h_a``, ``h_s`` (whose last conv gives the scales, then the
means), the four ``QualityGain`` tables and the ``entropy_bottleneck``; this class gives the
codec half of :class:`CompressedDomainModel` on top of them, including the description of the
hyper-synthesis the integer-prior converter needs.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SCALE_BOUND, CompressedDomainModel
from .entropy_models import lower_bound
from .hyper_synthesis import FloatHyperSynthesis, layer_from_module


class GainHyperpriorCodec(CompressedDomainModel):
    """Codec methods over ``g_a``/``g_s``/``h_a``/``h_s``, the gain tables and ``entropy_bottleneck``."""

    def analysis(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        return self.gain(self.g_a(image), quality)

    def _medians(self) -> torch.Tensor:
        return self.entropy_bottleneck.medians().view(1, -1, 1, 1)

    def hyper_analysis(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        return self.hyper_gain(self.h_a(y), quality) - self._medians()

    def hyper_synthesis(self, z_hat: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.h_s(self.inverse_hyper_gain(z_hat + self._medians(), quality))
        scales, means = params.chunk(2, dim=1)
        return means, lower_bound(scales, SCALE_BOUND)

    def hyper_synthesis_layers(self, quality: float) -> FloatHyperSynthesis:
        h_s = list(self.h_s)
        convs = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        slopes = [m.negative_slope for m in h_s if isinstance(m, nn.LeakyReLU)] + [None]
        with torch.no_grad():
            gain = self.inverse_hyper_gain.row(quality).double().numpy()
            offset = self._medians().view(-1).double().numpy()
        # params.chunk(2) in hyper_synthesis: the last conv gives scales, then means
        return FloatHyperSynthesis(input_gain=gain, input_offset=offset,
                                   layers=tuple(layer_from_module(c, s) for c, s in zip(convs, slopes)))

    def synthesis_unclamped(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self.g_s(self.inverse_gain(y_hat, quality))

    def synthesis(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self.synthesis_unclamped(y_hat, quality).clamp(0.0, 1.0)

    def quality_gain_tables(self) -> dict[str, tuple[nn.Parameter, str]]:
        return {"gain.table": (self.gain.table, "latent"),
                "inverse_gain.table": (self.inverse_gain.table, "inverse_latent"),
                "hyper_gain.table": (self.hyper_gain.table, "hyper"),
                "inverse_hyper_gain.table": (self.inverse_hyper_gain.table, "inverse_hyper")}

    def weight_groups(self) -> dict[str, tuple[str, ...]]:
        return {"adapter": ("adapter.",), "backbone": ("task_model.",)}

    def prior_prefixes(self) -> tuple[str, ...]:
        return ("h_s.", "inverse_hyper_gain.", "entropy_bottleneck.")
