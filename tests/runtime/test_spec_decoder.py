"""docs/bitstream.md is enough to write a decoder: an independent decoder written
from the text alone (spec_decoder.py) must agree with the runtime at every level
boundary, reproduce the worked example of section 8, and raise the error classes
of the table in 2.5 on damaged streams."""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import spec_decoder as sd  # noqa: E402
from helpers import make_latent, priority_for  # noqa: E402
from edge_sdk.runtime import (  # noqa: E402
    ChunkSchedule,
    LatentDecoder,
    Ordering,
    StreamInfo,
    decode_stream,
    encode_latent,
)
from edge_sdk.runtime import errors as rt_errors  # noqa: E402
from edge_sdk.runtime.tables import build_trit_tables, default_entropy_tables  # noqa: E402

EXAMPLE_ID = bytes.fromhex("0a1b2c3d")


# ----------------------------------------------------------------- helpers
def spec_arrays(tables):
    t, z = tables.trit, tables.z
    trit = sd.TritArrays(
        cdf=[int(v) for v in t.cdf], cdf_start=[int(v) for v in t.cdf_start],
        plane_len=[int(v) for v in t.plane_len], prio_key=[int(v) for v in t.prio_key],
        node_start=[int(v) for v in t.node_start], precision_bits=int(t.precision_bits),
    )
    zt = sd.ZArrays(
        cdf=[int(v) for v in z.cdf], cdf_start=[int(v) for v in z.cdf_start],
        offset=[int(v) for v in z.offset], precision_bits=int(z.precision_bits),
    )
    return trit, zt


def spec_hash(tables):
    """Section 4.5 from the arrays, with struct instead of numpy's byte views."""
    t, z = tables.trit, tables.z
    ints = lambda a: [int(v) for v in a]  # noqa: E731

    def arr(name, dtype, fmt, values):
        return (name, dtype, struct.pack("<" + fmt * len(values), *values), len(values))

    return sd.tables_hash([
        arr("trit.scales", "<f8", "d", [float(v) for v in t.scales]),
        arr("trit.precision_bits", "<i8", "q", [int(t.precision_bits)]),
        arr("trit.tail_k", "<f8", "d", [float(t.tail_k)]),
        *([arr("trit.uniform_mass", "<f8", "d", [float(t.uniform_mass)])] if t.uniform_mass else []),
        arr("trit.plane_len", "|u1", "B", ints(t.plane_len)),
        arr("trit.cdf", "<u4", "I", ints(t.cdf)),
        arr("trit.cdf_start", "<i8", "q", ints(t.cdf_start)),
        arr("trit.prio_key", "<u2", "H", ints(t.prio_key)),
        arr("trit.node_start", "<i8", "q", ints(t.node_start)),
        arr("z.cdf", "<u4", "I", ints(z.cdf)),
        arr("z.cdf_start", "<i8", "q", ints(z.cdf_start)),
        arr("z.offset", "<i4", "i", ints(z.offset)),
        arr("z.precision_bits", "<i8", "q", [int(z.precision_bits)]),
    ])


_CACHE = {}


def arrays_for(tables):
    key = id(tables)
    if key not in _CACHE:
        _CACHE[key] = (tables, spec_arrays(tables), spec_hash(tables))
    return _CACHE[key][1:]


def spec_decode(data, tables, means, kidx, **kw):
    (trit, zt), digest = arrays_for(tables)
    return sd.decode(data, trit, zt, lambda z, hdr: (means, kidx), tables_digest=digest, **kw)


def rt_decode(data, tables, means, kidx, **kw):
    return decode_stream(data, tables, prior=lambda z, hdr: (means, kidx), **kw)


