"""The integer prior is bit-exact: no dependence on GEMM precision, summation order or threads.

Everything here is NumPy; the converter (torch) is tested in tests/export/bundle/test_integer_prior_export.py.
"""

import dataclasses

import numpy as np
import pytest

from edge_sdk.runtime.errors import BundleError
from edge_sdk.runtime.integer_prior import (
    CONV,
    DECONV,
    EXACT_FLOAT32,
    IntegerLayer,
    IntegerPrior,
    _run_layer,
)

DTYPES = (np.float32, np.float64, np.int64)


def reference_layer(layer: IntegerLayer, a: np.ndarray) -> np.ndarray:
    """Convolution and transposed convolution straight from their definitions, in int64."""
    w = layer.weight.astype(np.int64)
    k, s, p = w.shape[2], layer.stride, layer.padding
    cin, h, wd = a.shape
    a = a.astype(np.int64)
    if layer.kind == CONV:
        ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        xp = np.pad(a, ((0, 0), (p, p), (p, p)))
        out = np.zeros((w.shape[0], ho, wo), np.int64)
        for t in range(ho):
            for u in range(wo):
                patch = xp[:, s * t: s * t + k, s * u: s * u + k]
                out[:, t, u] = np.einsum("oikl,ikl->o", w, patch)
    else:
        ho = (h - 1) * s - 2 * p + k + layer.output_padding
        wo = (wd - 1) * s - 2 * p + k + layer.output_padding
        full = np.zeros((w.shape[1], (h - 1) * s + k + layer.output_padding, (wd - 1) * s + k + layer.output_padding),
                        np.int64)
        for i in range(h):
            for j in range(wd):
                full[:, s * i: s * i + k, s * j: s * j + k] += np.einsum("i,iokl->okl", a[:, i, j], w)
        out = full[:, p: p + ho, p: p + wo]
    return out + layer.bias.reshape(-1, 1, 1)


