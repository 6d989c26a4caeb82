"""Trit-plane codec behaviour: lossless, progressive, efficient, and strict about its inputs."""

import dataclasses

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import make_latent, prior_of, priority_for
from edge_sdk.runtime import (
    BundleMismatchError,
    ChunkSchedule,
    CorruptChunkError,
    CorruptStreamError,
    ForeignStreamError,
    LatentDecoder,
    Ordering,
    PriorMismatchError,
    StreamInfo,
    TableMismatchError,
    TrailingBytesError,
    TruncatedStreamError,
    decode_stream,
    encode_latent,
    level_boundaries,
    read_header,
    truncate_to_level,
)
from edge_sdk.runtime import BitstreamError
from edge_sdk.runtime.errors import LimitError
from edge_sdk.runtime import bitstream as bs
from edge_sdk.runtime.codec import plane_cuts, read_layout
from edge_sdk.runtime.coders import PlaneState, get_coder
from edge_sdk.runtime.tables import POW3, EntropyTables, laplace_z_tables


def _residual(y, means):
    return np.rint(y.astype(np.float64) - means)


# ---------------------------------------------------------------- lossless


@pytest.mark.parametrize("ordering", list(Ordering))
def test_full_depth_is_lossless(tables, ordering):
    y, means, kidx, z = make_latent(tables, (12, 9, 7), seed=1)
    priority = priority_for(ordering, 12)
    data = encode_latent(y, means, kidx, z, tables, ordering=ordering, channel_priority=priority)
    dec = decode_stream(data, tables, prior_of(means, kidx), channel_priority=priority)
    assert dec.complete and not dec.needs_more
    assert np.array_equal(dec.residual(), _residual(y, means))
    assert np.array_equal(dec.z, z)
    np.testing.assert_allclose(dec.y_hat(), means + _residual(y, means), rtol=0, atol=1e-3)


def test_extreme_residuals_scales_and_z_are_escaped_not_clipped(tables):
    y, means, kidx, z = make_latent(tables, (4, 5, 5), seed=2)
    y, z, kidx = y.copy(), z.copy(), kidx.copy()
    kidx[0] = 0  # smallest scale: one trit per element
    kidx[1] = tables.trit.num_scales - 1  # largest scale: most planes
    y[0, 0, 0] = means[0, 0, 0] + 123456.0
    y[0, 0, 1] = means[0, 0, 1] - 2.0**37
    y[1, 2, 2] = means[1, 2, 2] + 1e7
    y[2, 1, 1] = means[2, 1, 1] - 1.4  # exactly at the edge of a small-scale range is legal too
    z[0, 0, 0] = 10**6
    z[1, 1, 1] = -(10**6)
    data = encode_latent(y, means, kidx, z, tables)
    dec = decode_stream(data, tables, prior_of(means, kidx))
    assert np.array_equal(dec.residual(), _residual(y, means))
    assert np.array_equal(dec.z, z)
    assert dec.table.lengths[-1] > bs.ESCAPE_CHECK_BYTES  # the escape chunk carries the overflows


def test_batch_axis_and_dtypes_are_accepted(tables):
    y, means, kidx, z = make_latent(tables, (3, 4, 4), seed=3)
    data = encode_latent(y[None].astype(np.float64), means[None], kidx[None].astype(np.int32), z[None], tables)
    dec = decode_stream(data, tables, prior_of(means, kidx))
    assert np.array_equal(dec.residual(), _residual(y, means))


# -------------------------------------------------------------- progressive


def test_latent_distortion_never_increases_over_levels(tables):
    y, means, kidx, z = make_latent(tables, (32, 16, 16), seed=4, sigma_range=(0.2, 20.0))
    data = encode_latent(y, means, kidx, z, tables, schedule=ChunkSchedule(target_levels=64))
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    mse = []
    ends = level_boundaries(data)
    for end in sorted(set(ends)):
        dec.feed(data[dec.bytes_received : end])
        assert dec.level == max(j for j, e in enumerate(ends) if e == end)
        mse.append(float(np.mean((dec.y_hat("conditional_mean") - y) ** 2)))
    assert all(b <= a + 1e-9 for a, b in zip(mse, mse[1:])), mse
    assert mse[-1] < 0.26 and mse[0] > 10 * mse[-1]


