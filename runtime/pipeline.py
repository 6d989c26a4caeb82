"""Encoder and Decoder: images ↔ progressive streams ↔ predictions, on any backend.

Numpy arrays and bytes in and out; no torch anywhere. The backend (ONNX Runtime today)
is chosen once; the Decoder never needs to know which one it got.

    enc = Encoder("bundles/lite0")
    data = enc.encode("photo.jpg")
    dec = Decoder("bundles/lite0")
    pred = dec.classify(data)                  # stopped by the bundle's controller, else full depth
    img = dec.reconstruct(data, level=20)      # uint8 (H, W, 3)

    session = dec.session()                    # streaming: bytes as they arrive
    for packet in packets:
        session.feed(packet)
        if session.ready:
            print(session.level, session.classify().top_k[0])

Backends come from :func:`~edge_sdk.runtime.backends.open_backend` (``"auto"`` when none is
given). Levels are ints from 0; ``level=DEEPEST`` asks for the deepest level the data holds.
Timings come back with each result (``Prediction.timings_ms``, ``Encoded.timings_ms``,
``Latent.timings_ms``); Encoder and Decoder keep no per-call state.
"""

from __future__ import annotations

import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Iterable, Iterator, Literal, NamedTuple, Optional, Union

import numpy as np

from .images import (DEFAULT_MAX_PIXELS, ImageInput, image_size, pad_image, padded_size, read_image, resize_short_side,
                     short_side_size, to_uint8)
from .bitstream import Header, LevelTable, Ordering, PriorMode, level_ends
from .codec import RECONSTRUCTIONS, ChunkSchedule, LatentDecoder, StreamInfo, encode_latent, read_layout
from .tables import scale_to_index
from .backends import Backend, GraphSet, open_backend
from .bundle import Bundle
from .controller import checkpoint_levels
from .errors import (BitstreamError, FetchError, LimitError, PriorMismatchError, RemoteStreamError,
                     RemoteTruncatedError, TrailingBytesWarning)
from .manifest import LATENT_STRIDE
from .memory import MemoryBudget, MemoryLimit
from .remote import FetchPolicy, FetchStats, RemoteStream, http_pool
from .tiling import (ANALYSIS_MARGIN, DEFAULT_CLASSIFIER_TILE_PIXELS, DEFAULT_TILE_PIXELS, SYNTHESIS_MARGIN, core_for,
                     run_tiled, tiles)

BundleLike = Union[Bundle, str, Path]
#: ``level=DEEPEST``: the deepest level the data holds (for ``Decoder.classify``: whatever the controller says)
DEEPEST: Final = "deepest"
Level = Union[int, Literal["deepest"]]


def _bundle(bundle: BundleLike) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)


def resolve_prior_mode(bundle: Bundle, prior: Union[PriorMode, str, None]) -> PriorMode:
    """``None`` → INTEGER when the bundle has an integer prior, else FLOAT; names are case-free."""
    if prior is None:
        return PriorMode.INTEGER if bundle.integer_prior is not None else PriorMode.FLOAT
    if isinstance(prior, str):
        try:
            prior = PriorMode[prior.upper()]
        except KeyError:
            raise ValueError(f"prior must be one of {[m.name.lower() for m in PriorMode]}, got {prior!r}") from None
    mode = PriorMode(prior)
    if mode == PriorMode.INTEGER and bundle.integer_prior is None:
        raise ValueError(f"bundle {bundle.path} has no integer prior (model {bundle.model_name}'s hyper-synthesis "
                         "does not convert); use prior='float' and decode with the same backend and precision")
    return mode


def prior_parameters(bundle: Bundle, graphs: GraphSet, z: np.ndarray, mode: PriorMode) -> tuple[np.ndarray, np.ndarray]:
    """(means, scale indices) of y from the integer ẑ (C, h, w): what encoder and decoder must agree on.

    FLOAT: the hyper-synthesis graph on the session's backend, its scales mapped to indices
    (a scale on a bucket edge may land differently on another backend or precision).
    INTEGER: the bundle's integer hyper-synthesis in NumPy, identical on every platform.
    """
    if mode == PriorMode.INTEGER:
        if bundle.integer_prior is None:
            raise PriorMismatchError("the stream uses the integer prior, and this bundle has none: "
                                     "decode with the bundle it was encoded with")
        return bundle.integer_prior.parameters(z)
    out = graphs.run("hyper_synthesis", z_hat=z[None].astype(np.float32))
    return out["means"][0], scale_to_index(out["scales"][0], bundle.tables.trit.scales)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


