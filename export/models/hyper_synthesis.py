"""What a model says about its hyper-synthesis, for the integer prior (``export/bundle/integer_prior.py``).

A model describes its float hyper-synthesis as a chain of convolutions (``FloatHyperSynthesis``)
in torch-free-ish terms (float64 arrays); the bundle side converts that chain to the runtime's
integer network. The description lives with the models so that models never import the
exporter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from edge_sdk.runtime.integer_prior import CONV, DECONV

__all__ = ["FloatHyperSynthesis", "FloatLayer", "IntegerPriorUnsupported", "layer_from_module"]


class IntegerPriorUnsupported(ValueError):
    """The model's hyper-synthesis is not a chain the converter handles."""


@dataclass(frozen=True)
class FloatLayer:
    kind: int  # CONV or DECONV (runtime constants)
    weight: np.ndarray  # float64; conv (Cout, Cin, k, k), deconv (Cin, Cout, k, k)
    bias: np.ndarray
    stride: int
    padding: int
    output_padding: int = 0
    #: slope of the leaky ReLU after the layer (0 for ReLU); None on the last layer
    negative_slope: Optional[float] = None


@dataclass(frozen=True)
class FloatHyperSynthesis:
    """x0 = (ẑ + input_offset) * input_gain per channel, then ``layers``; the output holds the
    scales (before the lower bound, which the index mapping makes redundant) then the means."""

    input_gain: np.ndarray
    input_offset: np.ndarray
    layers: tuple[FloatLayer, ...]

    def forward(self, z: np.ndarray) -> list[np.ndarray]:
        """float64 reference: the input of every layer, then the scales; z is (B, C, h, w)."""
        x = torch.from_numpy((np.asarray(z, dtype=np.float64) + self.input_offset.reshape(1, -1, 1, 1))
                             * self.input_gain.reshape(1, -1, 1, 1))
        seen = []
        for layer in self.layers:
            seen.append(x.numpy())
            w, b = torch.from_numpy(layer.weight), torch.from_numpy(layer.bias)
            if layer.kind == CONV:
                x = F.conv2d(x, w, b, stride=layer.stride, padding=layer.padding)
            else:
                x = F.conv_transpose2d(x, w, b, stride=layer.stride, padding=layer.padding,
                                       output_padding=layer.output_padding)
            if layer.negative_slope is not None:
                x = F.leaky_relu(x, layer.negative_slope)
        seen.append(x.numpy())
        return seen


def layer_from_module(module: torch.nn.Module, negative_slope: Optional[float]) -> FloatLayer:
    """A ``Conv2d`` / ``ConvTranspose2d`` (square kernel, symmetric padding, no groups or dilation)."""
    if not isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        raise IntegerPriorUnsupported(f"cannot convert {type(module).__name__}")
    if module.groups != 1 or module.dilation != (1, 1) or module.kernel_size[0] != module.kernel_size[1] \
            or module.stride[0] != module.stride[1] or module.padding[0] != module.padding[1] \
            or not isinstance(module.padding[0], int):
        raise IntegerPriorUnsupported(f"{module}: only square, symmetric, ungrouped convolutions convert")
    weight = module.weight.detach().double().numpy()
    bias = (module.bias.detach().double().numpy() if module.bias is not None
            else np.zeros(module.weight.shape[0 if isinstance(module, torch.nn.Conv2d) else 1]))
    kind, op = (CONV, 0) if isinstance(module, torch.nn.Conv2d) else (DECONV, module.output_padding[0])
    return FloatLayer(kind, np.ascontiguousarray(weight), np.ascontiguousarray(bias), module.stride[0],
                      module.padding[0], op, negative_slope)
