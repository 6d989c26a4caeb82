"""The range coder alone: round trips, carries, flush length, invalid input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.runtime.rangecoder import RangeCoderError, RangeDecoder, RangeEncoder


def _random_model(rng, n_symbols, bits):
    freq = rng.integers(1, 1000, n_symbols).astype(np.float64)
    freq = np.maximum(1, np.floor(freq / freq.sum() * (1 << bits))).astype(np.int64)
    freq[np.argmax(freq)] += (1 << bits) - freq.sum()
    return [0, *np.cumsum(freq).tolist()]


@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.sampled_from([1, 8, 16, 24]))
def test_round_trip_random_models(seed, count, bits):
    rng = np.random.default_rng(seed)
    n_symbols = 2 if bits == 1 else int(rng.integers(2, 40))
    models = [_random_model(rng, n_symbols, bits) for _ in range(count)]
    symbols = [int(rng.integers(0, n_symbols)) for _ in range(count)]
    enc = RangeEncoder()
    for s, cdf in zip(symbols, models):
        enc.encode(cdf[s], cdf[s + 1] - cdf[s], bits)
    data = enc.finish()
    dec = RangeDecoder(data)
    assert [dec.decode(cdf, bits) for cdf in models] == symbols


class _CountingEncoder(RangeEncoder):
    carries = 0

    def _propagate_carry(self):
        self.carries += 1
        super()._propagate_carry()


def test_carry_propagates_through_ff_runs():
    # Coding upper-half symbols adds about range/2 to low; about one symbol in
    # 2**9 then overflows the 64-bit window and the carry must ripple back.
    cdf = [0, 1 << 23, 1 << 24]
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 2, 50000).tolist()
    enc = _CountingEncoder()
    for s in symbols:
        enc.encode(cdf[s], cdf[s + 1] - cdf[s], 24)
    data = enc.finish()
    assert enc.carries > 0
    dec = RangeDecoder(data)
    assert [dec.decode(cdf, 24) for _ in symbols] == symbols


def test_flush_is_at_most_one_byte_beyond_the_information():
    # 64 equiprobable bits must fit in 8 bytes plus at most one flush byte.
    rng = np.random.default_rng(2)
    enc = RangeEncoder()
    for bit in rng.integers(0, 2, 64):
        enc.encode_bit(int(bit))
    assert len(enc.finish()) <= 9
    assert RangeEncoder().finish() == b""


@given(st.lists(st.integers(0, 2**40 - 2), min_size=1, max_size=30))
def test_exp_golomb_round_trip(values):
    enc = RangeEncoder()
    for v in values:
        enc.encode_uint(v)
    dec = RangeDecoder(enc.finish())
    assert [dec.decode_uint() for _ in values] == values


def test_decoder_rejects_value_outside_interval():
    # [r * 2**P, range) is the truncation gap no encoder ever lands in.
    dec = RangeDecoder(b"")
    dec.range = (1 << 56) + 5
    dec.value = (1 << 56) + 2  # r * 2**24 == 2**56 <= value < range
    with pytest.raises(RangeCoderError):
        dec.decode([0, 1 << 23, 1 << 24], 24)
