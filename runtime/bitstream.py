"""The edge-sdk stream container: one module, mirroring ``docs/bitstream.md``.

Layout (all integers little-endian)::

    prefix   magic "EDGT" | version u8 | flags u8 | header_size u32
    header   header_size bytes, the last 4 being CRC32(prefix + header[:-4])
    payload  z payload | chunk 0 payload | chunk 1 payload | ...

The header holds everything a decoder must know before the first payload
byte: stream metadata, shapes, the chunk schedule and the chunk table
(symbols, byte length and CRC of every chunk). A receiver that has the header
knows exactly which byte ranges complete which level.

Only structure lives here; the meaning of the payloads is in ``codec.py``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import CorruptStreamError, ForeignStreamError, TruncatedStreamError
from .tables import MAX_PLANES

MAGIC = b"EDGT"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<4sBBI")
PREFIX_SIZE = PREFIX.size  # 10

MAX_HEADER_SIZE = 1 << 22
MAX_NAME_BYTES = 255
MAX_DIM = 65535
MAX_Y_ELEMENTS = 1 << 27
MAX_Z_ELEMENTS = 1 << 25
MAX_CHUNKS = 1 << 16
MAX_PAYLOAD = 1 << 34


class PriorMode(IntEnum):
    """How the decoder obtains the scale indices from z (docs/bitstream.md 2.2)."""

    FLOAT = 0  # hyper-synthesis in floating point on the decoder's backend
    INTEGER = 1  # the bundle's integer scale path (runtime/integer_prior.py), bit-exact everywhere


class Ordering(IntEnum):
    """Symbol order inside each trit plane."""

    SIGMA = 0  # larger scale first
    EXPECTED_VARIANCE = 1  # larger (variance removed / bits) first, DPICT's rule


@dataclass(frozen=True)
class ChunkEntry:
    symbols: int
    length: int
    crc: int


@dataclass(frozen=True)
class Header:
    """Everything in the header; sizes and offsets are derived properties."""

    model_name: str
    bundle_hash: bytes
    tables_hash: bytes
    image_size: tuple[int, int]  # (height, width) of the original image
    padding: tuple[int, int, int, int]  # (top, left, bottom, right) added before analysis
    quality: int
    prior_mode: PriorMode
    ordering: Ordering
    y_shape: tuple[int, int, int]  # (C, H, W)
    z_shape: tuple[int, int, int]
    scale_index_crc: int
    chunks_per_plane: tuple[int, ...]  # plane 0 (most significant) first
    z_length: int
    z_crc: int
    chunks: tuple[ChunkEntry, ...] = field(default=())  # plane chunks, then the escape chunk

    @property
    def num_planes(self) -> int:
        return len(self.chunks_per_plane)

    @property
    def num_levels(self) -> int:
        """Levels after level 0 (z only): one per chunk, the escape chunk last."""
        return len(self.chunks)

    @property
    def padded_size(self) -> tuple[int, int]:
        top, left, bottom, right = self.padding
        return self.image_size[0] + top + bottom, self.image_size[1] + left + right

    def plane_of_chunk(self, index: int) -> int:
        """Plane of chunk ``index``; ``num_planes`` for the escape chunk."""
        for plane, count in enumerate(self.chunks_per_plane):
            if index < count:
                return plane
            index -= count
        return self.num_planes


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


class _Reader:
    """Bounds-checked reader over a header whose CRC already passed."""

    def __init__(self, data: bytes, pos: int, end: int):
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise CorruptStreamError(f"header field {what} runs past the header end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))

    def varint(self, what: str) -> int:
        value = 0
        for shift in range(0, 63, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:  # one header, one encoding: no padded varints
                    raise CorruptStreamError(f"header field {what} is a non-minimal varint")
                return value
        raise CorruptStreamError(f"header field {what} is an over-long varint")


def serialize_header(h: Header) -> bytes:
    """Prefix + header bytes, CRC included."""
    body = bytearray()
    name = h.model_name.encode("utf-8")
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"model name longer than {MAX_NAME_BYTES} bytes")
    if len(h.bundle_hash) != 16 or len(h.tables_hash) != 16:
        raise ValueError("bundle_hash and tables_hash must be 16 bytes")
    body += struct.pack("<B", len(name)) + name + h.bundle_hash + h.tables_hash
    body += struct.pack("<II4H", *h.image_size, *h.padding)
    body += struct.pack("<BBB", h.quality, int(h.prior_mode), int(h.ordering))
    body += struct.pack("<6H", *h.y_shape, *h.z_shape)
    body += struct.pack("<I", h.scale_index_crc)
    body += struct.pack("<B", h.num_planes)
    for count in h.chunks_per_plane:
        _put_varint(body, count)
    _put_varint(body, h.z_length)
    body += struct.pack("<I", h.z_crc)
    for c in h.chunks:
        _put_varint(body, c.symbols)
        _put_varint(body, c.length)
        body += struct.pack("<I", c.crc)
    header_size = len(body) + 4
    if header_size > MAX_HEADER_SIZE:
        raise ValueError("header too large")
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, 0, header_size)
    crc = zlib.crc32(body, zlib.crc32(prefix))
    return prefix + bytes(body) + struct.pack("<I", crc)


def read_prefix(data: bytes) -> int:
    """Check magic and version; return ``header_size``. Needs ``PREFIX_SIZE`` bytes."""
    if len(data) < PREFIX_SIZE:
        if not MAGIC.startswith(bytes(data[: len(MAGIC)])):
            raise ForeignStreamError("not an edge-sdk stream (bad magic)")
        raise TruncatedStreamError(f"stream ends inside its {PREFIX_SIZE}-byte prefix ({len(data)} bytes)")
    magic, version, flags, header_size = PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ForeignStreamError(f"not an edge-sdk stream (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ForeignStreamError(f"stream format version {version}; this edge-sdk reads version {FORMAT_VERSION}")
    if flags != 0:
        raise ForeignStreamError(f"stream uses flags {flags:#04x} that this edge-sdk does not know")
    if not 4 <= header_size <= MAX_HEADER_SIZE:
        raise CorruptStreamError(f"header size {header_size} out of range")
    return header_size


def parse_header(data: bytes) -> Header:
    """Parse and validate the header at the start of ``data`` (which may hold more)."""
    header_size = read_prefix(data)
    end = PREFIX_SIZE + header_size
    if len(data) < end:
        raise TruncatedStreamError(f"stream ends inside its header ({len(data)} of {end} bytes)")
    (crc,) = struct.unpack_from("<I", data, end - 4)
    if zlib.crc32(data[: end - 4]) != crc:
        raise CorruptStreamError("header CRC mismatch: the header is damaged")
    r = _Reader(data, PREFIX_SIZE, end - 4)
    (name_len,) = r.unpack("B", "model_name length")
    try:
        model_name = r.take(name_len, "model_name").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStreamError("model_name is not UTF-8") from exc
    bundle_hash = r.take(16, "bundle_hash")
    tables_hash = r.take(16, "tables_hash")
    ih, iw, *padding = r.unpack("II4H", "image size and padding")
    quality, prior_mode, ordering = r.unpack("BBB", "quality, prior mode, ordering")
    dims = r.unpack("6H", "latent shapes")
    (scale_crc,) = r.unpack("I", "scale_index_crc")
    (num_planes,) = r.unpack("B", "num_planes")
    chunks_per_plane = tuple(r.varint(f"chunks of plane {i}") for i in range(num_planes))
    z_length = r.varint("z length")
    (z_crc,) = r.unpack("I", "z crc")
    total_chunks = sum(chunks_per_plane) + 1
    if total_chunks > MAX_CHUNKS:
        raise CorruptStreamError(f"{total_chunks} chunks exceed the limit of {MAX_CHUNKS}")
    chunks = []
    for i in range(total_chunks):
        symbols = r.varint(f"chunk {i} symbols")
        length = r.varint(f"chunk {i} length")
        (ccrc,) = r.unpack("I", f"chunk {i} crc")
        chunks.append(ChunkEntry(symbols, length, ccrc))
    if r.pos != r.end:
        raise CorruptStreamError(f"{r.end - r.pos} unexplained bytes at the end of the header")
    try:
        prior = PriorMode(prior_mode)
        order = Ordering(ordering)
    except ValueError as exc:
        raise ForeignStreamError(f"unknown prior mode or ordering ({prior_mode}, {ordering})") from exc
    h = Header(
        model_name=model_name,
        bundle_hash=bundle_hash,
        tables_hash=tables_hash,
        image_size=(ih, iw),
        padding=tuple(padding),
        quality=quality,
        prior_mode=prior,
        ordering=order,
        y_shape=tuple(dims[:3]),
        z_shape=tuple(dims[3:]),
        scale_index_crc=scale_crc,
        chunks_per_plane=chunks_per_plane,
        z_length=z_length,
        z_crc=z_crc,
        chunks=tuple(chunks),
    )
    _check_limits(h)
    return h


def _check_limits(h: Header) -> None:
    for name, shape, limit in (("y", h.y_shape, MAX_Y_ELEMENTS), ("z", h.z_shape, MAX_Z_ELEMENTS)):
        if min(shape) < 1:
            raise CorruptStreamError(f"{name} shape {shape} has an empty axis")
        if shape[0] * shape[1] * shape[2] > limit:
            raise CorruptStreamError(f"{name} shape {shape} exceeds {limit} elements")
    if h.num_planes > MAX_PLANES:
        raise CorruptStreamError(f"{h.num_planes} planes exceed the limit of {MAX_PLANES}")
    if any(c < 1 for c in h.chunks_per_plane):
        raise CorruptStreamError("every plane needs at least one chunk")
    y_elements = h.y_shape[0] * h.y_shape[1] * h.y_shape[2]
    if any(c.symbols > y_elements for c in h.chunks):
        raise CorruptStreamError("a chunk claims more symbols than the latent has elements")
    if any(c.symbols == 0 for c in h.chunks[:-1]):
        raise CorruptStreamError("a plane chunk holds no symbols")
    if h.z_length + sum(c.length for c in h.chunks) > MAX_PAYLOAD:
        raise CorruptStreamError("payload size exceeds the limit")


def payload_offsets(h: Header, header_bytes: int) -> tuple[int, list[int]]:
    """Byte offset of the z payload and of every chunk payload in the stream."""
    z_start = header_bytes
    pos = z_start + h.z_length
    starts = []
    for c in h.chunks:
        starts.append(pos)
        pos += c.length
    return z_start, starts


def stream_size(h: Header, header_bytes: int) -> int:
    return header_bytes + h.z_length + sum(c.length for c in h.chunks)


def crc32(*parts: bytes) -> int:
    crc = 0
    for p in parts:
        crc = zlib.crc32(p, crc)
    return crc
