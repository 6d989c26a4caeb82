"""An independent decoder of edge-sdk stream format version 3, written from
docs/bitstream.md alone (no runtime code read), the way a C port would be.

Everything on the decoding path works on plain Python ints (the tables are
turned into lists first). The only library calls are hashlib's SHA-256 for the
tables hash (4.5); CRC-32 and the range decoder are implemented here from the
text. The ambiguities it found were fixed in the text (2.1, 2.2, 2.5, 5.6).
"""

from __future__ import annotations

import hashlib
import math
import struct
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable, Optional

MASK64 = (1 << 64) - 1
RENORM = 1 << 56
MAGIC = b"EDGT"
VERSION = 3
MAX_PLANES = 12
MAX_CHUNKS = 1 << 16
MAX_PAYLOAD = 1 << 34
MAX_Y_ELEMENTS = 1 << 27
MAX_Z_ELEMENTS = 1 << 25
MAX_EG_PREFIX = 40


# ----------------------------------------------------------------- errors (2.5)
class BitstreamError(ValueError):
    partial = None  # the SpecDecoded reached before the error, when there is one


class ForeignStreamError(BitstreamError):
    pass


class TruncatedStreamError(BitstreamError):
    pass


class CorruptStreamError(BitstreamError):
    pass


class TrailingBytesError(CorruptStreamError):
    pass


class CorruptChunkError(CorruptStreamError):
    def __init__(self, message: str, chunk: int):
        super().__init__(message)
        self.chunk = chunk


class TableMismatchError(BitstreamError):
    pass


class PriorMismatchError(BitstreamError):
    pass


class BundleMismatchError(BitstreamError):
    pass


class _NeedMore(Exception):
    """Internal: the bytes end inside the structure being parsed."""