def test_midpoint_reconstruction_is_the_quantiser_grid_at_plane_ends(tables):
    """After m planes are dropped, the midpoint rule gives means + 3^m·round(r / 3^m): the grid a
    quantiser with step 3^m gives (what the adapter trains on), exact at full depth."""
    y, means, kidx, z = make_latent(tables, (16, 8, 8), seed=13, sigma_range=(0.5, 20.0))
    data = encode_latent(y, means, kidx, z, tables)
    _, table = read_layout(data)
    ends = level_boundaries(data)
    r = _residual(y, means)
    st = PlaneState.start(kidx, tables.trit)
    plane_ends = np.cumsum(table.chunks_per_plane)
    for dropped in range(1, table.num_planes):
        level = int(plane_ends[table.num_planes - 1 - dropped])
        dec = decode_stream(data[: ends[level]], tables, prior_of(means, kidx))
        step = 3.0**dropped
        inside = (st.plane_len.reshape(r.shape) >= dropped) & (np.abs(r) < (3.0 ** st.plane_len.reshape(r.shape) - 1) / 2)
        grid = step * np.round(r / step)
        np.testing.assert_array_equal(dec.residual_estimate("midpoint")[inside], grid[inside])
        assert np.mean((dec.y_hat() - y) ** 2) < np.mean((decode_stream(data[: ends[0]], tables, prior_of(means, kidx)).y_hat() - y) ** 2)
    full = decode_stream(data, tables, prior_of(means, kidx))
    np.testing.assert_array_equal(full.residual_estimate("midpoint"), full.residual_estimate("conditional_mean"))
    with pytest.raises(ValueError, match="reconstruction"):
        LatentDecoder(tables, reconstruction="mode")


def test_every_chunk_prefix_decodes_and_matches_streaming(tables):
    y, means, kidx, z = make_latent(tables, (8, 6, 6), seed=5)
    data = encode_latent(y, means, kidx, z, tables, schedule=ChunkSchedule(target_levels=24, framing_budget=1.0))
    streaming = LatentDecoder(tables, prior=prior_of(means, kidx))
    ends = level_boundaries(data)
    assert len(ends) > 10 and ends[-1] == len(data)
    assert all(b > a for a, b in zip(ends, ends[1:]))  # every chunk holds at least its check
    for level, end in enumerate(ends):
        reached = level
        prefix = decode_stream(truncate_to_level(data, level), tables, prior_of(means, kidx))
        assert prefix.level == reached and prefix.complete == (reached == len(ends) - 1)
        while streaming.bytes_received < end:  # one byte at a time
            streaming.feed(data[streaming.bytes_received : streaming.bytes_received + 1])
        assert streaming.level == reached
        np.testing.assert_array_equal(prefix.y_hat(), streaming.y_hat())
    assert streaming.complete and not streaming.needs_more


def test_512x768_latent_gets_at_least_50_levels(tables):
    y, means, kidx, z = make_latent(tables, (320, 32, 48), seed=6, sigma_range=(0.1, 8.0))
    _, table = read_layout(encode_latent(y, means, kidx, z, tables))
    assert table.num_levels - 1 >= 50  # not counting the escape chunk


def test_sigma_ordering_codes_larger_scales_first(tables):
    y, means, kidx, z = make_latent(tables, (6, 6, 6), seed=7)
    st = PlaneState.start(kidx, tables.trit)
    order = get_coder("fast").plane_order(st.num_planes - 1, st, tables.trit, by_sigma=True)
    keys = kidx.ravel()[order]
    assert np.all(np.diff(keys.astype(int)) <= 0)
    ties = keys[:-1] == keys[1:]
    assert np.all(np.diff(order)[ties] > 0)  # stable: equal keys keep element order


# --------------------------------------------------------------- efficiency


class Chunk(NamedTuple):
    symbols: int
    length: int  # payload and check
    check: int