class Enc:
    """Section 3.1/3.2 encoder, transcribed from the C in the text (for the trace of 8)."""

    def __init__(self):
        self.low, self.range, self.out = 0, sd.MASK64, bytearray()

    def _carry(self):
        i = len(self.out) - 1
        while self.out[i] == 0xFF:
            self.out[i] = 0
            i -= 1
        self.out[i] += 1

    def put(self, start, freq, P):
        r = self.range >> P
        low = (self.low + r * start) & sd.MASK64
        if low < self.low:
            self._carry()
        self.low, self.range = low, r * freq
        while self.range < sd.RENORM:
            self.out.append(self.low >> 56)
            self.low = (self.low << 8) & sd.MASK64
            self.range = (self.range << 8) & sd.MASK64

    def finish(self):
        for m in range(9):
            if m == 0:
                c, value = int(self.low != 0), 0
                ok = ((-self.low) & sd.MASK64) < self.range if c else True
            else:
                mask = (1 << (64 - 8 * m)) - 1
                s = (self.low + mask) & sd.MASK64
                c = int(s < self.low)
                value = s & ~mask & sd.MASK64
                ok = ((value - self.low) & sd.MASK64) < self.range
            if ok:
                break
        if c:
            self._carry()
        for j in range(m):
            self.out.append((value >> (56 - 8 * j)) & 0xFF)
        while self.out and self.out[-1] == 0:
            self.out.pop()
        return bytes(self.out)


# ----------------------------------------------------------------- conventions and tables
def test_crc_varint_and_log2_table():
    assert sd.crc32(b"123456789") == 0xCBF43926
    blob = bytes(range(256)) * 3
    assert sd.crc32(blob[100:], sd.crc32(blob[:100])) == zlib.crc32(blob)
    assert sd.read_varint(bytes([0x96, 0x01]), 0) == (150, 2, True)
    assert sd.read_varint(bytes([0x80, 0x00]), 0) == (0, 2, False)
    with pytest.raises(sd.CorruptStreamError):
        sd.read_varint(bytes([0xFF] * 9 + [0x01]), 0)
    q = sd.LOG2_Q8
    assert q[:10] == [0, 1, 3, 4, 6, 7, 9, 10, 11, 13] and q[-3:] == [254, 255, 255]
    # SPEC: 5.6 says "no entry lies within 10^-3 of a rounding tie"; m = 32 does:
    # 256*log2(1.125) = 43.50080, 8.0e-4 from the tie. The conclusion still holds, since a
    # log2 good to 1e-6 moves 256*log2 by at most 2.6e-4.
    dist = {m: abs(256 * math.log2(1 + m / 256) % 1 - 0.5) for m in range(256)}
    assert min(dist, key=dist.get) == 32 and 7e-4 < dist[32] < 1e-3
    assert min(v for m, v in dist.items() if m != 32) > 1e-3
    from edge_sdk.runtime.tables import LOG2_Q8  # "a port may also copy it from runtime/tables.py"

    assert [int(v) for v in LOG2_Q8] == q


def test_tables_hash_from_the_text(tables):
    t1 = default_entropy_tables(1)
    assert spec_hash(t1).hex() == "2b49235bf3b9b624649e42654ce7b644" == t1.digest.hex()
    assert spec_hash(tables) == tables.digest
    assert int(t1.trit.cdf_start[-1]) == 98504 and int(t1.trit.node_start[-1]) == 49124


# ----------------------------------------------------------------- worked example (8)
EXAMPLE_HEX = """
4544 4754 031a 0a1b 2c3d 1e1c 0204 0102
0201 0101 2c93 2285 4d0c bdaa 0703 0101
0107 0200 0401 cfe2 7012 5bf3 07ff ff80
f27c 5b3e
"""


def example():
    # section 8's tables: the default ones without the uniform mixture of 4.2 step 4 (uniform_mass 0,
    # as in tables made before it), so every number of the example stays small enough to check by hand
    t = dataclasses.replace(default_entropy_tables(1), trit=build_trit_tables(uniform_mass=0.0))
    means = np.array([[[0.5, -0.25], [1.0, 0.0]]], np.float32)
    y = means + np.array([[[-1.25, 3.0], [2.25, 0.25]]], np.float32)
    kidx = np.array([[[20, 0], [40, 5]]])
    z = np.array([[[-1]]])
    info = StreamInfo(codec_id=EXAMPLE_ID, image_size=(30, 28), padding=(0, 0, 2, 4), quality=3)
    return t, means, kidx, encode_latent(y, means, kidx, z, t, info=info)


