"""The edge-sdk stream container, format version 3: one module, mirroring ``docs/bitstream.md``.

Layout (fixed-width integers little-endian, varints unsigned LEB128)::

    header       magic "EDGT" | version u8 | mode u8 (prior, ordering, quality) | codec_id 4 bytes
                 | 10 varints (image size, padding, y shape, z height and width, z length)
                 | scale_index_crc u32 | level0_crc u32 (over the header before it, then z)
    z payload
    level table  varint num_planes | varint chunks per plane ... | varint escape chunk length
                 | varint first chunk length | zigzag varint differences of the next ones
    chunks       payload ‖ check, one per level; the last is the escape chunk

Level 0 is the header and z alone. The level table follows z, so a client that
has read a few dozen bytes past level 0 knows where every later level ends.
A CRC-32 runs over the table and every chunk's payload and decoded symbols; a chunk
that closes a *check run* (the last chunk of a plane, or one that brings the bytes since
the previous check to ``CHECK_RUN_BYTES``) ends in 1, 2 or 4 bytes of it, sized to the
run, so the checks cost about 0.2 % of a stream and one damaged or desynchronised chunk
fails its run's check and every later one.

Only structure lives here; what the payloads mean is in ``codec.py``.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Optional

from .errors import CorruptStreamError, ForeignStreamError, TruncatedStreamError
from .tables import MAX_PLANES

MAGIC = b"EDGT"
FORMAT_VERSION = 3
#: what earlier versions were, for the message that refuses them
_OLD_VERSIONS = {1: "edge-sdk 0.1", 2: "edge-sdk before the channel-weighted order"}
#: magic, version, mode (bit 0 prior mode, bits 1-2 ordering, bits 3-7 quality), codec_id
FIXED = struct.Struct("<4sBB4s")
MAX_QUALITY = 31
CODEC_ID_BYTES = 4

MAX_DIM = 65535
MAX_IMAGE_SIDE = (1 << 32) - 1
MAX_Y_ELEMENTS = 1 << 27
MAX_Z_ELEMENTS = 1 << 25
MAX_CHUNKS = 1 << 16
MAX_PAYLOAD = 1 << 34
#: the varints of the header: one header, one encoding (minimal form, at most 9 bytes each)
HEADER_VARINTS = ("image height", "image width", "bottom padding", "right padding", "y channels", "y height",
                  "y width", "z height", "z width", "z length")
MAX_HEADER_BYTES = FIXED.size + 9 * len(HEADER_VARINTS) + 8
#: checks of the last (escape) chunk are always this long: the whole stream's final check
ESCAPE_CHECK_BYTES = 4
#: a plane chunk carries a check when the chunk bytes since the last check reach this (or
#: when it ends its plane): docs/bitstream.md 2.2
CHECK_RUN_BYTES = 1024


class PriorMode(IntEnum):
    """How the decoder obtains the scale indices from z (docs/bitstream.md 2.2)."""

    FLOAT = 0  # hyper-synthesis in floating point on the decoder's backend
    INTEGER = 1  # the bundle's integer scale path (runtime/integer_prior.py), bit-exact everywhere


class Ordering(IntEnum):
    """Symbol order inside each trit plane (docs/bitstream.md 5.2)."""

    SIGMA = 0  # larger scale first
    EXPECTED_VARIANCE = 1  # larger (variance removed / bits) first, DPICT's rule
    #: EXPECTED_VARIANCE with each channel's key shifted by its priority (the bundle's
    #: ``channel_priority``: how much a unit of that channel's error costs in pixels)
    CHANNEL_WEIGHTED = 2


@dataclass(frozen=True)
class Header:
    """Everything before the z payload; ``size`` is its length in bytes."""

    codec_id: bytes  # CODEC_ID_BYTES: the bundle (model, quality, graphs, tables, prior) or the tables alone
    image_size: tuple[int, int]  # (height, width) of the original image
    pad_bottom: int
    pad_right: int
    quality: int
    prior_mode: PriorMode
    ordering: Ordering
    y_shape: tuple[int, int, int]  # (C, H, W)
    z_size: tuple[int, int]  # (H, W) of z; its channels are the z tables'
    z_length: int
    scale_index_crc: int
    level0_crc: int
    size: int = 0

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right); the format pads at the bottom and right only."""
        return (0, 0, self.pad_bottom, self.pad_right)

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.image_size[0] + self.pad_bottom, self.image_size[1] + self.pad_right

    @property
    def level0_end(self) -> int:
        """Stream bytes that complete level 0 (header and z)."""
        return self.size + self.z_length


