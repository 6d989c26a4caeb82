"""edge-sdk: progressive, machine-oriented learned image compression for edge GPUs.

The public API takes and returns NumPy arrays and bytes:

    from edge_sdk import Decoder, Encoder, open_backend

    with open_backend("auto") as backend:
        data = Encoder("bundles/lite0", backend).encode("photo.jpg")
        pred = Decoder("bundles/lite0", backend).classify(data)
        print(pred.top_k[0].name, pred.level, pred.timings_ms)

The bitstream layer is :mod:`edge_sdk.runtime` and the inference backends are
:mod:`edge_sdk.runtime.backends`; their most used names are re-exported here.
"""

from edge_sdk.runtime import (
    BackendError,
    BitstreamError,
    Bundle,
    BundleError,
    BundleMismatchError,
    ChunkSchedule,
    ControllerError,
    CorruptChunkError,
    CorruptStreamError,
    EngineMismatchError,
    EntropyTables,
    ForeignStreamError,
    LimitError,
    LatentDecoder,
    Ordering,
    PrecisionError,
    PriorMismatchError,
    PriorMode,
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
    "Latent",
    "Prediction",
    "PriorMode",
    # backends
    "Backend",
    "open_backend",
    # errors
    "BackendError",
    "BitstreamError",
    "BundleError",
    "BundleMismatchError",
    "ControllerError",
    "CorruptChunkError",
    "CorruptStreamError",
    "EngineMismatchError",
    "ForeignStreamError",
    "LimitError",
    "ImageError",
    "PrecisionError",
    "PriorMismatchError",
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
