"""Post-training conversion of a hyper-synthesis to the runtime's integer network.

``convert_hyper_synthesis`` takes the float hyper-synthesis a model describes
(``model.hyper_synthesis_layers(q)``: the input affine on ẑ, then convolutions with leaky
ReLUs, the last one giving scales then means) and returns an
:class:`~edge_sdk.runtime.integer_prior.IntegerPrior`:

* **activations**: one scale per layer input, from the largest magnitude seen on calibration
  ẑ (sampled from the model's own factorized z prior, plus any real ẑ given), with
  ``activation_bits`` of signed range; larger values are clipped at run time;
* **weights**: one scale per output channel, the finest that keeps both ``max|w|`` within
  ``weight_bits`` and ``sum(|w|) * max|a|`` below 2**24, the bound that makes float32 GEMMs
  exact (runtime module doc);
* **requantization**: int64 multiply-and-shift per channel, the leaky slope folded into a
  second multiplier;
* **index**: the scale channels are requantized to one common unit, in which the trit
  table's bucket edges (the same ``sqrt(s_k s_k+1)`` as ``scale_to_index``) are rounded up
  to integer thresholds, so the runtime compares integers only;
* **means**: each mean channel's accumulator unit, as a float64 factor.

What the conversion costs in rate is measured by ``benchmarks/prior.py`` (docs/prior.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_sdk.runtime.integer_prior import (
    CONV,
    EXACT_FLOAT32,
    MAX_BIAS,
    IntegerLayer,
    IntegerPrior,
)
from edge_sdk.runtime.tables import EntropyTables

from ..models.hyper_synthesis import FloatHyperSynthesis

#: defaults measured in docs/prior.md: 10-bit activations leave the weights ~7 bits under the
#: float32 bound, and cost < 0.1 % in rate on lite0.
DEFAULT_ACTIVATION_BITS = 10
DEFAULT_WEIGHT_BITS = 12
_MULTIPLIER_BITS = 30
_INPUT_SHIFT = 20
#: units of the index's common scale per first bucket edge: buckets are ≥ 6 % wide, so one
#: unit (≤ 1/128 of the edge, relatively finer above it) moves edges by far less than that.
_INDEX_RESOLUTION = 128


def sample_z_from_prior(tables: EntropyTables, count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(count, C, h, w) integer ẑ drawn channel by channel from the factorized prior's own CDFs."""
    zt = tables.z
    rng = np.random.default_rng(seed)
    out = np.empty((count, zt.num_channels, height, width), dtype=np.float64)
    for c in range(zt.num_channels):
        cdf = zt.cdf[zt.cdf_start[c]: zt.cdf_start[c + 1]].astype(np.float64)
        pmf = np.diff(cdf)[:-1]  # regular bins; the escape bin's mass is left out
        pmf = pmf / pmf.sum() if pmf.sum() > 0 else np.full(pmf.size, 1.0 / pmf.size)
        out[:, c] = rng.choice(pmf.size, size=(count, height, width), p=pmf) + int(zt.offset[c])
    return out


