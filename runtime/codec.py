"""Progressive trit-plane latent coding: :func:`encode_latent` and :class:`LatentDecoder`.

The encoder turns ``(y, means, scale indices, z)`` into one stream; the decoder
takes that stream in pieces (``feed``), decodes every chunk as soon as all of
its bytes are there, and returns the latent estimate at the current level at
any time. Level 0 is z alone (every element at its prior mean, to within the
~1e-7 asymmetry of the integer tables); level j adds
chunk j-1; the last level (the escape chunk) makes the latent exact.

Input that cannot be decoded raises a :class:`~edge_sdk.runtime.errors.BitstreamError`
subclass; the decoder's state stays at the last good level.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import bitstream as bs
from .bitstream import Header, LevelTable, Ordering, PriorMode
from .coders import Coder, PlaneState, get_coder
from .errors import (
    BitstreamError,
    BundleMismatchError,
    CorruptChunkError,
    CorruptStreamError,
    LimitError,
    PriorMismatchError,
    TableMismatchError,
    TrailingBytesError,
    TruncatedStreamError,
)
from .rangecoder import RangeCoderError
from .tables import POW3, EntropyTables

#: Largest |round(y - mean)| or |z| the escape code carries.
MAX_ABS_SYMBOL = 1 << 38

#: where a partly decoded element's residual is placed: see LatentDecoder.residual_estimate
RECONSTRUCTIONS = ("midpoint", "conditional_mean")

PriorFn = Callable[[np.ndarray, Header], "tuple[np.ndarray, np.ndarray]"]


#: the most levels an encoder makes by default: at least 50 on a Kodak photo (768x512),
#: where the framing then stays near 1 % of the stream (benchmarks/progressive.py)
DEFAULT_TARGET_LEVELS = 54


@dataclass(frozen=True)
class ChunkSchedule:
    """How the encoder cuts planes into chunks (levels). Not needed to decode.

    Every level costs framing: its length in the level table (1-2 bytes), at most one
    flush byte and its share of the run checks (about 2 bytes per KB), about
    ``level_bytes`` together. The encoder spends at most ``framing_budget`` of the
    estimated stream size on it, so a 4.5 KB stream gets about 30 levels and a large
    one ``target_levels``. Each plane
    gets chunks in proportion to its share of the bits (at least one), cut where the
    expected information in plane order reaches equal shares (docs/bitstream.md 5.6).
    """

    target_levels: int = DEFAULT_TARGET_LEVELS
    framing_budget: float = 0.013
    level_bytes: float = 2.0

    def __post_init__(self) -> None:
        if self.target_levels < 1 or not 0 < self.framing_budget <= 1 or self.level_bytes <= 0:
            raise ValueError("target_levels must be positive, framing_budget in (0, 1], level_bytes positive")

    def levels_for(self, total_bits: float) -> int:
        """Levels to aim at for a stream of about ``total_bits`` of y (planes add at least one each)."""
        affordable = int(self.framing_budget * total_bits / 8 / self.level_bytes)
        return max(1, min(self.target_levels, affordable))

    def plane_chunks(self, plane_bits: float, bits_per_level: float, participants: int) -> int:
        count = round(plane_bits / bits_per_level) if bits_per_level > 0 else 1
        return max(1, min(count, participants))


def plane_cuts(cumulative_costs: np.ndarray, count: int) -> np.ndarray:
    """End positions of the ``count`` chunks of a plane (docs/bitstream.md 5.6).

    ``cumulative_costs`` is the running sum of the expected information of the plane's
    symbols in plane order (integers, from :attr:`TritTables.node_cost`), which the decoder
    knows before the plane starts, so chunk sizes never travel. Chunk m ends after the
    first symbol where the running sum reaches ``floor(total * m / count)``, kept strictly
    increasing and leaving every later chunk at least one symbol.
    """
    cum = np.asarray(cumulative_costs, np.int64)
    n = int(cum.size)
    if not 1 <= count <= n:
        raise ValueError(f"a plane of {n} symbols cannot hold {count} chunks")
    total = int(cum[-1])
    m = np.arange(1, count, dtype=np.int64)
    candidate = np.minimum(np.searchsorted(cum, total * m // count, side="left"), n - 1) + 1
    # e_m = min(max(candidate_m, e_{m-1} + 1), n - (count - m)), e_0 = 0, in closed form
    ends = np.minimum(np.maximum.accumulate(candidate - m) + m, n - count + m)
    return np.append(ends, n)


@dataclass(frozen=True)
class StreamInfo:
    """Metadata recorded in the header; the runtime does not interpret it.

    ``codec_id`` names what the stream needs to decode (4 bytes: the bundle's codec id
    for streams of a bundle); None writes the entropy tables' own digest.
    """

    codec_id: Optional[bytes] = None
    image_size: tuple[int, int] = (0, 0)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    quality: int = 0
    prior_mode: PriorMode = PriorMode.FLOAT

    def __post_init__(self) -> None:
        if self.codec_id is not None and len(self.codec_id) != bs.CODEC_ID_BYTES:
            raise ValueError(f"codec_id must be {bs.CODEC_ID_BYTES} bytes")
        if len(self.image_size) != 2 or not all(0 <= v <= bs.MAX_IMAGE_SIDE for v in self.image_size):
            raise ValueError("image_size must be (height, width), each in 0..2**32-1")
        if len(self.padding) != 4 or not all(0 <= v <= bs.MAX_DIM for v in self.padding):
            raise ValueError("padding must be (top, left, bottom, right), each in 0..65535")
        if self.padding[0] or self.padding[1]:
            raise ValueError("the stream format pads at the bottom and right only (top and left must be 0)")
        if not 0 <= self.quality <= bs.MAX_QUALITY:
            raise ValueError(f"quality must lie in 0..{bs.MAX_QUALITY}")


def scale_index_crc(scale_indices: np.ndarray) -> int:
    return bs.crc32(np.ascontiguousarray(scale_indices, dtype="<u2").tobytes())


#: largest |channel priority| (in priority-key units, 512 per octave: 16 octaves either way)
MAX_CHANNEL_PRIORITY = 8192


def check_channel_priority(priority, channels: int) -> np.ndarray:
    """``priority`` as int32, one integer per latent channel within +-MAX_CHANNEL_PRIORITY, or ValueError."""
    arr = np.asarray(priority)
    if arr.ndim != 1 or arr.size != channels:
        raise ValueError(f"channel_priority needs one value per latent channel ({channels}), got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iu" and not np.all(arr == np.rint(arr))):
        raise ValueError("channel_priority must hold integers")
    arr = arr.astype(np.int64)
    if arr.size and np.abs(arr).max() > MAX_CHANNEL_PRIORITY:
        raise ValueError(f"channel_priority values must lie in -{MAX_CHANNEL_PRIORITY}..{MAX_CHANNEL_PRIORITY}")
    return arr.astype(np.int32)


def tables_codec_id(tables: EntropyTables, channel_priority: Optional[np.ndarray] = None) -> bytes:
    """The codec id of a stream written without a bundle (docs/bitstream.md 4.5): the tables' digest,
    or, for the channel-weighted order, a digest of the tables' digest and the priorities."""
    if channel_priority is None:
        return tables.digest[: bs.CODEC_ID_BYTES]
    blob = tables.digest + np.asarray(channel_priority, "<i2").tobytes()
    return hashlib.sha256(blob).digest()[: bs.CODEC_ID_BYTES]