def _replay_ideal_bits(tables, data, means, kidx, y):
    """Ideal bits (-log2 of the model's trit frequencies) of every chunk, replaying the encoder."""
    h, table = read_layout(data)
    coder = get_coder("fast")
    st = PlaneState.start(kidx, tables.trit)
    centre = (POW3[st.plane_len] - 1) // 2
    s_val = np.clip(_residual(y, means).astype(np.int64).ravel() + centre, 0, 2 * centre)
    ideal, index = [], 0
    for plane, count in enumerate(table.chunks_per_plane):
        order = coder.plane_order(plane, st, tables.trit, h.ordering == Ordering.SIGMA)
        ends = plane_cuts(coder.plane_cumulative_costs(order, st, tables.trit), count)
        trits, freqs = coder.plane_symbols(order, st, tables.trit, s_val)
        bits = tables.trit.precision_bits - np.log2(freqs)
        start = 0
        for end in ends:
            chunk = Chunk(symbols=int(end) - start, length=table.lengths[index], check=table.check_bytes(index))
            ideal.append((plane, chunk, float(bits[start:end].sum())))
            start = int(end)
            index += 1
        coder.apply(order, 0, order.size, trits, st)
    return ideal


def test_rate_within_half_percent_of_ideal_on_large_planes(tables):
    y, means, kidx, z = make_latent(tables, (320, 32, 48), seed=8)
    data = encode_latent(y, means, kidx, z, tables)
    per_plane: dict[int, list] = {}
    for plane, entry, bits in _replay_ideal_bits(tables, data, means, kidx, y):
        acc = per_plane.setdefault(plane, [0, 0.0, 0])
        acc[0] += entry.symbols
        acc[1] += bits
        acc[2] += 8 * (entry.length - entry.check)
    large = {p: v for p, v in per_plane.items() if v[0] >= 100_000}
    assert large, "test latent should have planes of at least 1e5 symbols"
    for plane, (symbols, ideal, actual) in large.items():
        assert actual <= 1.005 * ideal, f"plane {plane}: {actual} bits vs ideal {ideal:.0f}"


def test_per_chunk_framing_is_its_length_its_check_and_one_flush_byte(tables):
    y, means, kidx, z = make_latent(tables, (64, 16, 24), seed=9)
    data = encode_latent(y, means, kidx, z, tables, schedule=ChunkSchedule(target_levels=128, framing_budget=1.0))
    chunks = _replay_ideal_bits(tables, data, means, kidx, y)
    assert len(chunks) > 60
    run = 0
    for plane, chunk, bits in chunks:
        # a check closes each run of about CHECK_RUN_BYTES and each plane, sized to the run (2.2)
        run += chunk.length
        if chunk.check:
            assert chunk.check == (1 if run < 256 else 2 if run < 4096 else 4)
            run = 0
        else:
            assert run < bs.CHECK_RUN_BYTES
        overhead = chunk.length - bits / 8 + bs.varint_size(chunk.length)
        assert overhead <= bs.varint_size(chunk.length) + chunk.check + 1.01, f"plane {plane}: {overhead:.2f} bytes"
    assert sum(c.check for _, c, _ in chunks) < len(chunks) / 2  # most chunks carry none


def test_a_failed_run_check_undoes_the_whole_run(tables):
    y, means, kidx, z = make_latent(tables, (64, 16, 24), seed=9)
    data = encode_latent(y, means, kidx, z, tables, schedule=ChunkSchedule(target_levels=128, framing_budget=1.0))
    _, table = read_layout(data)
    closing = [j for j, c in enumerate(table.checks) if c]
    # a run of at least three chunks, none of them the first of its plane's run
    first, last = next((a + 1, b) for a, b in zip(closing, closing[1:]) if b - a >= 3)
    ends = level_boundaries(data)
    damaged = bytearray(data)
    damaged[ends[first]] ^= 0x5A  # the first byte of chunk `first`, which carries no check
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    dec.feed(bytes(damaged[: ends[last]]))  # every chunk of the run but the closing one
    assert dec.level == last and dec.verified_level == first
    with pytest.raises(CorruptChunkError, match=f"chunks {first}..{last}") as err:
        dec.feed(bytes(damaged[ends[last]: ends[last + 1]]))
    assert err.value.chunk == last and dec.level == dec.verified_level == first
    clean = LatentDecoder(tables, prior=prior_of(means, kidx))
    clean.feed(data[: ends[first]])
    np.testing.assert_array_equal(dec.residual_estimate(), clean.residual_estimate())