def test_worked_example():
    t, means, kidx, data = example()
    assert data == bytes.fromhex("".join(EXAMPLE_HEX.split()))
    res = spec_decode(data, t, means, kidx, expected_codec_id=EXAMPLE_ID)
    h = res.header
    assert (h.version, h.mode, h.prior_mode, h.ordering, h.quality) == (3, 0x1A, 0, 1, 3)
    assert h.codec_id == EXAMPLE_ID
    assert (h.image_height, h.image_width, h.pad_bottom, h.pad_right) == (30, 28, 2, 4)
    assert (h.y_shape, h.z_size, h.z_length, h.header_size) == ((1, 2, 2), (1, 1), 1, 28)
    assert h.scale_index_crc == 0x8522932C == zlib.crc32(bytes.fromhex("1400000028000500"))
    assert h.level0_crc == 0xAABD0C4D
    assert res.z == [-1]
    assert (res.num_planes, res.chunks_per_plane, res.lengths, res.table_size) == (3, [1, 1, 1], [2, 2, 4, 7], 8)
    assert res.boundaries == [29, 39, 41, 45, 52]
    assert res.crc_after == [0x22D801E5, 0x7BCB06CF, 0xD009E270, 0x6F456107, 0x3E5B7CF2]
    assert res.plane_costs == {0: [2], 1: [262, 263], 2: [212, 432, 435, 436]}
    assert res.plane_orders == {0: [2], 1: [2, 0], 2: [2, 0, 3, 1]}
    (trit, zt), _ = arrays_for(t)
    assert trit.freqs(40, 0, 0) == (3125, 16770966, 3125) and trit.node_cost(40, 0, 0) == 2
    assert trit.node_cost(40, 1, 1) == 262
    f = trit.freqs(40, 1, 1)
    assert (f[0] + f[1], f[2]) == (14804770, 1972446)
    f = trit.freqs(20, 0, 0)
    assert (f[0], f[1]) == (486, 16776244)
    assert (zt.cdf[31], zt.cdf[32] - zt.cdf[31]) == (1660, 10414)
    # the table of estimates, each to half a unit of its last printed digit
    printed = [
        [(-6.0e-8, 5e-10), 0, (-1.2e-7, 5e-9), 0],
        [(-6.0e-8, 5e-10), 0, (-1.2e-7, 5e-9), 0],
        [(-6.0e-8, 5e-10), 0, (2.2249, 5e-5), 0],
        [-1, 1, 2, 0],
        [-1, 3, 2, 0],
    ]
    assert len(res.estimates) == 5
    for got, want in zip(res.estimates, printed):
        for g, w in zip(got, want):
            v, tol = w if isinstance(w, tuple) else (w, 0.0)
            assert abs(g - v) <= tol, (got, want)
    assert res.residual == [-1, 3, 2, 0]
    for j, end in enumerate(res.boundaries):
        rt = rt_decode(data[:end], t, means, kidx, expected_codec_id=EXAMPLE_ID)
        assert rt.level == j
        assert rt.residual_estimate("conditional_mean").reshape(-1).tolist() == res.estimates[j]


