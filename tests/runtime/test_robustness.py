"""Damaged input: every byte flip and every truncation ends in a valid prefix decode or a BitstreamError.

"Valid prefix decode" means the decoder stops at some level and its estimate
equals a clean decode of that level; nothing else (no other exception, no
garbage, no hang) is acceptable.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import make_latent, prior_of
from edge_sdk.runtime import BitstreamError, ChunkSchedule, LatentDecoder, encode_latent, level_boundaries


@pytest.fixture(scope="module")
def small(tables):
    y, means, kidx, z = make_latent(tables, (3, 4, 4), seed=20, sigma_range=(0.3, 30.0))
    y = y.copy()
    y[0, 0, 0] += 5000.0  # exercise the escape chunk too
    data = encode_latent(y, means, kidx, z, tables, schedule=ChunkSchedule(target_levels=12, framing_budget=1.0))
    clean = LatentDecoder(tables, prior=prior_of(means, kidx))
    by_level = []
    for end in level_boundaries(data):
        clean.feed(data[clean.bytes_received : end])
        by_level.append(clean.y_hat())
    return data, means, kidx, by_level


def _decode_damaged(tables, data, means, kidx, by_level, chunked=False):
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    try:
        if chunked:
            for i in range(0, len(data), 7):
                dec.feed(data[i : i + 7])
        else:
            dec.feed(data)
    except BitstreamError:
        pass
    if dec.ready:  # whatever was decoded must be exactly a clean level
        np.testing.assert_array_equal(dec.y_hat(), by_level[dec.level])
    return dec


def test_stream_is_small_enough_to_sweep(small):
    data, *_ = small
    assert 60 < len(data) < 1500


def test_every_truncation(tables, small):
    data, means, kidx, by_level = small
    ends = level_boundaries(data)
    for cut in range(len(data) + 1):
        dec = _decode_damaged(tables, data[:cut], means, kidx, by_level)
        if cut >= ends[0]:
            assert dec.level == max(j for j, e in enumerate(ends) if e <= cut)


@pytest.mark.parametrize("chunked", [False, True])
def test_every_byte_flip(tables, small, chunked):
    data, means, kidx, by_level = small
    rng = np.random.default_rng(0)
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= int(rng.integers(1, 256))
        dec = _decode_damaged(tables, bytes(damaged), means, kidx, by_level, chunked)
        assert not dec.complete, f"flip at {offset} went unnoticed"


@given(st.data())
def test_random_multi_byte_damage(tables, small, data):
    stream, means, kidx, by_level = small
    damaged = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(damaged) - 1))
        damaged[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    _decode_damaged(tables, bytes(damaged[:cut]), means, kidx, by_level)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(tables, blob):
    dec = LatentDecoder(tables)
    try:
        dec.feed(blob)
    except BitstreamError:
        pass