@dataclass(frozen=True)
class LevelTable:
    """The chunk layout that follows z: how many chunks each plane has and every chunk's length."""

    chunks_per_plane: tuple[int, ...]  # plane 0 (most significant) first
    lengths: tuple[int, ...]  # bytes of every chunk, check included; the escape chunk last
    size: int = 0  # bytes of the table itself

    @property
    def num_planes(self) -> int:
        return len(self.chunks_per_plane)

    @property
    def num_levels(self) -> int:
        """Levels after level 0: one per chunk, the escape chunk last."""
        return len(self.lengths)

    def plane_of_chunk(self, index: int) -> int:
        """Plane of chunk ``index``; ``num_planes`` for the escape chunk."""
        for plane, count in enumerate(self.chunks_per_plane):
            if index < count:
                return plane
            index -= count
        return self.num_planes

    @cached_property
    def checks(self) -> tuple[int, ...]:
        """Check bytes of every chunk (0: the chunk's run goes on), from the lengths alone."""
        return check_layout(self.chunks_per_plane, self.lengths[:-1]) + (ESCAPE_CHECK_BYTES,)

    def check_bytes(self, index: int) -> int:
        """Length of chunk ``index``'s check (0 when it carries none)."""
        return self.checks[index]


def check_size(run_length: int) -> int:
    """Check bytes that close a run of ``run_length`` chunk bytes (payloads and the check)."""
    return 1 if run_length < 256 else 2 if run_length < 4096 else 4


