"""The interface every exportable model implements, and the quality-indexed tables they share.

A model is one ``torch.nn.Module`` that owns the codec (analysis, hyper-analysis,
hyper-synthesis, synthesis, the factorized z prior) and the task side (adapter plus
backbone, and the same backbone on pixels as the uncompressed reference). Each
``EXPORT_PARTS`` entry becomes one ONNX graph; the quality is a Python float
captured when a part is wrapped, so every exported graph is specific to one quality.

Conventions shared by every graph (recorded in the bundle manifest):

* images are float32 RGB in [0, 1], NCHW; graphs normalise for their backbone inside;
* ``hyper_analysis`` returns z already shifted by the prior's medians, so the runtime
  codes ``round(z)`` and ``hyper_synthesis`` takes those integers (as float32);
* ``hyper_synthesis`` returns ``means`` and ``scales``, scales lower-bounded at
  ``scale_bound``;
* ``classifier`` and ``synthesis`` take ŷ = means + integer residual, in the gain domain
  (the synthesis applies the inverse gain itself, the adapter never does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SCALE_BOUND = 0.11


@dataclass(frozen=True)
class PartSpec:
    """One exported graph: which model method, its tensor names, and the input's grid."""

    name: str
    method: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    #: Spatial stride of the (single) input relative to the padded image; 1 for pixels.
    input_stride: int
    #: "image", "y", "z" or "pooled": which channel count the input has.
    input_kind: str
    #: exported only by models that declare ``classifier_tiling``
    optional: bool = False


@dataclass(frozen=True)
class ClassifierTiling:
    """How a classifier splits into a convolutional trunk and a head after global average
    pooling, so the runtime can run the trunk over a large latent in overlapping tiles and pool
    the tiles' cores exactly as the whole feature map would be pooled.

    The trunk's feature grid is ``scale_num / scale_den`` times the latent grid (lite0: 1/2,
    H/32); a tile must start on that grid, so its core and margin are multiples of
    ``scale_den``. ``margin`` (latent positions each side) is chosen by measuring logits against
    the whole-latent classifier: a convolutional trunk's theoretical receptive field is far
    wider than the part that carries weight.
    """

    scale_num: int
    scale_den: int
    margin: int


EXPORT_PARTS: tuple[PartSpec, ...] = (
    PartSpec("analysis", "analysis", ("image",), ("y",), 1, "image"),
    PartSpec("hyper_analysis", "hyper_analysis", ("y",), ("z",), 16, "y"),
    PartSpec("hyper_synthesis", "hyper_synthesis", ("z_hat",), ("means", "scales"), 64, "z"),
    PartSpec("classifier", "classifier", ("y_hat",), ("logits",), 16, "y"),
    PartSpec("synthesis", "synthesis", ("y_hat",), ("image",), 16, "y"),
    PartSpec("pixel_classifier", "pixel_classifier", ("image",), ("logits",), 1, "image"),
    PartSpec("classifier_trunk", "classifier_trunk", ("y_hat",), ("features",), 16, "y", optional=True),
    PartSpec("classifier_head", "classifier_head", ("pooled",), ("logits",), 0, "pooled", optional=True),
)


def quality_weights(quality: float, levels: int) -> tuple[int, int, float]:
    """(lower row, upper row, blend) for a possibly fractional quality in [1, levels].

    POLC interpolates geometrically between neighbouring rows: |G[s]|^(1-l) |G[s+1]|^l.
    """
    q = float(quality)
    if not 1.0 <= q <= levels:
        raise ValueError(f"quality must lie in [1, {levels}], got {quality}")
    s = min(int(q) - 1, levels - 1)
    frac = q - (s + 1)
    upper = min(s + 1, levels - 1)
    return s, upper, frac


def select_quality_row(table: torch.Tensor, quality: float) -> torch.Tensor:
    """|table[q-1]| for integer q, geometric interpolation of |rows| for fractional q."""
    lo, hi, frac = quality_weights(quality, table.shape[0])
    if frac == 0.0:
        return table[lo].abs()
    return table[lo].abs().pow(1.0 - frac) * table[hi].abs().pow(frac)


