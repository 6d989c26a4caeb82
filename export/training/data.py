"""Training and held-out photo sets from local files only (``edge-sdk data prepare``).

Sources are the Debian wallpaper packages, the photos inside the scikit-image and
scikit-learn wheels, the labelled ImageNet sample's ``train`` split, photo sets in public git
repositories read from local bare mirrors (``REPO_PHOTO_SETS``: each photo keeps its
repository, commit, path and licence), and any folder a user names. Nothing is downloaded.
Debian photos keep the licence and copyright line of the package's machine-readable
``debian/copyright`` (DEP-5).

Evaluation photos never enter a training set: sources inside a protected folder (the
ImageNet sample's ``val`` split and Kodak by default) are refused, and any photo whose
thumbnail matches a protected photo's (a re-encoded, resized or cropped copy of Kodak in
another repository, say) is excluded and listed in ``dataset.json``. Near-duplicates among
the sources count once.

Output (deterministic for the same sources, options and seed)::

    OUT/dataset.json            sources, licences, sha256, split, sizes, options
    OUT/train/<name>.png        downscaled training photos
    OUT/val/<name>.png          downscaled held-out photos (whole images, for evaluation)
    OUT/crops.json              the training crop list: [image, top, left] at crop size

JPEG sources are downscaled (antialiased) by at least 2× to wash out compression
artefacts, so the codec learns photos rather than JPEG blocks.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from edge_sdk.runtime.fileio import atomic_directory
from edge_sdk.runtime.images import IMAGE_SUFFIXES, find_images, read_image, to_uint8

#: 3: a training photo too small to crop stays in the training split (2 moved it to the held-out one)
DATASET_VERSION = 3

#: (package, glob under /, names to skip). The skipped lomiri files are gradients or artwork.
DEBIAN_PHOTO_SETS = (
    ("lomiri-wallpapers-16.04", "usr/share/backgrounds/*_by_*.jpg",
     ("umang_*", "Fossa_*", "Infinite-Sea_*", "Painting-Colors_*", "Kleiber_*")),
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", ()),
    ("mate-backgrounds", "usr/share/backgrounds/mate/nature/*.jpg", ()),
    ("plasma-workspace-wallpapers", "usr/share/wallpapers/{BytheWater,ColdRipple,ColorfulCups,DarkestHour,"
     "EveningGlow,FallenLeaf,Grey,Kite,OneStandsOut,Path,summer_1am}/contents/images/2560x1600.jpg", ()),
)

#: Photo sets in public git repositories, read from local bare mirrors (one folder per repository,
#: laid out as ``owner+name/repo``, ``owner+name`` or ``owner/name``).
#: (repository, path prefixes, licence). Kodak copies in these repositories (``kodak/``,
#: ``kodak_highres/``) are deliberately not listed; the protected-photo check would drop them anyway.
REPO_PHOTO_SETS = (
    ("imazen/codec-corpus", ("CID22/CID22-512/training", "CID22/CID22-512/validation"), "CC-BY-SA-4.0"),
    ("imazen/codec-corpus", ("clic2025/validation", "clic2025/final-test"), "Unsplash"),
    ("Zelex/images", ("wikipedia-photos",), "Wikimedia Commons (per image: wikipedia-photos/README.md)"),
    ("majedelhelou/denoising_datasets", ("CBSD68", "CUrban100", "CSun_Hays80"), "unstated (research benchmark)"),
    ("ajschumacher/imagen", ("imagen",), "ImageNet terms (research only)"),
)

#: Evaluation sets under the shared data folder that must never be trained on.
PROTECTED_SETS = ("imagenet-sample/val", "kodak")

#: Thumbnail correlation above which two photos count as the same picture.
SAME_PICTURE = 0.95


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
    #: for photos read from a git mirror: the repository, commit and path inside it
    repo: str = ""
    commit: str = ""
    repo_path: str = ""
    #: ImageNet class index where the source has labels (-1: none)
    label: int = -1

    def read_bytes(self) -> bytes:
        if self.repo:  # path is the mirror's git directory
            return _git(Path(self.path), "cat-file", "blob", f"{self.commit}:{self.repo_path}")
        return Path(self.path).read_bytes()

    def describe(self) -> str:
        return f"{self.repo}@{self.commit[:8]}:{self.repo_path}" if self.repo else self.path


def _git(git_dir: Path, *args: str) -> bytes:
    try:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout
    except FileNotFoundError as exc:
        raise DataError("reading photos from a git mirror needs the git command") from exc
    except subprocess.CalledProcessError as exc:
        raise DataError(f"git {' '.join(args)} in {git_dir} failed: {exc.stderr.decode(errors='replace').strip()}") from exc


def mirror_git_dir(mirror_root: Path, repo: str) -> Optional[Path]:
    """The bare git directory of ``repo`` (owner/name) under ``mirror_root``, or None."""
    owner, name = repo.split("/")
    for cand in (mirror_root / f"{owner}+{name}" / "repo", mirror_root / f"{owner}+{name}", mirror_root / owner / name):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def find_repo_photos(mirror_root: str | Path, sets=REPO_PHOTO_SETS) -> tuple[list[PhotoSource], list[str]]:
    """Photos of ``REPO_PHOTO_SETS`` present in local mirrors; also the repositories that are missing.

    Blobs a snapshot left out (large files, Git LFS) are skipped: only what is present is listed.
    """
    root = Path(mirror_root)
    found, missing = [], []
    for repo, prefixes, licence in sets:
        git_dir = mirror_git_dir(root, repo)
        if git_dir is None:
            missing.append(repo)
            continue
        commit = _git(git_dir, "rev-parse", "HEAD").decode().strip()
        listing = _git(git_dir, "ls-tree", "-r", commit, "--", *prefixes).decode(errors="replace")
        for line in listing.splitlines():
            meta, path = line.split("\t", 1)
            sha = meta.split()[2]
            if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            present = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", sha], capture_output=True)
            if present.returncode == 0:
                found.append(PhotoSource(str(git_dir), licence, "", f"git:{repo}", repo=repo, commit=commit,
                                         repo_path=path))
    return found, missing


def imagenet_sample_photos(folder: str | Path) -> list[PhotoSource]:
    """The labelled ImageNet sample's photos (``labels.csv``: file,label,wnid); research use only."""
    folder = Path(folder)
    labels_file = folder / "labels.csv"
    if not labels_file.is_file():
        raise DataError(f"{folder} has no labels.csv; expected the ImageNet sample's train folder")
    with labels_file.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [PhotoSource(str(folder / r["file"]), "ImageNet terms (research only)", "", f"imagenet-sample:{folder.name}",
                        label=int(r["label"])) for r in rows if (folder / r["file"]).is_file()]


