"""Integer hyper-synthesis: means and trit-table indices from the decoded ẑ, bit-exact everywhere.

The float prior (``prior_mode`` FLOAT) maps the hyper-synthesis's float scales to table
indices; another backend, thread count or precision moves a scale across a bucket edge now
and then, and that stream no longer decodes (``benchmarks/desync.py``). ``prior_mode``
INTEGER instead runs this integer network, a post-training conversion of the
hyper-synthesis (``edge_sdk.export.integer_prior``; docs/prior.md):

* every tensor is an integer: ẑ, the weights, the activations, the accumulators;
* the means are dequantized with one correctly rounded IEEE multiplication per element;
* requantization between layers is ``(acc * m + 2**(s-1)) >> s`` in int64, then a clip
  (|acc| < 2**24 + 2**31 and |m| < 2**31, so the product stays inside int64);
* the last accumulator maps to an index through per-channel integer thresholds.

The convolutions run as float32 GEMMs on the BLAS NumPy ships with, because no integer GEMM
in NumPy is fast enough (int64 matmul is a naive loop, about 50x slower here). That is exact,
not approximate: the converter bounds every layer so that, for each output channel,
``sum(|w|) * max|a| < 2**24`` (checked again by :meth:`IntegerPrior.validate` on load).
Every product and every partial sum of any subset of products is then an integer of
magnitude below 2**24, which float32 represents exactly, so each addition is exact whatever
the summation order, blocking, FMA use or thread count, and the GEMM returns the integer sum.

NumPy only: this module is part of the torch-free runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError
from .npzfile import read_npz

#: Largest integer float32 holds exactly (and every integer below it).
EXACT_FLOAT32 = 1 << 24
#: Multipliers and shifts stay small enough that ``acc * m`` cannot leave int64.
MAX_MULTIPLIER = 1 << 31
MAX_BIAS = 1 << 31
MAX_SHIFT = 62
#: the index lookup table spans 0..thresholds[-1]; this caps its memory
MAX_LOOKUP = 1 << 22
#: |ẑ| beyond this is clipped before the input stage (ẑ is the integer z symbol; real ones
#: are within a few hundred, and the clip keeps ``z * gain`` inside int64).
Z_CLIP = 1 << 24

CONV, DECONV = 0, 1
_KIND_NAMES = {CONV: "conv", DECONV: "deconv"}


@dataclass(frozen=True)
class IntegerLayer:
    """One convolution of the scale path, integers only.

    ``weight`` is (Cout, Cin, k, k) for a convolution and (Cin, Cout, k, k) for a transposed
    one (torch's layouts). ``input_max`` bounds the magnitude of the layer's input; the
    layer's accumulator is ``conv(input, weight) + bias``. It is requantized with
    ``multiplier_pos`` (acc ≥ 0) or ``multiplier_neg`` (acc < 0: the leaky slope) and
    ``shift``: a hidden layer's to the next layer's input, the last layer's to the common
    unit of the index thresholds.
    """

    kind: int
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    padding: int
    output_padding: int
    input_max: int
    multiplier_pos: np.ndarray
    multiplier_neg: np.ndarray
    shift: int

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0] if self.kind == CONV else self.weight.shape[1])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1] if self.kind == CONV else self.weight.shape[0])

    def l1_per_output(self) -> np.ndarray:
        """Σ|w| over everything that feeds one output channel (an upper bound per output element)."""
        axes = (1, 2, 3) if self.kind == CONV else (0, 2, 3)
        return np.abs(self.weight.astype(np.int64)).sum(axis=axes)


@dataclass(frozen=True)
class IntegerPrior:
    """ẑ (integer symbols, (C, h, w)) → means (float32) and scale indices (uint16) of y, (M, H, W).

    The last layer has 2M output channels, scales first (as the float graph's ``chunk(2)``).
    The scale channels are requantized to one common unit and mapped to indices through
    ``thresholds``; the mean channels are dequantized by one IEEE multiplication by
    ``mean_unit``, which is correctly rounded everywhere, so the means are bit-identical too.
    """

    #: input stage: ``a0 = clip((z * input_gain + input_offset + round) >> input_shift)``
    input_gain: np.ndarray
    input_offset: np.ndarray
    input_shift: int
    layers: tuple[IntegerLayer, ...]
    #: (K-1,) int64, non-decreasing, in the common unit: index = #{j : thresholds[j] <= v}
    thresholds: np.ndarray
    #: (M,) float64: the real value of one accumulator unit of each mean channel
    mean_unit: np.ndarray
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_scales(self) -> int:
        return int(self.thresholds.size) + 1

    @property
    def latent_channels(self) -> int:
        return self.layers[-1].out_channels // 2

    # --- the computation ------------------------------------------------------------------
    def input_stage(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if z.ndim != 3 or z.shape[0] != self.input_gain.size:
            raise ValueError(f"z must have shape ({self.input_gain.size}, h, w), got {z.shape}")
        if not (np.issubdtype(z.dtype, np.integer) or np.array_equal(z, np.round(z))):
            raise ValueError("z must hold integers (the decoded symbols)")
        z = np.clip(z, -Z_CLIP, Z_CLIP).astype(np.int64)
        a = _round_shift(z * self.input_gain.reshape(-1, 1, 1) + self.input_offset.reshape(-1, 1, 1), self.input_shift)
        lim = self.layers[0].input_max
        return np.clip(a, -lim, lim, out=a)

    def _plans(self, gemm_dtype: Any) -> list:
        key = np.dtype(gemm_dtype).name
        if key not in self._cache:
            self._cache[key] = [_plan_layer(layer, gemm_dtype) for layer in self.layers]
        return self._cache[key]

    def _lookup(self) -> np.ndarray:
        if "lut" not in self._cache:
            self._cache["lut"] = np.searchsorted(self.thresholds, np.arange(int(self.thresholds[-1]) + 1),
                                                 side="right").astype(np.uint16)
        return self._cache["lut"]

    def accumulators(self, z: np.ndarray, gemm_dtype: Any = np.float32) -> np.ndarray:
        """The last layer's integer accumulators (2M, H, W), int64.

        ``gemm_dtype`` (float32, float64 or int64) only changes the speed: by the bound in the
        module doc all three give the same integers. Tests use that to prove it.
        """
        if np.dtype(gemm_dtype) not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)):
            raise ValueError("gemm_dtype must be float32, float64 or int64")
        a = self.input_stage(z)
        plans = self._plans(gemm_dtype)
        for i, layer in enumerate(self.layers):
            acc = _run_layer(layer, a, gemm_dtype, plans[i])
            if i + 1 == len(self.layers):
                return acc
            limit = self.layers[i + 1].input_max
            a = _requantize(acc, layer, -limit, limit)
        raise AssertionError("unreachable")

    def parameters_from_accumulators(self, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.latent_channels
        lut = self._lookup()
        v = _requantize(acc[:m], self.layers[-1], 0, lut.size - 1, channels=slice(0, m))
        means = (acc[m:].astype(np.float64) * self.mean_unit.reshape(-1, 1, 1)).astype(np.float32)
        return means, lut[v]

    def parameters(self, z: np.ndarray, gemm_dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
        """ẑ → (means, scale indices), identical on every platform, thread count and summation order."""
        return self.parameters_from_accumulators(self.accumulators(z, gemm_dtype))

    def scale_indices(self, z: np.ndarray, gemm_dtype: Any = np.float32) -> np.ndarray:
        return self.parameters(z, gemm_dtype)[1]

    def with_hidden_channels_permuted(self, seed: int) -> "IntegerPrior":
        """The same function with every hidden layer's channels reordered, so each GEMM sums in
        another order: benchmarks/desync.py and the tests use it to show order does not matter."""
        rng = np.random.default_rng(seed)
        layers = list(self.layers)
        perm = np.arange(self.input_gain.size)  # z's channel order is the stream's; hidden ones are free
        for i, layer in enumerate(layers):
            w = layer.weight[:, perm] if layer.kind == CONV else layer.weight[perm]
            layer = replace(layer, weight=np.ascontiguousarray(w))
            if i + 1 < len(layers):
                perm = rng.permutation(layer.out_channels)
                w = layer.weight[perm] if layer.kind == CONV else layer.weight[:, perm]
                layer = replace(layer, weight=np.ascontiguousarray(w), bias=layer.bias[perm],
                                multiplier_pos=layer.multiplier_pos[perm], multiplier_neg=layer.multiplier_neg[perm])
            layers[i] = layer
        return replace(self, layers=tuple(layers), _cache={})

    # --- validation and storage -----------------------------------------------------------
    def validate(self, num_scales: int | None = None, latent_channels: int | None = None,
                 hyper_channels: int | None = None) -> "IntegerPrior":
        """Refuse a prior whose sums could leave float32's exact range or int64; check shapes."""
        if not self.layers:
            raise BundleError("integer prior has no layers")
        for name in ("input_gain", "input_offset"):
            arr = getattr(self, name)
            if arr.dtype != np.int64 or arr.ndim != 1:
                raise BundleError(f"integer prior: {name} must be a 1-D int64 array")
        if self.input_gain.shape != self.input_offset.shape:
            raise BundleError("integer prior: input_gain and input_offset differ in length")
        if not 0 <= self.input_shift <= MAX_SHIFT:
            raise BundleError(f"integer prior: input_shift {self.input_shift} outside 0..{MAX_SHIFT}")
        if np.abs(self.input_gain).max(initial=0) * Z_CLIP + np.abs(self.input_offset).max(initial=0) >= 1 << 62:
            raise BundleError("integer prior: input stage could overflow int64")
        channels = self.input_gain.size
        for i, layer in enumerate(self.layers):
            where = f"integer prior layer {i}"
            if layer.kind not in _KIND_NAMES:
                raise BundleError(f"{where}: unknown kind {layer.kind}")
            if layer.weight.ndim != 4 or layer.weight.shape[2] != layer.weight.shape[3]:
                raise BundleError(f"{where}: weight must be (out|in, in|out, k, k), got {layer.weight.shape}")
            if layer.in_channels != channels:
                raise BundleError(f"{where}: takes {layer.in_channels} channels, gets {channels}")
            if layer.weight.dtype not in (np.int8, np.int16, np.int32) or layer.bias.dtype != np.int64:
                raise BundleError(f"{where}: weights must be int8/16/32 and the bias int64")
            if layer.bias.shape != (layer.out_channels,):
                raise BundleError(f"{where}: bias has shape {layer.bias.shape}, expected ({layer.out_channels},)")
            if not (1 <= layer.stride <= 8 and 0 <= layer.padding < layer.weight.shape[2]
                    and (layer.output_padding == 0 if layer.kind == CONV else 0 <= layer.output_padding < layer.stride)):
                raise BundleError(f"{where}: stride/padding out of range")
            if not 1 <= layer.input_max < EXACT_FLOAT32:
                raise BundleError(f"{where}: input_max {layer.input_max} out of range")
            worst = int(layer.l1_per_output().max()) * layer.input_max
            if worst >= EXACT_FLOAT32:
                raise BundleError(f"{where}: sum(|w|)*max|a| = {worst} reaches 2**24, so float32 sums would "
                                  "not be exact; the prior was not converted by edge-sdk")
            if np.abs(layer.bias).max(initial=0) >= MAX_BIAS:
                raise BundleError(f"{where}: bias out of range")
            # hidden layers requantize to the next input, the last one to the index's common unit
            for m in (layer.multiplier_pos, layer.multiplier_neg):
                if m is None or m.dtype != np.int64 or m.shape != (layer.out_channels,):
                    raise BundleError(f"{where}: multipliers must be int64 of shape ({layer.out_channels},)")
                if np.abs(m).max(initial=0) >= MAX_MULTIPLIER:
                    raise BundleError(f"{where}: multiplier out of range")
            if np.any(layer.multiplier_neg < 0) or np.any(layer.multiplier_neg > layer.multiplier_pos):
                raise BundleError(f"{where}: needs 0 <= multiplier_neg <= multiplier_pos (a leaky slope in [0, 1])")
            if not 0 <= layer.shift <= MAX_SHIFT - 22:
                raise BundleError(f"{where}: shift out of range")
            channels = layer.out_channels
        if self.thresholds.dtype != np.int64 or self.thresholds.ndim != 1 or self.thresholds.size < 1:
            raise BundleError("integer prior: thresholds must be a non-empty 1-D int64 array")
        if np.any(np.diff(self.thresholds) < 0) or self.thresholds[0] < 0 or self.thresholds[-1] >= MAX_LOOKUP:
            raise BundleError(f"integer prior: thresholds must be non-decreasing within 0..{MAX_LOOKUP - 1}")
        if channels % 2:
            raise BundleError(f"integer prior: the last layer gives {channels} channels, not scales plus means")
        if (self.mean_unit.dtype != np.float64 or self.mean_unit.shape != (channels // 2,)
                or not np.all(np.isfinite(self.mean_unit)) or np.any(self.mean_unit <= 0)):
            raise BundleError(f"integer prior: mean_unit must be {channels // 2} positive finite float64 values")
        if num_scales is not None and self.num_scales != num_scales:
            raise BundleError(f"integer prior maps to {self.num_scales} scales, the tables hold {num_scales}")
        if latent_channels is not None and channels != 2 * latent_channels:
            raise BundleError(f"integer prior gives {channels // 2} channels, the latent has {latent_channels}")
        if hyper_channels is not None and self.input_gain.size != hyper_channels:
            raise BundleError(f"integer prior takes {self.input_gain.size} z channels, the model has {hyper_channels}")
        return self

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "input_gain": self.input_gain, "input_offset": self.input_offset,
            "input_shift": np.array(self.input_shift, dtype=np.int64),
            "num_layers": np.array(len(self.layers), dtype=np.int64),
            "thresholds": self.thresholds,
            "mean_unit": self.mean_unit,
        }
        for i, layer in enumerate(self.layers):
            arrays[f"layer{i}_weight"] = layer.weight
            arrays[f"layer{i}_bias"] = layer.bias
            arrays[f"layer{i}_geometry"] = np.array(
                [layer.kind, layer.stride, layer.padding, layer.output_padding, layer.input_max, layer.shift], dtype=np.int64)
            arrays[f"layer{i}_multiplier_pos"] = layer.multiplier_pos
            arrays[f"layer{i}_multiplier_neg"] = layer.multiplier_neg
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any) -> "IntegerPrior":
        try:
            layers = []
            for i in range(int(arrays["num_layers"])):
                kind, stride, padding, output_padding, input_max, shift = (int(v) for v in arrays[f"layer{i}_geometry"])
                layers.append(IntegerLayer(
                    kind=kind, weight=np.asarray(arrays[f"layer{i}_weight"]), bias=np.asarray(arrays[f"layer{i}_bias"]),
                    stride=stride, padding=padding, output_padding=output_padding, input_max=input_max,
                    multiplier_pos=np.asarray(arrays[f"layer{i}_multiplier_pos"]),
                    multiplier_neg=np.asarray(arrays[f"layer{i}_multiplier_neg"]),
                    shift=shift))
            return cls(input_gain=np.asarray(arrays["input_gain"]), input_offset=np.asarray(arrays["input_offset"]),
                       input_shift=int(arrays["input_shift"]), layers=tuple(layers),
                       thresholds=np.asarray(arrays["thresholds"]), mean_unit=np.asarray(arrays["mean_unit"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"integer prior arrays are incomplete or malformed ({exc!r})") from exc

    def save(self, path: str | Path) -> None:
        """Write a compressed ``.npz`` (plain arrays, no pickles). Callers write to a temporary name first."""
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "IntegerPrior":
        return cls.from_arrays(read_npz(path, BundleError, "an integer prior"))


def _round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """round(x / 2**shift), halves up, in int64 (>> on int64 is an arithmetic shift: floor)."""
    if shift == 0:
        return x
    x += 1 << (shift - 1)
    x >>= shift
    return x


def _requantize(acc: np.ndarray, layer: IntegerLayer, lo: int, hi: int, channels: slice = slice(None)) -> np.ndarray:
    # leaky ReLU as a max: with 0 <= m_neg <= m_pos (validated), acc*m_pos wins for acc >= 0
    # and acc*m_neg for acc < 0; twice as fast as masking in NumPy
    x = acc * layer.multiplier_pos[channels].reshape(-1, 1, 1)
    np.maximum(x, acc * layer.multiplier_neg[channels].reshape(-1, 1, 1), out=x)
    return np.clip(_round_shift(x, layer.shift), lo, hi, out=x)


@dataclass(frozen=True)
class _Correlation:
    """One output phase: out[:, t, u] = Σ_{oy, ox} W[oy, ox] @ x_pad[:, oy + stride·t, ox + stride·u]."""

    oys: tuple[int, ...]
    oxs: tuple[int, ...]
    #: per oy: (Cout, len(oxs)·Cin), the taps of that row side by side (zeros where none)
    blocks: tuple[np.ndarray, ...]
    phase: tuple[int, int]  # where the phase's outputs go: out[:, ry::s_out, rx::s_out]


def _correlation(taps: dict[tuple[int, int], np.ndarray], phase: tuple[int, int], dtype: Any) -> _Correlation:
    oys = tuple(sorted({oy for oy, _ in taps}))
    oxs = tuple(sorted({ox for _, ox in taps}))
    cout, cin = next(iter(taps.values())).shape
    zero = np.zeros((cout, cin), dtype=dtype)
    blocks = tuple(np.ascontiguousarray(np.concatenate([taps.get((oy, ox), zero) for ox in oxs], axis=1))
                   for oy in oys)
    return _Correlation(oys, oxs, blocks, phase)


def _plan_layer(layer: IntegerLayer, dtype: Any) -> tuple[tuple[int, int], list[_Correlation], int]:
    """(input padding top/left, correlations, output stride) that compute ``layer``.

    A transposed convolution becomes stride² ordinary ones (polyphase): output phase (ry, rx)
    only ever sees kernel taps ky ≡ ry + p (mod stride), so no zeros are inserted or multiplied.
    """
    w = layer.weight.astype(dtype)
    k, s, p = layer.weight.shape[2], layer.stride, layer.padding
    if layer.kind == CONV:
        taps = {(ky, kx): w[:, :, ky, kx] for ky in range(k) for kx in range(k)}
        return (p, p), [_correlation(taps, (0, 0), dtype)], 1
    # for output row o = s·t + r, full row f = o + p takes tap ky from input row (f - ky) / s
    phases = []
    lo = 0
    for ry in range(s):
        for rx in range(s):
            taps = {}
            for ky in range((ry + p) % s, k, s):
                for kx in range((rx + p) % s, k, s):
                    dy, dx = (ry + p - ky) // s, (rx + p - kx) // s  # input offset of output t = 0
                    taps[(dy, dx)] = w[:, :, ky, kx].T
                    lo = max(lo, -dy, -dx)
            phases.append(((ry, rx), taps))
    corr = [_correlation({(dy + lo, dx + lo): m for (dy, dx), m in taps.items()}, phase, dtype)
            for phase, taps in phases]
    return (lo, lo), corr, s


def _correlate(xp: np.ndarray, corr: _Correlation, th: int, tw: int, stride: int) -> np.ndarray:
    """(Cout, th, tw) in xp's dtype. Stride 1 gathers each column offset once and takes the row
    offsets as column ranges of that one matrix, a third of the copying of plain im2col."""
    cin = xp.shape[0]
    if stride == 1:
        y0, y1 = corr.oys[0], corr.oys[-1] + th
        cols = np.empty((len(corr.oxs), cin, y1 - y0, tw), dtype=xp.dtype)
        for j, ox in enumerate(corr.oxs):
            cols[j] = xp[:, y0:y1, ox: ox + tw]
        cols = cols.reshape(len(corr.oxs) * cin, (y1 - y0) * tw)
        acc = None
        for oy, block in zip(corr.oys, corr.blocks):
            part = block @ cols[:, (oy - y0) * tw: (oy - y0 + th) * tw]
            if acc is None:
                acc = part
            else:
                acc += part
        return acc.reshape(-1, th, tw)
    cols = np.empty((len(corr.oys), len(corr.oxs), cin, th, tw), dtype=xp.dtype)
    for i, oy in enumerate(corr.oys):
        for j, ox in enumerate(corr.oxs):
            cols[i, j] = xp[:, oy: oy + stride * (th - 1) + 1: stride, ox: ox + stride * (tw - 1) + 1: stride]
    weights = np.concatenate(corr.blocks, axis=1)
    return (weights @ cols.reshape(-1, th * tw)).reshape(-1, th, tw)


def _run_layer(layer: IntegerLayer, a: np.ndarray, gemm_dtype: Any, plan=None) -> np.ndarray:
    """conv / transposed conv of integer ``a`` (Cin, H, W) → int64 accumulators incl. bias."""
    if plan is None:
        plan = _plan_layer(layer, gemm_dtype)
    (top, left), correlations, out_stride = plan
    k, s, p = layer.weight.shape[2], layer.stride, layer.padding
    cin, h, w = a.shape
    if layer.kind == CONV:
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    else:
        ho, wo = (h - 1) * s - 2 * p + k + layer.output_padding, (w - 1) * s - 2 * p + k + layer.output_padding
    conv_stride = s if layer.kind == CONV else 1
    jobs = []
    need_h, need_w = top + h, left + w
    for corr in correlations:
        ry, rx = corr.phase
        th, tw = -(-(ho - ry) // out_stride), -(-(wo - rx) // out_stride)
        if th > 0 and tw > 0:
            jobs.append((corr, th, tw))
            need_h = max(need_h, corr.oys[-1] + conv_stride * (th - 1) + 1)
            need_w = max(need_w, corr.oxs[-1] + conv_stride * (tw - 1) + 1)
    xp = np.zeros((cin, need_h, need_w), dtype=gemm_dtype)
    xp[:, top: top + h, left: left + w] = a
    out = np.empty((layer.out_channels, ho, wo), dtype=np.int64)
    for corr, th, tw in jobs:
        ry, rx = corr.phase
        out[:, ry::out_stride, rx::out_stride] = _correlate(xp, corr, th, tw, conv_stride)
    out += layer.bias.reshape(-1, 1, 1)
    return out
