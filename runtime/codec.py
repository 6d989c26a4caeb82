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

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import bitstream as bs
from .bitstream import ChunkEntry, Header, Ordering, PriorMode
from .coders import Coder, PlaneState, get_coder
from .errors import (
    BitstreamError,
    BundleMismatchError,
    CorruptChunkError,
    CorruptStreamError,
    PriorMismatchError,
    TableMismatchError,
    TruncatedStreamError,
)
from .rangecoder import RangeCoderError
from .tables import POW3, EntropyTables

#: Largest |round(y - mean)| or |z| the escape code carries.
MAX_ABS_SYMBOL = 1 << 38
NO_BUNDLE = bytes(16)

PriorFn = Callable[[np.ndarray, Header], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class ChunkSchedule:
    """How the encoder cuts planes into chunks (levels). Not needed to decode.

    The encoder aims at ``target_levels`` chunks of equal estimated size over
    the whole stream: a plane that holds a share ``b`` of the bits gets about
    ``b * target_levels`` chunks, cut at equal cumulative bits in priority
    order, but never chunks below ``min_chunk_bytes`` (each chunk costs its
    table entry, 3-5 bytes, plus at most one flush byte and its 4-byte CRC:
    about 9 bytes on the benchmark latent). Every plane is at least one chunk.
    """

    target_levels: int = 64
    min_chunk_bytes: int = 24

    def __post_init__(self) -> None:
        if self.target_levels < 1 or self.min_chunk_bytes < 1:
            raise ValueError("target_levels and min_chunk_bytes must be positive")

    def cut(self, costs: np.ndarray, bits_per_level: float) -> list[int]:
        """End positions of the chunks of one plane, given per-symbol costs in bits."""
        n = costs.size
        plane_bits = float(costs.sum())
        count = round(plane_bits / bits_per_level) if bits_per_level > 0 else 1
        count = min(count, int(plane_bits // (8 * self.min_chunk_bytes)), n)
        count = max(1, count)
        if count == 1:
            return [n]
        cum = np.cumsum(costs)
        targets = plane_bits * np.arange(1, count) / count
        cuts = np.unique(np.clip(np.searchsorted(cum, targets) + 1, 1, n - 1))
        return [int(c) for c in cuts] + [n]


@dataclass(frozen=True)
class StreamInfo:
    """Metadata recorded in the header; the runtime does not interpret it."""

    model_name: str = ""
    bundle_hash: bytes = NO_BUNDLE
    image_size: tuple[int, int] = (0, 0)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    quality: int = 0
    prior_mode: PriorMode = PriorMode.FLOAT

    def __post_init__(self) -> None:
        if len(self.model_name.encode("utf-8")) > bs.MAX_NAME_BYTES:
            raise ValueError(f"model_name must fit in {bs.MAX_NAME_BYTES} UTF-8 bytes")
        if len(self.bundle_hash) != 16:
            raise ValueError("bundle_hash must be 16 bytes")
        if len(self.image_size) != 2 or not all(0 <= v < 2**32 for v in self.image_size):
            raise ValueError("image_size must be (height, width), each in 0..2**32-1")
        if len(self.padding) != 4 or not all(0 <= v <= 65535 for v in self.padding):
            raise ValueError("padding must be (top, left, bottom, right), each in 0..65535")
        if not 0 <= self.quality <= 255:
            raise ValueError("quality must lie in 0..255")


def scale_index_crc(scale_indices: np.ndarray) -> int:
    return bs.crc32(np.ascontiguousarray(scale_indices, dtype="<u2").tobytes())


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
) -> bytes:
    """Encode one latent into a progressive stream.

    ``y`` and ``means`` are float arrays of shape (C, H, W); ``scale_indices``
    are integer indices into ``tables.trit.scales`` of the same shape; ``z`` is
    the integer (rounded) hyper-latent. The residual ``round(y - means)``
    (half to even) is coded exactly, whatever its size, up to 2**38.
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

    st = PlaneState.start(kidx, trit)
    centre = (POW3[st.plane_len] - 1) // 2
    s_val = np.clip(q + centre, 0, 2 * centre)
    # Total cost is known up front (to within the trit renormalization): the trit costs
    # of an element telescope to -log2(f[s] / T) of its bin.
    bin_at = trit.cdf_start[kidx] + s_val
    freqs = trit.cdf[bin_at + 1].astype(np.int64) - trit.cdf[bin_at].astype(np.int64)
    total_bits = float(np.sum(trit.precision_bits - np.log2(freqs)))
    bits_per_level = total_bits / schedule.target_levels

    chunks: list[ChunkEntry] = []
    payloads: list[bytes] = []
    chunks_per_plane = []
    by_sigma = ordering == Ordering.SIGMA
    for plane in range(st.num_planes):
        order = impl.plane_order(plane, st, trit, by_sigma)
        trits, sym_freq = impl.plane_symbols(order, st, trit, s_val)
        costs = trit.precision_bits - np.log2(sym_freq)
        ends = schedule.cut(costs, bits_per_level)
        start = 0
        for end in ends:
            payload = impl.encode_chunk(order, start, end, trits, st, trit)
            crc = bs.crc32(payload, trits[start:end].tobytes())
            chunks.append(ChunkEntry(end - start, len(payload), crc))
            payloads.append(payload)
            start = end
        chunks_per_plane.append(len(ends))
        impl.apply(order, 0, order.size, trits, st)

    edges = st.edges()
    q_edge, c_edge = q[edges], centre[edges]
    overflow = np.where(s_val[edges] == 0, -c_edge - q_edge, q_edge - c_edge).astype(np.int64)
    esc_payload = impl.encode_escapes(overflow)
    chunks.append(ChunkEntry(int(edges.size), len(esc_payload), bs.crc32(esc_payload, overflow.astype("<i8").tobytes())))
    payloads.append(esc_payload)

    z_payload = impl.encode_z(z_f.astype(np.int64).ravel(), _z_channels(z.shape), tables.z)
    header = Header(
        model_name=info.model_name,
        bundle_hash=info.bundle_hash,
        tables_hash=tables.digest,
        image_size=tuple(info.image_size),
        padding=tuple(info.padding),
        quality=info.quality,
        prior_mode=info.prior_mode,
        ordering=Ordering(ordering),
        y_shape=tuple(y.shape),
        z_shape=tuple(z.shape),
        scale_index_crc=scale_index_crc(kidx),
        chunks_per_plane=tuple(chunks_per_plane),
        z_length=len(z_payload),
        z_crc=bs.crc32(z_payload),
        chunks=tuple(chunks),
    )
    return bs.serialize_header(header) + z_payload + b"".join(payloads)


def read_header(data: bytes) -> Header:
    """Parse a stream's header (for inspection; decoding is :class:`LatentDecoder`)."""
    return bs.parse_header(bytes(data[: bs.PREFIX_SIZE + bs.read_prefix(bytes(data[: bs.PREFIX_SIZE]))]))


def level_boundaries(data: bytes) -> list[int]:
    """Stream length needed for each level: entry j is the byte count that completes level j.

    Entry 0 covers header and z; the last entry is the whole stream. Cutting a
    stream at any of these offsets leaves a stream that decodes to that level.
    """
    h = read_header(data)
    header_bytes = bs.PREFIX_SIZE + bs.read_prefix(bytes(data[: bs.PREFIX_SIZE]))
    ends = [header_bytes + h.z_length]
    for c in h.chunks:
        ends.append(ends[-1] + c.length)
    return ends


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
    ``expected_bundle_hash`` (16 bytes) makes a stream of another bundle fail
    early. ``max_latent_elements`` bounds the memory a header may ask for.
    """

    def __init__(
        self,
        tables: EntropyTables,
        *,
        prior: Optional[PriorFn] = None,
        coder: str = "fast",
        expected_bundle_hash: Optional[bytes] = None,
        max_latent_elements: int = bs.MAX_Y_ELEMENTS,
    ) -> None:
        self.tables = tables
        self._prior_fn = prior
        self._coder: Coder = get_coder(coder)
        self._expected_bundle = expected_bundle_hash
        self._max_elements = max_latent_elements
        self._buf = bytearray()
        self.header: Optional[Header] = None
        self.z: Optional[np.ndarray] = None
        self._header_bytes = 0
        self._chunk_starts: list[int] = []
        self._means: Optional[np.ndarray] = None
        self._state: Optional[PlaneState] = None
        self._escape: Optional[np.ndarray] = None  # exact residual corrections once decoded
        self.level = 0
        self._plane = 0
        self._plane_pos = 0
        self._order: Optional[np.ndarray] = None

    # ----------------------------------------------------------------- status
    @property
    def num_levels(self) -> Optional[int]:
        """Highest level (number of chunks), once the header is in."""
        return None if self.header is None else self.header.num_levels

    @property
    def ready(self) -> bool:
        """True once header, z and prior are in, so :meth:`y_hat` works."""
        return self._state is not None

    @property
    def complete(self) -> bool:
        return self.header is not None and self._state is not None and self.level == self.header.num_levels

    @property
    def needs_more(self) -> bool:
        """True while the stream has chunks that have not arrived yet."""
        return self.header is None or self.bytes_received < self.stream_size

    @property
    def bytes_received(self) -> int:
        return len(self._buf)

    @property
    def stream_size(self) -> Optional[int]:
        return None if self.header is None else bs.stream_size(self.header, self._header_bytes)

    def bytes_for_level(self, level: int) -> int:
        """Stream bytes needed to decode up to ``level`` (header and z included)."""
        if self.header is None:
            raise RuntimeError("header not received yet")
        return self._header_bytes + self.header.z_length + sum(c.length for c in self.header.chunks[:level])

    # ---------------------------------------------------------------- feeding
    def feed(self, data: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Append bytes; decode whatever became complete. Returns the number of new levels.

        Bytes are taken only up to the end the header declares; more raises
        :class:`CorruptStreamError` (the stream itself stays usable).
        """
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data, dtype=np.uint8).ravel()
        view = memoryview(data).cast("B")
        before = self.level
        offset = 0
        while offset < len(view):
            room = self._next_boundary() - len(self._buf)
            if room <= 0 and self.header is None:
                self._advance()  # the header is in but did not parse: raise that error again
            if room <= 0:
                raise CorruptStreamError(
                    f"{len(view) - offset} bytes past the end of the stream ({self.stream_size} bytes)"
                )
            take = min(room, len(view) - offset)
            self._buf += view[offset : offset + take]
            offset += take
            self._advance()
        return self.level - before

    def _next_boundary(self) -> int:
        """Buffer length at which the next parse step can run (or the stream's end)."""
        if self.header is not None:
            return self.stream_size
        if len(self._buf) < bs.PREFIX_SIZE:
            return bs.PREFIX_SIZE
        return bs.PREFIX_SIZE + bs.read_prefix(bytes(self._buf[: bs.PREFIX_SIZE]))

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
        st = PlaneState.start(kidx, self.tables.trit)
        if st.num_planes != self.header.num_planes:
            raise PriorMismatchError(f"prior gives {st.num_planes} planes, the stream has {self.header.num_planes}")
        index = 0
        for plane, count in enumerate(self.header.chunks_per_plane):
            symbols = sum(c.symbols for c in self.header.chunks[index : index + count])
            index += count
            if symbols != st.participants(plane):
                raise CorruptStreamError(
                    f"plane {plane}: the chunk table holds {symbols} symbols, the prior gives {st.participants(plane)}"
                )
        self._means = means.astype(np.float32, copy=True)
        self._state = st
        self._advance()

    def _advance(self) -> None:
        if self.header is None:
            self._try_header()
        if self.header is not None and self.z is None:
            self._try_z()
        if self._state is None:
            return
        while self.level < self.header.num_levels:
            entry = self.header.chunks[self.level]
            start = self._chunk_starts[self.level]
            if len(self._buf) < start + entry.length:
                return
            self._decode_chunk(self.level, entry, bytes(self._buf[start : start + entry.length]))
            self.level += 1

    def _try_header(self) -> None:
        if len(self._buf) < bs.PREFIX_SIZE:
            if self._buf and not bs.MAGIC.startswith(bytes(self._buf[:4])):
                bs.read_prefix(bytes(self._buf))  # raises ForeignStreamError
            return
        size = bs.PREFIX_SIZE + bs.read_prefix(bytes(self._buf[: bs.PREFIX_SIZE]))
        if len(self._buf) < size:
            return
        header = bs.parse_header(bytes(self._buf[:size]))
        if header.tables_hash != self.tables.digest:
            raise TableMismatchError(
                f"stream was coded with entropy tables {header.tables_hash.hex()}, "
                f"this decoder holds {self.tables.digest.hex()}"
            )
        if self._expected_bundle is not None and header.bundle_hash != self._expected_bundle:
            raise BundleMismatchError(
                f"stream comes from bundle {header.bundle_hash.hex()} ({header.model_name or 'unnamed'}), "
                f"this decoder runs bundle {self._expected_bundle.hex()}"
            )
        y_elements = math.prod(header.y_shape)
        if y_elements > self._max_elements:
            raise CorruptStreamError(f"latent of {y_elements} elements exceeds this decoder's limit of {self._max_elements}")
        if header.z_shape[0] != self.tables.z.num_channels:
            raise TableMismatchError(f"stream z has {header.z_shape[0]} channels, the z tables {self.tables.z.num_channels}")
        self.header = header
        self._header_bytes = size
        _, self._chunk_starts = bs.payload_offsets(header, size)

    def _try_z(self) -> None:
        h = self.header
        end = self._header_bytes + h.z_length
        if len(self._buf) < end:
            return
        payload = bytes(self._buf[self._header_bytes : end])
        if bs.crc32(payload) != h.z_crc:
            raise CorruptStreamError("z section CRC mismatch: the z payload is damaged")
        try:
            values = self._coder.decode_z(payload, _z_channels(h.z_shape), self.tables.z)
        except RangeCoderError as exc:
            raise CorruptStreamError(f"z section does not decode: {exc}") from exc
        self.z = values.reshape(h.z_shape)
        if self._prior_fn is not None:
            means, kidx = self._prior_fn(self.z, h)
            self.set_prior(means, kidx)

    def _decode_chunk(self, index: int, entry: ChunkEntry, payload: bytes) -> None:
        h, st, tab = self.header, self._state, self.tables.trit
        plane = h.plane_of_chunk(index)
        where = f"chunk {index} (plane {plane}"
        if plane == h.num_planes:
            edges = st.edges()
            if entry.symbols != edges.size:
                raise CorruptChunkError(
                    f"{where}, escapes): table lists {entry.symbols} edge elements, the planes give {edges.size}", index
                )
            try:
                overflow = self._coder.decode_escapes(payload, edges.size)
            except RangeCoderError as exc:
                raise CorruptChunkError(f"{where}, escapes): {exc}", index) from exc
            if bs.crc32(payload, overflow.astype("<i8").tobytes()) != entry.crc:
                raise CorruptChunkError(f"{where}, escapes): CRC mismatch", index)
            correction = np.zeros(st.prefix.size, np.int64)
            correction[edges] = np.where(st.symbols()[edges] == 0, -overflow, overflow)
            self._escape = correction
            return
        if self._order is None or plane != self._plane:
            self._plane, self._plane_pos = plane, 0
            self._order = self._coder.plane_order(plane, st, tab, h.ordering == Ordering.SIGMA)
        a, b = self._plane_pos, self._plane_pos + entry.symbols
        where += f", symbols {a}..{b})"
        try:
            trits = self._coder.decode_chunk(self._order, a, b, st, tab, payload)
        except RangeCoderError as exc:
            raise CorruptChunkError(f"{where}: {exc}; the payload is damaged", index) from exc
        if bs.crc32(payload, trits.tobytes()) != entry.crc:
            self._coder.rollback(self._order, a, b, st)
            raise CorruptChunkError(
                f"{where}: CRC mismatch; the payload is damaged or the decoder's probabilities "
                "differ from the encoder's",
                index,
            )
        self._plane_pos = b

    # ---------------------------------------------------------------- results
    def residual_estimate(self) -> np.ndarray:
        """E[round(y - mean) | what is decoded], float64, shape (C, H, W)."""
        if self._state is None:
            raise RuntimeError("nothing decoded yet: header, z and prior are needed first")
        est = self._coder.conditional_mean(self._state, self.tables.trit)
        if self._escape is not None:
            est = est + self._escape
        return est.reshape(self.header.y_shape)

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

    def y_hat(self) -> np.ndarray:
        """Latent estimate at the current level: means + conditional mean residual (float32)."""
        return (self._means + self.residual_estimate()).astype(np.float32)

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
    expected_bundle_hash: Optional[bytes] = None,
) -> LatentDecoder:
    """Decode every whole chunk of ``data`` (a stream or a prefix of one).

    Raises :class:`TruncatedStreamError` when the header or z section is
    incomplete; a stream cut inside the y section decodes to the last whole
    chunk (``decoder.level``), which is what progressive decoding is for.
    """
    dec = LatentDecoder(tables, prior=prior, coder=coder, expected_bundle_hash=expected_bundle_hash)
    dec.feed(data)
    if dec.header is None:
        raise TruncatedStreamError(f"stream ends inside its header ({len(data)} bytes)")
    if dec.z is None:
        raise TruncatedStreamError("stream ends inside its z section")
    return dec


__all__ = [
    "BitstreamError",
    "ChunkSchedule",
    "LatentDecoder",
    "StreamInfo",
    "decode_stream",
    "encode_latent",
    "level_boundaries",
    "read_header",
    "truncate_to_level",
    "scale_index_crc",
]
