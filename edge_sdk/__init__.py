"""edge-sdk: progressive, machine-oriented learned image compression for edge GPUs.

The public API takes and returns NumPy arrays and bytes:

    from edge_sdk import Decoder, Encoder, open_backend

    with open_backend("auto") as backend:
        data = Encoder("bundles/lite0", backend).encode("photo.jpg")
        pred = Decoder("bundles/lite0", backend).classify(data)
        print(pred.top_k[0].name, pred.level, pred.timings_ms)

    # a stream on any range-capable HTTP server: only the byte ranges the answer needs
    result = Decoder("bundles/lite0").fetch("https://example.org/photo.edgt")
    print(result.prediction.top_k[0].name, result.stats.bytes_fetched, result.stats.requests)

The bitstream layer is :mod:`edge_sdk.runtime` and the inference backends are
:mod:`edge_sdk.runtime.backends`; their most used names are re-exported here.
"""

from edge_sdk.runtime import (
    BackendError,
    BitstreamError,
    Bundle,
    BundleError,
    BundleMismatchError,
    ByteCapError,
    ChunkSchedule,
    ConnectionLostError,
    ControllerError,
    CorruptChunkError,
    CorruptStreamError,
    EngineMismatchError,
    EntropyTables,
    FetchError,
    FetchPolicy,
    FetchStats,
    FetchTimeoutError,
    ForeignStreamError,
    HTTPStatusError,
    LimitError,
    LatentDecoder,
    MemoryBudget,
    Ordering,
    PrecisionError,
    PriorMismatchError,
    PriorMode,
    RangeNotSatisfiableError,
    RemoteStreamError,
    RemoteTruncatedError,
    StreamChangedError,
    StreamInfo,
    TableError,
    TableMismatchError,
    TrailingBytesError,
    TrailingBytesWarning,
    TruncatedStreamError,
    __version__,
    decode_stream,
    encode_latent,
    level_boundaries,
    read_header,
    truncate_to_level,
)
from edge_sdk.runtime.backends import Backend, open_backend
from edge_sdk.runtime.images import ImageError
from edge_sdk.runtime.pipeline import (
    DEEPEST,
    ClassScore,
    DecodeSession,
    Decoder,
    Encoded,
    Encoder,
    FetchResult,
    Latent,
    Prediction,
)

__all__ = [
    # encoding and decoding
    "ClassScore",
    "DEEPEST",
    "DecodeSession",
    "Decoder",
    "Encoded",
    "Encoder",
    "FetchResult",
    "Latent",
    "Prediction",
    "PriorMode",
    # fetching streams over HTTP (docs/streaming.md)
    "FetchPolicy",
    "FetchStats",
    # backends
    "Backend",
    "open_backend",
    # errors
    "BackendError",
    "BitstreamError",
    "BundleError",
    "BundleMismatchError",
    "ByteCapError",
    "ConnectionLostError",
    "ControllerError",
    "CorruptChunkError",
    "CorruptStreamError",
    "EngineMismatchError",
    "FetchError",
    "FetchTimeoutError",
    "ForeignStreamError",
    "HTTPStatusError",
    "LimitError",
    "MemoryBudget",
    "ImageError",
    "PrecisionError",
    "PriorMismatchError",
    "RangeNotSatisfiableError",
    "RemoteStreamError",
    "RemoteTruncatedError",
    "StreamChangedError",
    "TableError",
    "TableMismatchError",
    "TrailingBytesError",
    "TrailingBytesWarning",
    "TruncatedStreamError",
    # the bitstream layer
    "Bundle",
    "ChunkSchedule",
    "EntropyTables",
    "LatentDecoder",
    "Ordering",
    "StreamInfo",
    "__version__",
    "decode_stream",
    "encode_latent",
    "level_boundaries",
    "read_header",
    "truncate_to_level",
]
