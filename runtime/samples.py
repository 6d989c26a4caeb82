"""Real photos that install with the project's dependencies (inside the scikit-image and
scikit-learn wheels), for demos, the README's main job and held-out evaluation."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

#: (package, file, licence, credit). Only photographs; scikit-image's textures and
#: microscopy images are left out.
WHEEL_PHOTOS = (
    ("skimage", "astronaut.png", "public-domain", "NASA (scikit-image data)"),
    ("skimage", "chelsea.png", "CC0-1.0", "Stefan van der Walt (scikit-image data)"),
    ("skimage", "coffee.png", "CC0-1.0", "Rachel Michetti (scikit-image data)"),
    ("skimage", "rocket.jpg", "public-domain", "NASA (scikit-image data)"),
    ("sklearn", "china.jpg", "CC-BY-2.0", "scikit-learn sample image"),
    ("sklearn", "flower.jpg", "CC-BY-2.0", "scikit-learn sample image"),
)


@dataclass(frozen=True)
class SamplePhoto:
    path: Path
    license: str
    credit: str
    package: str


def sample_photos() -> list[SamplePhoto]:
    """The wheel photos that are installed here (scikit-image and/or scikit-learn)."""
    found = []
    for package, name, lic, credit in WHEEL_PHOTOS:
        try:
            if package == "skimage":
                import skimage

                path = Path(skimage.__file__).parent / "data" / name
            else:
                import sklearn

                path = Path(sklearn.__file__).parent / "datasets" / "images" / name
        except ImportError:
            continue
        if path.is_file():
            found.append(SamplePhoto(path, lic, credit, package))
    return found


def copy_samples(out_dir: str | Path) -> list[Path]:
    """Copy the sample photos into ``out_dir`` with a LICENSES.txt naming each one's licence."""
    photos = sample_photos()
    if not photos:
        raise FileNotFoundError("no sample photos: install scikit-image (pip install scikit-image)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    copied, lines = [], []
    for p in photos:
        target = out / p.path.name
        shutil.copyfile(p.path, target)
        copied.append(target)
        lines.append(f"{p.path.name}: {p.license}, {p.credit}")
    (out / "LICENSES.txt").write_text("\n".join(lines) + "\n")
    return copied