def test_worked_example_coder_trace():
    """Sections 3.1 and 3.2 re-encode the example's chunks byte for byte."""
    t, means, kidx, data = example()
    (trit, _), _ = arrays_for(t)
    P = trit.precision_bits
    e = Enc()
    e.put(3125, 16770966, P)
    assert (e.low, e.range) == (0x000C34FFFFFFF3CB, 0xFFE795FFFF00186A) and not e.out
    assert e.finish() == bytes([0x01]) == data[0x25:0x26]
    e = Enc()
    e.put(14804770, 1972446, P)
    e.put(486, 16776244, P)
    assert e.finish() == data[0x27:0x28]
    e = Enc()  # plane 2: order [e2, e0, e3, e1], trits 0, 0, 1, 2 at nodes (2,5), (1,1), (0,0), (0,0)
    for k, d, p, tr in [(40, 2, 5, 0), (20, 1, 1, 0), (5, 0, 0, 1), (0, 0, 0, 2)]:
        f = trit.freqs(k, d, p)
        e.put((0, f[0], f[0] + f[1])[tr], f[tr], P)
    assert e.finish() == data[0x29:0x2C]
    e = Enc()  # escape: flag, then Exp-Golomb(1) = bits 1 0 0
    e.put(65535, 1, 16)
    assert (e.low, e.range, bytes(e.out)) == (0xFFFFFFFF00010000, 0xFFFFFFFFFFFF0000, b"\xff\xfe")
    e.put(1, 1, 1)
    assert bytes(e.out) == b"\xff\xff" and e.low == 0x7FFFFFFF00008000
    e.put(0, 1, 1)
    e.put(0, 1, 1)
    assert e.range == 0x1FFFFFFFFFFFE000
    assert e.finish() == b"\xff\xff\x80" == data[0x2D:0x30]


# ----------------------------------------------------------------- agreement with the runtime
MANY = ChunkSchedule(target_levels=24, framing_budget=1.0)
CASES = [
    # shape, seed, sigma range, ordering, schedule, outliers
    ((4, 4, 4), 1, (0.1, 50.0), Ordering.EXPECTED_VARIANCE, MANY, False),
    ((6, 5, 4), 2, (0.1, 50.0), Ordering.SIGMA, MANY, False),
    ((8, 4, 6), 3, (0.1, 50.0), Ordering.EXPECTED_VARIANCE, ChunkSchedule(), True),
    ((5, 6, 5), 4, (0.1, 20.0), Ordering.SIGMA, ChunkSchedule(), True),
    ((4, 5, 5), 5, (0.1, 0.3), Ordering.EXPECTED_VARIANCE, MANY, True),
    ((7, 4, 4), 6, (0.5, 200.0), Ordering.SIGMA, MANY, True),
    ((6, 4, 5), 7, (0.1, 50.0), Ordering.CHANNEL_WEIGHTED, MANY, False),
    ((5, 5, 4), 8, (0.1, 20.0), Ordering.CHANNEL_WEIGHTED, ChunkSchedule(), True),
]


def case_priority(case):
    """The case's channel priorities (None unless it is CHANNEL_WEIGHTED)."""
    shape, seed, _, ordering, _, _ = case
    return priority_for(ordering, shape[0], seed)


