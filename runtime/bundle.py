"""The model bundle: a directory of ONNX graphs plus ``manifest.json``; torch-free loader.

The manifest (its schema: ``manifest.Manifest``) is the contract between the exporter
(``edge_sdk.export.bundle``) and every backend: graph files with their sha256 and tensor
names, the image convention, class names, and the entropy tables in exact integers (z CDFs)
or in the parameters that rebuild them (trit tables, checked against the exporter's digest).
``docs/bundle.md`` documents every field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from . import fileio
from .codec import check_channel_priority
from .controller import Controller, ControllerError
from .errors import BundleError, TableError
from .integer_prior import IntegerPrior
from .manifest import BUNDLE_FORMAT, BUNDLE_VERSION, GRAPH_NAMES, Manifest, SidecarEntry, TensorSpec
from .tables import EntropyTables, TritTables, ZTables, build_trit_tables

MANIFEST_NAME = "manifest.json"
CONTROLLER_FILE = "controller.json"
INTEGER_PRIOR_FILE = "integer_prior.npz"
#: The graphs a stream depends on: changing any of them makes old streams decode wrongly.
CODEC_GRAPHS = ("analysis", "hyper_analysis", "hyper_synthesis", "synthesis")
#: Export fails when ONNX Runtime and torch differ by more than this on any output.
MAX_ABS_DIFF = 1e-3
_MAX_MANIFEST_BYTES = 64 << 20


def codec_id(model_name: str, quality: float, graph_sha256: dict[str, str], tables_digest: bytes,
             integer_prior_sha256: Optional[str] = None, channel_priority: Optional[Sequence[int]] = None) -> bytes:
    """16-byte identity of everything a stream depends on; written into every stream header.

    The classifier is left out on purpose: a retrained adapter still decodes old streams.
    ``channel_priority`` (the channel-weighted symbol order's keys) changes the order of every
    plane, so it is part of the identity when the bundle has one.
    """
    doc = {
        "model": model_name,
        "quality": float(quality),
        "graphs": {name: graph_sha256[name] for name in CODEC_GRAPHS},
        "tables": tables_digest.hex(),
    }
    if integer_prior_sha256 is not None:
        doc["integer_prior"] = integer_prior_sha256
    if channel_priority is not None:
        doc["channel_priority"] = [int(v) for v in channel_priority]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).digest()[:16]


def entropy_to_manifest(tables: EntropyTables, channel_priority: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """The manifest's ``entropy`` section: z tables in exact integers, trit tables as build parameters,
    and the channel priorities of the channel-weighted symbol order when the model has them."""
    z = tables.z
    lengths = np.diff(z.cdf_start)
    extra = {} if channel_priority is None else {"channel_priority": [int(v) for v in channel_priority]}
    return {
        **extra,
        "tables_digest": tables.digest.hex(),
        "trit": {
            "scales": [float(s) for s in tables.trit.scales],
            "precision_bits": int(tables.trit.precision_bits),
            "tail_k": float(tables.trit.tail_k),
            "uniform_mass": float(tables.trit.uniform_mass),
        },
        "z": {
            "precision_bits": int(z.precision_bits),
            "offsets": [int(o) for o in z.offset],
            "cdfs": [[int(v) for v in z.cdf[s : s + n]] for s, n in zip(z.cdf_start[:-1], lengths)],
        },
    }


def entropy_from_manifest(section: dict[str, Any]) -> EntropyTables:
    """Rebuild the tables and check they hash to what the exporter recorded."""
    try:
        trit_params = section["trit"]
        trit: TritTables = build_trit_tables(
            np.asarray(trit_params["scales"], dtype=np.float64),
            precision_bits=int(trit_params["precision_bits"]),
            tail_k=float(trit_params["tail_k"]),
            uniform_mass=float(trit_params.get("uniform_mass", 0.0)),  # bundles made before it had none
        )
        zsec = section["z"]
        cdfs = [np.asarray(c, dtype=np.int64) for c in zsec["cdfs"]]
        if any(c.ndim != 1 or c.size < 2 or c.min() < 0 or c.max() >= 2**32 for c in cdfs):
            raise TableError("z CDFs must be non-empty lists of unsigned 32-bit integers")
        starts = np.concatenate([[0], np.cumsum([c.size for c in cdfs])]).astype(np.int64)
        z = ZTables(
            cdf=np.concatenate(cdfs).astype(np.uint32),
            cdf_start=starts,
            offset=np.asarray(zsec["offsets"], dtype=np.int32),
            precision_bits=int(zsec["precision_bits"]),
        )
        tables = EntropyTables(trit=trit, z=z).validate()
        expected = bytes.fromhex(section["tables_digest"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"manifest entropy section is malformed: {exc}") from exc
    if tables.digest != expected:
        raise BundleError(
            f"entropy tables rebuilt here hash to {tables.digest.hex()}, the exporter's to {expected.hex()}: "
            "this platform builds different trit tables, so streams would not decode; re-export on this platform"
        )
    return tables


@dataclass(frozen=True)
class GraphInfo:
    name: str
    path: Path
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_abs_diff: float


@dataclass
class Bundle:
    """A validated bundle directory. ``Bundle.load(path)`` refuses damaged or foreign ones."""

    path: Path
    manifest: Manifest
    graphs: dict[str, GraphInfo]
    tables: EntropyTables
    class_names: list[str]
    codec_id: bytes
    #: the adaptive-decoding controller (``edge-sdk calibrate``), when the bundle has one
    controller: Optional[Controller] = None
    #: the bit-exact hyper-synthesis for ``prior_mode`` INTEGER (docs/prior.md), when the model has one
    integer_prior: Optional[IntegerPrior] = None
    #: one integer per latent channel for the CHANNEL_WEIGHTED symbol order (docs/bitstream.md 5.2)
    channel_priority: Optional[np.ndarray] = None

    @property
    def stream_codec_id(self) -> bytes:
        """The codec id as streams carry it (docs/bitstream.md 2.1): its first bytes."""
        from .bitstream import CODEC_ID_BYTES

        return self.codec_id[:CODEC_ID_BYTES]

    @property
    def model_name(self) -> str:
        return self.manifest.model.name

    @property
    def quality(self) -> float:
        return self.manifest.model.quality

    @property
    def padding_multiple(self) -> int:
        return self.manifest.image.padding_multiple

    @property
    def min_size(self) -> int:
        return self.manifest.image.min_size

    @property
    def latent_channels(self) -> int:
        return self.manifest.model.latent_channels

    @property
    def random_weights(self) -> bool:
        return self.manifest.random_weights

    @property
    def random_parts(self) -> list[str]:
        return list(self.manifest.weights.random_parts)

    def graph_path(self, name: str) -> Path:
        return self.graphs[name].path

    @classmethod
    def load(cls, path: str | Path, verify_hashes: bool = True) -> "Bundle":
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root} is not a bundle directory (expected a folder with {MANIFEST_NAME})")
        manifest_path = root / MANIFEST_NAME
        manifest = read_manifest(root)
        graphs = {}
        for name, entry in manifest.graphs.items():
            file_path = root / entry.file
            if not file_path.is_file():
                raise BundleError(f"graph {name}: {file_path} is missing")
            if verify_hashes:
                digest = fileio.sha256_file(file_path)
                if digest != entry.sha256:
                    raise BundleError(
                        f"graph {name}: {file_path.name} has sha256 {digest[:16]}…, the manifest says "
                        f"{entry.sha256[:16]}…: the file was damaged or replaced"
                    )
            graphs[name] = GraphInfo(name=name, path=file_path, sha256=entry.sha256, inputs=entry.inputs,
                                     outputs=entry.outputs, max_abs_diff=entry.max_abs_diff)
        tables = entropy_from_manifest(manifest.entropy)
        priority = _channel_priority(manifest)
        integer_prior = _load_integer_prior(root, manifest, tables, verify_hashes)
        prior_sha = manifest.integer_prior.sha256 if manifest.integer_prior else None
        computed = codec_id(manifest.model.name, manifest.model.quality,
                            {n: g.sha256 for n, g in graphs.items()}, tables.digest, prior_sha, priority)
        if computed.hex() != manifest.codec_id.lower():
            raise BundleError(f"{manifest_path}: codec_id does not match the graphs, tables, prior and channel priorities it names: "
                              "damaged bundle")
        controller = _load_controller(root, manifest, graphs["classifier"].sha256, verify_hashes)
        return cls(path=root, manifest=manifest, graphs=graphs, tables=tables, class_names=list(manifest.classes),
                   codec_id=computed, controller=controller, integer_prior=integer_prior, channel_priority=priority)


def _channel_priority(manifest: Manifest) -> Optional[np.ndarray]:
    raw = manifest.entropy.get("channel_priority")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        raise BundleError("manifest entropy.channel_priority must be a list of integers")
    try:
        return check_channel_priority(raw, manifest.model.latent_channels)
    except ValueError as exc:
        raise BundleError(f"manifest entropy.channel_priority: {exc}") from exc


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """The checked :class:`Manifest` of a bundle folder (graph files and hashes are ``Bundle.load``'s)."""
    root = Path(bundle_dir)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST_NAME}: not an edge-sdk bundle")
    if manifest_path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path} is larger than {_MAX_MANIFEST_BYTES >> 20} MiB: not a bundle manifest")
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}): damaged bundle") from exc
    try:
        return Manifest.from_dict(doc)
    except BundleError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from exc


