"""Image input policy: every photo becomes float32 RGB in [0, 1], (H, W, 3).

The policy, applied in this order, for files and for arrays alike:

* files are opened with Pillow; EXIF orientation is applied; animated files use frame 0;
* grayscale (1-bit, 8-bit, 16-bit, 32-bit int or float) is replicated to three channels;
* alpha (RGBA, LA, palette with transparency) is composited over white, as a viewer would;
* other colour spaces (CMYK, YCbCr, LAB, HSV) are converted to RGB by Pillow;
* 16-bit samples are scaled by 1/65535 without a detour through 8 bits; uint8 by 1/255;
  float arrays must already lie in [0, 1];
* images larger than ``max_pixels`` are refused (a decompression-bomb guard), not resized.

Padding to the model's multiple happens later (``pad_image``): replicate the last row and
column, bottom and right, and record it in the stream header so the decoder crops it off.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

import numpy as np

ImageInput = Union[str, Path, np.ndarray]
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024

#: File suffixes every command treats as photos (``run``, ``calibrate``, ``eval``, ``data prepare``):
#: whatever Pillow reads under :func:`read_image`'s policy; a GIF counts as its first frame.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})


class ImageError(ValueError):
    """The input is not an image we can use; the message says why."""


def _from_pil(im) -> np.ndarray:
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return np.repeat(np.clip(arr / top, 0, 1).astype(np.float32)[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError(f"image arrays must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"image arrays must be (H, W), (H, W, 1|2|3|4), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < -1e-3 or x.max() > 1 + 1e-3:
            raise ImageError("float image arrays must be finite and lie in [0, 1]")
        x = np.clip(x, 0.0, 1.0)
    else:
        raise ImageError(f"integer image arrays must be uint8 or uint16, got {arr.dtype}")
    if x.shape[2] in (2, 4):  # alpha last: composite over white
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x)


def read_image(image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported file or array → float32 RGB (H, W, 3) in [0, 1] (see the module policy)."""
    if isinstance(image, np.ndarray):
        h, w = image.shape[:2] if image.ndim >= 2 else (0, 0)
        if h * w > max_pixels:
            raise ImageError(f"image has {h * w} pixels, more than the limit of {max_pixels}")
        if h < 1 or w < 1:
            raise ImageError(f"image has no pixels (shape {image.shape})")
        return _from_array(image)
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(image)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a clearer message
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(f"{path} has {im.width}×{im.height} pixels, more than the limit of {max_pixels}")
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            im.load()
            return _from_pil(im)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path} is not a readable image: {exc}") from exc


def image_size(image: ImageInput) -> tuple[int, int]:
    """(height, width) of a file or array without decoding its pixels (the header only), so a
    caller can refuse a photo before its arrays exist; EXIF rotation does not change the area."""
    if isinstance(image, np.ndarray):
        return tuple(image.shape[:2]) if image.ndim >= 2 else (0, 0)
    from PIL import Image, UnidentifiedImageError

    path = Path(image)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    Image.MAX_IMAGE_PIXELS = None  # read_image applies our own limit
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path} is not a readable image: {exc}") from exc


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after :func:`resize_short_side`: the short side becomes ``short_side``,
    never larger than it was; ``short_side <= 0`` keeps the size."""
    if short_side <= 0 or min(height, width) <= short_side:
        return height, width
    f = short_side / min(height, width)
    return max(1, round(height * f)), max(1, round(width * f))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] → uint8, rounding to nearest; uint8 passes through unchanged."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Antialiased (Lanczos) resize of a uint8 or float RGB image so its short side is
    ``short_side``; never upscales, and ``short_side <= 0`` returns the image unchanged."""
    from PIL import Image

    h, w = image.shape[:2]
    new_h, new_w = short_side_size(h, w, short_side)
    if (new_h, new_w) == (h, w):
        return image
    size = (new_w, new_h)
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                           .resize(size, Image.LANCZOS)) for c in range(image.shape[2])]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def padded_size(height: int, width: int, multiple: int, minimum: int) -> tuple[int, int]:
    return (max(minimum, math.ceil(height / multiple) * multiple), max(minimum, math.ceil(width / multiple) * multiple))


def pad_image(image: np.ndarray, multiple: int, minimum: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Replicate-pad (H, W, 3) at the bottom and right; returns the NCHW batch and (top, left, bottom, right)."""
    h, w = image.shape[:2]
    ph, pw = padded_size(h, w, multiple, minimum)
    padded = np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None]), (0, 0, ph - h, pw - w)


def find_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Photo files under ``folder`` (by :data:`IMAGE_SUFFIXES`), sorted by path for determinism."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two images on the same scale (``peak`` 255 for uint8, 1.0 for [0, 1] floats)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(peak * peak / mse)