def case_stream(tables, case, codec_id=None):
    shape, seed, srange, ordering, schedule, outliers = case
    y, means, kidx, z = make_latent(tables, shape=shape, seed=seed, sigma_range=srange, z_shape=(4, 2, 2))
    if outliers:
        y.flat[0] += 1e6
        y.flat[5] -= 3e4
        y.flat[-1] += 40.0
    z = z.copy()
    z.flat[1] = 70  # z escape bin (support is +-32)
    z.flat[2] = -45
    data = encode_latent(y, means, kidx, z, tables, info=StreamInfo(codec_id=codec_id),
                         ordering=ordering, schedule=schedule, channel_priority=case_priority(case))
    return y, means, kidx, z, data


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_levels_agree_with_runtime(tables, case):
    y, means, kidx, z, data = case_stream(tables, case)
    kw = {"channel_priority": case_priority(case)}
    res = spec_decode(data, tables, means, kidx, **kw)
    N = len(res.lengths)
    assert res.level == N and len(res.boundaries) == N + 1 and res.boundaries[-1] == len(data)
    assert res.header.ordering == case[3].value
    if case[4] is MANY and case[2] != (0.1, 0.3):
        assert max(res.chunks_per_plane) > 1  # the cuts of 5.6 are exercised
    decoder = LatentDecoder(tables, prior=lambda z_, h: (means, kidx), **kw)
    decoder.feed(data)
    for j in range(N + 1):
        assert decoder.bytes_for_level(j) == res.boundaries[j]
    for j, end in enumerate(res.boundaries):
        prefix = spec_decode(data[:end], tables, means, kidx, **kw)
        assert prefix.level == j and prefix.estimates[j] == res.estimates[j]
        rt = rt_decode(data[:end], tables, means, kidx, **kw)
        assert rt.level == j
        want = rt.residual_estimate("conditional_mean").reshape(-1)
        got = np.array(res.estimates[j])
        assert np.array_equal(got, want) or np.max(np.abs(got - want)) <= 1e-12, f"level {j}"
    q = np.rint(y.astype(np.float64) - means.astype(np.float64)).astype(np.int64).reshape(-1)
    assert res.residual == q.tolist() == decoder.residual().reshape(-1).tolist()
    assert res.estimates[-1] == [float(v) for v in q]
    assert res.z == z.reshape(-1).tolist()
    # a cut inside a chunk decodes to the level before it
    mid = (res.boundaries[1] + res.boundaries[2]) // 2
    if res.boundaries[1] < mid:
        assert spec_decode(data[:mid], tables, means, kidx, **kw).level == 1
    if kw["channel_priority"] is not None:
        # the priorities reorder planes (against the same latent in EXPECTED_VARIANCE order), and
        # without them, or with other ones, neither decoder decodes
        unweighted = encode_latent(y, means, kidx, z, tables, ordering=Ordering.EXPECTED_VARIANCE, schedule=case[4])
        assert spec_decode(unweighted, tables, means, kidx).plane_orders != res.plane_orders
        plain = LatentDecoder(tables, prior=lambda z_, h: (means, kidx))
        both_raise(data, tables, means, kidx, "TableMismatchError")
        with pytest.raises(rt_errors.TableMismatchError):
            plain.feed(data)
        other = [v + 64 for v in kw["channel_priority"]]
        both_raise(data, tables, means, kidx, "TableMismatchError", channel_priority=other)


# ----------------------------------------------------------------- errors (2.5)
def both_raise(data, tables, means, kidx, name, **kw):
    """Both decoders raise the class ``name`` (exactly); returns (spec error, runtime error)."""
    with pytest.raises(getattr(sd, name)) as se:
        spec_decode(data, tables, means, kidx, **kw)
    with pytest.raises(getattr(rt_errors, name)) as re_:
        rt_decode(data, tables, means, kidx, **kw)
    assert type(se.value).__name__ == name == type(re_.value).__name__, (se.value, re_.value)
    return se.value, re_.value