@pytest.mark.parametrize("shape, levels", [((192, 14, 19), 16), ((192, 32, 48), 50)])
def test_framing_stays_within_its_budget(tables, shape, levels):
    # photo-like latents: most elements small, a few large (a 224-px and a Kodak-sized image)
    y, means, kidx, z = make_latent(tables, shape, seed=12, sigma_range=(0.11, 6.0))
    data = encode_latent(y, means, kidx, z, tables)
    h, table = read_layout(data)
    assert h.size <= 32  # level 0 is z plus at most 32 bytes
    assert table.num_levels >= levels
    chunks = _replay_ideal_bits(tables, data, means, kidx, y)
    framing = table.size + sum(c.check for _, c, _ in chunks) + table.check_bytes(table.num_levels - 1)
    y_bytes = len(data) - h.level0_end
    assert framing <= 0.03 * y_bytes, (framing, y_bytes)


# -------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def stream(tables):
    y, means, kidx, z = make_latent(tables, (6, 5, 5), seed=10)
    info = StreamInfo(image_size=(75, 80), padding=(0, 0, 5, 0), quality=3)
    data = encode_latent(y, means, kidx, z, tables, info=info, schedule=ChunkSchedule(8, framing_budget=1.0))
    return data, means, kidx, y


def test_header_round_trips_metadata(tables, stream):
    data, *_ = stream
    h = read_header(data)
    assert (h.codec_id, h.image_size, h.padding, h.quality) == (tables.digest[:4], (75, 80), (0, 0, 5, 0), 3)
    assert h.padded_size == (80, 80)
    assert h.y_shape == (6, 5, 5)


def test_foreign_and_future_streams_are_refused(tables, stream):
    data, means, kidx, _ = stream
    with pytest.raises(ForeignStreamError, match="magic"):
        decode_stream(b"\x89PNG\r\n\x1a\n" + data[8:], tables, prior_of(means, kidx))
    future = bytearray(data)
    future[4] = bs.FORMAT_VERSION + 1
    with pytest.raises(ForeignStreamError, match="version"):
        decode_stream(bytes(future), tables, prior_of(means, kidx))
    for version in (1, 2):
        old = bytearray(data)
        old[4] = version
        with pytest.raises(ForeignStreamError, match=f"version {version}.*re-encode"):
            decode_stream(bytes(old), tables, prior_of(means, kidx))


def test_an_ordering_that_does_not_exist_is_corrupt(tables, stream):
    data, means, kidx, _ = stream
    bad = bytearray(data)
    bad[5] |= 0b110  # ordering 3
    with pytest.raises(CorruptStreamError, match="order"):
        decode_stream(bytes(bad), tables, prior_of(means, kidx))


def test_channel_weighted_streams_need_the_same_priorities(tables):
    y, means, kidx, z = make_latent(tables, (6, 5, 5), seed=4)
    priority = priority_for(Ordering.CHANNEL_WEIGHTED, 6, seed=4)
    with pytest.raises(ValueError, match="channel_priority"):
        encode_latent(y, means, kidx, z, tables, ordering=Ordering.CHANNEL_WEIGHTED)
    with pytest.raises(ValueError, match="one value per latent channel"):
        encode_latent(y, means, kidx, z, tables, ordering=Ordering.CHANNEL_WEIGHTED, channel_priority=priority[:5])
    with pytest.raises(ValueError, match="-8192..8192"):
        encode_latent(y, means, kidx, z, tables, ordering=Ordering.CHANNEL_WEIGHTED, channel_priority=priority * 10)
    data = encode_latent(y, means, kidx, z, tables, ordering=Ordering.CHANNEL_WEIGHTED, channel_priority=priority)
    assert read_header(data).ordering == Ordering.CHANNEL_WEIGHTED
    # a stream written without a bundle names the tables and the priorities
    assert read_header(data).codec_id != tables.digest[:4]
    for wrong in (None, priority + 64, priority[:5]):
        with pytest.raises(TableMismatchError):
            decode_stream(data, tables, prior_of(means, kidx), channel_priority=wrong)
    dec = decode_stream(data, tables, prior_of(means, kidx), channel_priority=priority)
    assert dec.complete and np.array_equal(dec.residual(), _residual(y, means))
    # the other orders ignore priorities
    plain = encode_latent(y, means, kidx, z, tables, ordering=Ordering.EXPECTED_VARIANCE, channel_priority=priority)
    assert plain == encode_latent(y, means, kidx, z, tables, ordering=Ordering.EXPECTED_VARIANCE)