def shared_data_dir() -> Optional[Path]:
    """The shared data folder (``$EDGE_SDK_SHARED_DATA``, else ``shared/data`` beside the checkout or the cwd)."""
    env = os.environ.get("EDGE_SDK_SHARED_DATA")
    if env:
        return Path(env)
    for base in (Path(__file__).resolve().parents[3], Path.cwd().resolve().parent, Path.cwd().resolve()):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return None


def default_protected_folders() -> list[Path]:
    """The evaluation sets that exist here: ImageNet sample ``val`` and Kodak."""
    root = shared_data_dir()
    return [root / s for s in PROTECTED_SETS if root is not None and (root / s).is_dir()]


def thumbnail_fingerprints(img: np.ndarray) -> np.ndarray:
    """Unit-norm 16×16 luma thumbnails of the whole photo and of its centre square, (2, 256).

    Two copies of one picture (re-encoded, resized, centre-cropped to a square as ImageNet
    derivatives often are) correlate above 0.95; different photos rarely exceed 0.8.
    """
    from PIL import Image

    gray = Image.fromarray(img).convert("L")
    w, h = gray.size
    side = min(w, h)
    square = gray.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    out = []
    for im in (gray, square):
        v = np.asarray(im.resize((16, 16), Image.BOX), np.float64).ravel()
        v = v - v.mean()
        out.append(v / max(np.linalg.norm(v), 1e-9))
    return np.stack(out)


def same_picture(a: np.ndarray, b: np.ndarray) -> float:
    """Highest correlation between two photos' fingerprint sets (``thumbnail_fingerprints``)."""
    return float(np.max(a @ b.T))