def check_layout(chunks_per_plane: tuple[int, ...], plane_lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Check bytes of each plane chunk, given every plane chunk's length (its check included).

    A chunk closes a run, and carries ``check_size(run)`` bytes, when it is the last of its
    plane or when the run (this chunk and the unchecked ones before it) reaches
    CHECK_RUN_BYTES; other chunks carry none (docs/bitstream.md 2.2).
    """
    checks, run, index = [], 0, 0
    for count in chunks_per_plane:
        for m in range(count):
            run += plane_lengths[index]
            closes = m == count - 1 or run >= CHECK_RUN_BYTES
            checks.append(check_size(run) if closes else 0)
            run = 0 if closes else run
            index += 1
    return tuple(checks)


def plane_chunk_lengths(chunks_per_plane: tuple[int, ...], payload_lengths: list[int]) -> list[int]:
    """Chunk lengths a writer stores for these payloads (in stream order), the inverse of
    :func:`check_layout`: a chunk closes its run when the run's payloads reach CHECK_RUN_BYTES
    or it ends its plane, with the smallest check whose tier the run lands in; an unchecked
    chunk with an empty payload is one 00 byte (which decodes as the empty payload), so that
    every chunk has at least one byte and the level ends strictly increase."""
    lengths, run, index = [], 0, 0
    for count in chunks_per_plane:
        for m in range(count):
            payload = payload_lengths[index]
            unchecked = max(payload, 1)
            if m == count - 1 or run + unchecked >= CHECK_RUN_BYTES:  # what check_layout reads back
                check = next(c for c in (1, 2, 4) if check_size(run + payload + c) == c)
                lengths.append(payload + check)
                run = 0
            else:
                lengths.append(unchecked)
                run += unchecked
            index += 1
    return lengths


def chunk_check(running_crc: int, check_bytes: int) -> bytes:
    """The stored check: the low ``check_bytes`` bytes of the running CRC-32, little-endian."""
    return (running_crc & ((1 << (8 * check_bytes)) - 1)).to_bytes(check_bytes, "little")


def put_varint(out: bytearray, value: int) -> None:
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


class _NeedMore(Exception):
    """The bytes so far end inside the structure being parsed."""


class _Reader:
    """Reader over a growing buffer: running out raises _NeedMore, bad encodings CorruptStreamError."""

    def __init__(self, data: bytes | bytearray, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _NeedMore
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        value = 0
        for shift in range(0, 63, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:  # one stream, one encoding: no padded varints
                    raise CorruptStreamError(f"{what} is a non-minimal varint")
                return value
        raise CorruptStreamError(f"{what} is an over-long varint")


def serialize_header(h: Header, z_payload: bytes) -> bytes:
    """Header bytes, ``level0_crc`` computed over them and ``z_payload`` (which follows them)."""
    if len(h.codec_id) != CODEC_ID_BYTES:
        raise ValueError(f"codec_id must be {CODEC_ID_BYTES} bytes")
    if not 0 <= h.quality <= MAX_QUALITY:
        raise ValueError(f"quality must lie in 0..{MAX_QUALITY}")
    mode = int(h.prior_mode) | int(h.ordering) << 1 | h.quality << 3
    out = bytearray(FIXED.pack(MAGIC, FORMAT_VERSION, mode, h.codec_id))
    for value in (*h.image_size, h.pad_bottom, h.pad_right, *h.y_shape, *h.z_size, len(z_payload)):
        put_varint(out, value)
    out += struct.pack("<I", h.scale_index_crc)
    out += struct.pack("<I", zlib.crc32(z_payload, zlib.crc32(out)))
    return bytes(out)


def _check_magic(data: bytes | bytearray) -> None:
    head = bytes(data[:5])
    if not head[:4] == MAGIC[: len(head[:4])]:
        raise ForeignStreamError(f"not an edge-sdk stream (magic {head[:4]!r}, expected {MAGIC!r})")
    if len(head) == 5 and head[4] != FORMAT_VERSION:
        made_by = f" (written by {_OLD_VERSIONS[head[4]]}: re-encode the image)" if head[4] in _OLD_VERSIONS else ""
        raise ForeignStreamError(
            f"stream format version {head[4]}; this edge-sdk reads version {FORMAT_VERSION} only{made_by}")


def try_parse_header(data: bytes | bytearray) -> Optional[Header]:
    """The header at the start of ``data``, or None while ``data`` ends inside it.

    Checks structure and limits; ``level0_crc`` can only be checked once z is in
    (:func:`check_level0`).
    """
    _check_magic(data)
    r = _Reader(data)
    try:
        _, _, mode, codec_id = FIXED.unpack(r.take(FIXED.size))
        ih, iw, pb, pr, c, h, w, hz, wz, z_length = (r.varint(f"header field {n}") for n in HEADER_VARINTS)
        scale_crc, level0 = struct.unpack("<II", r.take(8))
    except _NeedMore:
        return None
    if mode >> 1 & 3 not in set(Ordering):
        raise CorruptStreamError(f"header names symbol order {mode >> 1 & 3}, which does not exist")
    header = Header(codec_id=codec_id, image_size=(ih, iw), pad_bottom=pb, pad_right=pr, quality=mode >> 3,
                    prior_mode=PriorMode(mode & 1), ordering=Ordering(mode >> 1 & 3), y_shape=(c, h, w),
                    z_size=(hz, wz), z_length=z_length, scale_index_crc=scale_crc, level0_crc=level0,
                    size=r.pos)
    _check_header_limits(header)
    return header


def parse_header(data: bytes | bytearray) -> Header:
    header = try_parse_header(data)
    if header is None:
        raise TruncatedStreamError(f"stream ends inside its header ({len(data)} bytes)")
    return header


def check_level0(data: bytes | bytearray, header: Header) -> None:
    """Verify ``level0_crc`` over the header and the z payload (``data`` holds at least level 0)."""
    crc = zlib.crc32(bytes(data[header.size : header.level0_end]), zlib.crc32(bytes(data[: header.size - 4])))
    if crc != header.level0_crc:
        raise CorruptStreamError("level-0 CRC mismatch: the header or the z payload is damaged")


def _check_header_limits(h: Header) -> None:
    if max(h.image_size) > MAX_IMAGE_SIDE or max(h.pad_bottom, h.pad_right) > MAX_DIM:
        raise CorruptStreamError(f"image size {h.image_size} or padding out of range")
    for name, shape, limit in (("y", h.y_shape, MAX_Y_ELEMENTS), ("z", h.z_size, MAX_Z_ELEMENTS)):
        if min(shape) < 1 or max(shape) > MAX_DIM:
            raise CorruptStreamError(f"{name} shape {shape} has an empty or oversized axis")
        if math.prod(shape) > limit:
            raise CorruptStreamError(f"{name} shape {shape} exceeds {limit} elements")
    if h.z_length > MAX_PAYLOAD:
        raise CorruptStreamError("z length exceeds the limit")


def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def serialize_table(table: LevelTable) -> bytes:
    """The level table: plane count, chunks per plane, the escape chunk's length, then the plane
    chunks' lengths, the first as is and the others as zigzag differences from the one before
    (the encoder aims at equal chunks, so most differences fit one byte)."""
    out = bytearray()
    put_varint(out, table.num_planes)
    for count in table.chunks_per_plane:
        put_varint(out, count)
    put_varint(out, table.lengths[-1])
    previous = None
    for length in table.lengths[:-1]:
        put_varint(out, length if previous is None else _zigzag(length - previous))
        previous = length
    return bytes(out)


def try_parse_table(data: bytes | bytearray, start: int) -> Optional[LevelTable]:
    """The level table at ``data[start:]``, or None while ``data`` ends inside it."""
    r = _Reader(data, start)
    try:
        num_planes = r.varint("level table: number of planes")
        if not 1 <= num_planes <= MAX_PLANES:
            raise CorruptStreamError(f"level table: {num_planes} planes (1 to {MAX_PLANES} allowed)")
        counts = tuple(r.varint(f"level table: chunks of plane {i}") for i in range(num_planes))
        if any(c < 1 for c in counts):
            raise CorruptStreamError("level table: every plane needs at least one chunk")
        total = sum(counts) + 1
        if total > MAX_CHUNKS:
            raise CorruptStreamError(f"level table: {total} chunks exceed the limit of {MAX_CHUNKS}")
        escape = r.varint("level table: length of the escape chunk")
        running = escape
        if running > MAX_PAYLOAD:
            raise CorruptStreamError("level table: payload size exceeds the limit")
        lengths: list[int] = []
        for i in range(total - 1):
            coded = r.varint(f"level table: length of chunk {i}")
            length = coded if i == 0 else lengths[-1] + _unzigzag(coded)
            if length < 1:
                raise CorruptStreamError(f"level table: chunk {i} of {length} bytes cannot hold its check")
            running += length
            if running > MAX_PAYLOAD:
                raise CorruptStreamError("level table: payload size exceeds the limit")
            lengths.append(length)
        lengths.append(escape)
    except _NeedMore:
        return None
    table = LevelTable(counts, tuple(lengths), r.pos - start)
    for i, (length, check) in enumerate(zip(table.lengths, table.checks)):
        if length < max(check, 1):
            raise CorruptStreamError(f"level table: chunk {i} of {length} bytes cannot hold its check")
    return table


def level_ends(header: Header, table: Optional[LevelTable]) -> list[int]:
    """Stream bytes that complete each level; only level 0 while the table is unknown."""
    ends = [header.level0_end]
    if table is not None:
        ends.append(ends[0] + table.size + table.lengths[0])
        for length in table.lengths[1:]:
            ends.append(ends[-1] + length)
    return ends


def crc32(*parts: bytes, start: int = 0) -> int:
    crc = start
    for p in parts:
        crc = zlib.crc32(p, crc)
    return crc