def test_truncated_header_or_z_raise(tables, stream):
    data, means, kidx, _ = stream
    h = read_header(data)
    for cut in (0, 3, 5, h.size - 1):
        with pytest.raises(TruncatedStreamError):
            decode_stream(data[:cut], tables, prior_of(means, kidx))
    with pytest.raises(TruncatedStreamError, match="z section"):
        decode_stream(data[: h.level0_end - 1], tables, prior_of(means, kidx))
    level0 = decode_stream(data[: h.level0_end], tables, prior_of(means, kidx))  # level 0 needs no table
    assert level0.level == 0 and level0.num_levels is None and level0.ready


def test_trailing_bytes_raise_but_keep_the_decode(tables, stream):
    data, means, kidx, y = stream
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    with pytest.raises(CorruptStreamError, match="past the end") as raised:
        dec.feed(data + b"\x00junk")
    assert isinstance(raised.value, TrailingBytesError)
    assert (raised.value.excess, raised.value.stream_size) == (5, len(data))
    assert dec.complete
    assert np.array_equal(dec.residual(), _residual(y, means))


def test_wrong_tables_bundle_or_prior_are_named(tables, stream):
    data, means, kidx, _ = stream
    other = EntropyTables(trit=tables.trit, z=laplace_z_tables([0.7] * tables.z.num_channels))
    with pytest.raises(TableMismatchError):
        decode_stream(data, other, prior_of(means, kidx))
    y, *_ = stream[3:]
    z = np.zeros((tables.z.num_channels, 1, 1), np.int64)
    bundled = encode_latent(y, means, kidx, z, tables, info=StreamInfo(codec_id=b"BNDL"))
    with pytest.raises(BundleMismatchError, match=b"BNDL".hex()):
        decode_stream(bundled, tables, prior_of(means, kidx), expected_codec_id=b"CCCC")
    with pytest.raises(TableMismatchError, match="codec id"):
        decode_stream(bundled, tables, prior_of(means, kidx))
    assert decode_stream(bundled, tables, prior_of(means, kidx), expected_codec_id=b"BNDL").complete
    shifted = kidx.copy()
    shifted.flat[7] = (shifted.flat[7] + 1) % tables.trit.num_scales
    with pytest.raises(PriorMismatchError, match="scale indices"):
        decode_stream(data, tables, prior_of(means, shifted))


def test_corrupt_chunk_is_named_and_state_kept(tables, stream):
    data, means, kidx, _ = stream
    start = level_boundaries(data)[2]
    damaged = bytearray(data)
    damaged[start] ^= 0x40  # first byte of chunk 2
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    with pytest.raises(CorruptChunkError, match="chunk 2") as err:
        dec.feed(bytes(damaged))
    assert err.value.chunk == 2
    assert dec.level == 2
    reference = decode_stream(data[:start], tables, prior_of(means, kidx))
    np.testing.assert_array_equal(dec.y_hat(), reference.y_hat())


def test_non_minimal_varints_are_refused(stream):
    data, *_ = stream
    h = read_header(data)
    z_payload = data[h.size : h.level0_end]
    raw = bytearray(bs.serialize_header(h, z_payload))
    at = bs.FIXED.size  # the first varint: image height 75, one byte
    padded = raw[:at] + bytes([raw[at] | 0x80, 0x00]) + raw[at + 1 :]
    with pytest.raises(CorruptStreamError, match="non-minimal"):
        bs.parse_header(bytes(padded))
    table_at = h.level0_end
    assert data[table_at] < 0x80  # number of planes
    padded = data[:table_at] + bytes([data[table_at] | 0x80, 0x00]) + data[table_at + 1 :]
    with pytest.raises(CorruptStreamError, match="non-minimal"):
        bs.try_parse_table(padded, table_at)