class PictureIndex:
    """Fingerprints of the photos seen so far; finds the best match of a new photo in one product."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._rows = np.zeros((64, 256))

    def add(self, name: str, prints: np.ndarray) -> None:
        n = 2 * len(self.names)
        if n + 2 > len(self._rows):  # amortised doubling: thousands of photos, no quadratic copying
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
        self._rows[n:n + 2] = prints
        self.names.append(name)

    def best(self, prints: np.ndarray) -> Optional[tuple[str, float]]:
        """(name, correlation) of the closest photo so far, or None when empty."""
        n = 2 * len(self.names)
        if n == 0:
            return None
        corr = (self._rows[:n] @ prints.T).max(axis=1).reshape(-1, 2).max(axis=1)
        i = int(corr.argmax())
        return self.names[i], float(corr[i])


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
    from edge_sdk.runtime.samples import sample_photos

    return [PhotoSource(str(p.path), p.license, p.credit, f"pypi:{p.package}", split="val") for p in sample_photos()]


def scan_folder(folder: Path, licence: str = "unknown", split: str = "auto") -> list[PhotoSource]:
    return [PhotoSource(str(p), licence, "", f"folder:{folder}", split) for p in find_images(folder)]


def load_rgb(path: str | Path) -> np.ndarray:
    """uint8 RGB (H, W, 3) under the one image policy of ``edge_sdk.runtime.images`` (EXIF, alpha, 16-bit)."""
    return to_uint8(read_image(path))


def load_source_rgb(source: PhotoSource) -> np.ndarray:
    if not source.repo:
        return load_rgb(source.path)
    # the image policy reads files; a git blob goes through a temporary one with its own suffix
    with tempfile.NamedTemporaryFile(suffix=Path(source.repo_path).suffix) as f:
        f.write(source.read_bytes())
        f.flush()
        return load_rgb(f.name)


def protected_fingerprints(folders: Sequence[Path]) -> list[tuple[str, np.ndarray]]:
    """(path, fingerprints) of every photo in the protected folders."""
    out = []
    for folder in folders:
        for p in find_images(folder):
            out.append((str(p), thumbnail_fingerprints(load_rgb(p))))
    return out


def _inside(path: str, folders: Sequence[Path]) -> Optional[Path]:
    resolved = Path(path).resolve()
    for folder in folders:
        if resolved == Path(folder).resolve() or Path(folder).resolve() in resolved.parents:
            return Path(folder)
    return None


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """Antialiased (Lanczos) downscale by ``factor`` ≥ 1."""
    from PIL import Image

    if factor <= 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))


def _safe_name(source: PhotoSource, used: set[str]) -> str:
    path = Path(source.repo_path or source.path)
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
    short_side: int = 0,
    crops_per_megapixel: float = 24.0,
    seed: int = 0,
    force: bool = False,
    protected: Optional[Sequence[Path]] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Write a deterministic train/held-out photo set; returns the ``dataset.json`` content.

    The split is by image (never by crop): sources sorted by content hash, every
    ``val_every``-th goes to the held-out set unless the source fixes its split. JPEGs
    are downscaled by ``max(min_downscale, long side / max_side)``; PNGs only when
    larger than ``max_side``. Training crops are drawn uniformly with ``seed``.

    ``short_side`` > 0 replaces that rule: every photo is reduced so that its short side is
    ``short_side`` pixels (never enlarged), the scale a classifier is judged at
    (``imagenet-sample/val`` is 224 px on the short side). The adapter learns at the scale it
    will see; the ≥ 2× JPEG rule would leave ImageNet photos at about 188 px, and an adapter
    chosen there fell 5–10 points behind the teacher on 224-px photos (docs/training.md).
    The split depends on the content hashes alone, never on the scale: held-out photos stay held
    out in every set prepared from the same sources (a training photo too small to crop gets none).

    ``protected`` (default: ``default_protected_folders()``, the ImageNet sample's val split
    and Kodak) are evaluation sets: a source inside one is refused with ``DataError``, and a
    photo that is the same picture as a protected one (``thumbnail_fingerprints``) is left
    out and listed under ``excluded``, as is a near-duplicate of an earlier source.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise DataError(f"{out} already exists; pass --force to replace it")
    sources = list(sources)
    if not sources:
        raise DataError("no photos found: install the wallpaper packages (see docs/training.md) or give --source DIR")
    step = progress or (lambda _m: None)
    protected = default_protected_folders() if protected is None else list(protected)
    for s in sources:
        hit = None if s.repo else _inside(s.path, protected)
        if hit is not None:
            raise DataError(f"{s.path} lies in {hit}, an evaluation set: it never enters a training set")
    guard = PictureIndex()
    for path, prints in protected_fingerprints(protected):
        guard.add(path, prints)
    hashed = []
    for s in sources:
        try:
            hashed.append((hashlib.sha256(s.read_bytes()).hexdigest(), s))
        except OSError as exc:
            raise DataError(f"cannot read {s.path}: {exc}") from exc
    hashed.sort(key=lambda t: t[0])
    seen = set()
    unique = []
    for digest, s in hashed:  # the same photo in two packages counts once
        if digest not in seen:
            seen.add(digest)
            unique.append((digest, s))
    with atomic_directory(out) as tmp:
        (tmp / "train").mkdir()
        (tmp / "val").mkdir()
        from PIL import Image

        records, used_names, auto_index = [], set(), 0
        rng = np.random.default_rng(seed)
        crops, excluded, kept = [], [], PictureIndex()
        for digest, s in unique:
            step(f"{Path(s.repo_path or s.path).name}")
            try:
                img = load_source_rgb(s)
            except Exception as exc:  # Pillow raises many types for unreadable files
                raise DataError(f"cannot decode {s.describe()}: {exc}") from exc
            prints = thumbnail_fingerprints(img)
            rejected = False
            for index, reason in ((guard, "evaluation photo"), (kept, "near-duplicate")):
                match = index.best(prints)
                if match is not None and match[1] > SAME_PICTURE:
                    excluded.append({"source": s.describe(), "reason": reason, "matches": match[0],
                                     "correlation": round(match[1], 4)})
                    rejected = True
                    break
            if rejected:
                continue
            kept.add(s.describe(), prints)
            h, w = img.shape[:2]
            is_jpeg = Path(s.repo_path or s.path).suffix.lower() in (".jpg", ".jpeg")
            if short_side > 0:
                factor = max(1.0, min(h, w) / short_side)
            else:
                factor = max(min_downscale if is_jpeg else 1.0, max(h, w) / max_side)
            small = downscale(img, factor)
            split = s.split
            if split == "auto":
                split = "val" if auto_index % val_every == val_every - 1 else "train"
                auto_index += 1
            name = _safe_name(s, used_names)
            Image.fromarray(small).save(tmp / split / f"{name}.png", optimize=False)
            n_crops = 0
            # a training photo too small to crop stays in the training split without crops: moving it to
            # the held-out split would make the split depend on the scale, and a held-out photo of the
            # codec's set (2× down) could then train an adapter prepared at 224 px
            if split == "train" and min(small.shape[:2]) >= crop:
                sh, sw = small.shape[:2]
                n_crops = max(1, int(round(crops_per_megapixel * sh * sw / 1e6)))
                tops = rng.integers(0, sh - crop + 1, n_crops)
                lefts = rng.integers(0, sw - crop + 1, n_crops)
                crops += [[name, int(t), int(l)] for t, l in zip(tops, lefts)]
            records.append({**asdict(s), "name": name, "split": split, "sha256": digest,
                            "source_size": [h, w], "size": list(small.shape[:2]),
                            "downscale": round(factor, 4), "crops": n_crops})
        if not crops:
            raise DataError("no training photos large enough to crop; add sources")
        manifest = {
            "format": "edge-sdk-dataset",
            "version": DATASET_VERSION,
            "options": {"crop": crop, "val_every": val_every, "min_downscale": min_downscale, "max_side": max_side,
                        "short_side": short_side, "crops_per_megapixel": crops_per_megapixel, "seed": seed},
            "images": records,
            "counts": {
                "train_images": sum(r["split"] == "train" for r in records),
                "val_images": sum(r["split"] == "val" for r in records),
                "train_crops": len(crops),
                "excluded": len(excluded),
                "train_megapixels": round(sum(r["size"][0] * r["size"][1] for r in records if r["split"] == "train") / 1e6, 2),
            },
            "licences": sorted({r["license"] for r in records}),
            "protected": [str(p) for p in protected],
            "excluded": excluded,
        }
        (tmp / "crops.json").write_text(json.dumps({"crop": crop, "crops": crops}) + "\n")
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=1) + "\n")
        step("write")
    return manifest


def default_sources() -> list[PhotoSource]:
    return find_debian_photos() + find_wheel_photos()
