"""The photo sets that calibration and evaluation run on: which files, and at what scale.

Files are found by ``edge_sdk.runtime.images`` (one set of photo suffixes for every command)
and read under its one reading policy; each photo then becomes one or more task-scale views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from edge_sdk.runtime.images import ImageError, find_images, read_image, resize_short_side, to_uint8

#: the side classifiers like EfficientNet-Lite0 were trained at; photos are resized so
#: their short side is this before encoding (0 keeps them as they are)
DEFAULT_SHORT_SIDE = 224

__all__ = ["DEFAULT_SHORT_SIDE", "find_photos", "image_views", "load_image_set"]


def find_photos(sources: Sequence[str | Path]) -> list[Path]:
    """Every photo named by ``sources``: a file is taken as it is, a folder searched recursively."""
    paths: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_file():
            paths.append(source)
            continue
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is neither an image nor a folder")
        paths += find_images(source)
    return paths


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


def load_image_set(paths: Sequence[Path], *, short_side: int = DEFAULT_SHORT_SIDE, views: int = 1,
                   seed: int = 0, skip: Optional[Callable[[Path, ImageError], None]] = None
                   ) -> list[tuple[str, np.ndarray]]:
    """Images under the one reading policy of ``edge_sdk.runtime.images``, as task-scale views.

    An unreadable image raises :class:`ImageError`, or, with ``skip``, is reported to it and left out.
    """
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        try:
            image = to_uint8(read_image(path))
        except ImageError as exc:
            if skip is None:
                raise
            skip(path, exc)
            continue
        for k, view in enumerate(image_views(image, views, short_side, rng)):
            out.append((path.name if views == 1 else f"{path.name}#{k}", view))
    return out