def test_stream_info_is_range_checked():
    for bad in (dict(quality=64), dict(padding=(0, 0, 70000, 0)), dict(padding=(1, 0, 0, 0)),
                dict(image_size=(2**32, 1)), dict(codec_id=b"x")):
        with pytest.raises(ValueError):
            StreamInfo(**bad)


def test_header_limits_stop_memory_bombs(tables, stream):
    data, *_ = stream
    h = read_header(data)
    huge = dataclasses.replace(h, y_shape=(65535, 65535, 65535))
    with pytest.raises(CorruptStreamError, match="exceeds"):
        bs.parse_header(bs.serialize_header(huge, b""))
    dec = LatentDecoder(tables, max_latent_elements=10)
    with pytest.raises(LimitError, match="more than this decoder's limit of 10"):
        dec.feed(data)
    table = bs.serialize_table(bs.LevelTable((60_000, 60_000), (1,) * 120_001))
    with pytest.raises(CorruptStreamError, match="exceed the limit"):
        bs.try_parse_table(table, 0)


def test_a_damaged_level_table_is_caught_by_the_next_check(tables, stream):
    data, means, kidx, _ = stream
    h, table = read_layout(data)
    at = h.level0_end + table.size - 1  # the escape chunk's length
    damaged = bytearray(data)
    damaged[at] ^= 0x01
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    with pytest.raises(BitstreamError):
        dec.feed(bytes(damaged))
    assert dec.level < table.num_levels


@given(costs=st.lists(st.integers(0, 500), min_size=1, max_size=300), count=st.integers(1, 300))
def test_plane_cuts_give_count_non_empty_chunks_in_order(costs, count):
    costs = np.array(costs, np.int64)
    count = min(count, costs.size)
    ends = plane_cuts(np.cumsum(costs), count)
    assert ends.size == count and ends[-1] == costs.size
    assert np.all(np.diff(np.concatenate([[0], ends])) >= 1)
    cum, total = np.cumsum(costs), int(costs.sum())
    for m, end in enumerate(ends[:-1], start=1):  # each cut reaches its share, unless later chunks need room
        assert cum[end - 1] >= total * m // count or end == costs.size - count + m


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda y, m, k, z: (y * np.nan, m, k, z), "NaN"),
        (lambda y, m, k, z: (y, m[:-1], k, z), "must match"),
        (lambda y, m, k, z: (y, m, k + 10_000, z), "scale indices"),
        (lambda y, m, k, z: (y, m, k.astype(float), z), "integers"),
        (lambda y, m, k, z: (y, m, k, z + 0.5), "integer values"),
        (lambda y, m, k, z: (y + 1e12, m, k, z), "below"),
        (lambda y, m, k, z: (y[0], m[0], k[0], z), "shape"),
        (lambda y, m, k, z: (y[:, :0], m[:, :0], k[:, :0], z), "axes"),
    ],
)
def test_encoder_rejects_bad_input_clearly(tables, mutate, message):
    y, means, kidx, z = make_latent(tables, (3, 4, 4), seed=11)
    with pytest.raises(ValueError, match=message):
        encode_latent(*mutate(y, means, kidx, z), tables)


def test_decoded_bits_grow_with_the_level_and_match_the_stream_size(tables):
    from edge_sdk.runtime import LatentDecoder, encode_latent, level_boundaries

    y, means, kidx, z = make_latent(tables, shape=(6, 8, 8), seed=3)
    data = encode_latent(y, means, kidx, z, tables)
    ends = level_boundaries(data)
    dec = LatentDecoder(tables, prior=prior_of(means, kidx))
    dec.feed(data[: ends[0]])
    previous = dec.decoded_bits()
    assert previous.shape == y.shape and np.all(previous == 0)
    fed = ends[0]
    for end in ends[1:]:
        dec.feed(data[fed:end])
        fed = end
        bits = dec.decoded_bits()
        assert np.all(bits >= previous - 1e-9)
        previous = bits
    y_bytes = ends[-1] - ends[0]
    # ideal information of the trits against the bytes that carry them (chunk tables, CRCs and the
    # escape chunk add overhead; the range coder itself stays within a few bytes per chunk)
    assert 0.6 * y_bytes * 8 < previous.sum() <= y_bytes * 8
