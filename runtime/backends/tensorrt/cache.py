"""TensorRT engine identity, on-disk engine cache and error mapping (pure Python; no TensorRT needed).

An engine is valid only for the exact ONNX it was built from, the TensorRT version that
built it, the GPU model and compute capability, the precision and the shape profile
(../shared/notes/deployment.md §2). :class:`EngineKey` holds all of them; its digest
names the file, and a JSON sidecar repeats the fields plus the engine's own sha256, so a
stale, foreign or damaged engine is recognised before TensorRT ever sees it, and the
message says which field differs and how to rebuild. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ...errors import EngineMismatchError
from ...fileio import atomic_write, sha256_file
from .precision import PRECISIONS

ENGINE_MANIFEST = "engines.json"
ENGINE_FORMAT = "edge-sdk-engines"
ENGINE_FORMAT_VERSION = 1

@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7"
    tensorrt_version: str  # "10.3.0"

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt_version.split(".")[0])


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine file depends on."""

    graph: str
    #: sha256 of the bundle graph the engine implements (the manifest's)
    source_sha256: str
    #: sha256 of the ONNX actually parsed (differs from the source after FP16 / Q/DQ conversion)
    onnx_sha256: str
    precision: str
    #: input name -> [min, opt, max] shapes
    profile: dict[str, list[list[int]]]
    device: DeviceInfo
    builder_optimization_level: int = 3
    edge_sdk_version: str = ""
    system: str = field(default_factory=lambda: f"{platform.system()}-{platform.machine()}")

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "EngineKey":
        doc = dict(doc)
        doc["device"] = DeviceInfo(**doc["device"])
        return cls(**doc)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:24]

    @property
    def file_name(self) -> str:
        return f"{self.graph}-{self.precision}-{self.digest}.engine"


def differences(recorded: EngineKey, wanted: EngineKey) -> list[str]:
    """Human-readable 'field: recorded → wanted' lines, most telling first."""
    a, b = recorded.to_dict(), wanted.to_dict()
    out = []
    for name in ("tensorrt_version", "name", "compute_capability"):
        if a["device"][name] != b["device"][name]:
            out.append(f"{name.replace('_', ' ')}: engine {a['device'][name]}, here {b['device'][name]}")
    for name in ("source_sha256", "onnx_sha256"):
        if a[name] != b[name]:
            out.append(f"{name.replace('_sha256', '')} graph: engine built from {a[name][:12]}…, bundle has {b[name][:12]}…")
    for name in ("precision", "profile", "builder_optimization_level", "edge_sdk_version", "system"):
        if a[name] != b[name]:
            out.append(f"{name.replace('_', ' ')}: engine {a[name]}, wanted {b[name]}")
    return out


def default_cache_dir() -> Path:
    """``$EDGE_SDK_CACHE``, else ``$XDG_CACHE_HOME/edge-sdk`` (``~/.cache/edge-sdk``), + ``/engines``."""
    root = os.environ.get("EDGE_SDK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edge-sdk")
    return Path(root) / "engines"