def test_damaged_streams(tables):
    y, means, kidx, z, data = case_stream(tables, CASES[0])
    good = spec_decode(data, tables, means, kidx)
    hs, E0 = good.header.header_size, good.boundaries[0]

    def flip(off, mask=0x01):
        b = bytearray(data)
        b[off] ^= mask
        return bytes(b)

    # header
    both_raise(flip(0), tables, means, kidx, "ForeignStreamError")
    v1 = bytearray(data)
    v1[4] = 1
    _, rterr = both_raise(bytes(v1), tables, means, kidx, "ForeignStreamError")
    assert "1" in str(rterr)
    both_raise(flip(5, 0x04), tables, means, kidx, "CorruptStreamError")  # quality bits: level0_crc
    both_raise(flip(7), tables, means, kidx, "CorruptStreamError")  # codec id: level0_crc first
    both_raise(flip(hs - 6), tables, means, kidx, "CorruptStreamError")  # scale_index_crc
    both_raise(data[:3], tables, means, kidx, "TruncatedStreamError")
    both_raise(b"EDX", tables, means, kidx, "ForeignStreamError")
    both_raise(data[: hs - 1], tables, means, kidx, "TruncatedStreamError")
    both_raise(data[: E0 - 1], tables, means, kidx, "TruncatedStreamError")
    # a non-minimal varint (image_height 0 as 80 00) with a correct level0_crc
    nm = bytearray(data[:10] + b"\x80\x00" + data[11:hs - 4])
    nm += struct.pack("<I", zlib.crc32(data[hs:E0], zlib.crc32(bytes(nm))))
    both_raise(bytes(nm) + data[hs:], tables, means, kidx, "CorruptStreamError")
    # z
    both_raise(flip(hs), tables, means, kidx, "CorruptStreamError")
    # codec id and prior
    both_raise(data, tables, means, kidx, "BundleMismatchError", expected_codec_id=b"abcd")
    _, _, _, _, data_id = case_stream(tables, CASES[0], codec_id=EXAMPLE_ID)
    both_raise(data_id, tables, means, kidx, "TableMismatchError")
    spec_decode(data_id, tables, means, kidx, expected_codec_id=EXAMPLE_ID)
    bad_k = kidx.copy()
    bad_k.flat[3] = (bad_k.flat[3] + 1) % len(tables.trit.scales)
    both_raise(data, tables, means, bad_k, "PriorMismatchError")
    with pytest.raises(ValueError):
        spec_decode(data, tables, means[:, :2], kidx[:, :2])
    with pytest.raises(ValueError):
        rt_decode(data, tables, means[:, :2], kidx[:, :2])
    # the level table: any byte change that still parses fails the running CRC of chunk 0
    for off in range(E0, E0 + good.table_size):
        se, re_ = both_raise(flip(off), tables, means, kidx, type_of(flip(off), tables, means, kidx))
        assert isinstance(se, sd.CorruptStreamError)
        assert getattr(se, "chunk", None) == getattr(re_, "chunk", None)
    # chunks: each fails at the check that closes its run (2.2) and keeps the verified levels before it
    checks = sd._checks(good.chunks_per_plane, good.lengths)
    assert 0 in checks[:-1]  # the case has chunks without a check
    for j in range(len(good.lengths)):
        start = good.boundaries[j + 1] - good.lengths[j]
        closing = next(k for k in range(j, len(checks)) if checks[k])
        run_start = max([k + 1 for k in range(j) if checks[k]], default=0)
        for off in (start, good.boundaries[j + 1] - 1):
            se, re_ = both_raise(flip(off, 0x10), tables, means, kidx, "CorruptChunkError")
            # a wrong run with a 1- or 2-byte check passes it with probability 2^-8c; the
            # running CRC then fails the next check (2.4). Both decoders must agree.
            assert se.chunk == re_.chunk
            assert se.chunk == closing or (se.chunk > closing and off == start)
            verified = run_start if se.chunk == closing else max(k + 1 for k in range(se.chunk) if checks[k])
            assert se.partial.level == verified
            assert len(se.partial.estimates) == verified + 1
            # levels before the damaged chunk are the good ones (after it, only when a check passed by chance)
            assert se.partial.estimates[: j + 1] == good.estimates[: min(j, verified) + 1]
            dec = LatentDecoder(tables, prior=lambda z_, h: (means, kidx))
            with pytest.raises(rt_errors.CorruptChunkError):
                dec.feed(flip(off, 0x10))
            assert dec.level == dec.verified_level == verified
            assert np.array_equal(dec.residual_estimate("conditional_mean").reshape(-1),
                                  np.array(se.partial.estimates[verified]))
    # bytes past the end: every level is decoded first
    se, _ = both_raise(data + b"\x00", tables, means, kidx, "TrailingBytesError")
    assert se.partial.level == len(good.lengths) and se.partial.residual == good.residual


def type_of(data, tables, means, kidx):
    try:
        spec_decode(data, tables, means, kidx)
    except sd.BitstreamError as err:
        return type(err).__name__
    raise AssertionError("a damaged level table decoded")