class ClassScore(NamedTuple):
    """One class of a prediction's top k: its index, its name and its softmax probability."""

    index: int
    name: str
    probability: float


@dataclass
class Prediction:
    """What the compressed-domain classifier says at one decoded level."""

    #: the k most probable classes, most probable first (k: ``classify(k=...)``, 5 by default)
    top_k: list[ClassScore]
    #: the level decoded (0: header and z only, the prior's means)
    level: int
    #: the stream's highest level (levels run 0..levels)
    levels: int
    bytes_used: int
    bytes_total: Optional[int]
    #: milliseconds per stage, summed over the session so far (hyperprior, entropy_decode, classifier, ...)
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: the controller's P(top-1 is correct) at this level; None without a controller
    confidence: Optional[float] = None
    #: the threshold τ the decoder stopped by; None when it decoded a fixed depth
    threshold: Optional[float] = None

    def as_dict(self) -> dict:
        out = {
            "top_k": [{"index": i, "name": n, "prob": round(p, 6)} for i, n, p in self.top_k],
            "level": self.level,
            "levels": self.levels,
            "bytes_used": self.bytes_used,
            "bytes_total": self.bytes_total,
            "ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
        if self.confidence is not None:
            out["confidence"] = round(self.confidence, 6)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


@dataclass
class FetchResult:
    """What ``Decoder.fetch`` got from a URL: the prediction and what the network cost."""

    prediction: Prediction
    stats: FetchStats

    def as_dict(self) -> dict:
        return {**self.prediction.as_dict(), "fetch": self.stats.as_dict()}


@dataclass
class Latent:
    """One image as the entropy coder sees it (``Encoder.latent``): the arguments of
    :func:`~edge_sdk.runtime.codec.encode_latent`, and what a :class:`~edge_sdk.runtime.codec.LatentDecoder`
    recovers from the stream (``y`` up to the rounding of ``y - means``)."""

    #: the analysis transform's output, float32 (C, H/16, W/16) of the padded image
    y: np.ndarray
    #: the prior's means of y, same shape
    means: np.ndarray
    #: the prior's scale of every y element, as an index into the entropy tables' scales, same shape
    scale_indices: np.ndarray
    #: the rounded hyper-latent ẑ, int64 (Cz, H/64, W/64)
    z: np.ndarray
    #: (height, width) of the image before padding
    image_size: tuple[int, int]
    #: (top, bottom, left, right) padding added to reach a multiple of the bundle's padding
    padding: tuple[int, int, int, int]
    #: milliseconds: read, analysis, hyperprior
    timings_ms: dict[str, float]


@dataclass
class Encoded:
    """A progressive stream and what making it took (``Encoder.encode_timed``)."""

    data: bytes
    #: milliseconds: read, analysis, hyperprior, entropy_encode
    timings_ms: dict[str, float]


class Encoder:
    """Image (file or array, any mode) → progressive stream bytes."""

    def __init__(self, bundle: BundleLike, backend: Optional[Backend] = None, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, schedule: ChunkSchedule = ChunkSchedule(),
                 ordering: Optional[Ordering] = None, short_side: int = 0,
                 prior: Union[PriorMode, str, None] = None, tile_pixels: int = DEFAULT_TILE_PIXELS,
                 max_memory: MemoryLimit = "auto"):
        """``short_side`` > 0 downscales each image (Lanczos, never up) so its short side is
        that many pixels before encoding: the scale the classifier was trained at (224 for
        EfficientNet-Lite0) costs fewer bytes and gives surer answers than a larger photo.
        The stream then describes the resized image.

        ``prior``: "integer" (the default when the bundle has an integer prior) makes streams
        that decode on any backend, thread count and precision; "float" runs the
        hyper-synthesis graph on the backend instead (not faster on CPU; perhaps on a GPU),
        and its streams decode reliably only with the encoder's exact backend configuration
        (docs/prior.md).

        ``max_pixels`` bounds the padded image the encoder accepts (the decoder's default
        limit is the same number, so every stream an encoder makes decodes); larger images
        are refused with :class:`LimitError` before anything is allocated. ``tile_pixels``
        bounds one analysis call: larger images are analysed in overlapping tiles
        (``runtime.tiling``), so memory follows the tile, not the photo.

        ``max_memory`` (bytes, a size such as ``"1.5G"``, ``"auto"`` for half the machine's
        memory, None for no limit, or a :class:`~edge_sdk.runtime.memory.MemoryBudget` shared with
        a Decoder): a photo whose predicted peak (the bundle's measured ``memory`` line) exceeds it
        is refused with :class:`LimitError` before its pixels are read.

        ``ordering`` (the symbol order inside each trit plane, docs/bitstream.md 5.2): by
        default ``CHANNEL_WEIGHTED`` when the bundle has channel priorities, otherwise
        ``EXPECTED_VARIANCE``."""
        if tile_pixels < 1 << 16:
            raise ValueError(f"tile_pixels must be at least {1 << 16}, got {tile_pixels}")
        self.tile_pixels = tile_pixels
        self.short_side = short_side
        self.memory = MemoryBudget.of(max_memory)
        self.bundle = _bundle(bundle)
        self.prior_mode = resolve_prior_mode(self.bundle, prior)
        self.graphs = GraphSet(self.bundle, backend or open_backend("auto"))
        self.max_pixels = max_pixels
        self.schedule = schedule
        has_priority = self.bundle.channel_priority is not None
        if ordering is None:
            ordering = Ordering.CHANNEL_WEIGHTED if has_priority else Ordering.EXPECTED_VARIANCE
        if Ordering(ordering) == Ordering.CHANNEL_WEIGHTED and not has_priority:
            raise ValueError(f"the CHANNEL_WEIGHTED order needs channel priorities, which bundle "
                             f"{self.bundle.path} does not have (re-export it, or choose another ordering)")
        self.ordering = Ordering(ordering)

    def latent(self, image: ImageInput) -> Latent:
        """Everything the stream is coded from: y, its means and scale indices, ẑ (numpy, no batch axis)."""
        t0 = time.perf_counter()
        height, width, padded = self._planned_size(image)
        if padded > self.max_pixels:
            raise LimitError(f"the image is {width}×{height} ({padded} pixels once padded), more than the "
                             f"limit of {self.max_pixels} (max_pixels; or downscale it with short_side)")
        self.memory.check(self.bundle.manifest.memory, "encode", padded, f"encoding this {width}×{height} image")
        rgb = resize_short_side(read_image(image, self.max_pixels), self.short_side)
        x, padding = pad_image(rgb, self.bundle.padding_multiple, self.bundle.min_size)
        t1 = time.perf_counter()
        y = run_tiled(lambda tile: self.graphs.run("analysis", image=tile)["y"], x,
                      run_last=lambda tile: self.graphs.run_releasing("analysis", image=tile)["y"],
                      scale_num=1, scale_den=LATENT_STRIDE, margin=ANALYSIS_MARGIN, align=LATENT_STRIDE,
                      core=core_for(self.tile_pixels, ANALYSIS_MARGIN, LATENT_STRIDE))
        t2 = time.perf_counter()
        z = np.round(self.graphs.run("hyper_analysis", y=y)["z"])[0].astype(np.int64)
        means, kidx = prior_parameters(self.bundle, self.graphs, z, self.prior_mode)
        t3 = time.perf_counter()
        timings = {"read": (t1 - t0) * 1e3, "analysis": (t2 - t1) * 1e3, "hyperprior": (t3 - t2) * 1e3}
        return Latent(y[0], means, kidx, z, rgb.shape[:2], padding, timings)

    def padded_pixels(self, image: ImageInput) -> int:
        """Pixels of ``image`` as this encoder codes it (after ``short_side``, padded), from the
        file's header alone: what the ``max_pixels`` and ``max_memory`` limits are checked on."""
        return self._planned_size(image)[2]

    def _planned_size(self, image: ImageInput) -> tuple[int, int, int]:
        """(height, width) after ``short_side`` and the padded pixel count, from the header alone."""
        height, width = short_side_size(*image_size(image), self.short_side)
        return height, width, math.prod(padded_size(height, width, self.bundle.padding_multiple, self.bundle.min_size))

    def encode(self, image: ImageInput) -> bytes:
        """The progressive stream of ``image``."""
        return self.encode_timed(image).data

    def encode_timed(self, image: ImageInput) -> Encoded:
        """The progressive stream of ``image`` and the milliseconds each stage took."""
        lat = self.latent(image)
        t3 = time.perf_counter()
        info = StreamInfo(codec_id=self.bundle.stream_codec_id,
                          image_size=lat.image_size, padding=lat.padding, quality=int(round(self.bundle.quality)),
                          prior_mode=self.prior_mode)
        data = encode_latent(lat.y, lat.means, lat.scale_indices, lat.z, self.bundle.tables, info=info,
                             ordering=self.ordering, schedule=self.schedule,
                             channel_priority=self.bundle.channel_priority)
        return Encoded(data, {**lat.timings_ms, "entropy_encode": (time.perf_counter() - t3) * 1e3})


class DecodeSession:
    """One stream being received: feed bytes, ask for predictions or pixels at any level."""

    def __init__(self, decoder: "Decoder"):
        self._decoder = decoder
        self._graphs = decoder.graphs
        self._tables = decoder.bundle.tables
        self._timings: dict[str, float] = {"hyperprior": 0.0, "entropy_decode": 0.0}
        self._latent = LatentDecoder(self._tables, prior=self._prior, expected_codec_id=decoder.bundle.stream_codec_id,
                                     max_latent_elements=decoder.max_latent_elements,
                                     reconstruction=decoder.reconstruction,
                                     channel_priority=decoder.bundle.channel_priority)
        self._cache: dict[str, tuple[int, object]] = {}

    def _prior(self, z: np.ndarray, header) -> tuple[np.ndarray, np.ndarray]:
        # the first allocation that grows with the photo: the prior's means and scale indices
        _, rows, cols = header.y_shape
        self._decoder.memory.check(self._decoder.bundle.manifest.memory, "decode", rows * cols * LATENT_STRIDE ** 2,
                                   f"decoding this {header.image_size[1]}×{header.image_size[0]} stream")
        t = time.perf_counter()
        try:
            return prior_parameters(self._decoder.bundle, self._graphs, z, header.prior_mode)
        finally:
            self._timings["hyperprior"] += (time.perf_counter() - t) * 1e3

    # --- bytes in ---------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Take the next bytes (any split); returns the level now decodable. Raises BitstreamError."""
        t = time.perf_counter()
        before = self._timings["hyperprior"]
        self._latent.feed(data)
        spent = (time.perf_counter() - t) * 1e3 - (self._timings["hyperprior"] - before)
        self._timings["entropy_decode"] += spent
        return self._latent.level

    @property
    def timings_ms(self) -> dict[str, float]:
        """Milliseconds per stage spent by this session so far (a copy)."""
        return dict(self._timings)

    def _spent(self, stage: str, since: float) -> None:
        self._timings[stage] = self._timings.get(stage, 0.0) + (time.perf_counter() - since) * 1e3

    @property
    def ready(self) -> bool:
        """Header and z are in: level 0 (the prior's means) or more can be used."""
        return self._latent.ready

    @property
    def level(self) -> int:
        return self._latent.level

    @property
    def verified_level(self) -> int:
        """The deepest level whose chunks have all passed a check; ``level`` may be ahead of it by
        the chunks of an unfinished check run (about 1 KB, docs/bitstream.md 2.4)."""
        return self._latent.verified_level

    @property
    def num_levels(self) -> Optional[int]:
        return self._latent.num_levels

    @property
    def complete(self) -> bool:
        return self._latent.complete

    @property
    def needs_more(self) -> bool:
        return self._latent.needs_more

    @property
    def bytes_received(self) -> int:
        return self._latent.bytes_received

    @property
    def bytes_used(self) -> int:
        return self._latent.bytes_for_level(self.level) if self.ready else 0

    @property
    def stream_size(self) -> Optional[int]:
        return self._latent.stream_size

    # --- answers ------------------------------------------------------------------------------
    def _require_ready(self) -> None:
        if not self.ready:
            raise BitstreamError("not enough bytes yet: the header and z section are incomplete")

    def latent(self) -> np.ndarray:
        """ŷ at the current level, float32 (C, H/16, W/16): what the classifier and synthesis take."""
        self._require_ready()
        return self._latent.y_hat()

    def residual(self) -> np.ndarray:
        """The exact integer residual round(y - mean), int64 (C, H/16, W/16), once complete;
        the same on every backend for the same stream (``edge-sdk verify`` compares it)."""
        self._require_ready()
        return self._latent.residual()

    def logits(self) -> np.ndarray:
        self._require_ready()
        cached = self._cache.get("logits")
        if cached and cached[0] == self.level:
            return cached[1]
        t = time.perf_counter()
        y_hat = self._latent.y_hat()[None]  # float32 already: no 4-byte-per-element copy
        logits = self._graphs.logits(y_hat, self._decoder.classifier_tile_pixels)
        self._spent("classifier", t)
        self._cache["logits"] = (self.level, logits)
        return logits

    def confidence(self) -> float:
        """The controller's P(top-1 is correct) at the current level (Algorithm 2's p)."""
        controller = self._decoder.bundle.controller
        if controller is None:
            raise ValueError(f"bundle {self._decoder.bundle.path} has no decoding controller; "
                             "fit one with `edge-sdk calibrate`")
        cached = self._cache.get("confidence")
        if cached and cached[0] == self.level:
            return cached[1]
        logits = self.logits()
        t = time.perf_counter()
        p = float(controller.probability(logits))
        self._spent("controller", t)
        self._cache["confidence"] = (self.level, p)
        return p

    def confident(self, threshold: float) -> bool:
        """True once the current level's prediction is trusted at ``threshold`` (stop asking for bytes)."""
        return self.confidence() >= threshold

    def classify(self, k: int = 5, threshold: Optional[float] = None) -> Prediction:
        """The ``k`` most probable classes at the current level."""
        logits = self.logits()
        probs = softmax(logits)
        top = np.argsort(-probs, kind="stable")[:k]
        names = self._decoder.bundle.class_names
        confidence = self.confidence() if self._decoder.bundle.controller is not None else None
        return Prediction(
            top_k=[ClassScore(int(i), names[i] if i < len(names) else str(i), float(probs[i])) for i in top],
            level=self.level, levels=self.num_levels or 0, bytes_used=self.bytes_used,
            bytes_total=self.stream_size, timings_ms=self.timings_ms, confidence=confidence,
            threshold=threshold)

    def decoded_bits(self) -> np.ndarray:
        """Bits of information decoded so far per latent element, (C, H/16, W/16) float64:
        sum over channels for a bit-allocation map (``edge-sdk eval`` draws one)."""
        self._require_ready()
        return self._latent.decoded_bits()

    def reconstruct(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """uint8 RGB (H, W, 3) at the current level, padding removed.

        ``out``: a caller-owned C-contiguous uint8 array of that shape (for example a
        buffer a C app allocated and wrapped with ``numpy.frombuffer``); the pixels are
        written into it and it is returned, so no new image array is handed out.
        """
        self._require_ready()
        h, w = self._latent.header.image_size
        if out is not None and (out.shape != (h, w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous
                                or not out.flags.writeable):
            raise ValueError(f"out must be a writable C-contiguous uint8 array of shape {(h, w, 3)}, "
                             f"got {out.dtype} {out.shape}")
        t = time.perf_counter()
        y_hat = self._latent.y_hat()[None].astype(np.float32)
        if out is None:
            out = np.empty((h, w, 3), dtype=np.uint8)
        # tile by tile straight into uint8: the whole image never exists in float32
        for piece, rows, cols in tiles(lambda tile: self._graphs.run("synthesis", y_hat=tile)["image"], y_hat,
                                       scale_num=LATENT_STRIDE, scale_den=1, margin=SYNTHESIS_MARGIN,
                                       core=core_for(self._decoder.tile_pixels, SYNTHESIS_MARGIN, 1,
                                                     LATENT_STRIDE * LATENT_STRIDE),
                                       run_last=lambda tile: self._graphs.run_releasing("synthesis",
                                                                                        y_hat=tile)["image"]):
            rows, cols = slice(rows.start, min(rows.stop, h)), slice(cols.start, min(cols.stop, w))
            if rows.start >= rows.stop or cols.start >= cols.stop:
                continue  # a tile of padding only
            region = piece[0, :, :rows.stop - rows.start, :cols.stop - cols.start].transpose(1, 2, 0)
            out[rows, cols] = to_uint8(region)
        self._spent("synthesis", t)
        return out


class Decoder:
    """Progressive stream → predictions and reconstructions.

    ``reconstruction``: where a partly decoded latent element is placed, ``"midpoint"`` (the
    quantiser grid the adapter is trained on; 0.1–0.5 dB better PSNR at intermediate levels
    than ``"conditional_mean"`` with lite0, measured in docs/bitstream.md 5.5) or
    ``"conditional_mean"``.

    ``tile_pixels`` bounds one synthesis call, ``classifier_tile_pixels`` one call of the
    classifier's trunk (image pixels the latent tile stands for, margins included): larger
    latents run in overlapping tiles, so memory follows the tile, not the photo.

    ``max_memory`` (as for :class:`Encoder`): a stream whose predicted peak exceeds it is refused
    with :class:`LimitError` once its header and z are read, before the latent's arrays exist.
    """

    def __init__(self, bundle: BundleLike, backend: Optional[Backend] = None, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_latent_elements: Optional[int] = None,
                 reconstruction: str = "midpoint", tile_pixels: int = DEFAULT_TILE_PIXELS,
                 classifier_tile_pixels: int = DEFAULT_CLASSIFIER_TILE_PIXELS, max_memory: MemoryLimit = "auto"):
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
        for name, value in (("tile_pixels", tile_pixels), ("classifier_tile_pixels", classifier_tile_pixels)):
            if value < 1 << 16:
                raise ValueError(f"{name} must be at least {1 << 16}, got {value}")
        self.classifier_tile_pixels = classifier_tile_pixels
        self.memory = MemoryBudget.of(max_memory)
        self.bundle = _bundle(bundle)
        self.graphs = GraphSet(self.bundle, backend or open_backend("auto"))
        #: a stream whose latent is larger than one of a ``max_pixels`` padded image is refused
        #: (LimitError) before its arrays are allocated; the Encoder's default is the same number
        self.max_latent_elements = (self.bundle.latent_channels * (max_pixels // LATENT_STRIDE ** 2)
                                    if max_latent_elements is None else max_latent_elements)
        self.tile_pixels = tile_pixels
        self.reconstruction = reconstruction

    def session(self) -> DecodeSession:
        return DecodeSession(self)

    @staticmethod
    def _layout_without_trailing_bytes(data: bytes) -> tuple[bytes, Header, Optional[LevelTable], list[int]]:
        """``data`` cut at the end its level table gives, its header and level table, and every
        level's end (the layout is parsed once per call).

        Bytes appended to a complete stream are dropped with a :class:`TrailingBytesWarning`:
        a complete stream stays decodable whatever follows it. A layout that does not parse
        raises its BitstreamError here, naming the part.
        """
        header, table = read_layout(data)
        ends = level_ends(header, table)
        if table is not None and len(data) > ends[-1]:
            warnings.warn(TrailingBytesWarning(f"{len(data) - ends[-1]} bytes after the end of the stream "
                                               f"({ends[-1]} bytes) were ignored"), stacklevel=3)
            data = data[:ends[-1]]
        return data, header, table, ends

    def _session_at(self, data: bytes, level: Optional[Level]) -> DecodeSession:
        session = self.session()
        data, header, table, ends = self._layout_without_trailing_bytes(bytes(data))
        if level is None or level == DEEPEST:
            session.feed(data)
        else:
            if table is None and isinstance(level, int) and level > 0:
                raise BitstreamError(f"level {level} needs the level table that follows byte {header.level0_end}; "
                                     f"the data holds {len(data)} bytes")
            if isinstance(level, str) or not 0 <= level < len(ends):
                raise ValueError(f"level must lie in 0..{len(ends) - 1} or be DEEPEST (the deepest the data "
                                 f"holds), got {level!r}")
            if ends[level] > len(data):
                raise BitstreamError(f"level {level} needs {ends[level]} bytes; the data holds {len(data)}")
            end = ends[level]
            if level == 0 and table is not None:  # the level table too: level 0 still, but sizes become known
                end = header.level0_end + table.size
            session.feed(data[:end])
        session._require_ready()
        return session

    def classify(self, data: bytes, threshold: Optional[float] = None, level: Optional[Level] = None,
                 checkpoints: Optional[int] = None) -> Prediction:
        """Classify from the latent, decoding as little of ``data`` as the answer needs.

        - ``level`` given: exactly that level (``DEEPEST``: the deepest level ``data`` holds,
          whatever a controller would say).
        - otherwise, with a controller in the bundle (``edge-sdk calibrate``): Algorithm 2
          of PICM-Net. Levels are decoded in order and, at ``checkpoints`` levels spread
          over the stream's bytes (``checkpoint_levels``; 0: every level; default: the
          controller's own, 8 unless calibrated otherwise), the classifier
          and the controller run; decoding stops at the first whose probability is ≥
          ``threshold`` (default: the controller's own ``default_threshold``), at the
          deepest level the data holds otherwise.
        - without a controller: the deepest level; an explicit ``threshold`` is an error.
        """
        controller = self.bundle.controller
        if level is not None or (threshold is None and controller is None):
            return self._session_at(data, level).classify()
        if controller is None:
            raise ValueError(f"threshold={threshold} needs a decoding controller, and bundle {self.bundle.path} has "
                             "none; fit one with `edge-sdk calibrate --bundle ...`, or drop the threshold")
        tau = controller.default_threshold if threshold is None else float(threshold)
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {tau}")
        data, _, _, ends = self._layout_without_trailing_bytes(bytes(data))
        session = self.session()
        fed = 0
        for lvl in checkpoint_levels(ends, controller.checkpoints if checkpoints is None else checkpoints):
            if ends[lvl] > len(data):
                break
            session.feed(data[fed:ends[lvl]])
            fed = ends[lvl]
            if session.ready and session.confident(tau):
                return session.classify(threshold=tau)
        if fed < len(data):  # a partial level's bytes count as received, not as used
            session.feed(data[fed:])
        session._require_ready()
        return session.classify(threshold=tau)

    def fetch(self, url: str, threshold: Optional[float] = None, *, level: Optional[Level] = None,
              checkpoints: Optional[int] = None, policy: Optional[FetchPolicy] = None, pool: Any = None) -> FetchResult:
        """Classify the stream at ``url`` (http or https), fetching only the byte ranges the answer needs.

        The same decisions as :meth:`classify` on the whole file, so the same prediction: with
        a controller, levels are fetched up to the checkpoints in order and fetching stops at
        the first the controller trusts at ``threshold``; ``level`` fetches exactly that level
        (``DEEPEST``: the whole stream); without a controller, the whole stream. The first
        request reads the header, z and level table; later ones are ``Range`` requests that
        end on level boundaries, batched per ``policy`` (:class:`~edge_sdk.runtime.remote.FetchPolicy`;
        docs/streaming.md). ``pool`` (``http_pool``) shares connections between fetches.

        Failures raise a :class:`~edge_sdk.runtime.errors.FetchError` subclass whose ``partial``
        is the :class:`FetchResult` at the last complete level fetched (None before level 0).
        """
        controller = self.bundle.controller
        adaptive = level is None and not (threshold is None and controller is None)
        if adaptive and controller is None:
            raise ValueError(f"threshold={threshold} needs a decoding controller, and bundle {self.bundle.path} has "
                             "none; fit one with `edge-sdk calibrate --bundle ...`, or drop the threshold")
        tau = None
        if adaptive:
            tau = controller.default_threshold if threshold is None else float(threshold)
            if not 0.0 <= tau <= 1.0:
                raise ValueError(f"threshold must lie in [0, 1], got {tau}")
        if level is not None and level != DEEPEST and (isinstance(level, str) or level < 0):
            raise ValueError(f"level must be an int >= 0 or DEEPEST, got {level!r}")
        stream = RemoteStream(url, policy, pool)
        session = self.session()
        fed = 0

        def feed_to(end: int) -> None:
            nonlocal fed
            if end > fed:
                chunk, fed = stream.data[fed:end], end  # counted first: a chunk that fails is still held
                session.feed(chunk)

        def result() -> FetchResult:
            prediction = session.classify(threshold=tau)
            stream.close()  # the answer's time: fetching and decoding, the last classification included
            return FetchResult(prediction, stream.stats)

        try:
            stream.open()
            ends = stream.level_ends
            if not adaptive:
                target = len(ends) - 1 if level is None or level == DEEPEST else level
                if target >= len(ends):
                    raise ValueError(f"level must lie in 0..{len(ends) - 1} or be DEEPEST, got {level!r}")
                self._fetch_level(stream, ends, target)
                # level 0 with the table read too: still level 0, but the sizes become known (as _session_at)
                feed_to(ends[0] + stream.table.size if target == 0 else ends[target])
                return result()
            candidates = checkpoint_levels(ends, controller.checkpoints if checkpoints is None else checkpoints)
            per_checkpoint = ends[-1] / len(candidates)
            requests = 0  # data requests after the prefix so far: each covers more checkpoints (batch_growth)
            for i, lvl in enumerate(candidates):
                if ends[lvl] > len(stream.data):
                    last = min(i + stream.policy.batch_size(per_checkpoint, requests) - 1, len(candidates) - 1)
                    if requests == 0:  # reach where the controller usually answers in one round trip
                        floor = stream.policy.answer_fraction * ends[-1]
                        last = max(last, next((j for j in range(i, len(candidates)) if ends[candidates[j]] >= floor),
                                              len(candidates) - 1))
                    requests += 1
                    self._fetch_level(stream, ends, candidates[last], needed=lvl)
                feed_to(ends[lvl])
                if session.ready and session.confident(tau):
                    return result()
            session._require_ready()
            return result()
        except FetchError as exc:
            exc.partial = self._partial(session, stream, fed, tau)
            exc.stats = stream.stats
            raise
        except BitstreamError as exc:
            error = RemoteStreamError(f"{url}: {exc}", url=url, stats=stream.stats)
            error.partial = self._partial(session, stream, fed, tau)
            raise error from exc
        finally:
            stream.close()

    @staticmethod
    def _fetch_level(stream: RemoteStream, ends: list[int], target: int, needed: Optional[int] = None) -> None:
        """Fetch through level ``target``; a file that ends before level ``needed`` (default:
        ``target``) is truncated on the server."""
        needed = target if needed is None else needed
        stream.fetch_to(ends[target])
        if len(stream.data) < ends[needed]:
            cause = BitstreamError(f"the file holds {len(stream.data)} bytes; level {needed} ends at byte "
                                   f"{ends[needed]} and the level table announces {ends[-1]}")
            raise RemoteTruncatedError(f"{stream.url}: truncated on the server: {cause}", url=stream.url,
                                       stats=stream.stats) from cause

    @staticmethod
    def _partial(session: DecodeSession, stream: RemoteStream, fed: int, tau: Optional[float]) -> Optional[FetchResult]:
        """The result at the deepest complete level fetched before a failure; None below level 0."""
        try:
            held = stream.levels_held
            if held >= 0 and stream.level_ends[held] > fed:
                session.feed(stream.data[fed:stream.level_ends[held]])
        except BitstreamError:
            pass  # a damaged chunk: the session stays at its last good level
        if not session.ready:
            return None
        try:
            return FetchResult(session.classify(threshold=tau), stream.stats)
        except (BitstreamError, ValueError):
            return None

    def fetch_many(self, urls: Iterable[str], threshold: Optional[float] = None, *, concurrency: int = 4,
                   level: Optional[Level] = None, checkpoints: Optional[int] = None,
                   policy: Optional[FetchPolicy] = None,
                   pool: Any = None) -> Iterator[tuple[str, Union[FetchResult, FetchError]]]:
        """:meth:`fetch` for many URLs, ``concurrency`` at a time over one connection pool (at most
        ``concurrency`` connections per host); yields ``(url, FetchResult or FetchError)`` in input order.
        A failed fetch is yielded, not raised, so one bad URL does not stop the batch. ``pool``: a
        caller's ``http_pool`` (left open) instead of one made and closed here."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        policy = policy or FetchPolicy()
        own_pool = pool is None
        pool = http_pool(policy, maxsize=concurrency) if own_pool else pool

        def one(url: str) -> Union[FetchResult, FetchError]:
            try:
                return self.fetch(url, threshold, level=level, checkpoints=checkpoints, policy=policy, pool=pool)
            except FetchError as exc:
                return exc

        try:
            with ThreadPoolExecutor(max_workers=concurrency) as workers:
                pending: list = []
                todo = iter(urls)
                # a window of 2 × concurrency submitted fetches keeps memory bounded for any number of URLs
                for url in todo:
                    pending.append((url, workers.submit(one, url)))
                    if len(pending) >= 2 * concurrency:
                        done_url, future = pending.pop(0)
                        yield done_url, future.result()
                for done_url, future in pending:
                    yield done_url, future.result()
        finally:
            if own_pool:
                pool.clear()

    def reconstruct(self, data: bytes, level: Optional[Level] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
        """uint8 RGB image at ``level`` (default, or ``DEEPEST``: the deepest level the data holds), into ``out`` if given."""
        return self._session_at(data, level).reconstruct(out)

    @staticmethod
    def describe(data: bytes) -> dict:
        header, table = read_layout(bytes(data))
        return {"codec_id": header.codec_id.hex(), "image_size": list(header.image_size),
                "levels": None if table is None else table.num_levels, "prior_mode": header.prior_mode.name.lower()}
