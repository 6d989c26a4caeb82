"""Training and held-out photo sets from local files only (``edge-sdk data prepare``).

Sources are the Debian wallpaper packages and the photos inside the scikit-image and
scikit-learn wheels (see ``../shared/notes/offline-data.md``) plus any folder a user names.
Nothing is downloaded. Each source image keeps its licence and copyright line, read from
the package's machine-readable ``debian/copyright`` (DEP-5) where there is one.

Output (deterministic for the same sources, options and seed)::

    OUT/dataset.json            sources, licences, sha256, split, sizes, options
    OUT/train/<name>.png        downscaled training photos
    OUT/val/<name>.png          downscaled held-out photos (whole images, for evaluation)
    OUT/crops.json              the training crop list: [image, top, left] at crop size

JPEG sources are downscaled (antialiased) by at least 2× to wash out compression
artefacts, so the codec learns photos rather than JPEG blocks.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

DATASET_VERSION = 1

#: (package, glob under /, names to skip). The skipped lomiri files are gradients or artwork.
DEBIAN_PHOTO_SETS = (
    ("lomiri-wallpapers-16.04", "usr/share/backgrounds/*_by_*.jpg",
     ("umang_*", "Fossa_*", "Infinite-Sea_*", "Painting-Colors_*", "Kleiber_*")),
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", ()),
    ("mate-backgrounds", "usr/share/backgrounds/mate/nature/*.jpg", ()),
    ("plasma-workspace-wallpapers", "usr/share/wallpapers/{BytheWater,ColdRipple,ColorfulCups,DarkestHour,"
     "EveningGlow,FallenLeaf,Grey,Kite,OneStandsOut,Path,summer_1am}/contents/images/2560x1600.jpg", ()),
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


class DataError(RuntimeError):
    """No usable photos, or an output that cannot be written."""


@dataclass
class PhotoSource:
    path: str
    license: str
    copyright: str
    origin: str
    #: "train", "val" or "auto" (decided by the deterministic split)
    split: str = "auto"


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{([^}]*)\}", pattern)
    if not m:
        return [pattern]
    return [p for alt in m.group(1).split(",") for p in _expand_braces(pattern[: m.start()] + alt + pattern[m.end():])]


def dep5_licences(copyright_file: Path) -> list[tuple[list[str], str, str]]:
    """(file patterns, licence, copyright) stanzas of a DEP-5 ``copyright`` file, in order."""
    stanzas, current = [], {}
    key = None
    for line in copyright_file.read_text(encoding="utf-8", errors="replace").splitlines() + [""]:
        if not line.strip():
            if "Files" in current:
                stanzas.append((current["Files"].split(), current.get("License", "").split("\n")[0].strip(),
                                " ".join(current.get("Copyright", "").split())))
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key] = value.strip()
    return stanzas


def licence_for(path: Path, stanzas: list[tuple[list[str], str, str]]) -> tuple[str, str]:
    """The last stanza whose pattern matches wins (DEP-5).

    Installed paths differ from the source-tree paths DEP-5 names (``16.04/x.jpg`` is
    installed as ``/usr/share/backgrounds/x.jpg``), so a pattern matches on its file-name
    part; patterns whose file-name part is a bare ``*`` (``debian/*``) only match as ``*``.
    """
    found = ("unknown", "")
    for patterns, lic, copyright_ in stanzas:
        for pattern in patterns:
            last = pattern.rsplit("/", 1)[-1]
            if pattern == "*" or (last != "*" and fnmatch.fnmatch(path.name, last)):
                found = (lic, copyright_)
    return found


def find_debian_photos(root: Path = Path("/")) -> list[PhotoSource]:
    """The wallpaper photos of the Debian packages that are installed, with their licences."""
    found = []
    for package, pattern, skip in DEBIAN_PHOTO_SETS:
        copyright_file = root / "usr/share/doc" / package / "copyright"
        stanzas = dep5_licences(copyright_file) if copyright_file.is_file() else []
        for pat in _expand_braces(pattern):
            for path in sorted(root.glob(pat)):
                if any(fnmatch.fnmatch(path.name, s) for s in skip):
                    continue
                lic, copyright_ = licence_for(path, stanzas) if stanzas else ("unknown", "")
                found.append(PhotoSource(str(path), lic, copyright_, f"debian:{package}"))
    return found


def find_wheel_photos() -> list[PhotoSource]:
    """Photos shipped inside the scikit-image and scikit-learn wheels (held out)."""
    from edge_sdk.samples import sample_photos

    return [PhotoSource(str(p.path), p.license, p.credit, f"pypi:{p.package}", split="val") for p in sample_photos()]


def scan_folder(folder: Path, licence: str = "unknown", split: str = "auto") -> list[PhotoSource]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [PhotoSource(str(p), licence, "", f"folder:{folder}", split) for p in paths]


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_rgb(path: str | Path) -> np.ndarray:
    """uint8 RGB (H, W, 3) under the one image policy of ``edge_sdk.images`` (EXIF, alpha, 16-bit)."""
    from edge_sdk.images import read_image, to_uint8

    return to_uint8(read_image(path))


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """Antialiased (Lanczos) downscale by ``factor`` ≥ 1."""
    from PIL import Image

    if factor <= 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))


def _safe_name(source: PhotoSource, used: set[str]) -> str:
    path = Path(source.path)
    stem = path.parent.parent.parent.name if path.name == "2560x1600.jpg" else path.stem  # plasma: folder name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60] or "image"
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}_{i}"
    used.add(name)
    return name


def prepare_dataset(
    sources: Iterable[PhotoSource],
    out_dir: str | Path,
    *,
    crop: int = 256,
    val_every: int = 6,
    min_downscale: float = 2.0,
    max_side: int = 1600,
    crops_per_megapixel: float = 24.0,
    seed: int = 0,
    force: bool = False,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Write a deterministic train/held-out photo set; returns the ``dataset.json`` content.

    The split is by image (never by crop): sources sorted by content hash, every
    ``val_every``-th goes to the held-out set unless the source fixes its split. JPEGs
    are downscaled by ``max(min_downscale, long side / max_side)``; PNGs only when
    larger than ``max_side``. Training crops are drawn uniformly with ``seed``.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise DataError(f"{out} already exists; pass --force to replace it")
    sources = list(sources)
    if not sources:
        raise DataError("no photos found: install the wallpaper packages (see docs/training.md) or give --source DIR")
    step = progress or (lambda _m: None)
    hashed = []
    for s in sources:
        try:
            hashed.append((sha256_of(s.path), s))
        except OSError as exc:
            raise DataError(f"cannot read {s.path}: {exc}") from exc
    hashed.sort(key=lambda t: t[0])
    seen = set()
    unique = []
    for digest, s in hashed:  # the same photo in two packages counts once
        if digest not in seen:
            seen.add(digest)
            unique.append((digest, s))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "train").mkdir()
        (tmp / "val").mkdir()
        from PIL import Image

        records, used_names, auto_index = [], set(), 0
        rng = np.random.default_rng(seed)
        crops = []
        for digest, s in unique:
            step(f"{Path(s.path).name}")
            try:
                img = load_rgb(s.path)
            except Exception as exc:  # Pillow raises many types for unreadable files
                raise DataError(f"cannot decode {s.path}: {exc}") from exc
            h, w = img.shape[:2]
            is_jpeg = Path(s.path).suffix.lower() in (".jpg", ".jpeg")
            factor = max(min_downscale if is_jpeg else 1.0, max(h, w) / max_side)
            small = downscale(img, factor)
            split = s.split
            if split == "auto":
                split = "val" if auto_index % val_every == val_every - 1 else "train"
                auto_index += 1
            name = _safe_name(s, used_names)
            if split == "train" and min(small.shape[:2]) < crop:
                split = "val"  # too small to crop; still useful held out
            Image.fromarray(small).save(tmp / split / f"{name}.png", optimize=False)
            n_crops = 0
            if split == "train":
                sh, sw = small.shape[:2]
                n_crops = max(1, int(round(crops_per_megapixel * sh * sw / 1e6)))
                tops = rng.integers(0, sh - crop + 1, n_crops)
                lefts = rng.integers(0, sw - crop + 1, n_crops)
                crops += [[name, int(t), int(l)] for t, l in zip(tops, lefts)]
            records.append({**asdict(s), "name": name, "split": split, "sha256": digest,
                            "source_size": [h, w], "size": list(small.shape[:2]),
                            "downscale": round(factor, 4), "crops": n_crops})
        if not any(r["split"] == "train" for r in records):
            raise DataError("no training photos large enough to crop; add sources")
        manifest = {
            "format": "edge-sdk-dataset",
            "version": DATASET_VERSION,
            "options": {"crop": crop, "val_every": val_every, "min_downscale": min_downscale, "max_side": max_side,
                        "crops_per_megapixel": crops_per_megapixel, "seed": seed},
            "images": records,
            "counts": {
                "train_images": sum(r["split"] == "train" for r in records),
                "val_images": sum(r["split"] == "val" for r in records),
                "train_crops": len(crops),
                "train_megapixels": round(sum(r["size"][0] * r["size"][1] for r in records if r["split"] == "train") / 1e6, 2),
            },
            "licences": sorted({r["license"] for r in records}),
        }
        (tmp / "crops.json").write_text(json.dumps({"crop": crop, "crops": crops}) + "\n")
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=1) + "\n")
        step("write")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def default_sources() -> list[PhotoSource]:
    return find_debian_photos() + find_wheel_photos()
