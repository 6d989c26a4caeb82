"""Typed errors raised by the runtime when a bitstream or a table cannot be used.

Every failure while reading a stream is a :class:`BitstreamError`, so callers
can catch one type; the subclasses say what went wrong. The message always
names the part of the stream involved (header field, z section, chunk index).
"""

from __future__ import annotations


class BitstreamError(ValueError):
    """A bitstream cannot be decoded as it is."""


class ForeignStreamError(BitstreamError):
    """The bytes are not an edge-sdk stream, or use a format version we do not read."""


class TruncatedStreamError(BitstreamError):
    """The stream ends before a part that is required (header or z section)."""


class CorruptStreamError(BitstreamError):
    """A checksum or a structural check failed: the bytes were damaged in transit."""


class TrailingBytesError(CorruptStreamError):
    """Bytes arrived past the end the level table gives: every level before them is decoded and
    the decoder stays usable; ``excess`` bytes were dropped from a ``stream_size``-byte stream."""

    def __init__(self, excess: int, stream_size: int):
        super().__init__(f"{excess} bytes past the end of the stream ({stream_size} bytes)")
        self.excess, self.stream_size = excess, stream_size


class TrailingBytesWarning(UserWarning):
    """A whole-stream call (``Decoder.classify``, ``Decoder.reconstruct``) ignored bytes after a
    complete stream, as a file with something appended gives; the answer is the full stream's."""


class CorruptChunkError(CorruptStreamError):
    """A y chunk failed to decode or failed its CRC; ``chunk`` is its index."""

    def __init__(self, message: str, chunk: int):
        super().__init__(message)
        self.chunk = chunk


class TableMismatchError(BitstreamError):
    """The stream was written with other entropy tables than the decoder holds."""


class PriorMismatchError(BitstreamError):
    """The decoder's hyperprior output (scale indices) differs from the encoder's."""


class TableError(ValueError):
    """Entropy tables are malformed (damaged file, wrong shapes, broken invariants)."""


class BundleMismatchError(BitstreamError):
    """The stream names another model bundle than the one decoding it."""


class BundleError(ValueError):
    """A model bundle is missing, damaged, foreign or of an unsupported format version."""


class LimitError(ValueError):
    """Work refused before anything was allocated: an image or a stream needs more than a
    configured limit allows (``max_pixels``). The message names the need, the limit and the
    option that raises it; nothing is wrong with the input itself."""


class BackendError(RuntimeError):
    """An inference backend cannot be opened, load a graph or run it; the message names the
    graph (or the backend spec) and the cause."""


class EngineMismatchError(BackendError):
    """A TensorRT engine does not fit this bundle, TensorRT or GPU; the message says how to rebuild."""


class PrecisionError(RuntimeError):
    """A graph cannot be converted to the precision asked for (FP16 / INT8 Q/DQ ONNX)."""