# ----------------------------------------------------------------- sections 4.2 to 4.4 against the shipped integers
def test_tables_follow_sections_4_2_to_4_4():
    t1 = default_entropy_tables(1)
    t = t1.trit
    (trit, _), _ = arrays_for(t1)
    P = trit.precision_bits
    tail_k = 6.1094102048693975
    assert float(t.tail_k) == tail_k and P == 24
    for k, sig in enumerate(float(s) for s in t.scales):
        l = 1
        while 3 ** l < 2 * tail_k * sig:
            l += 1
        assert l == trit.plane_len[k] and (l == 1) == (sig < 0.2455)
        n, c = 3 ** l, (3 ** l - 1) // 2
        w = [math.erfc((abs(s - c) - 0.5) / (sig * math.sqrt(2))) - math.erfc((abs(s - c) + 0.5) / (sig * math.sqrt(2)))
             for s in range(n)]  # the factor 1/2 cancels in the normalisation
        eps = 2.0**-12  # 4.2 step 4: the uniform mixture
        assert t.uniform_mass == eps
        tot = sum(w)
        w = [x / tot * (1 - eps) + eps / n for x in w]
        spare, tot = (1 << P) - n, sum(w)
        ideal = [x / tot * spare for x in w]
        f = [math.floor(x) for x in ideal]
        for s in sorted(range(n), key=lambda s: (f[s] - ideal[s], s))[: spare - sum(f)]:
            f[s] += 1
        F = [0]
        for x in f:
            F.append(F[-1] + x + 1)
        assert F == trit.cdf[trit.cdf_start[k]: trit.cdf_start[k + 1]], k
        for d in range(l):
            for p in range(3 ** d):
                fr = trit.freqs(k, d, p)
                assert min(fr) >= 1 and sum(fr) == 1 << P
                assert 0 <= trit.node_cost(k, d, p) <= 406
    assert max(trit.plane_len) == 8
    assert (min(trit.prio_key), max(trit.prio_key)) == (30768, 42153)


# ----------------------------------------------------------------- where the text leaves the reader a choice
def test_level_table_edge_cases(tables):
    y, means, kidx, z, data = case_stream(tables, CASES[0])
    E0 = spec_decode(data, tables, means, kidx).boundaries[0]
    # an incomplete table is held: level 0, no error
    for n in (E0, E0 + 1, E0 + 3):
        assert spec_decode(data[:n], tables, means, kidx).level == 0 == rt_decode(data[:n], tables, means, kidx).level
    both_raise(data[:E0] + b"\x0d", tables, means, kidx, "CorruptStreamError")  # 13 planes, seen before the end
    both_raise(data[:E0] + b"\x81\x00", tables, means, kidx, "CorruptStreamError")  # non-minimal, table incomplete
    both_raise(data[:E0] + b"\x01\xf0\xa2\x04", tables, means, kidx, "CorruptStreamError")  # N > 2^16, before lengths
    both_raise(data[:E0] + b"\x06" + b"\x01" * 6 + b"\xff" * 5 + b"\x01", tables, means, kidx,
               "CorruptStreamError")  # running sum > 2^34 in an incomplete table
    assert spec_decode(data[:E0] + b"\x06\x00", tables, means, kidx).level == 0  # n_i = 0: waits for the table
    both_raise(data[:E0] + b"\x06\x00" + b"\x01" * 12, tables, means, kidx, "CorruptStreamError")  # then fails
    both_raise(data[:E0] + b"\x06" + b"\x01" * 6 + b"\x03" + b"\x01" + b"\x00" * 5, tables, means, kidx,
               "CorruptStreamError")  # escape chunk of 3 bytes
    both_raise(data[:E0] + b"\x06" + b"\x01" * 6 + b"\x04" + b"\x01" + b"\x01", tables, means, kidx,
               "CorruptStreamError")  # a plane chunk of 0 bytes (1 - 1), caught as it is read
    both_raise(data[:E0] + b"\x00\x04", tables, means, kidx, "CorruptStreamError")  # no planes: corrupt at once
    # the decoder setting max_latent_elements
    with pytest.raises(sd.CorruptStreamError):
        spec_decode(data, tables, means, kidx, max_latent_elements=10)
    with pytest.raises(rt_errors.LimitError):  # a limit of this decoder, not damage: not CorruptStreamError
        LatentDecoder(tables, prior=lambda z_, h: (means, kidx), max_latent_elements=10).feed(data)


def test_header_prefix_checks_follow_the_table(tables):
    y, means, kidx, z, data = case_stream(tables, CASES[0])
    non_minimal = data[:10] + b"\x80\x00" + data[11:13]
    both_raise(non_minimal, tables, means, kidx, "CorruptStreamError")  # varints as they are read
