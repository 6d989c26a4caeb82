"""Algorithm 1's data: logits features at every decodable level of every image.

Each image is encoded once with the bundle's own Encoder, then the Decoder's streaming
session is fed one level at a time and the compressed-domain classifier runs at every
level, exactly as ``Decoder.classify`` will at run time. A level's prediction is labelled
correct when its top-1 equals the image's reference label: the real label when one is
given, otherwise the top-1 of the bundle's ``pixel_classifier`` on the original image
(the uncompressed teacher).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from edge_sdk.runtime.images import read_image, resize_short_side, to_uint8
from edge_sdk.runtime import level_boundaries, logit_features
from edge_sdk.runtime.bundle import Bundle

#: the side classifiers like EfficientNet-Lite0 were trained at; photos are resized so
#: their short side is this before encoding (0 keeps them as they are)
DEFAULT_SHORT_SIDE = 224
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


_ARRAYS = ("group", "level", "num_levels", "bytes_used", "bytes_total", "pixels", "features", "top1", "reference",
           "correct")


@dataclass
class LevelSamples:
    """One row per (image, level); ``group`` says which image (for grouped splits)."""

    names: list[str]
    group: np.ndarray  # (N,) image index
    level: np.ndarray  # (N,)
    num_levels: np.ndarray  # (N,) decodable levels of the stream, level 0 included
    bytes_used: np.ndarray  # (N,) stream prefix needed for this level
    bytes_total: np.ndarray  # (N,) whole stream
    pixels: np.ndarray  # (N,) image pixels (for bpp)
    features: np.ndarray  # (N, 12)
    top1: np.ndarray  # (N,)
    reference: np.ndarray  # (N,) the label each level is judged against
    correct: np.ndarray  # (N,) bool

    @property
    def bpp(self) -> np.ndarray:
        return self.bytes_used * 8.0 / self.pixels

    def rows(self, index: np.ndarray) -> "LevelSamples":
        """The samples at ``index`` (an index array or boolean mask), order kept."""
        return LevelSamples(self.names, **{k: getattr(self, k)[index] for k in _ARRAYS})

    def subset(self, groups: Sequence[int]) -> "LevelSamples":
        """The samples of the photos ``groups``."""
        return self.rows(np.isin(self.group, np.asarray(groups)))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(tmp, names=np.array(self.names), **{k: getattr(self, k) for k in _ARRAYS})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "LevelSamples":
        with np.load(path) as data:
            return cls(names=[str(n) for n in data["names"]], **{k: data[k] for k in data.files if k != "names"})


def image_views(image: np.ndarray, views: int, short_side: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole image at ``short_side``, plus ``views - 1`` random square crops (a third
    to all of the short side, at a random place) resized to ``short_side``.

    More samples from few photos; views of one photo share its group, so grouped
    cross-validation never fits and scores on the same photo.
    """
    out = [resize_short_side(image, short_side)]
    h, w = image.shape[:2]
    for _ in range(views - 1):
        side = int(round(min(h, w) * rng.uniform(1 / 3, 1.0)))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        out.append(resize_short_side(np.ascontiguousarray(image[top:top + side, left:left + side]), short_side))
    return out


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    paths: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            paths.append(folder)
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is neither an image nor a folder")
        paths += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return paths


def collect_levels(bundle: Bundle | str | Path, images: Sequence[tuple[str, np.ndarray]], *,
                   labels: Optional[dict[str, int]] = None, backend=None,
                   progress: Optional[Callable[[str], None]] = None) -> LevelSamples:
    """Encode every image, classify it at every level, and label each level (Algorithm 1)."""
    from edge_sdk.runtime.pipeline import Decoder, Encoder, _bundle
    from edge_sdk.runtime.backend import default_backend

    bundle = _bundle(bundle)
    backend = backend or default_backend()
    encoder, decoder = Encoder(bundle, backend), Decoder(bundle, backend)
    rows: dict[str, list] = {k: [] for k in ("group", "level", "num_levels", "bytes_used", "bytes_total", "pixels",
                                              "features", "top1", "reference")}
    names: list[str] = []  # source photos; views of one photo ("name#k") share its group
    for name, image in images:
        if progress:
            progress(name)
        image = to_uint8(np.asarray(image))
        source = name.split("#", 1)[0]
        if source not in names:
            names.append(source)
        index = names.index(source)
        if labels is not None and source in labels:
            reference = int(labels[source])
        else:
            pixels = image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
            reference = int(np.argmax(decoder.graphs.run("pixel_classifier", image=pixels)["logits"][0]))
        data = encoder.encode(image)
        session = decoder.session()
        fed = 0
        ends = level_boundaries(data)
        for level, end in enumerate(ends):
            session.feed(data[fed:end])
            fed = end
            logits = session.logits()
            rows["group"].append(index)
            rows["level"].append(level)
            rows["num_levels"].append(len(ends))
            rows["bytes_used"].append(end)
            rows["bytes_total"].append(len(data))
            rows["pixels"].append(image.shape[0] * image.shape[1])
            rows["features"].append(logit_features(logits))
            rows["top1"].append(int(np.argmax(logits)))
            rows["reference"].append(reference)
    if not names:
        raise ValueError("no images to calibrate on")
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    arrays["features"] = arrays["features"].reshape(-1, 12).astype(np.float64)
    return LevelSamples(names=names, correct=arrays["top1"] == arrays["reference"], **arrays)


def load_image_set(paths: Sequence[Path], *, short_side: int = DEFAULT_SHORT_SIDE, views: int = 1,
                   seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Images under the one reading policy of ``edge_sdk.runtime.images``, as task-scale views."""
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        image = to_uint8(read_image(path))
        for k, view in enumerate(image_views(image, views, short_side, rng)):
            out.append((path.name if views == 1 else f"{path.name}#{k}", view))
    return out