def replaceable_bundle_dir(path: str | Path) -> Optional[str]:
    """Why ``path`` must not be replaced by a new bundle, or None when it may be.

    ``export --force`` replaces only what is verifiably an edge-sdk bundle (a readable
    manifest, and no file the manifest does not account for) or an empty folder; anything
    else (a folder of someone's notes, a plain file) is refused, never deleted.
    """
    root = Path(path)
    if not root.exists():
        return None
    if root.is_symlink() or not root.is_dir():
        return "it is not a folder"
    entries = {p.name for p in root.iterdir()}
    if not entries:
        return None
    try:
        manifest = read_manifest(root)
    except BundleError as exc:
        return f"it is not an edge-sdk bundle ({exc})"
    known = {MANIFEST_NAME, "README.md"} | {g.file for g in manifest.graphs.values()}
    known |= {entry.file for entry in (manifest.integer_prior, manifest.controller) if entry is not None}
    foreign = sorted(entries - known)
    if foreign:
        return f"it holds files that are not part of its bundle: {', '.join(foreign[:5])}"
    return None


def write_manifest(bundle_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically, in the layout every edge-sdk has written."""
    path = Path(bundle_dir) / MANIFEST_NAME
    fileio.atomic_write(path, json.dumps(manifest.to_dict(), indent=1) + "\n")
    return path


def _sidecar(root: Path, entry: Optional[SidecarEntry], field_name: str, verify_hashes: bool) -> Optional[Path]:
    """The path of an optional file the manifest names under ``field_name``, checked."""
    if entry is None:
        return None
    path = root / entry.file
    if not path.is_file():
        raise BundleError(f"{field_name.replace('_', ' ')} file {entry.file!r} is missing from {root}")
    if verify_hashes and fileio.sha256_file(path) != entry.sha256:
        raise BundleError(f"{path.name} does not match its sha256 in the manifest: damaged or replaced")
    return path


def _load_integer_prior(root: Path, manifest: Manifest, tables: EntropyTables,
                        verify_hashes: bool) -> Optional[IntegerPrior]:
    path = _sidecar(root, manifest.integer_prior, "integer_prior", verify_hashes)
    if path is None:
        return None
    return IntegerPrior.load(path).validate(num_scales=tables.trit.num_scales,
                                            latent_channels=manifest.model.latent_channels,
                                            hyper_channels=manifest.model.hyper_channels)


def _load_controller(root: Path, manifest: Manifest, classifier_sha256: str,
                     verify_hashes: bool) -> Optional[Controller]:
    path = _sidecar(root, manifest.controller, "controller", verify_hashes)
    if path is None:
        return None
    try:
        controller = Controller.load(path)
    except ControllerError as exc:
        raise BundleError(str(exc)) from exc
    if controller.classifier_sha256 != classifier_sha256:
        raise BundleError(f"{path.name} was fitted on another classifier graph ({controller.classifier_sha256[:12]}…, "
                          f"this bundle has {classifier_sha256[:12]}…); run `edge-sdk calibrate` again")
    return controller


def attach_controller(bundle_dir: str | Path, controller: Controller) -> Path:
    """Store ``controller`` in a bundle: ``controller.json`` plus a manifest entry, each
    written atomically (a reader sees the old bundle or the new one, never a mix that
    loads: the manifest, written last, names the new file's sha256)."""
    root = Path(bundle_dir)
    path = root / CONTROLLER_FILE
    controller.save(path)
    manifest = read_manifest(root)
    write_manifest(root, dataclasses.replace(manifest, controller=SidecarEntry(CONTROLLER_FILE,
                                                                              fileio.sha256_file(path))))
    return path
