"""The bundle manifest (``manifest.json``) as one typed schema, shared by the writer and every reader.

The exporter (``edge_sdk.export.bundle``) builds a :class:`Manifest` and writes
``to_dict()``; ``Bundle.load`` and the CLI read ``Manifest.from_dict(json)``. ``from_dict``
checks every field a reader relies on and raises :class:`~edge_sdk.runtime.errors.BundleError`
naming the field; ``to_dict`` gives back the JSON document field for field, in the order the
exporter has always written it, so existing bundles load and re-serialise unchanged.
``docs/bundle.md`` documents every field. Torch-free.

Sections only people read (``quantization``, ``exporter``, the weight ``sources``, the
integer prior's agreement figures) stay plain JSON values; the entropy section is parsed
by ``bundle.entropy_from_manifest``, which checks it against the exporter's digest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import BundleError
from .memory import MemoryModel

BUNDLE_FORMAT = "edge-sdk-bundle"
BUNDLE_VERSION = 1
#: Every bundle has these graphs; the Decoder needs the first four, evaluation the last.
GRAPH_NAMES = ("analysis", "hyper_analysis", "hyper_synthesis", "classifier", "synthesis", "pixel_classifier")
#: Optional, both or neither: the classifier split at its global average pooling, so a large
#: latent is classified in overlapping tiles (``classifier_tiling`` says how)
TRUNK_GRAPH_NAMES = ("classifier_trunk", "classifier_head")

#: The graphs' total downsampling: y lies at H/16, z at H/64, so a padded image must be a multiple of 64.
LATENT_STRIDE = 16
HYPER_STRIDE = 64
#: Bounds no real model comes near; past them a manifest is damaged, not ambitious.
MAX_CHANNELS = 1 << 16
MAX_CLASSES = 1 << 20
MAX_QUALITIES = 64
MAX_MIN_SIZE = 4096
MAX_TRUNK_SCALE = 64
MAX_TRUNK_MARGIN = 1024

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "GRAPH_NAMES", "HYPER_STRIDE", "LATENT_STRIDE", "TRUNK_GRAPH_NAMES",
           "ClassifierTilingSection", "GraphEntry", "ImageSection", "Manifest", "ModelSection",
           "SidecarEntry", "TensorSpec", "WeightsSection"]


def _section(doc: Any, key: str, where: str = "manifest") -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BundleError(f"{where} must be a JSON object")
    if key not in doc:
        raise BundleError(f"{where} lacks the required field {key!r}")
    value = doc[key]
    if not isinstance(value, dict):
        raise BundleError(f"{where} field {key!r} must be a JSON object, got {type(value).__name__}")
    return value


def _field(doc: dict[str, Any], key: str, kind, where: str):
    """``doc[key]`` converted by ``kind`` (int, float, str); a clear BundleError when absent or wrong."""
    if key not in doc:
        raise BundleError(f"{where} lacks the required field {key!r}")
    value = doc[key]
    if kind is str:
        if not isinstance(value, str):
            raise BundleError(f"{where} field {key!r} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(f"{where} field {key!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise BundleError(f"{where} field {key!r} must be finite, got {value!r}")
    if kind is int and value != int(value):
        raise BundleError(f"{where} field {key!r} must be an integer, got {value!r}")
    return kind(value)


def _bounded(doc: dict[str, Any], key: str, kind, where: str, low, high):
    """``_field`` within ``low..high`` (inclusive)."""
    value = _field(doc, key, kind, where)
    if not low <= value <= high:
        raise BundleError(f"{where} field {key!r} must lie in {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class TensorSpec:
    name: str
    #: ints for fixed dims, strings such as "H/16" for dims that follow the image size.
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> "TensorSpec":
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not isinstance(doc.get("shape"), list):
            raise BundleError(f"{where} must be an object with a string name and a shape list, got {doc!r}")
        return cls(doc["name"], tuple(doc["shape"]), str(doc.get("dtype", "float32")))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ModelSection:
    name: str
    quality: float
    latent_channels: int
    hyper_channels: int
    description: str = ""
    num_qualities: int = 1
    num_classes: int = 0

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "ModelSection":
        w = "manifest model"
        qualities = _bounded(doc, "num_qualities", int, w, 1, MAX_QUALITIES)
        return cls(name=_field(doc, "name", str, w), quality=_bounded(doc, "quality", float, w, 0, qualities),
                   latent_channels=_bounded(doc, "latent_channels", int, w, 1, MAX_CHANNELS),
                   hyper_channels=_bounded(doc, "hyper_channels", int, w, 1, MAX_CHANNELS),
                   description=str(doc.get("description", "")), num_qualities=qualities,
                   num_classes=_bounded(doc, "num_classes", int, w, 1, MAX_CLASSES))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "quality": self.quality,
                "num_qualities": self.num_qualities, "latent_channels": self.latent_channels,
                "hyper_channels": self.hyper_channels, "num_classes": self.num_classes}


@dataclass(frozen=True)
class WeightsSection:
    #: weight groups (codec, adapter, backbone) that were randomly initialised: outputs mean nothing
    random_parts: tuple[str, ...]
    #: one record per source (checkpoint load report, shipped file, wheel), for people
    sources: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "WeightsSection":
        parts, sources = doc.get("random_parts"), doc.get("sources", [])
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise BundleError(f"manifest weights field 'random_parts' must be a list of strings, got {parts!r}")
        if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
            raise BundleError("manifest weights field 'sources' must be a list of objects")
        return cls(tuple(parts), tuple(sources))

    def to_dict(self) -> dict[str, Any]:
        return {"random_parts": list(self.random_parts), "sources": [dict(s) for s in self.sources]}


@dataclass(frozen=True)
class ImageSection:
    """What every pixel graph takes: float32 RGB in [0, 1], NCHW, padded to ``padding_multiple``."""

    padding_multiple: int
    min_size: int
    layout: str = "NCHW"
    color: str = "RGB"
    dtype: str = "float32"
    range: tuple[float, float] = (0.0, 1.0)
    backbone_normalization: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "ImageSection":
        w = "manifest image"
        multiple = _bounded(doc, "padding_multiple", int, w, HYPER_STRIDE, MAX_MIN_SIZE)
        if multiple % HYPER_STRIDE:
            raise BundleError(f"{w} field 'padding_multiple' must be a multiple of {HYPER_STRIDE} (z lies at "
                              f"H/{HYPER_STRIDE}), got {multiple}")
        minimum = _bounded(doc, "min_size", int, w, 1, MAX_MIN_SIZE)
        return cls(padding_multiple=multiple, min_size=minimum, layout=str(doc.get("layout", "NCHW")),
                   color=str(doc.get("color", "RGB")), dtype=str(doc.get("dtype", "float32")),
                   range=tuple(float(v) for v in doc.get("range", (0.0, 1.0))),
                   backbone_normalization=dict(doc.get("backbone_normalization", {})))

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "color": self.color, "dtype": self.dtype, "range": list(self.range),
                "padding_multiple": self.padding_multiple, "min_size": self.min_size,
                "backbone_normalization": dict(self.backbone_normalization)}


@dataclass(frozen=True)
class GraphEntry:
    """One ONNX graph of the bundle: its file (in the bundle folder), hash, tensors and export check."""

    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: largest |ONNX Runtime − torch| over the export's verification sizes
    max_abs_diff: float
    bytes: Optional[int] = None
    verified_sizes: Optional[tuple[tuple[int, int], ...]] = None

    @classmethod
    def from_dict(cls, name: str, doc: Any) -> "GraphEntry":
        w = f"manifest graph {name}"
        if not isinstance(doc, dict):
            raise BundleError(f"{w} must be a JSON object")
        file = _field(doc, "file", str, w)
        if Path(file).name != file or file in ("", ".", ".."):
            raise BundleError(f"graph {name}: file name {file!r} must not contain a directory")
        for key in ("inputs", "outputs"):
            if not isinstance(doc.get(key), list):
                raise BundleError(f"{w} lacks the required field {key!r} (a list of tensors)")
        sizes = doc.get("verified_sizes")
        return cls(file=file, sha256=_field(doc, "sha256", str, w),
                   inputs=tuple(TensorSpec.from_dict(t, f"{w} input") for t in doc["inputs"]),
                   outputs=tuple(TensorSpec.from_dict(t, f"{w} output") for t in doc["outputs"]),
                   max_abs_diff=_field(doc, "max_abs_diff", float, w),
                   bytes=None if doc.get("bytes") is None else int(doc["bytes"]),
                   verified_sizes=None if sizes is None else tuple((int(h), int(w_)) for h, w_ in sizes))

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"file": self.file, "sha256": self.sha256}
        if self.bytes is not None:
            doc["bytes"] = self.bytes
        doc.update(inputs=[t.to_dict() for t in self.inputs], outputs=[t.to_dict() for t in self.outputs],
                   max_abs_diff=self.max_abs_diff)
        if self.verified_sizes is not None:
            doc["verified_sizes"] = [list(s) for s in self.verified_sizes]
        return doc


@dataclass(frozen=True)
class ClassifierTilingSection:
    """How the runtime tiles ``classifier_trunk``: its features lie on ``scale_num/scale_den``
    of the latent grid, and a tile carries ``margin`` latent positions each side."""

    scale_num: int
    scale_den: int
    margin: int

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "ClassifierTilingSection":
        w = "manifest classifier_tiling"
        section = cls(scale_num=_bounded(doc, "scale_num", int, w, 1, MAX_TRUNK_SCALE),
                      scale_den=_bounded(doc, "scale_den", int, w, 1, MAX_TRUNK_SCALE),
                      margin=_bounded(doc, "margin", int, w, 0, MAX_TRUNK_MARGIN))
        if section.margin % section.scale_den:
            raise BundleError(f"{w} field 'margin' ({section.margin}) must be a multiple of 'scale_den' "
                              f"({section.scale_den}): tiles must start on the trunk's grid")
        return section

    def to_dict(self) -> dict[str, Any]:
        return {"scale_num": self.scale_num, "scale_den": self.scale_den, "margin": self.margin}


@dataclass(frozen=True)
class SidecarEntry:
    """An optional file beside the graphs (``integer_prior.npz``, ``controller.json``): name, hash
    and any figures recorded with it."""

    file: str
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, key: str, doc: Any) -> "SidecarEntry":
        if not isinstance(doc, dict) or not isinstance(doc.get("file"), str) or not isinstance(doc.get("sha256"), str):
            raise BundleError(f"manifest {key} entry is damaged: it needs a file name and a sha256, got {doc!r}")
        if Path(doc["file"]).name != doc["file"]:
            raise BundleError(f"manifest {key} file name {doc['file']!r} must not contain a directory")
        return cls(doc["file"], doc["sha256"], {k: v for k, v in doc.items() if k not in ("file", "sha256")})

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, **self.details}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a bundle; see the module doc and ``docs/bundle.md``."""

    model: ModelSection
    weights: WeightsSection
    image: ImageSection
    graphs: dict[str, GraphEntry]
    #: z CDFs in exact integers and the trit tables' build parameters (``bundle.entropy_to_manifest``)
    entropy: dict[str, Any]
    classes: tuple[str, ...]
    #: hex of ``bundle.codec_id``: everything a stream depends on
    codec_id: str
    quantization: Optional[dict[str, Any]] = None
    integer_prior: Optional[SidecarEntry] = None
    created: Optional[str] = None
    exporter: Optional[dict[str, Any]] = None
    controller: Optional[SidecarEntry] = None
    classifier_tiling: Optional[ClassifierTilingSection] = None
    #: measured memory per operation (``runtime.memory``); None: bounded by max_pixels alone
    memory: Optional[MemoryModel] = None
    format_version: int = BUNDLE_VERSION

    @property
    def random_weights(self) -> bool:
        return bool(self.weights.random_parts)

    @classmethod
    def from_dict(cls, doc: Any) -> "Manifest":
        """Check and type a parsed ``manifest.json``; :class:`BundleError` names what is wrong."""
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise BundleError("not an edge-sdk bundle manifest (format field missing or foreign)")
        version = doc.get("format_version")
        if version != BUNDLE_VERSION:
            raise BundleError(f"bundle format version {version!r}; this edge-sdk reads version {BUNDLE_VERSION}")
        graphs_doc = _section(doc, "graphs")
        missing = [n for n in GRAPH_NAMES if n not in graphs_doc]
        if missing:
            raise BundleError(f"manifest lacks the required graph(s) {', '.join(missing)}")
        trunk = [n for n in TRUNK_GRAPH_NAMES if n in graphs_doc]
        if trunk and (len(trunk) != len(TRUNK_GRAPH_NAMES) or doc.get("classifier_tiling") is None):
            raise BundleError(f"manifest has {', '.join(trunk)} but a tiled classifier needs the graphs "
                              f"{', '.join(TRUNK_GRAPH_NAMES)} and the field 'classifier_tiling' together")
        if doc.get("classifier_tiling") is not None and not trunk:
            raise BundleError(f"manifest field 'classifier_tiling' needs the graphs {', '.join(TRUNK_GRAPH_NAMES)}")
        graphs = {name: GraphEntry.from_dict(name, graphs_doc[name]) for name in GRAPH_NAMES + tuple(trunk)}
        entropy = _section(doc, "entropy")
        if "classes" not in doc:
            raise BundleError("manifest lacks the required field 'classes'")
        classes = doc["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise BundleError("manifest classes must be a list of strings")
        model = ModelSection.from_dict(_section(doc, "model"))
        if len(classes) != model.num_classes:
            raise BundleError(f"manifest classes lists {len(classes)} names but model field 'num_classes' is "
                              f"{model.num_classes}: predictions would name the wrong class")
        heads = [g for g in ("classifier", "pixel_classifier", "classifier_head") if g in graphs]
        for spec in (spec for g in heads for spec in graphs[g].outputs):
            width = spec.shape[-1] if spec.shape else None
            if isinstance(width, int) and width != model.num_classes:
                raise BundleError(f"manifest graph classifier output {spec.name} has {width} classes but model field "
                                  f"'num_classes' is {model.num_classes}")
        codec = _field(doc, "codec_id", str, "manifest")
        try:
            if len(bytes.fromhex(codec)) != 16:
                raise ValueError("not 16 bytes")
        except ValueError as exc:
            raise BundleError(f"manifest codec_id {codec!r} is not 32 hex digits ({exc})") from exc
        optional = {}
        for key in ("quantization", "exporter"):
            if doc.get(key) is not None:
                optional[key] = _section(doc, key)
        return cls(
            model=model,
            weights=WeightsSection.from_dict(_section(doc, "weights")),
            image=ImageSection.from_dict(_section(doc, "image")),
            graphs=graphs,
            entropy=entropy,
            classes=tuple(classes),
            codec_id=codec,
            integer_prior=None if doc.get("integer_prior") is None else SidecarEntry.from_dict(
                "integer_prior", doc["integer_prior"]),
            created=None if doc.get("created") is None else str(doc["created"]),
            controller=None if doc.get("controller") is None else SidecarEntry.from_dict("controller", doc["controller"]),
            classifier_tiling=None if not trunk else ClassifierTilingSection.from_dict(
                _section(doc, "classifier_tiling")),
            memory=None if doc.get("memory") is None else MemoryModel.from_dict(doc["memory"]),
            format_version=version,
            **optional,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, in the exporter's field order (optional fields only when present)."""
        doc: dict[str, Any] = {"format": BUNDLE_FORMAT, "format_version": self.format_version,
                               "model": self.model.to_dict(), "weights": self.weights.to_dict(),
                               "image": self.image.to_dict()}
        if self.quantization is not None:
            doc["quantization"] = dict(self.quantization)
        doc["graphs"] = {name: g.to_dict() for name, g in self.graphs.items()}
        doc["entropy"] = self.entropy
        if self.integer_prior is not None:
            doc["integer_prior"] = self.integer_prior.to_dict()
        doc["classes"] = list(self.classes)
        if self.classifier_tiling is not None:
            doc["classifier_tiling"] = self.classifier_tiling.to_dict()
        if self.created is not None:
            doc["created"] = self.created
        if self.exporter is not None:
            doc["exporter"] = dict(self.exporter)
        doc["codec_id"] = self.codec_id
        if self.controller is not None:
            doc["controller"] = self.controller.to_dict()
        if self.memory is not None:
            doc["memory"] = self.memory.to_dict()
        return doc