@dataclass
class EngineDir:
    """A folder of engines for one bundle: ``engines.json`` names one engine per graph.

    ``edge-sdk build --out DIR`` writes it; ``edge-sdk run --engine DIR`` reads it.
    """

    root: Path
    bundle_codec_id: str = ""
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: padded image sizes (min, opt, max) the profiles were built for, reused by rebuilds
    profile_sizes: list[list[int]] = field(default_factory=list)

    @classmethod
    def open(cls, root: str | Path) -> "EngineDir":
        root = Path(root)
        path = root / ENGINE_MANIFEST
        if not path.is_file():
            return cls(root)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != ENGINE_FORMAT or doc.get("format_version") != ENGINE_FORMAT_VERSION:
                raise EngineMismatchError(f"{path} is not an edge-sdk engine manifest (version "
                                          f"{ENGINE_FORMAT_VERSION})")
            return cls(root, doc.get("bundle_codec_id", ""), dict(doc["engines"]),
                       [list(map(int, hw)) for hw in doc.get("profile_sizes", [])])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise EngineMismatchError(f"{path} is damaged ({exc}); rebuild with `edge-sdk build`") from exc

    def save(self) -> None:
        doc = {"format": ENGINE_FORMAT, "format_version": ENGINE_FORMAT_VERSION,
               "bundle_codec_id": self.bundle_codec_id, "profile_sizes": self.profile_sizes,
               "engines": self.entries}
        atomic_write(self.root / ENGINE_MANIFEST, json.dumps(doc, indent=1) + "\n")

    def store(self, key: EngineKey, engine: bytes, extra: Optional[dict[str, Any]] = None) -> Path:
        """Write the engine, then the manifest entry naming its sha256 (each atomically)."""
        path = self.root / key.file_name
        atomic_write(path, engine)
        self.entries[key.graph] = {"file": path.name, "sha256": hashlib.sha256(engine).hexdigest(),
                                   "bytes": len(engine), "key": key.to_dict(), **(extra or {})}
        self.save()
        return path

    def entry_key(self, graph: str) -> Optional[EngineKey]:
        try:
            return EngineKey.from_dict(self.entries[graph]["key"])
        except (KeyError, TypeError, ValueError):
            return None

    def is_current(self, wanted: EngineKey) -> bool:
        """True when the stored engine was built from exactly ``wanted`` and is intact (build skips it)."""
        recorded = self.entry_key(wanted.graph)
        return recorded is not None and not differences(recorded, wanted) and not self._file_problems(wanted.graph)

    def _file_problems(self, graph: str) -> list[str]:
        entry = self.entries[graph]
        name = str(entry.get("file", ""))
        path = self.root / name
        if not name or Path(name).name != name or not path.is_file():
            return [f"{path} is missing"]
        if sha256_file(path) != entry.get("sha256"):
            return [f"{path.name} does not match its sha256: damaged or replaced"]
        return []

    def check(self, graph: str, source_sha256: str, device: DeviceInfo) -> tuple[Optional[Path], list[str]]:
        """(path, []) when the engine for ``graph`` fits this bundle graph and this GPU and
        TensorRT; (None, reasons) when it is missing, stale, foreign or damaged."""
        if graph not in self.entries:
            return None, [f"no engine for graph {graph} in {self.root}"]
        recorded = self.entry_key(graph)
        if recorded is None and "onnx_sha256" in self.entries[graph]:
            return None, [f"{self.root} holds only converted ONNX for {graph} (built with --convert-only)"]
        if recorded is None:
            return None, [f"engine entry for {graph} is damaged"]
        reasons = []
        for name in ("tensorrt_version", "name", "compute_capability"):
            have, want = getattr(recorded.device, name), getattr(device, name)
            if have != want:
                reasons.append(f"{name.replace('_', ' ')}: engine {have}, here {want}")
        if recorded.source_sha256 != source_sha256:
            reasons.append(f"built from graph {recorded.source_sha256[:12]}…, the bundle has {source_sha256[:12]}…")
        if recorded.system != EngineKey(graph, "", "", "fp32", {}, device).system:
            reasons.append(f"built on {recorded.system}")
        reasons = reasons or self._file_problems(graph)
        return (None, reasons) if reasons else (self.root / self.entries[graph]["file"], [])


# --- TensorRT's own error strings → what to do -------------------------------------------------
_ERROR_PATTERNS = (
    (re.compile(r"expecting compute (\d+\.\d+) got compute (\d+\.\d+)", re.I),
     "the engine was built for a GPU of compute capability {0}, this one is {1}"),
    (re.compile(r"expecting library version ([\d.]+) got ([\d.]+)", re.I),
     "the engine was built with TensorRT {1}, this is TensorRT {0}"),
    (re.compile(r"Version tag does not match|kSERIALIZATION_VERSION|stdVersionRead", re.I),
     "the engine was serialized by another TensorRT version"),
    (re.compile(r"magic tag does not match|corrupt|Failed to deserialize", re.I),
     "the file is not a TensorRT engine or is damaged"),
    (re.compile(r"out of memory|OutOfMemory|cudaErrorMemoryAllocation", re.I),
     "the GPU ran out of memory"),
)


def explain_tensorrt_error(log: str, rebuild: str) -> str:
    """One actionable sentence for TensorRT's log of a failed deserialization or build."""
    for pattern, text in _ERROR_PATTERNS:
        match = pattern.search(log)
        if match:
            return f"{text.format(*match.groups())}; rebuild it: {rebuild}"
    tail = log.strip().splitlines()[-3:] if log.strip() else ["(TensorRT logged nothing)"]
    return f"TensorRT could not load the engine ({' | '.join(tail)}); rebuild it: {rebuild}"
