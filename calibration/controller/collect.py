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

from edge_sdk.runtime import level_boundaries, logit_features
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.fileio import atomic_file
from edge_sdk.runtime.images import to_uint8


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
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:  # a file object: numpy adds no suffix
            np.savez_compressed(fh, names=np.array(self.names), **{k: getattr(self, k) for k in _ARRAYS})

    @classmethod
    def load(cls, path: str | Path) -> "LevelSamples":
        with np.load(path) as data:
            return cls(names=[str(n) for n in data["names"]], **{k: data[k] for k in data.files if k != "names"})


def collect_levels(bundle: Bundle | str | Path, images: Sequence[tuple[str, np.ndarray]], *,
                   labels: Optional[dict[str, int]] = None, backend=None,
                   progress: Optional[Callable[[str], None]] = None) -> LevelSamples:
    """Encode every image, classify it at every level, and label each level (Algorithm 1)."""
    from edge_sdk.runtime.backends import open_backend
    from edge_sdk.runtime.pipeline import Decoder, Encoder

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    backend = backend or open_backend("auto")
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