class CompressedDomainModel(nn.Module):
    """Base class of every registered model. Subclasses set the attributes and methods below."""

    model_name: str = ""
    latent_channels: int = 0
    hyper_channels: int = 0
    #: Padded image sides are multiples of this (y dims even for the hyperprior's z grid).
    padding_multiple: int = 64
    #: Smallest padded side the transforms accept.
    min_input_size: int = 64
    num_qualities: int = 1
    num_classes: int = 1000
    #: What the pixel graphs do to [0, 1] RGB before the backbone (documentation for the manifest).
    normalization: dict = {}
    #: Set by models whose classifier is a convolutional trunk, global average pooling and a
    #: head: the bundle then carries ``classifier_trunk`` and ``classifier_head`` graphs too.
    classifier_tiling: "ClassifierTiling | None" = None
    #: Channels of the trunk's feature map (the head's input width) when ``classifier_tiling`` is set.
    trunk_channels: int = 0

    # --- codec -----------------------------------------------------------------------------
    def analysis(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        raise NotImplementedError

    def hyper_analysis(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        raise NotImplementedError

    def hyper_synthesis(self, z_hat: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def synthesis(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        raise NotImplementedError

    def synthesis_unclamped(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """The synthesis before its final clamp to [0, 1] (training needs the gradient there)."""
        raise NotImplementedError

    # --- task ------------------------------------------------------------------------------
    def classifier(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        raise NotImplementedError

    def pixel_classifier(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        """The teacher: the unmodified backbone on pixels. Equals
        ``classifier_from_features(pixel_features(image))``, which adapter training uses to run
        the teacher's stem once for both of its targets."""
        raise NotImplementedError

    def classifier_trunk(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """ŷ → the feature map the classifier averages (only with ``classifier_tiling``)."""
        raise NotImplementedError

    def classifier_head(self, pooled: torch.Tensor, quality: float) -> torch.Tensor:
        """The trunk's features averaged over space, (N, ``trunk_channels``) → logits; for every
        model that sets ``classifier_tiling``, ``classifier_head(classifier_trunk(ŷ).mean((2, 3)))``
        equals ``classifier(ŷ)``."""
        raise NotImplementedError

    def class_names(self) -> list[str]:
        """One human-readable name per logit."""
        raise NotImplementedError

    # --- training hooks ----------------------------------------------------------------------
    def quality_gain_tables(self) -> dict[str, tuple[nn.Parameter, str]]:
        """Every per-quality gain table: parameter name → (parameter, role), the role one of
        ``latent``, ``inverse_latent``, ``hyper`` or ``inverse_hyper``. Training gives them their
        own learning rate and can spread collapsed latent rows apart (``TrainConfig.gain_spread``)."""
        return {}

    def adapter_features(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        """The adapter's output: what replaces the backbone's stem."""
        raise NotImplementedError

    def pixel_features(self, image: torch.Tensor) -> torch.Tensor:
        """The teacher's feature at the point the adapter feeds (the distillation target)."""
        raise NotImplementedError

    def classifier_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The backbone from the adapter's insertion point to the logits."""
        raise NotImplementedError

    def hyper_synthesis_layers(self, quality: float):
        """The hyper-synthesis as an ``hyper_synthesis.FloatHyperSynthesis``, for the integer
        prior (``prior_mode`` INTEGER). Models whose hyper-synthesis is not a plain chain of
        convolutions and leaky ReLUs leave this unimplemented and export the float prior only."""
        from .hyper_synthesis import IntegerPriorUnsupported

        raise IntegerPriorUnsupported(
            f"{self.model_name}: its hyper-synthesis has layers the integer prior cannot convert; "
            "bundles of this model use the float prior (same-device decoding only)")

    def prior_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the hyperprior parameters that the ``prior`` stage trains."""
        raise NotImplementedError

    # --- helpers every model gets ----------------------------------------------------------
    def z_prior_tables(self) -> tuple[list, list[int]]:
        """(pmfs, offsets) of the factorized z prior over the integers the runtime codes."""
        return self.entropy_bottleneck.pmf_table()

    def codec_parameters(self):
        """Parameters of the codec only (not the adapter or backbones)."""
        task = {id(p) for p in self.task_parameters()}
        return [p for p in self.parameters() if id(p) not in task]

    def task_parameters(self):
        raise NotImplementedError

    def weight_groups(self) -> dict[str, tuple[str, ...]]:
        """State-dict key prefixes of each separately sourced weight group; the rest is "codec"."""
        return {"adapter": ("adapter.",), "backbone": ("task_model.", "pixel_")}

    def load_default_weights(self, groups: list[str]) -> list[tuple[dict, set[str]]]:
        """Load shipped or packaged weights for ``groups``; returns (source record, loaded keys) pairs."""
        return []

    def shipped_controller(self, quality: float):
        """The decoding controller fitted for the shipped weights at ``quality``, or None."""
        return None


class PartModule(nn.Module):
    """Binds one model method and one quality into a plain ``forward`` for tracing and export."""

    def __init__(self, model: CompressedDomainModel, spec: PartSpec, quality: float):
        super().__init__()
        self.model = model
        self.spec = spec
        self.quality = float(quality)

    def forward(self, x: torch.Tensor):
        return getattr(self.model, self.spec.method)(x, self.quality)
