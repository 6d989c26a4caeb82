"""edge-sdk runtime: bitstream, entropy coding and trit-plane scheduling in NumPy.

This package never imports torch; ``tests/runtime/test_import.py`` proves it. Inference
backends (ONNX Runtime, TensorRT) are in :mod:`edge_sdk.runtime.backends`.
"""

from .bitstream import FORMAT_VERSION, Header, Ordering, PriorMode
from .bundle import Bundle
from .controller import FEATURE_NAMES, Controller, ControllerError, logit_features
from .integer_prior import IntegerPrior
from .codec import (
    ChunkSchedule,
    LatentDecoder,
    StreamInfo,
    decode_stream,
    encode_latent,
    level_boundaries,
    read_header,
    truncate_to_level,
)
from .errors import (
    BackendError,
    BitstreamError,
    BundleError,
    BundleMismatchError,
    ByteCapError,
    ConnectionLostError,
    CorruptChunkError,
    CorruptStreamError,
    EngineMismatchError,
    FetchError,
    FetchTimeoutError,
    ForeignStreamError,
    HTTPStatusError,
    LimitError,
    PrecisionError,
    PriorMismatchError,
    RangeNotSatisfiableError,
    RemoteStreamError,
    RemoteTruncatedError,
    StreamChangedError,
    TableError,
    TableMismatchError,
    TrailingBytesError,
    TrailingBytesWarning,
    TruncatedStreamError,
)
from .memory import MemoryBudget
from .remote import FetchPolicy, FetchStats, RemoteStream
from .tables import (
    EntropyTables,
    TritTables,
    ZTables,
    build_trit_tables,
    build_z_tables,
    default_entropy_tables,
    laplace_z_tables,
    log_spaced_scales,
    scale_to_index,
)

#: the SDK's version (the runtime is the bottom layer: engine keys record it)
__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BackendError",
    "EngineMismatchError",
    "PrecisionError",
    "Bundle",
    "Controller",
    "ControllerError",
    "FEATURE_NAMES",
    "logit_features",
    "BundleError",
    "FORMAT_VERSION",
    "BitstreamError",
    "BundleMismatchError",
    "ByteCapError",
    "ConnectionLostError",
    "FetchError",
    "FetchPolicy",
    "FetchStats",
    "FetchTimeoutError",
    "HTTPStatusError",
    "RangeNotSatisfiableError",
    "RemoteStream",
    "RemoteStreamError",
    "RemoteTruncatedError",
    "StreamChangedError",
    "ChunkSchedule",
    "CorruptChunkError",
    "CorruptStreamError",
    "EntropyTables",
    "ForeignStreamError",
    "LimitError",
    "MemoryBudget",
    "Header",
    "LatentDecoder",
    "Ordering",
    "PriorMismatchError",
    "PriorMode",
    "IntegerPrior",
    "StreamInfo",
    "TableError",
    "TableMismatchError",
    "TrailingBytesError",
    "TrailingBytesWarning",
    "TritTables",
    "TruncatedStreamError",
    "ZTables",
    "build_trit_tables",
    "build_z_tables",
    "decode_stream",
    "default_entropy_tables",
    "encode_latent",
    "laplace_z_tables",
    "level_boundaries",
    "log_spaced_scales",
    "read_header",
    "scale_to_index",
    "truncate_to_level",
]