def _quantize_weights(weight: np.ndarray, kind: int, input_max: int, weight_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel scales and int32 weights with sum(|w|) * input_max < 2**24."""
    w = weight if kind == CONV else weight.transpose(1, 0, 2, 3)  # (Cout, Cin, k, k)
    flat = np.abs(w.reshape(w.shape[0], -1))
    maxabs = np.maximum(flat.max(axis=1), 1e-30)
    l1 = np.maximum(flat.sum(axis=1), 1e-30)
    budget = (EXACT_FLOAT32 - 1) / input_max
    scale = np.maximum(maxabs / weight_max, l1 / (budget - flat.shape[1] / 2))  # rounding adds ≤ ½ per tap
    q = np.round(w / scale.reshape(-1, 1, 1, 1))
    while True:  # guard the bound exactly; the margin above makes this loop run once
        over = np.abs(q).reshape(q.shape[0], -1).sum(axis=1) * input_max >= EXACT_FLOAT32
        if not over.any():
            break
        scale[over] *= 1.001
        q[over] = np.round(w[over] / scale[over].reshape(-1, 1, 1, 1))
    q = q.astype(np.int16 if weight_max < 1 << 15 else np.int32)
    return scale, (q if kind == CONV else np.ascontiguousarray(q.transpose(1, 0, 2, 3)))


def _channel_peaks(x: np.ndarray, quantile: float) -> np.ndarray:
    """Per-channel magnitude covering ``quantile`` of the values of (B, C, H, W) ``x``."""
    flat = np.abs(np.moveaxis(x, 1, 0).reshape(x.shape[1], -1))
    return np.quantile(flat, quantile, axis=1) if quantile < 1 else flat.max(axis=1)


def convert_hyper_synthesis(path: FloatHyperSynthesis, tables: EntropyTables, *,
                       calibration_z: Sequence[np.ndarray] = (),
                       activation_bits: int = DEFAULT_ACTIVATION_BITS,
                       weight_bits: int = DEFAULT_WEIGHT_BITS,
                       prior_samples: int = 64, prior_quantile: float = 0.9999,
                       seed: int = 0) -> IntegerPrior:
    """The integer network that maps ẑ to the means and trit-table scale indices (module doc).

    Each layer input gets one activation scale per channel: the ``prior_quantile`` magnitude
    over ẑ sampled from the factorized prior (whose tails reach far beyond real images'),
    or the largest seen on ``calibration_z``, whichever is larger. Values beyond it clip;
    that changes rate, never decodability, since encoder and decoder clip alike.
    """
    if not 2 <= activation_bits <= 16 or not 2 <= weight_bits <= 16:
        raise ValueError("activation_bits and weight_bits must lie in 2..16")
    a_max = (1 << (activation_bits - 1)) - 1
    w_max = (1 << (weight_bits - 1)) - 1
    peaks = [_channel_peaks(s, prior_quantile)
             for s in path.forward(sample_z_from_prior(tables, prior_samples, 8, 8, seed))[:-1]]
    for z in calibration_z:
        seen = path.forward(np.asarray(z, dtype=np.float64).reshape((-1,) + np.shape(z)[-3:]))
        peaks = [np.maximum(p, _channel_peaks(s, 1.0)) for p, s in zip(peaks, seen[:-1])]
    act_scale = [np.maximum(p, 1e-6 * max(p.max(), 1e-30)) / a_max for p in peaks]  # per channel

    gain = path.input_gain / act_scale[0]
    input_gain = np.round(gain * (1 << _INPUT_SHIFT)).astype(np.int64)
    input_offset = np.round(path.input_offset * gain * (1 << _INPUT_SHIFT)).astype(np.int64)

    scales = tables.trit.scales.astype(np.float64)
    edges = np.sqrt(scales[:-1] * scales[1:])  # the bucket edges scale_to_index uses
    common_unit = edges[0] / _INDEX_RESOLUTION
    layers = []
    for i, layer in enumerate(path.layers):
        # fold the input's per-channel scale into the weights: acc = Σ (w·s_in) · a
        in_axis = (1, -1, 1, 1) if layer.kind == CONV else (-1, 1, 1, 1)
        w_scale, q = _quantize_weights(layer.weight * act_scale[i].reshape(in_axis), layer.kind, a_max, w_max)
        out_scale = w_scale  # real value of one accumulator unit, per output channel
        bias = np.clip(np.round(layer.bias / out_scale), -(MAX_BIAS - 1), MAX_BIAS - 1).astype(np.int64)
        if i + 1 < len(path.layers):
            ratio = out_scale / act_scale[i + 1]
            slope = layer.negative_slope
        else:  # scale channels go to one unit, in which the index thresholds live; means stay
            latent = out_scale.size // 2
            mean_unit = out_scale[latent:].astype(np.float64)
            ratio = np.concatenate([out_scale[:latent] / common_unit, np.zeros(latent)])
            slope = 0.0  # a negative scale is below every threshold: index 0
        shift = int(np.clip(_MULTIPLIER_BITS - np.ceil(np.log2(max(ratio.max(), 1e-300))), 0, 40))
        m_pos = np.round(ratio * (1 << shift)).astype(np.int64)
        m_neg = np.round(ratio * slope * (1 << shift)).astype(np.int64)
        layers.append(IntegerLayer(layer.kind, q, bias, layer.stride, layer.padding, layer.output_padding,
                                   a_max, m_pos, m_neg, shift))

    thresholds = np.ceil(edges / common_unit).astype(np.int64)
    prior = IntegerPrior(input_gain=input_gain, input_offset=input_offset, input_shift=_INPUT_SHIFT,
                              layers=tuple(layers), thresholds=thresholds, mean_unit=mean_unit)
    return prior.validate(num_scales=scales.size, hyper_channels=path.input_gain.size)
