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


class FetchError(Exception):
    """Fetching a stream over HTTP failed (``Decoder.fetch``, docs/streaming.md).

    ``url`` is the stream's address; ``stats`` the :class:`~edge_sdk.runtime.remote.FetchStats`
    up to the failure; ``partial`` the result at the last complete level fetched (a
    ``FetchResult`` with the prediction there), or None when not even level 0 (header and
    z) arrived. The subclasses say what happened.
    """

    def __init__(self, message: str, *, url: str = "", stats=None):
        super().__init__(message)
        self.url = url
        self.stats = stats
        self.partial = None


class FetchTimeoutError(FetchError):
    """The server did not connect, answer or finish a body within the policy's timeouts (after the retries)."""


class ConnectionLostError(FetchError):
    """The connection was refused, reset or closed before the body was complete (after the retries)."""


class HTTPStatusError(FetchError):
    """The server answered with a status the fetch cannot use (404, 500 after the retries, too many
    redirects, a malformed Content-Range); ``status`` is the HTTP status, 0 when none applies."""

    def __init__(self, message: str, *, status: int = 0, url: str = "", stats=None):
        super().__init__(message, url=url, stats=stats)
        self.status = status


class RangeNotSatisfiableError(HTTPStatusError):
    """416: the server holds fewer bytes than a range asked for, so its file shrank or was replaced."""


class StreamChangedError(FetchError):
    """The file behind the URL was replaced during the fetch (its ETag, Last-Modified, size or bytes
    changed), so the bytes already fetched and the new ones belong to different streams."""


class ByteCapError(FetchError):
    """The stream needs more bytes than the policy's per-stream cap (``FetchPolicy.max_bytes``)."""


class RemoteStreamError(FetchError, BitstreamError):
    """The server's bytes are not a valid stream (foreign, corrupt, of another bundle); the
    underlying :class:`BitstreamError` is the ``__cause__``. Catchable as either family."""


class RemoteTruncatedError(RemoteStreamError):
    """The file on the server ends before the last level its level table announces, and the
    controller had not answered by its last complete level."""
