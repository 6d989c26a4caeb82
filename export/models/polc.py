"""POLC (Perception-Oriented Latent Coding, ICME 2025): TinyLIC-VR codec, universal adapters, timm backbones.

Official code: ``NJUVISION/POLC`` (``compressai/models/tinylic_vr.py``, ``compressai/layers/layers.py``,
``compressai/models/cls_wrapper*.py``). Module and parameter names mirror it so official
checkpoints map onto this model with prefix changes only (see ``POLCModel.remap_checkpoint``):

* codec transforms at top level: ``g_a0..g_a7``, ``h_a0..h_a3``, ``h_s0..h_s3``, ``g_s0..g_s7``;
  every residual neighborhood-attention block (RNAB) as ``<name>.residual_group.blocks.{i}.*``;
* quality tables ``Gain``, ``InverseGain`` (8, M) and ``HyperGain``, ``InverseHyperGain`` (8, 3N/2);
* ``entropy_bottleneck`` (CompressAI layout, filters (3, 3, 3, 3));
* ``adapter`` (``upsample_layer``, ``transform_layer.residual_group.blocks.0``) and
  ``task_model`` (the timm backbone), as in the step-3 ``ClsWrapper``.

Two deliberate departures from the official model:

* **Entropy model.** POLC codes y with TinyLIC's multistage context model, whose (μ, σ) depend on
  already-decoded y. Trit-plane coding needs (μ, σ) for every element from z alone, so this
  model adds ``mean_scale_head`` (three 1×1 convs on the 640-channel ``params``), which must be
  trained separately (codec and adapters frozen); the context model's weights are dropped.
* **Neighborhood attention** is our plain-op re-implementation (``models.attention``), since NATTEN
  has no export path.

Task side: the adapter replaces the backbone's stem (ConvNeXt) or patch embedding (DeiT) and is
fed the gain-domain ŷ. The pixel classifier is the same backbone with its original stem, run on
ImageNet-normalised pixels (the uncompressed reference, POLC's distillation teacher).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from timm.models.convnext import ConvNeXt
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .attention import NeighborhoodAttention2D
from .base import SCALE_BOUND, CompressedDomainModel, quality_weights, select_quality_row
from .entropy_models import EntropyBottleneck, lower_bound
from .layers import conv, deconv
from .labels import imagenet_class_names
from .registry import register_model

#: Number of rate points (rows of every gain table and per-level gamma).
POLC_LEVELS = 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: CompressAI's EntropyBottleneck default, which TinyLIC-VR uses (4 hidden filter layers).
POLC_EB_FILTERS = (3, 3, 3, 3)
#: Stride of ŷ relative to the image.
LATENT_STRIDE = 16


# --------------------------------------------------------------------------------------------
# Transformer blocks
# --------------------------------------------------------------------------------------------
class Mlp(nn.Module):
    """Linear → GELU → Linear (timm/POLC naming ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class NSABlock(nn.Module):
    """Pre-norm neighborhood-attention transformer block with per-quality layer scales (NHWC).

    ``x + |γ1[q]|·NA(LN(x))``, then ``x + |γ2[q]|·MLP(LN(x))``. The γ rows are selected (or
    geometrically interpolated for fractional q) by ``select_quality_row``, as POLC does in eval.
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int, mlp_ratio: float,
                 levels: int = POLC_LEVELS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.ones(levels, dim))
        self.gamma_2 = nn.Parameter(torch.ones(levels, dim))

    def forward(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        x = x + select_quality_row(self.gamma_1, quality) * self.attn(self.norm1(x))
        return x + select_quality_row(self.gamma_2, quality) * self.mlp(self.norm2(x))


class NSABlockStack(nn.Module):
    """``depth`` NSABlocks in sequence (POLC's ``BasicViTLayer`` without token routing)."""

    def __init__(self, dim: int, depth: int, num_heads: int, kernel_size: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(NSABlock(dim, num_heads, kernel_size, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, quality)
        return x


class ViTBlock(nn.Module):
    """NCHW in and out: permute to NHWC, run the NSABlock stack, permute back (no outer residual)."""

    def __init__(self, dim: int, depth: int, num_heads: int, kernel_size: int, mlp_ratio: float):
        super().__init__()
        # The attribute name is POLC's, so checkpoint keys read ``residual_group.blocks.{i}``.
        self.residual_group = NSABlockStack(dim, depth, num_heads, kernel_size, mlp_ratio)

    def forward(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        return self.residual_group(x.permute(0, 2, 3, 1), quality).permute(0, 3, 1, 2)


class ResViTBlock(ViTBlock):
    """RNAB: ``ViTBlock`` plus an outer residual around the whole stack."""

    def forward(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        return x + super().forward(x, quality)


class QualityAdapter(nn.Module):
    """POLC's universal adapter (``TransformModule``): ŷ (M, H/16) → backbone feature (C, H/16·f).

    1×1 conv to C·f² channels, pixel shuffle by f, one NSABlock (per-quality γ, no outer residual).
    """

    def __init__(self, latent_channels: int, out_channels: int, num_heads: int, upscale_factor: int,
                 kernel_size: int = 7, mlp_ratio: float = 4.0):
        super().__init__()
        self.upscale_factor = upscale_factor
        self.upsample_layer = conv(latent_channels, out_channels * upscale_factor ** 2, kernel=1, stride=1)
        self.transform_layer = ViTBlock(out_channels, 1, num_heads, kernel_size, mlp_ratio)

    def forward(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        x = F.pixel_shuffle(self.upsample_layer(y_hat), self.upscale_factor)
        return self.transform_layer(x, quality)


def _init_transformer_weights(module: nn.Module) -> None:
    """POLC's ``_init_weights``: N(0, 0.02²) linears, unit LayerNorms (keeps random models tame).

    POLC calls ``trunc_normal_(std=.02)`` with timm's default cut at ±2 (absolute, i.e. ±100σ),
    which is a plain normal; ``normal_`` draws the same distribution without erfinv's cost.
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# Checkpoint key handling
# --------------------------------------------------------------------------------------------
IGNORE_CONTEXT_MODEL = "POLC's context model; trit-plane coding uses the mean-scale head"
IGNORE_GAUSSIAN_CONDITIONAL = "POLC's GaussianConditional tables; the runtime builds its own scale tables"
IGNORE_DERIVED = "recomputed (CDF tables and constants our EntropyBottleneck derives from its parameters)"
IGNORE_MASK_TOKEN = "unused parameter of the 2025-07-03 release (removed upstream in 0a50992)"
IGNORE_TEACHER = "frozen teacher copy of task_model; only its stem/patch embedding is used (pixel path)"
IGNORE_TASK_STEM = "task_model's own stem is replaced by the adapter; the pixel path takes the teacher's copy"

_CONTEXT_MODEL_PREFIXES = ("cc_transforms.", "sc_transform_", "entropy_parameters_")
#: Persistent buffers of CompressAI's EntropyBottleneck that ours derives instead.
_EB_DERIVED_SUFFIXES = ("_quantized_cdf", "_offset", "_cdf_length", "target", "likelihood_lower_bound.bound")


def _codec_key_fate(key: str) -> str | None:
    """Why an official codec key (no prefix) is dropped, or None when it maps 1:1."""
    if key.startswith(_CONTEXT_MODEL_PREFIXES):
        return IGNORE_CONTEXT_MODEL
    if key.startswith("gaussian_conditional."):
        return IGNORE_GAUSSIAN_CONDITIONAL
    if key.startswith("entropy_bottleneck.") and key[len("entropy_bottleneck."):] in _EB_DERIVED_SUFFIXES:
        return IGNORE_DERIVED
    return None


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class POLCModel(CompressedDomainModel):
    """TinyLIC-VR codec + plain mean-scale head + POLC adapter + a timm classifier (ConvNeXt or DeiT).

    Constructor defaults are the official sizes; tests pass smaller ones. ``backbone`` is a timm
    model name built with ``pretrained=False`` (weights come from the POLC step-3 checkpoint,
    ``task_model.*``). Only ConvNeXt and plain ViT/DeiT families are supported.
    """

    model_name = "polc"
    latent_channels = 320
    hyper_channels = 192
    padding_multiple = 64
    # NA needs every axis ≥ its kernel: y (H/16) ≥ 7 and z (H/64) ≥ 3.
    min_input_size = 192
    num_qualities = POLC_LEVELS
    num_classes = 1000
    normalization = {"convention": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                     "formula": "(x - mean) / std", "input_range": [0.0, 1.0]}

    def __init__(
        self,
        backbone: str = "convnext_tiny",
        *,
        model_name: str = "polc",
        N: int = 128,
        M: int = 320,
        depths: Sequence[int] = (2, 2, 6, 2, 2, 2),
        num_heads: Sequence[int] = (8, 12, 16, 20, 12, 12),
        kernel_size: int = 7,
        hyper_kernel_size: int = 3,
        mlp_ratio: float = 2.0,
        head_hidden: int | None = None,
        adapter_heads: int = 3,
        adapter_kernel_size: int = 7,
        adapter_mlp_ratio: float = 4.0,
        num_classes: int = 1000,
    ):
        super().__init__()
        if len(depths) != 6 or len(num_heads) != 6:
            raise ValueError("depths and num_heads need 6 entries (g_a's four stages, then h_a's two)")
        self.model_name = model_name
        self.latent_channels = M
        self.hyper_channels = N * 3 // 2
        self.num_classes = num_classes
        self._build_codec(N, M, tuple(depths), tuple(num_heads), kernel_size, hyper_kernel_size, mlp_ratio)
        self._build_mean_scale_head(M, head_hidden or 2 * M)
        self._build_task(backbone, M, adapter_heads, adapter_kernel_size, adapter_mlp_ratio, num_classes)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # --- construction --------------------------------------------------------------------------
    def _build_codec(self, N: int, M: int, depths: tuple[int, ...], heads: tuple[int, ...],
                     k: int, hyper_k: int, mlp_ratio: float) -> None:
        """TinyLIC-VR's transforms, attribute for attribute (the official ``compressai/models/tinylic_vr.py``)."""
        c1, c2, c3 = N, N * 3 // 2, N * 2  # 128, 192, 256 at the official size

        def rnab(dim: int, stage: int, kernel: int, stage_depths=depths, stage_heads=heads) -> ResViTBlock:
            return ResViTBlock(dim, stage_depths[stage], stage_heads[stage], kernel, mlp_ratio)

        self.g_a0 = conv(3, c1, kernel=5, stride=2)
        self.g_a1 = rnab(c1, 0, k)
        self.g_a2 = conv(c1, c2, kernel=3, stride=2)
        self.g_a3 = rnab(c2, 1, k)
        self.g_a4 = conv(c2, c3, kernel=3, stride=2)
        self.g_a5 = rnab(c3, 2, k)
        self.g_a6 = conv(c3, M, kernel=3, stride=2)
        self.g_a7 = rnab(M, 3, k)

        self.h_a0 = conv(M, c2, kernel=3, stride=2)
        self.h_a1 = rnab(c2, 4, hyper_k)
        self.h_a2 = conv(c2, c2, kernel=3, stride=2)
        self.h_a3 = rnab(c2, 5, hyper_k)

        # The synthesis side walks the stage lists backwards (POLC reverses depths and heads).
        rd, rh = depths[::-1], heads[::-1]
        self.h_s0 = rnab(c2, 0, hyper_k, rd, rh)
        self.h_s1 = deconv(c2, c2, kernel=3, stride=2)
        self.h_s2 = rnab(c2, 1, hyper_k, rd, rh)
        self.h_s3 = deconv(c2, 2 * M, kernel=3, stride=2)

        self.g_s0 = rnab(M, 2, k, rd, rh)
        self.g_s1 = deconv(M, c3, kernel=3, stride=2)
        self.g_s2 = rnab(c3, 3, k, rd, rh)
        self.g_s3 = deconv(c3, c2, kernel=3, stride=2)
        self.g_s4 = rnab(c2, 4, k, rd, rh)
        self.g_s5 = deconv(c2, c1, kernel=3, stride=2)
        self.g_s6 = rnab(c1, 5, k, rd, rh)
        self.g_s7 = deconv(c1, 3, kernel=5, stride=2)

        self.entropy_bottleneck = EntropyBottleneck(c2, filters=POLC_EB_FILTERS)
        self.Gain = nn.Parameter(torch.ones(POLC_LEVELS, M))
        self.InverseGain = nn.Parameter(torch.ones(POLC_LEVELS, M))
        self.HyperGain = nn.Parameter(torch.ones(POLC_LEVELS, c2))
        self.InverseHyperGain = nn.Parameter(torch.ones(POLC_LEVELS, c2))

        for name in self._codec_transform_names():
            getattr(self, name).apply(_init_transformer_weights)

    def _build_mean_scale_head(self, M: int, hidden: int) -> None:
        """params (2M) → (σ, μ) for all M channels from z alone; laid out like POLC's entropy_parameters."""
        self.mean_scale_head = nn.Sequential(
            conv(2 * M, hidden, kernel=1, stride=1), nn.GELU(),
            conv(hidden, hidden, kernel=1, stride=1), nn.GELU(),
            conv(hidden, 2 * M, kernel=1, stride=1),
        )

    def _build_task(self, backbone: str, M: int, adapter_heads: int, adapter_kernel: int,
                    adapter_mlp_ratio: float, num_classes: int) -> None:
        # pretrained=False: never touch the network; weights come from the POLC checkpoint.
        task_model = timm.create_model(backbone, pretrained=False, num_classes=num_classes)
        if isinstance(task_model, ConvNeXt):
            self.stem_name = "stem"
            stem = task_model.stem
            channels = stem[0].out_channels
            stride = stem[0].stride[0]
        elif isinstance(task_model, VisionTransformer):
            if task_model.reg_token is not None or task_model.no_embed_class or task_model.cls_token is None:
                raise ValueError(f"{backbone}: only DeiT/ViT with a class token (and its pos-embed) is supported")
            if not isinstance(task_model.patch_embed.norm, nn.Identity):
                raise ValueError(f"{backbone}: patch embeddings with a norm layer are not supported")
            self.stem_name = "patch_embed"
            stem = task_model.patch_embed
            channels = task_model.embed_dim
            stride = stem.patch_size[0]
        else:
            raise ValueError(f"{backbone}: POLC adapters are defined for ConvNeXt and DeiT backbones only")
        if LATENT_STRIDE % stride:
            raise ValueError(f"{backbone}: stem stride {stride} does not divide the latent stride {LATENT_STRIDE}")
        # The adapter takes the stem's place; the original stem is kept for the pixel path only.
        setattr(task_model, self.stem_name, nn.Identity())
        self.task_model = task_model
        self.adapter = QualityAdapter(M, channels, adapter_heads, LATENT_STRIDE // stride,
                                      adapter_kernel, adapter_mlp_ratio)
        self.adapter.apply(_init_transformer_weights)
        setattr(self, self.pixel_stem_attribute, stem)

    @property
    def pixel_stem_attribute(self) -> str:
        """``pixel_stem`` (ConvNeXt) or ``pixel_patch_embed`` (DeiT): the backbone's original stem."""
        return f"pixel_{self.stem_name}"

    @property
    def pixel_stem_module(self) -> nn.Module:
        return getattr(self, self.pixel_stem_attribute)

    @staticmethod
    def _codec_transform_names() -> list[str]:
        return ([f"g_a{i}" for i in range(8)] + [f"h_a{i}" for i in range(4)]
                + [f"h_s{i}" for i in range(4)] + [f"g_s{i}" for i in range(8)])

    # --- codec transforms ------------------------------------------------------------------------
    def _run(self, prefix: str, count: int, x: torch.Tensor, quality: float) -> torch.Tensor:
        for i in range(count):
            layer = getattr(self, f"{prefix}{i}")
            x = layer(x, quality) if isinstance(layer, ViTBlock) else layer(x)
        return x

    def g_a(self, x: torch.Tensor, quality: float) -> torch.Tensor:
        return self._run("g_a", 8, x, quality)

    def h_a(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        return self._run("h_a", 4, y, quality)

    def h_s(self, z: torch.Tensor, quality: float) -> torch.Tensor:
        """ẑ (gain-removed) → ``params``, the 2M-channel feature at H/16."""
        return self._run("h_s", 4, z, quality)

    def g_s(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        return self._run("g_s", 8, y, quality)

    @staticmethod
    def _per_channel(table: torch.Tensor, quality: float) -> torch.Tensor:
        return select_quality_row(table, quality).view(1, -1, 1, 1)

    def _medians(self) -> torch.Tensor:
        return self.entropy_bottleneck.medians().view(1, -1, 1, 1)

    def _check_quality(self, quality: float) -> None:
        quality_weights(quality, self.num_qualities)  # raises ValueError outside [1, levels]

    # --- CompressedDomainModel ---------------------------------------------------------------------
    def analysis(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        """[0, 1] RGB (POLC feeds ``ToTensor`` output, no normalisation) → y = g_a(x)·|Gain[q]|."""
        self._check_quality(quality)
        return self.g_a(image, quality) * self._per_channel(self.Gain, quality)

    def hyper_analysis(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        """y → z·|HyperGain[q]| − medians, so the runtime codes round(z)."""
        self._check_quality(quality)
        return self.h_a(y, quality) * self._per_channel(self.HyperGain, quality) - self._medians()

    def mean_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """params → (means, scales); scales come first in the head's output, as in POLC."""
        scales, means = self.mean_scale_head(params).chunk(2, dim=1)
        return means, lower_bound(scales, SCALE_BOUND)

    def hyper_synthesis(self, z_hat: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer z symbols → (means, scales) of y, scales ≥ SCALE_BOUND."""
        self._check_quality(quality)
        z = (z_hat + self._medians()) * self._per_channel(self.InverseHyperGain, quality)
        return self.mean_scale(self.h_s(z, quality))

    def synthesis_unclamped(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """g_s(ŷ·|InverseGain[q]|) before the [0, 1] clamp (POLC's ``forward`` output)."""
        self._check_quality(quality)
        return self.g_s(y_hat * self._per_channel(self.InverseGain, quality), quality)

    def synthesis(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """Gain-domain ŷ → image in [0, 1] (POLC's ``decompress`` clamps the same way)."""
        return self.synthesis_unclamped(y_hat, quality).clamp(0.0, 1.0)

    # --- task side ---------------------------------------------------------------------------------
    def _pos_embed_grid(self) -> tuple[int, int]:
        """Side of the square patch grid ``task_model.pos_embed`` was trained for (14 at 224, 16 at 256)."""
        patches = self.task_model.pos_embed.shape[1] - self.task_model.num_prefix_tokens
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(f"pos_embed holds {patches} patch positions, not a square grid")
        return side, side

    def _vit_logits(self, features: torch.Tensor) -> torch.Tensor:
        """DeiT from the (B, C, h, w) patch feature on: tokens, pos-embed, class token, blocks, head.

        timm's ``dynamic_img_size`` path, written out so h and w stay symbolic in an exported
        graph: the pos-embed grid is resampled bicubically (antialiased, as timm does) to (h, w).
        """
        vit = self.task_model
        batch, channels, height, width = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        grid_h, grid_w = self._pos_embed_grid()
        prefix_pos = vit.pos_embed[:, : vit.num_prefix_tokens]
        grid_pos = vit.pos_embed[:, vit.num_prefix_tokens:].reshape(1, grid_h, grid_w, channels).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(height, width), mode="bicubic", antialias=True)
        tokens = tokens + grid_pos.flatten(2).transpose(1, 2)
        cls = vit.cls_token.expand(batch, -1, -1) + prefix_pos
        x = vit.norm_pre(torch.cat([cls, tokens], dim=1))
        x = vit.norm(vit.blocks(x))
        return vit.forward_head(x)

    def _backbone_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the feature the stem (or the adapter) produced."""
        if self.stem_name == "patch_embed":
            return self._vit_logits(features)
        return self.task_model.forward_head(self.task_model.forward_features(features))

    def adapter_features(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """Gain-domain ŷ (not multiplied by InverseGain, as in POLC) → the feature replacing the stem."""
        self._check_quality(quality)
        return self.adapter(y_hat, quality)

    def classifier_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone from the stem's output (adapter or original stem, NCHW) to the logits."""
        return self._backbone_logits(features)

    def classifier(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """Gain-domain ŷ → adapter → backbone → logits."""
        return self._backbone_logits(self.adapter_features(y_hat, quality))

    def pixel_features(self, image: torch.Tensor) -> torch.Tensor:
        """The original stem on ImageNet-normalised pixels: what the adapter imitates (NCHW, as
        ``adapter_features``; for DeiT the patch grid before flattening to tokens)."""
        x = (image - self.pixel_mean) / self.pixel_std
        if self.stem_name == "patch_embed":
            # Only the projection: timm's PatchEmbed would assert the 224×224 training size.
            return self.pixel_stem_module.proj(x)
        return self.pixel_stem_module(x)

    def pixel_classifier(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        """[0, 1] RGB → logits of the uncompressed reference (``quality`` is only validated)."""
        self._check_quality(quality)
        return self._backbone_logits(self.pixel_features(image))

    def class_names(self) -> list[str]:
        return imagenet_class_names()

    def task_parameters(self) -> list[nn.Parameter]:
        return [*self.adapter.parameters(), *self.task_model.parameters(), *self.pixel_stem_module.parameters()]

    def quality_gain_tables(self) -> dict[str, tuple[nn.Parameter, str]]:
        return {"Gain": (self.Gain, "latent"), "InverseGain": (self.InverseGain, "inverse_latent"),
                "HyperGain": (self.HyperGain, "hyper"), "InverseHyperGain": (self.InverseHyperGain, "inverse_hyper")}

    def weight_groups(self) -> dict[str, tuple[str, ...]]:
        """Key prefixes of the parts that may come from different sources (the rest is "codec")."""
        return {
            "adapter": ("adapter.",),
            "backbone": ("task_model.", f"{self.pixel_stem_attribute}."),
            # New in edge-sdk: no official checkpoint holds it.
            "mean_scale_head": ("mean_scale_head.",),
        }

    def prior_prefixes(self) -> tuple[str, ...]:
        """Only the new mean-scale head learns in the prior stage; POLC's codec, z prior and
        hyper transforms stay as released (the architecture note's plan)."""
        return ("mean_scale_head.",)

    def load_default_weights(self, groups: list[str]) -> list[tuple[dict, set[str]]]:
        """Nothing to fall back on: POLC weights are only distributed by hand (see ``weights_hint``)."""
        return []

    # --- official checkpoints ----------------------------------------------------------------------
    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Official POLC state dict → (state dict in this model's names, {dropped key: reason}).

        Accepts the codec-only layout of steps 1/2 (no prefix) and the step-3 ``ClsWrapper``
        layout (``backbone.`` codec, ``adapter.``, ``task_model.``, ``task_model_teacher.``),
        optionally under DataParallel's ``module.`` and/or inside a training checkpoint's
        ``state_dict`` entry. Keys matching no rule pass through unchanged, so a wrong
        checkpoint shows up as unexpected keys rather than disappearing.

        Side effect: when ``task_model.pos_embed`` has another patch grid than this model (older
        DeiT runs trained at 256 px have 16×16 + 1 tokens), this model adopts the checkpoint's
        grid so the tensor loads unchanged (it is resampled to the input's grid at run time).
        ``mean_scale_head.*`` is never in an official checkpoint and stays missing.
        """
        if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
            state_dict = state_dict["state_dict"]
        state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
        step3 = any(k.startswith("backbone.") for k in state)

        mapped: dict[str, torch.Tensor] = {}
        ignored: dict[str, str] = {}
        stem_prefix = f"{self.stem_name}."
        pixel_prefix = f"{self.pixel_stem_attribute}."
        task_stems: dict[str, torch.Tensor] = {}
        teacher_stems: dict[str, torch.Tensor] = {}

        for key, value in state.items():
            if key == "mask_token":
                ignored[key] = IGNORE_MASK_TOKEN
            elif step3 and key.startswith("backbone."):
                codec_key = key[len("backbone."):]
                reason = _codec_key_fate(codec_key)
                if reason is None:
                    mapped[codec_key] = value
                else:
                    ignored[key] = reason
            elif step3 and key.startswith("task_model_teacher."):
                inner = key[len("task_model_teacher."):]
                if inner.startswith(stem_prefix):
                    teacher_stems[pixel_prefix + inner[len(stem_prefix):]] = value
                else:
                    ignored[key] = IGNORE_TEACHER
            elif step3 and key.startswith("task_model."):
                inner = key[len("task_model."):]
                if inner.startswith(stem_prefix):
                    task_stems[pixel_prefix + inner[len(stem_prefix):]] = value
                    ignored[key] = IGNORE_TASK_STEM
                else:
                    mapped[key] = value
            elif not step3 and (reason := _codec_key_fate(key)) is not None:
                ignored[key] = reason
            else:
                mapped[key] = value

        # The pixel path prefers the teacher's stem; both are the same frozen timm weights in
        # POLC's step 3, so fall back to task_model's copy when a checkpoint lacks the teacher.
        if teacher_stems:
            mapped.update(teacher_stems)
        elif task_stems:
            mapped.update(task_stems)
            for key in list(ignored):
                if ignored[key] == IGNORE_TASK_STEM:
                    del ignored[key]

        pos_embed = mapped.get("task_model.pos_embed")
        if pos_embed is not None and self.stem_name == "patch_embed":
            self._adopt_pos_embed(pos_embed)
        return mapped, ignored

    def _adopt_pos_embed(self, pos_embed: torch.Tensor) -> None:
        """Resize ``task_model.pos_embed`` to a checkpoint's (1, prefix + g², C) so it loads as is."""
        current = self.task_model.pos_embed
        if pos_embed.shape == current.shape:
            return
        if pos_embed.dim() != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[2] != current.shape[2]:
            return  # leave the mismatch for the loader to report
        patches = pos_embed.shape[1] - self.task_model.num_prefix_tokens
        if patches <= 0 or math.isqrt(patches) ** 2 != patches:
            return
        resized = torch.zeros_like(pos_embed, dtype=current.dtype, device=current.device)
        self.task_model.pos_embed = nn.Parameter(resized)


# --------------------------------------------------------------------------------------------
# Registered models
# --------------------------------------------------------------------------------------------
_WEIGHTS_HINT = (
    "official POLC step-3 checkpoints (Google Drive / Baidu links in the NJUVISION/POLC README) cannot "
    "be downloaded here: give the file with --checkpoint PATH. The mean-scale head for trit-plane "
    "coding is new in edge-sdk and needs its own trained weights"
)


@register_model(
    "polc_convnext_t",
    description="POLC: TinyLIC-VR codec (N=128, M=320, NATTEN blocks) + mean-scale head + adapter + ConvNeXt-T",
    qualities=tuple(range(1, 9)),
    default_quality=4,
    weights_hint=_WEIGHTS_HINT,
    tags=("polc", "transformer", "neighborhood-attention", "convnext", "variable-rate"),
)
def polc_convnext_t(**kwargs) -> POLCModel:
    kwargs.setdefault("model_name", "polc_convnext_t")
    return POLCModel("convnext_tiny", adapter_heads=3, **kwargs)


@register_model(
    "polc_deit_s",
    description="POLC: TinyLIC-VR codec (N=128, M=320, NATTEN blocks) + mean-scale head + adapter + DeiT-S",
    qualities=tuple(range(1, 9)),
    default_quality=4,
    weights_hint=_WEIGHTS_HINT,
    tags=("polc", "transformer", "neighborhood-attention", "deit", "variable-rate"),
)
def polc_deit_s(**kwargs) -> POLCModel:
    kwargs.setdefault("model_name", "polc_deit_s")
    return POLCModel("deit_small_patch16_224", adapter_heads=6, **kwargs)


__all__ = [
    "NSABlock", "NSABlockStack", "ViTBlock", "ResViTBlock", "QualityAdapter", "POLCModel",
    "polc_convnext_t", "polc_deit_s",
]
