"""edge-sdk: progressive, machine-oriented learned image compression for edge GPUs.

The public API takes and returns NumPy arrays and bytes. The bitstream layer is
:mod:`edge_sdk.runtime`; its most used names are re-exported here.
"""

from edge_sdk.runtime import (
    BitstreamError,
    Bundle,
    BundleError,
    ChunkSchedule,
    EntropyTables,
    LatentDecoder,
    Ordering,
    StreamInfo,
    decode_stream,
    encode_latent,
    level_boundaries,
    read_header,
    truncate_to_level,
)

from edge_sdk.runtime.pipeline import DecodeSession, Decoder, Encoder, Prediction  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DecodeSession",
    "Decoder",
    "Encoder",
    "Prediction",
    "BitstreamError",
    "Bundle",
    "BundleError",
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