def random_layer(rng, kind, cin, cout, k, stride, input_max, fill=0.9, padding=None, output_padding=None):
    """Random integer weights using ``fill`` of the float32-exact budget of each output channel."""
    shape = (cout, cin, k, k) if kind == CONV else (cin, cout, k, k)
    w = rng.normal(size=shape)
    axes = (1, 2, 3) if kind == CONV else (0, 2, 3)
    budget = fill * (EXACT_FLOAT32 - 1) / input_max
    w = np.trunc(w / np.abs(w).sum(axis=axes, keepdims=True) * budget).astype(np.int32)
    bias = rng.integers(-(1 << 20), 1 << 20, cout)
    m_pos = rng.integers(1 << 10, 1 << 14, cout)
    layer = IntegerLayer(kind, w, bias.astype(np.int64), stride, k // 2 if padding is None else padding,
                         (stride - 1 if kind == DECONV else 0) if output_padding is None else output_padding,
                         input_max, m_pos.astype(np.int64), (m_pos // 100).astype(np.int64), 24)
    return layer


def random_prior(seed=0, hyper=6, latent=5, scales=16):
    rng = np.random.default_rng(seed)
    layers = (
        random_layer(rng, DECONV, hyper, 7, 5, 2, 511),
        random_layer(rng, DECONV, 7, 9, 5, 2, 511),
        random_layer(rng, CONV, 9, 2 * latent, 3, 1, 511),
    )
    last = layers[-1]
    layers = layers[:-1] + (dataclasses.replace(
        last, multiplier_pos=np.concatenate([last.multiplier_pos[:latent], np.zeros(latent, np.int64)]),
        multiplier_neg=np.zeros(2 * latent, np.int64), shift=20),)
    return IntegerPrior(
        input_gain=rng.integers(1 << 18, 1 << 22, hyper).astype(np.int64),
        input_offset=rng.integers(-(1 << 20), 1 << 20, hyper).astype(np.int64), input_shift=20, layers=layers,
        thresholds=np.sort(rng.integers(0, 5000, scales - 1)).astype(np.int64),
        mean_unit=rng.uniform(1e-4, 1e-2, latent)).validate(num_scales=scales, latent_channels=latent,
                                                            hyper_channels=hyper)


@pytest.mark.parametrize("kind,k,stride,padding,output_padding", [
    (CONV, 3, 1, 1, 0), (CONV, 5, 2, 2, 0), (CONV, 3, 2, 0, 0), (CONV, 1, 1, 0, 0),
    (DECONV, 5, 2, 2, 1), (DECONV, 3, 2, 1, 1), (DECONV, 4, 2, 1, 0), (DECONV, 3, 1, 1, 0), (DECONV, 5, 3, 2, 2),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layers_match_the_definition_exactly(kind, k, stride, padding, output_padding, dtype):
    rng = np.random.default_rng(k * 10 + stride)
    layer = random_layer(rng, kind, 6, 5, k, stride, 255, padding=padding, output_padding=output_padding)
    for h, w in ((1, 1), (3, 4), (7, 5)):
        a = rng.integers(-255, 256, (6, h, w))
        np.testing.assert_array_equal(_run_layer(layer, a, dtype), reference_layer(layer, a))


def worst_case_input(layer: IntegerLayer, channel: int, h: int = 3, w: int = 3) -> np.ndarray:
    """For a 1x1 convolution: every input at ±input_max with the sign of its weight, so the
    sum reaches sum(|w|)·input_max, the largest the bound allows."""
    sign = np.sign(layer.weight[channel, :, 0, 0]).astype(np.int64)
    return np.broadcast_to((sign * layer.input_max)[:, None, None], (sign.size, h, w)).copy()


def test_float32_is_exact_up_to_the_bound_and_the_bound_matters():
    rng = np.random.default_rng(3)
    cin = 40
    layer = random_layer(rng, CONV, cin, 2, 1, 1, 2047, fill=1.0)
    layer = dataclasses.replace(layer, bias=np.zeros(2, np.int64))
    worst = int(layer.l1_per_output().max()) * layer.input_max
    assert EXACT_FLOAT32 * 0.99 < worst < EXACT_FLOAT32
    a = worst_case_input(layer, int(np.argmax(layer.l1_per_output())))
    exact = reference_layer(layer, a)
    for dtype in DTYPES:
        np.testing.assert_array_equal(_run_layer(layer, a, dtype), exact)
    # the same arithmetic past the bound: float32 loses the low bits, which is why the bound exists
    big = dataclasses.replace(layer, weight=layer.weight * 3 + np.sign(layer.weight))
    a = worst_case_input(big, 0)
    assert int(np.abs(big.weight[0]).sum()) * big.input_max > EXACT_FLOAT32
    assert not np.array_equal(_run_layer(big, a, np.float32), reference_layer(big, a))


def test_a_prior_beyond_the_bound_is_refused():
    prior = random_prior()
    layer = prior.layers[1]
    heavy = dataclasses.replace(layer, weight=layer.weight * 2)
    with pytest.raises(BundleError, match="2\\*\\*24"):
        dataclasses.replace(prior, layers=(prior.layers[0], heavy, prior.layers[2])).validate()


def test_parameters_do_not_depend_on_gemm_precision_or_summation_order():
    prior = random_prior(1)
    rng = np.random.default_rng(5)
    for shape in ((6, 1, 1), (6, 3, 5), (6, 8, 12)):
        z = rng.integers(-40, 41, shape)
        means, kidx = prior.parameters(z)
        assert means.dtype == np.float32 and kidx.dtype == np.uint16
        assert means.shape == kidx.shape == (5, shape[1] * 4, shape[2] * 4)
        for dtype in DTYPES:
            m2, k2 = prior.parameters(z, dtype)
            np.testing.assert_array_equal(k2, kidx)
            np.testing.assert_array_equal(m2, means)
        for seed in range(3):
            other = prior.with_hidden_channels_permuted(seed)
            assert not np.array_equal(other.layers[1].weight, prior.layers[1].weight)  # really another order
            m3, k3 = other.parameters(z)
            np.testing.assert_array_equal(k3, kidx)
            np.testing.assert_array_equal(m3, means)


def test_parameters_do_not_depend_on_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    prior = random_prior(2)
    z = np.random.default_rng(6).integers(-20, 21, (6, 9, 13))
    results = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            results.append(prior.parameters(z))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0], results[1][0])


def test_index_is_the_count_of_thresholds_at_or_below_the_common_unit_value():
    prior = random_prior(4)
    rng = np.random.default_rng(8)
    acc = rng.integers(-(1 << 24), 1 << 24, (10, 4, 4))
    means, kidx = prior.parameters_from_accumulators(acc)
    last = prior.layers[-1]
    v = acc[:5] * last.multiplier_pos[:5].reshape(-1, 1, 1)
    v = (v + (1 << (last.shift - 1))) >> last.shift
    v = np.clip(v, 0, prior.thresholds[-1])
    np.testing.assert_array_equal(kidx, (v[..., None] >= prior.thresholds).sum(axis=-1))
    np.testing.assert_array_equal(means, (acc[5:] * prior.mean_unit.reshape(-1, 1, 1)).astype(np.float32))


def test_save_load_round_trip_and_damage(tmp_path):
    prior = random_prior(5)
    path = tmp_path / "p.npz"
    prior.save(path)
    back = IntegerPrior.load(path).validate()
    z = np.random.default_rng(1).integers(-5, 6, (6, 2, 3))
    for a, b in zip(prior.parameters(z), back.parameters(z)):
        np.testing.assert_array_equal(a, b)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError):
        IntegerPrior.load(path)
    arrays = prior.to_arrays()
    del arrays["thresholds"]
    with pytest.raises(BundleError, match="malformed"):
        IntegerPrior.from_arrays(arrays)


@pytest.mark.parametrize("change,match", [
    (lambda p: dataclasses.replace(p, thresholds=p.thresholds[::-1].copy()), "non-decreasing"),
    (lambda p: dataclasses.replace(p, mean_unit=-p.mean_unit), "mean_unit"),
    (lambda p: dataclasses.replace(p, input_gain=p.input_gain[:-1]), "differ in length"),
    (lambda p: dataclasses.replace(p, layers=(dataclasses.replace(
        p.layers[0], multiplier_neg=p.layers[0].multiplier_pos * 2),) + p.layers[1:]), "multiplier_neg"),
    (lambda p: dataclasses.replace(p, layers=(dataclasses.replace(
        p.layers[0], weight=p.layers[0].weight.astype(np.float32)),) + p.layers[1:]), "int8/16/32"),
    (lambda p: dataclasses.replace(p, layers=p.layers[1:]), "takes"),
])
def test_malformed_priors_are_refused(change, match):
    with pytest.raises(BundleError, match=match):
        change(random_prior(6)).validate()


def test_wrong_channel_counts_are_refused():
    prior = random_prior(7)
    with pytest.raises(BundleError, match="latent"):
        prior.validate(latent_channels=4)
    with pytest.raises(BundleError, match="scales"):
        prior.validate(num_scales=99)
    with pytest.raises(ValueError, match="shape"):
        prior.parameters(np.zeros((5, 2, 2), np.int64))
    with pytest.raises(ValueError, match="integers"):
        prior.parameters(np.full((6, 2, 2), 0.5))


def test_extreme_z_is_clipped_not_overflowed():
    prior = random_prior(8)
    z = np.full((6, 2, 2), 1 << 40, dtype=np.int64)
    z[::2] *= -1
    means, kidx = prior.parameters(z)
    assert np.all(np.isfinite(means))
    for dtype in (np.float64, np.int64):
        np.testing.assert_array_equal(prior.parameters(z, dtype)[1], kidx)