# ----------------------------------------------------------------- CRC-32 (1)
def _crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32(data: bytes, crc: int = 0) -> int:
    """zlib-compatible: crc32(B, crc32(A)) = crc32(A ‖ B)."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ----------------------------------------------------------------- varint (1)
def read_varint(buf: bytes, pos: int) -> tuple[int, int, bool]:
    """(value, new position, minimal). Raises _NeedMore or CorruptStreamError (over-long)."""
    value = 0
    for i in range(9):
        if pos + i >= len(buf):
            raise _NeedMore
        b = buf[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos + i + 1, not (i > 0 and b == 0)
    raise CorruptStreamError("over-long varint (9th byte has bit 7 set)")


# ----------------------------------------------------------------- range decoder (3.3, 3.4)
class RangeCoderError(Exception):
    pass


class Dec:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.range = MASK64
        v = 0
        for _ in range(8):
            v = (v << 8) | self._next()
        self.value = v

    def _next(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def get(self, cdf, n: int, P: int) -> int:
        r = self.range >> P
        if self.value >= (r << P):
            return -1
        s = 0
        v = self.value
        while s + 1 < n and r * cdf[s + 1] <= v:
            s += 1
        self.value = v - r * cdf[s]
        self.range = r * (cdf[s + 1] - cdf[s])
        while self.range < RENORM:
            self.value = ((self.value << 8) | self._next()) & MASK64
            self.range = (self.range << 8) & MASK64
        return s

    def get_uint(self) -> int:
        bit_cdf = (0, 1, 2)
        k = 1
        while True:
            b = self.get(bit_cdf, 2, 1)
            if b < 0:
                return -1
            if b == 0:
                break
            k += 1
            if k > MAX_EG_PREFIX:
                return -2
        v = 1
        for _ in range(k - 1):
            b = self.get(bit_cdf, 2, 1)
            if b < 0:
                return -1
            v = (v << 1) | b
        return v - 1


# ----------------------------------------------------------------- tables (4, 5.5, 5.6)
def build_log2_q8() -> list[int]:
    # 5.6: no value is within 8e-4 of a tie (m = 32: 43.5008), so the tie rule never matters
    return [int(math.floor(256.0 * math.log2(1.0 + m / 256.0) + 0.5)) for m in range(256)]


LOG2_Q8 = build_log2_q8()


def info_q8(f: int, P: int) -> int:
    b = f.bit_length() - 1
    m = ((f << 8) >> b) & 255
    return 256 * P - (256 * b + LOG2_Q8[m])


@dataclass
class TritArrays:
    cdf: list
    cdf_start: list
    plane_len: list
    prio_key: list
    node_start: list
    precision_bits: int

    def __post_init__(self):
        self._freq = {}
        self._cost = {}
        self._mom = {}

    @property
    def K(self) -> int:
        return len(self.plane_len)

    def freqs(self, k: int, d: int, p: int) -> tuple[int, int, int]:
        """Renormalised trit frequencies of node(d, p) of table k (4.3)."""
        key = (k, d, p)
        hit = self._freq.get(key)
        if hit is not None:
            return hit
        P = self.precision_bits
        l = self.plane_len[k]
        base = self.cdf_start[k]
        F = self.cdf
        w = 3 ** (l - d - 1)
        m = [F[base + (3 * p + t + 1) * w] - F[base + (3 * p + t) * w] for t in range(3)]
        S = m[0] + m[1] + m[2]
        f = [(mt << P) // S for mt in m]
        leftover = (1 << P) - sum(f)
        b = max(range(3), key=lambda t: (f[t], -t))  # largest f, smallest t on ties
        f[b] += leftover
        out = (f[0], f[1], f[2])
        self._freq[key] = out
        return out

    def node_cost(self, k: int, d: int, p: int) -> int:
        key = (k, d, p)
        hit = self._cost.get(key)
        if hit is None:
            P = self.precision_bits
            f = self.freqs(k, d, p)
            hit = (sum(ft * info_q8(ft, P) for ft in f) & MASK64) >> P
            self._cost[key] = hit
        return hit

    def mom(self, k: int) -> list[int]:
        hit = self._mom.get(k)
        if hit is None:
            base = self.cdf_start[k]
            n = 3 ** self.plane_len[k]
            F = self.cdf
            hit = [0] * (n + 1)
            acc = 0
            for s in range(n):
                acc += s * (F[base + s + 1] - F[base + s])
                hit[s + 1] = acc
            self._mom[k] = hit
        return hit


@dataclass
class ZArrays:
    cdf: list
    cdf_start: list
    offset: list
    precision_bits: int


def tables_hash(named_arrays: list[tuple[str, str, bytes, int]]) -> bytes:
    """4.5: ``named_arrays`` = (name, dtype text, little-endian element bytes, element count)."""
    h = hashlib.sha256(b"edge-sdk entropy tables v1\n")
    for name, dtype, raw, count in named_arrays:
        h.update(f"{name}:{dtype}:({count},)\n".encode("ascii"))
        h.update(raw)
    return h.digest()[:16]


# ----------------------------------------------------------------- result
@dataclass
class Header:
    version: int
    mode: int
    prior_mode: int
    ordering: int
    quality: int
    codec_id: bytes
    image_height: int
    image_width: int
    pad_bottom: int
    pad_right: int
    y_shape: tuple
    z_size: tuple
    z_length: int
    scale_index_crc: int
    level0_crc: int
    header_size: int


@dataclass
class SpecDecoded:
    header: Optional[Header] = None
    z: Optional[list] = None  # flat C order
    num_planes: Optional[int] = None
    chunks_per_plane: Optional[list] = None
    lengths: Optional[list] = None
    table_size: Optional[int] = None
    boundaries: Optional[list] = None  # E_0 .. E_N
    level: int = 0
    estimates: list = field(default_factory=list)  # estimates[j]: flat list at level j
    residual: Optional[list] = None  # exact, at level N
    crc_after: list = field(default_factory=list)  # R after the table, then after each chunk
    plane_costs: dict = field(default_factory=dict)  # plane -> running costs cum_j
    plane_orders: dict = field(default_factory=dict)  # plane -> order_i
    plane_cuts: dict = field(default_factory=dict)  # plane -> [e_0 .. e_n]


PriorFn = Callable[[list, Header], tuple]


# ----------------------------------------------------------------- the decoder
def _parse_header(data: bytes, max_latent_elements: int) -> Header:
    # < 5 bytes in: a prefix of EDGT
    head = data[:4]
    if MAGIC[: len(head)] != head:
        raise ForeignStreamError("not an edge-sdk stream (magic)")
    if len(data) < 5:
        raise TruncatedStreamError("header incomplete")
    version = data[4]
    if version != VERSION:
        if version in (1, 2):
            raise ForeignStreamError(f"format version {version} stream; this decoder reads version 3: re-encode")
        raise ForeignStreamError(f"unknown format version {version}")
    # 2.5: each header varint checked as it is read
    pos = 10
    values = []
    try:
        if len(data) < 10:
            raise _NeedMore
        mode = data[5]
        for _ in range(4 + 3 + 2 + 1):
            v, pos, ok = read_varint(data, pos)
            if not ok:
                raise CorruptStreamError("non-minimal varint in the header")
            values.append(v)
        if len(data) < pos + 8:
            raise _NeedMore
    except _NeedMore:
        raise TruncatedStreamError("header incomplete") from None
    ih, iw, pb, pr = values[0:4]
    y_shape = tuple(values[4:7])
    z_size = tuple(values[7:9])
    z_length = values[9]
    for ax in y_shape + z_size:
        if not 1 <= ax <= 65535:
            raise CorruptStreamError("shape axis out of 1..65535")
    ny = y_shape[0] * y_shape[1] * y_shape[2]
    nz = z_size[0] * z_size[1]
    if ny > MAX_Y_ELEMENTS or nz > MAX_Z_ELEMENTS:
        raise CorruptStreamError("too many elements")
    if ih >= 1 << 32 or iw >= 1 << 32 or pb > 65535 or pr > 65535 or z_length > 1 << 34:
        raise CorruptStreamError("image size, padding or z_length out of range")
    if ny > max_latent_elements:
        raise CorruptStreamError("latent larger than max_latent_elements")
    sic, l0c = struct.unpack_from("<II", data, pos)
    if (mode >> 1) & 3 == 3:
        raise CorruptStreamError("ordering 3 does not exist")
    return Header(
        version=version, mode=mode, prior_mode=mode & 1, ordering=(mode >> 1) & 3,
        quality=mode >> 3, codec_id=bytes(data[6:10]), image_height=ih, image_width=iw,
        pad_bottom=pb, pad_right=pr, y_shape=y_shape, z_size=z_size, z_length=z_length,
        scale_index_crc=sic, level0_crc=l0c, header_size=pos + 8,
    )


def _decode_z(payload: bytes, hdr: Header, zt: ZArrays) -> list:
    cz = len(zt.cdf_start) - 1  # 2.1: z's channels are the z tables'
    hz, wz = hdr.z_size
    per = hz * wz
    Pz = zt.precision_bits
    D = Dec(payload)
    out = []
    for i in range(cz * per):
        c = i // per
        G = zt.cdf[zt.cdf_start[c]: zt.cdf_start[c + 1]]
        n_c = len(G) - 2
        v = D.get(G, n_c + 1, Pz)
        if v < 0:
            raise CorruptStreamError(f"z element {i}: code value in the gap")
        if v == n_c:
            u = D.get_uint()
            if u < 0:
                raise CorruptStreamError(f"z element {i}: bad Exp-Golomb code")
            v = n_c + u // 2 if u % 2 == 0 else -1 - (u - 1) // 2
        out.append(v + zt.offset[c])
    return out


def _table_varint(data: bytes, pos: int):
    v, pos, ok = read_varint(data, pos)
    if not ok:
        raise CorruptStreamError("non-minimal varint in the level table")
    return v, pos, ok


def _check_of(U: int) -> int:
    return 1 if U < 256 else 2 if U < 4096 else 4


def _checks(cpp: list, lengths: list) -> list:
    """2.2: check bytes of every chunk from the lengths: runs close at a plane's last chunk or at
    1024 bytes; the escape chunk has 4."""
    out, U, j = [], 0, 0
    for count in cpp:
        for m in range(count):
            U += lengths[j]
            if m == count - 1 or U >= 1024:
                out.append(_check_of(U))
                U = 0
            else:
                out.append(0)
            j += 1
    return out + [4]


def decode(
    data: bytes,
    trit: TritArrays,
    zt: ZArrays,
    prior: PriorFn,
    *,
    expected_codec_id: Optional[bytes] = None,
    tables_digest: Optional[bytes] = None,
    max_latent_elements: int = MAX_Y_ELEMENTS,
    channel_priority: Optional[list] = None,
) -> SpecDecoded:
    """Decode every whole level of ``data``. Errors carry ``.partial`` (the levels reached)."""
    res = SpecDecoded()
    try:
        _decode(bytes(data), trit, zt, prior, expected_codec_id, tables_digest, max_latent_elements, res,
                channel_priority)
    except BitstreamError as err:
        err.partial = res
        raise
    return res


def _decode(data, trit, zt, prior, expected_codec_id, tables_digest, max_latent_elements, res, channel_priority):
    hdr = _parse_header(data, max_latent_elements)
    res.header = hdr
    if hdr.ordering == 2:  # 2.5: CHANNEL_WEIGHTED needs one priority per channel
        if channel_priority is None or len(channel_priority) != hdr.y_shape[0]:
            raise TableMismatchError("CHANNEL_WEIGHTED stream and no channel priorities for its channels")
    hs = hdr.header_size
    E0 = hs + hdr.z_length
    if len(data) < E0:
        raise TruncatedStreamError("z section incomplete")
    zpay = data[hs:E0]
    if crc32(zpay, crc32(data[: hs - 4])) != hdr.level0_crc:
        raise CorruptStreamError("level0_crc mismatch (header or z damaged)")
    if expected_codec_id is not None:
        if hdr.codec_id != bytes(expected_codec_id)[:4]:
            raise BundleMismatchError("stream names another codec")
    else:
        if tables_digest is None:
            raise ValueError("need tables_digest (4.5) when no expected codec id is given")
        own = bytes(tables_digest)
        if hdr.ordering == 2:  # 2.1: the tables hash and the priorities as i16 LE
            own = hashlib.sha256(own + b"".join(struct.pack("<h", v) for v in channel_priority)).digest()
        if hdr.codec_id != own[:4]:
            raise TableMismatchError("stream coded with other entropy tables")
    if (len(zt.cdf_start) - 1) * hdr.z_size[0] * hdr.z_size[1] > MAX_Z_ELEMENTS:
        raise CorruptStreamError("z larger than the limit")
    res.z = _decode_z(zpay, hdr, zt)

    # ---- prior
    C, H, W = hdr.y_shape
    n = C * H * W
    means, kidx = prior(res.z, hdr)
    means = _flatten(means, hdr.y_shape, "means")
    kidx = _flatten(kidx, hdr.y_shape, "scale indices")
    K = trit.K
    ks = []
    for v in kidx:
        if isinstance(v, float):
            if v != int(v):
                raise ValueError("scale indices must be integers")
        iv = int(v)
        if not 0 <= iv < K:
            raise ValueError("scale index out of range")
        ks.append(iv)
    if crc32(b"".join(struct.pack("<H", k) for k in ks)) != hdr.scale_index_crc:
        raise PriorMismatchError("scale indices differ from the encoder's (scale_index_crc)")

    l = [trit.plane_len[k] for k in ks]
    c = [(3 ** le - 1) // 2 for le in l]
    p = [0] * n
    r = list(l)
    corr = [0] * n
    escaped = False

    def estimate():
        F = trit.cdf
        out = []
        for e in range(n):
            k = ks[e]
            mom = trit.mom(k)
            base = trit.cdf_start[k]
            w = 3 ** r[e]
            a = p[e] * w
            b = a + w
            est = float(mom[b] - mom[a]) / float(F[base + b] - F[base + a]) - c[e]
            if escaped:
                est += corr[e]
            out.append(est)
        return out

    res.level = 0
    res.estimates = [estimate()]

    # ---- level table (2.2)
    try:
        pos = E0
        # 2.5: bounds and varint form as each field is read, the rest once the table is complete
        L, pos, ok = _table_varint(data, pos)
        if not 1 <= L <= MAX_PLANES:
            raise CorruptStreamError("num_planes outside 1..12")
        cpp = []
        for _ in range(L):
            v, pos, ok = _table_varint(data, pos)
            cpp.append(v)
        if min(cpp, default=1) < 1:
            raise CorruptStreamError("a plane with 0 chunks")
        N = sum(cpp) + 1
        if N > MAX_CHUNKS:
            raise CorruptStreamError("too many chunks")
        escape, pos, ok = _table_varint(data, pos)
        total = escape
        if total > MAX_PAYLOAD:
            raise CorruptStreamError("payload too large")
        lengths = []
        for j in range(N - 1):
            v, pos, ok = _table_varint(data, pos)
            T = v if j == 0 else lengths[-1] + (v // 2 if v % 2 == 0 else -(v + 1) // 2)
            if T < 1:
                raise CorruptStreamError("chunk shorter than its check")
            total += T
            if total > MAX_PAYLOAD:
                raise CorruptStreamError("payload too large")
            lengths.append(T)
        lengths.append(escape)
    except _NeedMore:
        return  # level 0: table bytes are held until complete
    if lengths[-1] < 4:
        raise CorruptStreamError("escape chunk shorter than its check")
    checks = _checks(cpp, lengths)
    if any(T < cb for T, cb in zip(lengths, checks)):
        raise CorruptStreamError("chunk shorter than its check")
    res.num_planes, res.chunks_per_plane, res.lengths = L, cpp, lengths
    table = data[E0:pos]
    res.table_size = len(table)
    if L != max(l):
        raise PriorMismatchError("num_planes differs from the prior's plane lengths")
    # participants per plane (5.1)
    Ni = [sum(1 for le in l if le >= L - i) for i in range(L)]
    for i in range(L):
        if cpp[i] > Ni[i]:
            raise CorruptStreamError(f"plane {i}: more chunks than participants")
    starts = [E0 + len(table)]
    for j in range(N - 1):
        starts.append(starts[-1] + lengths[j])
    stream_size = starts[-1] + lengths[-1]
    res.boundaries = [E0] + [starts[j] + lengths[j] for j in range(N)]

    R = crc32(table)
    res.crc_after = [R]
    # 2.4: chunks of an open run are applied at once and undone if the run's check fails
    verified_level, pending = 0, []
    # chunk j -> (plane, index within the plane, 1-based)
    chunk_plane = []
    for i in range(L):
        for m in range(1, cpp[i] + 1):
            chunk_plane.append((i, m))
    P = trit.precision_bits
    top = 1 << P
    order = None
    cuts = None
    for j in range(N):
        end = starts[j] + lengths[j]
        if end > len(data):
            break
        T = lengths[j]
        chunk = data[starts[j]:end]
        if j < N - 1:
            i, m = chunk_plane[j]
            if m == 1:  # plane start: order (5.2) and cuts (5.6)
                part = [e for e in range(n) if l[e] >= L - i]
                if hdr.ordering == 0:
                    keyf = lambda e: ks[e]  # noqa: E731
                else:
                    def keyf(e):
                        d = l[e] - r[e]
                        key = trit.prio_key[trit.node_start[ks[e]] + (3 ** d - 1) // 2 + p[e]]
                        if hdr.ordering == 2:  # 4.4: plus the channel's priority, clipped
                            key = min(max(key + channel_priority[e // (H * W)], 1), 65535)
                        return key
                order = sorted(part, key=lambda e: (-keyf(e), e))
                cum = []
                acc = 0
                for e in order:
                    acc = (acc + trit.node_cost(ks[e], l[e] - r[e], p[e])) & MASK64
                    cum.append(acc)
                nn, NN, Wt = cpp[i], len(order), cum[-1]
                cuts = [0]
                for mm in range(1, nn):
                    target = Wt * mm // nn
                    jj = bisect_left(cum, target)
                    if jj >= NN:
                        jj = NN - 1
                    cuts.append(min(max(jj + 1, cuts[-1] + 1), NN - (nn - mm)))
                cuts.append(NN)
                res.plane_costs[i] = cum
                res.plane_orders[i] = order
                res.plane_cuts[i] = cuts
            cb = checks[j]
            payload, check = chunk[: T - cb], chunk[T - cb:]
            D = Dec(payload)
            trits = []
            for pos_j in range(cuts[m - 1], cuts[m]):
                e = order[pos_j]
                f0, f1, f2 = trit.freqs(ks[e], l[e] - r[e], p[e])
                t = D.get((0, f0, f0 + f1, top), 3, P)
                if t < 0:
                    _undo(pending, p, r, res, verified_level)
                    raise CorruptChunkError(f"chunk {j}: code value in the gap", j)
                trits.append((e, t))
            R2 = crc32(bytes(t for _, t in trits), crc32(payload, R))
            for e, t in trits:  # an element occurs once per plane: no later frequency of the plane changes
                p[e] = 3 * p[e] + t
                r[e] -= 1
            pending.extend(trits)
            if cb:
                if (R2 & ((1 << (8 * cb)) - 1)) != int.from_bytes(check, "little"):
                    _undo(pending, p, r, res, verified_level)
                    raise CorruptChunkError(f"chunk {j}: check mismatch", j)
                pending, verified_level = [], j + 1
        else:  # escape chunk (5.4)
            payload, check = chunk[: T - 4], chunk[T - 4:]
            D = Dec(payload)
            us = []
            for e in range(n):
                if p[e] == 0 or p[e] == 3 ** l[e] - 1:
                    flag = D.get((0, 65535, 65536), 2, 16)
                    if flag < 0:
                        raise CorruptChunkError("escape chunk: code value in the gap", j)
                    u = 0
                    if flag == 1:
                        u = D.get_uint()
                        if u < 0:
                            raise CorruptChunkError("escape chunk: bad Exp-Golomb code", j)
                        u += 1
                    us.append((e, u))
            R2 = crc32(b"".join(struct.pack("<q", u) for _, u in us), crc32(payload, R))
            if R2 != int.from_bytes(check, "little"):
                raise CorruptChunkError("escape chunk: check mismatch", j)
            for e, u in us:
                corr[e] = -u if p[e] == 0 else u
            escaped = True
            verified_level = j + 1
        R = R2
        res.crc_after.append(R)
        res.level = j + 1
        res.estimates.append(estimate())
    if res.level == N:
        res.residual = [p[e] - c[e] + corr[e] for e in range(n)]
    if len(data) > stream_size:
        raise TrailingBytesError("bytes past the end of the stream")


def _undo(pending, p, r, res, verified_level):
    """2.5: a failed run is undone; the decoder is back at the last verified level."""
    for e, _ in reversed(pending):
        p[e] //= 3
        r[e] += 1
    res.level = verified_level
    del res.estimates[verified_level + 1:]
    del res.crc_after[verified_level + 1:]


def _flatten(arr, shape, what):
    """Accepts a numpy array or nested lists of shape (C, H, W); returns a flat list."""
    if hasattr(arr, "shape"):
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"{what} have shape {tuple(arr.shape)}, stream says {tuple(shape)}")
        return arr.reshape(-1).tolist()
    C, H, W = shape
    if len(arr) != C or any(len(a) != H or any(len(b) != W for b in a) for a in arr):
        raise ValueError(f"{what} do not have the stream's y_shape")
    return [v for a in arr for b in a for v in b]