def _as_chw(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (C, H, W) or (1, C, H, W), got {arr.shape}")
    if max(arr.shape) > bs.MAX_DIM or min(arr.shape) < 1:
        raise ValueError(f"{name} axes must hold 1..{bs.MAX_DIM} elements, got shape {arr.shape}")
    return arr


def _z_channels(shape: tuple[int, int, int]) -> np.ndarray:
    c, h, w = shape
    return np.repeat(np.arange(c, dtype=np.int64), h * w)


def _check_scale_indices(kidx: np.ndarray, tables: EntropyTables) -> np.ndarray:
    if not np.issubdtype(kidx.dtype, np.integer):
        raise ValueError(f"scale indices must be integers, got {kidx.dtype}")
    if kidx.size and (kidx.min() < 0 or kidx.max() >= tables.trit.num_scales):
        raise ValueError(f"scale indices must lie in [0, {tables.trit.num_scales})")
    return kidx.astype(np.int64).ravel()


def encode_latent(
    y: np.ndarray,
    means: np.ndarray,
    scale_indices: np.ndarray,
    z: np.ndarray,
    tables: EntropyTables,
    *,
    info: StreamInfo = StreamInfo(),
    ordering: Ordering = Ordering.EXPECTED_VARIANCE,
    schedule: ChunkSchedule = ChunkSchedule(),
    coder: str = "fast",
    channel_priority: Optional[np.ndarray] = None,
) -> bytes:
    """Encode one latent into a progressive stream.

    ``y`` and ``means`` are float arrays of shape (C, H, W); ``scale_indices``
    are integer indices into ``tables.trit.scales`` of the same shape; ``z`` is
    the integer (rounded) hyper-latent. The residual ``round(y - means)``
    (half to even) is coded exactly, whatever its size, up to 2**38.
    ``channel_priority`` (one integer per channel, a bundle's) is what the
    ``CHANNEL_WEIGHTED`` order needs, and is not used by the other orders.
    """
    y = _as_chw("y", y)
    means = _as_chw("means", means)
    kidx3 = _as_chw("scale_indices", scale_indices)
    z = _as_chw("z", z)
    if means.shape != y.shape or kidx3.shape != y.shape:
        raise ValueError(f"y {y.shape}, means {means.shape} and scale indices {kidx3.shape} must match")
    if y.size > bs.MAX_Y_ELEMENTS or z.size > bs.MAX_Z_ELEMENTS:
        raise ValueError("latent too large for the format")
    if z.shape[0] != tables.z.num_channels:
        raise ValueError(f"z has {z.shape[0]} channels; the z tables have {tables.z.num_channels}")
    diff = y.astype(np.float64) - means.astype(np.float64)
    if not np.all(np.isfinite(diff)):
        raise ValueError("y or means contain NaN or infinity")
    q = np.rint(diff)
    z_f = np.asarray(z, dtype=np.float64)
    if not np.all(np.isfinite(z_f)) or np.any(z_f != np.rint(z_f)):
        raise ValueError("z must hold finite integer values (the rounded hyper-latent)")
    if np.abs(q).max(initial=0) >= MAX_ABS_SYMBOL or np.abs(z_f).max(initial=0) >= MAX_ABS_SYMBOL:
        raise ValueError(f"residuals and z must stay below {MAX_ABS_SYMBOL} in magnitude")
    q = q.astype(np.int64).ravel()
    kidx = _check_scale_indices(kidx3, tables)
    impl = get_coder(coder)
    trit = tables.trit
    ordering = Ordering(ordering)
    offsets = None
    if ordering == Ordering.CHANNEL_WEIGHTED:
        if channel_priority is None:
            raise ValueError("the CHANNEL_WEIGHTED order needs channel_priority (a bundle's)")
        offsets = check_channel_priority(channel_priority, y.shape[0])

    st = PlaneState.start(kidx, trit)
    centre = (POW3[st.plane_len] - 1) // 2
    s_val = np.clip(q + centre, 0, 2 * centre)
    # Total cost is known up front (to within the trit renormalization): the trit costs
    # of an element telescope to -log2(f[s] / T) of its bin.
    bin_at = trit.cdf_start[kidx] + s_val
    freqs = trit.cdf[bin_at + 1].astype(np.int64) - trit.cdf[bin_at].astype(np.int64)
    total_bits = float(np.sum(trit.precision_bits - np.log2(freqs)))
    bits_per_level = total_bits / schedule.levels_for(total_bits)

    # First every payload (their lengths make the level table), then the checks: they run
    # over the table, so they can only be computed once it is known.
    payloads: list[bytes] = []
    check_data: list[bytes] = []  # what the running CRC covers beyond each payload
    chunks_per_plane = []
    by_sigma = ordering == Ordering.SIGMA
    for plane in range(st.num_planes):
        order = impl.plane_order(plane, st, trit, by_sigma, offsets)
        cum_costs = impl.plane_cumulative_costs(order, st, trit)
        trits, sym_freq = impl.plane_symbols(order, st, trit, s_val)
        plane_bits = float(np.sum(trit.precision_bits - np.log2(sym_freq)))
        ends = plane_cuts(cum_costs, schedule.plane_chunks(plane_bits, bits_per_level, order.size))
        start = 0
        for end in ends:
            payloads.append(impl.encode_chunk(order, start, int(end), trits, st, trit))
            check_data.append(trits[start:end].tobytes())
            start = int(end)
        chunks_per_plane.append(len(ends))
        impl.apply(order, 0, order.size, trits, st)

    edges = st.edges()
    q_edge, c_edge = q[edges], centre[edges]
    overflow = np.where(s_val[edges] == 0, -c_edge - q_edge, q_edge - c_edge).astype(np.int64)
    payloads.append(impl.encode_escapes(overflow))
    check_data.append(overflow.astype("<i8").tobytes())

    lengths = bs.plane_chunk_lengths(tuple(chunks_per_plane), [len(p) for p in payloads[:-1]])
    lengths.append(len(payloads[-1]) + bs.ESCAPE_CHECK_BYTES)
    table = LevelTable(tuple(chunks_per_plane), tuple(lengths))
    table_bytes = bs.serialize_table(table)
    running = bs.crc32(table_bytes)
    chunk_bytes = []
    for payload, covered, length, check in zip(payloads, check_data, lengths, table.checks):
        payload = payload.ljust(length - check, b"\0")  # an empty unchecked payload is stored as 00
        running = bs.crc32(payload, covered, start=running)
        chunk_bytes.append(payload + bs.chunk_check(running, check))

    z_payload = impl.encode_z(z_f.astype(np.int64).ravel(), _z_channels(z.shape), tables.z)
    header = Header(
        codec_id=info.codec_id if info.codec_id is not None else tables_codec_id(tables, offsets),
        image_size=tuple(info.image_size),
        pad_bottom=info.padding[2],
        pad_right=info.padding[3],
        quality=info.quality,
        prior_mode=info.prior_mode,
        ordering=Ordering(ordering),
        y_shape=tuple(y.shape),
        z_size=tuple(z.shape[1:]),
        z_length=len(z_payload),
        scale_index_crc=scale_index_crc(kidx),
        level0_crc=0,
    )
    return bs.serialize_header(header, z_payload) + z_payload + table_bytes + b"".join(chunk_bytes)


def read_header(data: bytes) -> Header:
    """Parse a stream's header (for inspection; decoding is :class:`LatentDecoder`)."""
    return bs.parse_header(bytes(data[: bs.MAX_HEADER_BYTES]))


def read_layout(data: bytes) -> tuple[Header, Optional[LevelTable]]:
    """Header and level table of a stream or prefix; the table is None while ``data`` ends before it."""
    header = read_header(data)
    if len(data) < header.level0_end:
        return header, None
    return header, bs.try_parse_table(data, header.level0_end)


def level_boundaries(data: bytes) -> list[int]:
    """Stream length needed for each level: entry j is the byte count that completes level j.

    Entry 0 covers header and z; the last entry is the whole stream. Cutting a
    stream at any of these offsets leaves a stream that decodes to that level.
    A prefix that ends before the level table (the bytes right after z) lists level 0 only.
    """
    header, table = read_layout(data)
    return bs.level_ends(header, table)


def truncate_to_level(data: bytes, level: int) -> bytes:
    """The prefix of ``data`` that decodes exactly to ``level`` (what a server sends)."""
    ends = level_boundaries(data)
    if not 0 <= level < len(ends):
        raise ValueError(f"level must lie in 0..{len(ends) - 1}")
    return bytes(data[: ends[level]])


class LatentDecoder:
    """Incremental decoder of one stream.

    Feed bytes as they arrive; each complete chunk is decoded at once::

        dec = LatentDecoder(tables, prior=lambda z, header: (means, scale_indices))
        for packet in packets:
            dec.feed(packet)
            y_hat = dec.y_hat()          # latent at dec.level
        dec.complete                      # True once every chunk is in

    Without ``prior``, call :meth:`set_prior` once :attr:`z` is available.
    ``expected_codec_id`` (4 bytes, a bundle's) makes a stream of another bundle
    fail early; without it the stream must name these entropy tables.
    ``max_latent_elements`` bounds the memory a header may ask for. ``reconstruction``
    picks where a partly decoded element is placed (:meth:`residual_estimate`).
    ``channel_priority`` (a bundle's) is needed for streams in the ``CHANNEL_WEIGHTED`` order.
    """

    def __init__(
        self,
        tables: EntropyTables,
        *,
        prior: Optional[PriorFn] = None,
        coder: str = "fast",
        expected_codec_id: Optional[bytes] = None,
        max_latent_elements: int = bs.MAX_Y_ELEMENTS,
        reconstruction: str = "midpoint",
        channel_priority: Optional[np.ndarray] = None,
    ) -> None:
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
        self.reconstruction = reconstruction
        if expected_codec_id is not None and len(expected_codec_id) != bs.CODEC_ID_BYTES:
            raise ValueError(f"expected_codec_id must be {bs.CODEC_ID_BYTES} bytes")
        self.tables = tables
        self._prior_fn = prior
        self._coder: Coder = get_coder(coder)
        self._expected_id = expected_codec_id
        self._max_elements = max_latent_elements
        self._buf = bytearray()
        self.header: Optional[Header] = None
        self.table: Optional[LevelTable] = None
        self.z: Optional[np.ndarray] = None
        self._chunk_starts: list[int] = []
        self._means: Optional[np.ndarray] = None
        self._state: Optional[PlaneState] = None
        self._escape: Optional[np.ndarray] = None  # exact residual corrections once decoded
        self._running_crc = 0
        # a chunk without a check is decoded at once but verified by the check that closes its
        # run (docs/bitstream.md 2.4): what to return to when that check fails
        self._verified_crc = 0
        self._verified_level = 0
        self._run_start = 0  # position in the plane's order where the unverified chunks begin
        self.level = 0
        self._plane = -1
        self._order: Optional[np.ndarray] = None
        self._plane_ends: Optional[np.ndarray] = None
        self._plane_first_chunk = 0
        self._layout_checked = False
        self._channel_priority = None if channel_priority is None else np.asarray(channel_priority)
        self._offsets: Optional[np.ndarray] = None  # checked against the header's channel count

    # ----------------------------------------------------------------- status
    @property
    def num_levels(self) -> Optional[int]:
        """Highest level (number of chunks), once the level table is in."""
        return None if self.table is None else self.table.num_levels

    @property
    def verified_level(self) -> int:
        """The deepest level whose chunks have all passed a check. ``level`` may be ahead of it by
        the chunks of an unfinished check run (at most about CHECK_RUN_BYTES of them); when the
        run's check fails, the decoder returns to this level."""
        return self._verified_level

    @property
    def ready(self) -> bool:
        """True once header, z and prior are in, so :meth:`y_hat` works."""
        return self._state is not None

    @property
    def complete(self) -> bool:
        return self.table is not None and self._state is not None and self.level == self.table.num_levels

    @property
    def needs_more(self) -> bool:
        """True while the stream has bytes that have not arrived yet."""
        return self.table is None or self.bytes_received < self.stream_size

    @property
    def bytes_received(self) -> int:
        return len(self._buf)

    @property
    def stream_size(self) -> Optional[int]:
        """Total stream bytes, once the level table is in."""
        if self.table is None:
            return None
        return bs.level_ends(self.header, self.table)[-1]

    def bytes_for_level(self, level: int) -> int:
        """Stream bytes needed to decode up to ``level`` (header and z included)."""
        if self.header is None:
            raise RuntimeError("header not received yet")
        ends = bs.level_ends(self.header, self.table)
        if level >= len(ends):
            raise RuntimeError("level table not received yet" if self.table is None else
                               f"level must lie in 0..{len(ends) - 1}")
        return ends[level]

    # ---------------------------------------------------------------- feeding
    def feed(self, data: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Append bytes; decode whatever became complete. Returns the number of new levels.

        Bytes past the end of the stream raise :class:`TrailingBytesError` (a
        :class:`CorruptStreamError`) after every level before them has been decoded; the
        decoder stays usable at its level.
        """
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data, dtype=np.uint8).ravel()
        view = memoryview(data).cast("B")
        before = self.level
        size = self.stream_size
        if size is not None and len(self._buf) + len(view) > size:
            excess = len(self._buf) + len(view) - size
            self._buf += view[: len(view) - excess]
            self._advance()
            raise TrailingBytesError(excess, size)
        self._buf += view
        self._advance()
        size = self.stream_size
        if size is not None and len(self._buf) > size:
            excess = len(self._buf) - size
            del self._buf[size:]
            self._advance()
            raise TrailingBytesError(excess, size)
        return self.level - before

    def set_prior(self, means: np.ndarray, scale_indices: np.ndarray) -> None:
        """Provide the hyper-synthesis output for this stream's z; decodes buffered chunks."""
        if self.header is None or self.z is None:
            raise RuntimeError("set_prior needs the header and z section first")
        if self._state is not None:
            raise RuntimeError("prior already set")
        shape = self.header.y_shape
        means = _as_chw("means", means)
        kidx3 = _as_chw("scale_indices", scale_indices)
        if means.shape != shape or kidx3.shape != shape:
            raise ValueError(f"means {means.shape} and scale indices {kidx3.shape} must have the stream's y shape {shape}")
        kidx = _check_scale_indices(kidx3, self.tables)
        if scale_index_crc(kidx) != self.header.scale_index_crc:
            raise PriorMismatchError(
                "scale indices differ from the encoder's (CRC mismatch): the hyperprior ran differently "
                "here (other weights, backend or precision), so the y planes cannot be decoded"
            )
        self._means = means.astype(np.float32, copy=True)
        self._state = PlaneState.start(kidx, self.tables.trit)
        self._advance()

    def _check_table_against_prior(self) -> None:
        st, table = self._state, self.table
        if st.num_planes != table.num_planes:
            raise PriorMismatchError(f"prior gives {st.num_planes} planes, the stream has {table.num_planes}")
        for plane, count in enumerate(table.chunks_per_plane):
            if count > st.participants(plane):
                raise CorruptStreamError(
                    f"plane {plane}: the level table lists {count} chunks for {st.participants(plane)} symbols")

    def _advance(self) -> None:
        if self.header is None:
            header = bs.try_parse_header(self._buf)
            if header is None:
                return
            y_elements = math.prod(header.y_shape)
            if y_elements > self._max_elements:
                raise LimitError(f"the stream's latent has {y_elements} elements, more than this decoder's limit of "
                                 f"{self._max_elements} (raise max_pixels / max_latent_elements to decode it)")
            if header.ordering == Ordering.CHANNEL_WEIGHTED:
                if self._channel_priority is None:
                    raise TableMismatchError(
                        "the stream orders its symbols by channel priorities (CHANNEL_WEIGHTED) and this "
                        "decoder has none: decode it with the bundle that wrote it")
                try:
                    self._offsets = check_channel_priority(self._channel_priority, header.y_shape[0])
                except ValueError as exc:
                    raise TableMismatchError(f"the stream's channel-weighted order does not fit this decoder's "
                                             f"channel priorities: {exc}") from exc
            self.header = header
        if self.z is None:
            if len(self._buf) < self.header.level0_end:
                return
            self._decode_level0()
        if self.table is None:
            self.table = bs.try_parse_table(self._buf, self.header.level0_end)
            if self.table is None:
                return
            self._running_crc = bs.crc32(bytes(self._buf[self.header.level0_end : self.header.level0_end + self.table.size]))
            self._verified_crc = self._running_crc
            ends = bs.level_ends(self.header, self.table)
            self._chunk_starts = [ends[0] + self.table.size] + ends[1:-1]
        if self._state is None:
            return
        if not self._layout_checked:
            self._check_table_against_prior()
            self._layout_checked = True
        while self.level < self.table.num_levels:
            start = self._chunk_starts[self.level]
            length = self.table.lengths[self.level]
            if len(self._buf) < start + length:
                return
            self._decode_chunk(self.level, bytes(self._buf[start : start + length]))
            self.level += 1

    def _decode_level0(self) -> None:
        h = self.header
        bs.check_level0(self._buf, h)
        if self._expected_id is not None and h.codec_id != self._expected_id:
            raise BundleMismatchError(
                f"stream comes from codec {h.codec_id.hex()}, this decoder runs {self._expected_id.hex()} "
                "(another bundle, quality or model)")
        tables_id = tables_codec_id(self.tables, self._offsets)
        if self._expected_id is None and h.codec_id != tables_id:
            raise TableMismatchError(
                f"stream was coded for codec {h.codec_id.hex()}, this decoder holds entropy tables "
                f"{tables_id.hex()} (a bundle's stream needs the bundle's codec id)")
        z_shape = (self.tables.z.num_channels, *h.z_size)
        if math.prod(z_shape) > bs.MAX_Z_ELEMENTS:
            raise CorruptStreamError(f"z of shape {z_shape} exceeds {bs.MAX_Z_ELEMENTS} elements")
        payload = bytes(self._buf[h.size : h.level0_end])
        try:
            values = self._coder.decode_z(payload, _z_channels(z_shape), self.tables.z)
        except RangeCoderError as exc:
            raise CorruptStreamError(f"z section does not decode: {exc}") from exc
        self.z = values.reshape(z_shape)
        if self._prior_fn is not None:
            means, kidx = self._prior_fn(self.z, h)
            self.set_prior(means, kidx)

    def _verified(self, index: int, running: int) -> None:
        self._running_crc = self._verified_crc = running
        self._verified_level = index + 1

    def _fail_run(self, message: str, index: int, upto: int) -> CorruptChunkError:
        """Undo the unverified chunks of the current run (positions up to ``upto`` of the plane's
        order) and return to the last verified level."""
        if upto > self._run_start:
            self._coder.rollback(self._order, self._run_start, upto, self._state)
        first = self._verified_level
        self._running_crc = self._verified_crc
        self.level = first
        run = f"chunks {first}..{index}" if first < index else f"chunk {index}"
        return CorruptChunkError(f"{run}: {message}", index)

    def _decode_chunk(self, index: int, chunk: bytes) -> None:
        table, st, tab = self.table, self._state, self.tables.trit
        check_len = table.check_bytes(index)
        payload, stored = chunk[: len(chunk) - check_len], chunk[len(chunk) - check_len:]
        plane = table.plane_of_chunk(index)
        if plane == table.num_planes:
            where = f"chunk {index} (escapes)"
            edges = st.edges()
            try:
                overflow = self._coder.decode_escapes(payload, edges.size)
            except RangeCoderError as exc:
                raise CorruptChunkError(f"{where}: {exc}", index) from exc
            running = bs.crc32(payload, overflow.astype("<i8").tobytes(), start=self._running_crc)
            if bs.chunk_check(running, check_len) != stored:
                raise CorruptChunkError(f"{where}: check mismatch", index)
            correction = np.zeros(st.prefix.size, np.int64)
            correction[edges] = np.where(st.symbols()[edges] == 0, -overflow, overflow)
            self._escape = correction
            self._verified(index, running)
            return
        if plane != self._plane:
            self._plane, self._plane_first_chunk, self._run_start = plane, index, 0
            self._order = self._coder.plane_order(plane, st, tab, self.header.ordering == Ordering.SIGMA, self._offsets)
            self._plane_ends = plane_cuts(self._coder.plane_cumulative_costs(self._order, st, tab),
                                          table.chunks_per_plane[plane])
        m = index - self._plane_first_chunk
        a = 0 if m == 0 else int(self._plane_ends[m - 1])
        b = int(self._plane_ends[m])
        where = f"chunk {index} (plane {plane}, symbols {a}..{b})"
        try:
            trits = self._coder.decode_chunk(self._order, a, b, st, tab, payload)
        except RangeCoderError as exc:
            raise self._fail_run(f"{where}: {exc}; the payload is damaged", index, a) from exc
        running = bs.crc32(payload, trits.tobytes(), start=self._running_crc)
        if check_len == 0:
            self._running_crc = running  # verified when its run closes
            return
        if bs.chunk_check(running, check_len) != stored:
            raise self._fail_run(f"{where}: check mismatch; the payload is damaged or the decoder's probabilities "
                                 "differ from the encoder's", index, b)
        self._verified(index, running)
        self._run_start = b

    # ---------------------------------------------------------------- results
    def residual_estimate(self, rule: Optional[str] = None) -> np.ndarray:
        """The decoded residual round(y - mean) as far as it is known, float64, shape (C, H, W).

        ``rule`` (default: the decoder's ``reconstruction``): ``"midpoint"``, the middle of each
        element's current symbol interval, the grid point a quantiser with that step would give
        (what the adapter is trained on); ``"conditional_mean"``, E[residual | decoded trits] under
        the integer tables (docs/bitstream.md 5.5). Both are exact at full depth.
        """
        return self._estimate(rule).astype(np.float64, copy=False).reshape(self.header.y_shape)

    def _estimate(self, rule: Optional[str]) -> np.ndarray:
        """The residual estimate, flat: int64 for ``midpoint`` (exact integers), float64 for
        ``conditional_mean``. Computed in place, two arrays at a time: at 12 MP the latent has
        6 M elements and each temporary costs 48 MB."""
        if self._state is None:
            raise RuntimeError("nothing decoded yet: header, z and prior are needed first")
        rule = rule or self.reconstruction
        st = self._state
        if rule == "conditional_mean":
            est = self._coder.conditional_mean(st, self.tables.trit)
        elif rule == "midpoint":
            # prefix·3^rem + (3^rem − 1)/2 − (3^plane_len − 1)/2: the middle of the symbol's interval
            est = st.prefix.astype(np.int64)
            step = POW3[st.rem]
            est *= step
            step -= 1
            step //= 2
            est += step
            step = POW3[st.plane_len]
            step -= 1
            step //= 2
            est -= step
            del step
        else:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {rule!r}")
        if self._escape is not None:
            est += self._escape
        return est

    def decoded_bits(self) -> np.ndarray:
        """Information decoded so far per element, in bits, float64, shape (C, H, W).

        ``-log2`` of the integer-table probability of the element's current symbol interval:
        by the chain rule, the sum of its decoded trits' ideal code lengths (the escape
        chunk's overflows are not included). For bit-allocation maps, not for decoding.
        """
        if self._state is None:
            raise RuntimeError("nothing decoded yet: header, z and prior are needed first")
        st, trit = self._state, self.tables.trit
        width = POW3[st.rem.astype(np.int64)]
        lo = st.prefix.astype(np.int64) * width
        start = trit.cdf_start[st.kidx]
        mass = trit.cdf[start + lo + width].astype(np.int64) - trit.cdf[start + lo].astype(np.int64)
        bits = trit.precision_bits - np.log2(np.maximum(mass, 1))
        return bits.reshape(self.header.y_shape)

    def y_hat(self, rule: Optional[str] = None) -> np.ndarray:
        """Latent estimate at the current level: means + the residual estimate under ``rule`` (float32)."""
        est = self._estimate(rule)
        if est.dtype == np.int64:
            # integers this small are exact in float32, and a float32 sum of two float32 values is
            # correctly rounded: the same ŷ as a float64 sum rounded once, with 8 bytes per element less
            out = est.astype(np.float32).reshape(self.header.y_shape)
            out += self._means
            return out
        return (self._means + est.reshape(self.header.y_shape)).astype(np.float32)

    def residual(self) -> np.ndarray:
        """The exact integer residual round(y - mean); only once the stream is complete."""
        if not self.complete:
            raise RuntimeError(f"stream not complete (level {self.level} of {self.num_levels})")
        st = self._state
        q = st.symbols() - (POW3[st.plane_len] - 1) // 2 + self._escape
        return q.reshape(self.header.y_shape)


def decode_stream(
    data: bytes,
    tables: EntropyTables,
    prior: PriorFn,
    *,
    coder: str = "fast",
    expected_codec_id: Optional[bytes] = None,
    channel_priority: Optional[np.ndarray] = None,
) -> LatentDecoder:
    """Decode every whole chunk of ``data`` (a stream or a prefix of one).

    Raises :class:`TruncatedStreamError` when the header or z section is
    incomplete; a stream cut inside the y section decodes to the last whole
    chunk (``decoder.level``), which is what progressive decoding is for.
    """
    dec = LatentDecoder(tables, prior=prior, coder=coder, expected_codec_id=expected_codec_id,
                        channel_priority=channel_priority)
    dec.feed(data)
    if dec.header is None:
        raise TruncatedStreamError(f"stream ends inside its header ({len(data)} bytes)")
    if dec.z is None:
        raise TruncatedStreamError("stream ends inside its z section")
    return dec


__all__ = [
    "BitstreamError",
    "ChunkSchedule",
    "DEFAULT_TARGET_LEVELS",
    "LatentDecoder",
    "StreamInfo",
    "decode_stream",
    "encode_latent",
    "level_boundaries",
    "plane_cuts",
    "read_header",
    "read_layout",
    "truncate_to_level",
    "scale_index_crc",
    "tables_codec_id",
]
