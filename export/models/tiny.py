"""``tiny_test``: a test model, not a codec anyone should use.

It has lite0's interface and graph layout (GDN analysis/synthesis at H/16, a hyperprior at H/64
whose hyper-synthesis is the same conv/leaky-ReLU chain, so the integer prior converts; a latent
adapter feeding a backbone that also runs on pixels) at a few channels, with a two-conv toy
classifier over ten classes ``class_0`` … ``class_9``. Its weights are random from a fixed seed,
so the same code always builds the same model. It exports in seconds and its bundle is small
enough to commit: ``tests/data/tiny_bundle`` is this model (see ``tests/data/README.md``).
"""

from __future__ import annotations

import torch
from torch import nn

from .entropy_models import EntropyBottleneck
from .base import ClassifierTiling
from .hyperprior import GainHyperpriorCodec
from .layers import GDN, QualityGain, conv, deconv
from .registry import register_model

#: torch.manual_seed for the initial weights: the committed test bundle depends on it.
SEED = 20240618
FEATURE_CHANNELS = 8


class TinyTestModel(GainHyperpriorCodec):
    model_name = "tiny_test"
    padding_multiple = 64
    min_input_size = 64
    normalization = {"convention": "centred", "formula": "2 * x - 1", "input_range": [0.0, 1.0]}
    #: the body's stride-2 conv leaves features at H/8, twice the latent grid; the adapter and the
    #: body together see less than one latent position each side, so two are exact
    classifier_tiling = ClassifierTiling(scale_num=2, scale_den=1, margin=2)
    trunk_channels = 16

    def __init__(self, N: int = 8, M: int = 16, levels: int = 4, num_classes: int = 10, seed: int = SEED):
        super().__init__()
        self.latent_channels, self.hyper_channels, self.num_qualities = M, N, levels
        self.num_classes = num_classes
        # fork_rng: building the model must not move the caller's global random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
            self.g_s = nn.Sequential(
                deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
                deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
            )
            self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N),
                                     nn.LeakyReLU(inplace=True), conv(N, N))
            self.h_s = nn.Sequential(
                deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
                conv(M * 3 // 2, 2 * M, 3, 1),
            )
            self.gain = QualityGain(levels, M, spread=2 ** 0.5)
            self.inverse_gain = QualityGain(levels, M, spread=2 ** -0.5)
            self.hyper_gain = QualityGain(levels, N)
            self.inverse_hyper_gain = QualityGain(levels, N)
            self.entropy_bottleneck = EntropyBottleneck(N)
            # adapter: ŷ (H/16) → the backbone's H/4 feature
            self.adapter = nn.Sequential(nn.Conv2d(M, FEATURE_CHANNELS * 16, 1), nn.PixelShuffle(4),
                                         nn.Conv2d(FEATURE_CHANNELS, FEATURE_CHANNELS, 3, padding=1))
            # backbone: stem (two stride-2 convs to H/4, what the adapter replaces), then one conv and a linear head
            self.task_model = nn.ModuleDict({
                "stem": nn.Sequential(nn.Conv2d(3, FEATURE_CHANNELS, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(FEATURE_CHANNELS, FEATURE_CHANNELS, 3, 2, 1), nn.ReLU()),
                "body": nn.Sequential(nn.Conv2d(FEATURE_CHANNELS, 16, 3, 2, 1), nn.ReLU()),
                "head": nn.Linear(16, num_classes),
            })
        self._scale_to_working_ranges()

    @torch.no_grad()
    def _scale_to_working_ranges(self) -> None:
        """Rescale a few freshly initialised layers so the random model codes like a trained one.

        With PyTorch's default initialisation y has a standard deviation of ~0.05 and rounds to
        zero: one trit level, z all zeros, every scale at the bound. These fixed factors give y
        a spread of ~5, z of ~2.5 within the factorized prior's support, scales of ~0.6 to 7 (the
        bias keeps most of them off the lower bound), logits that differ by a few units and
        reconstructions spread around mid-grey.
        """
        M = self.latent_channels
        for layer, factor in ((self.g_a[-1], 100.0), (self.h_a[-1], 10.0), (self.h_s[-1], 20.0),
                              (self.task_model["head"], 4.0)):
            layer.weight.mul_(factor)
            layer.bias.mul_(factor)
        self.g_s[0].weight.div_(100.0)  # the synthesis sees y at the scale it had before
        self.g_s[-1].weight.mul_(5.0)  # and draws a visible picture around mid-grey, not black
        self.g_s[-1].bias.add_(0.55)
        self.h_s[-1].bias[:M].add_(3.0)  # the first M outputs are the scales

    # --- codec -----------------------------------------------------------------------------
    # --- task ------------------------------------------------------------------------------
    def pixel_features(self, image: torch.Tensor) -> torch.Tensor:
        return self.task_model["stem"](image * 2.0 - 1.0)

    def adapter_features(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self.adapter(self.inverse_gain(y_hat, quality))

    def classifier_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.task_model["head"](self.task_model["body"](features).mean(dim=(2, 3)))

    def classifier_trunk(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self.task_model["body"](self.adapter_features(y_hat, quality))

    def classifier_head(self, pooled: torch.Tensor, quality: float) -> torch.Tensor:
        return self.task_model["head"](pooled)

    def classifier(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self.classifier_from_features(self.adapter_features(y_hat, quality))

    def pixel_classifier(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        return self.classifier_from_features(self.pixel_features(image))

    def class_names(self) -> list[str]:
        return [f"class_{i}" for i in range(self.num_classes)]

    def task_parameters(self):
        return list(self.adapter.parameters()) + list(self.task_model.parameters())


@register_model(
    "tiny_test",
    description="TEST MODEL (not for use): lite0's layout at 16/8 channels, a two-conv 10-class toy backbone, "
                "fixed-seed random weights; the committed test bundle tests/data/tiny_bundle",
    qualities=(1, 2, 3, 4),
    default_quality=2,
    weights_hint="tiny_test has no trained weights, only fixed-seed random ones: export it with --random-weights",
    tags=("test",),
)
def tiny_test(**kwargs) -> TinyTestModel:
    return TinyTestModel(**kwargs)
