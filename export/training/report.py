"""Per-level report of a torch model on held-out photos: what the model card states.

Each photo goes through the real stream: analysis, z rounding, the trit-plane encoder of
``edge_sdk.runtime`` with the model's own entropy tables, then the incremental decoder,
level by level. At every decodable level it records bits per pixel (every byte of the
stream prefix, over the photo's own pixel count), PSNR of the reconstruction and
whether the compressed-domain classifier's top-1 agrees with the pixel classifier's
top-1 on the original photo. ``edge-sdk eval`` (bundles, baselines, BD-rate) is the
user-facing evaluation; this is the training-side check, with no ONNX in between.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from edge_sdk.runtime import LatentDecoder, StreamInfo, encode_latent, level_boundaries, scale_to_index
from edge_sdk.runtime.images import find_images

from ..models.base import CompressedDomainModel
from ..bundle.onnx_export import build_entropy_tables


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad bottom/right so both sides are multiples of ``multiple`` and ≥ ``minimum``."""
    h, w = x.shape[-2:]
    ph = max(minimum, math.ceil(h / multiple) * multiple) - h
    pw = max(minimum, math.ceil(w / multiple) * multiple) - w
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (ph, pw)


@torch.no_grad()
def photo_levels(model: CompressedDomainModel, quality: float, image: np.ndarray, tables=None) -> list[dict]:
    """One row per decodable level of one uint8 RGB photo."""
    tables = tables or build_entropy_tables(model)
    h, w = image.shape[:2]
    original = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0
    x, (ph, pw) = pad_to_multiple(original, model.padding_multiple, model.min_input_size)
    teacher_top1 = int(model.pixel_classifier(original, quality).argmax())
    y = model.analysis(x, quality)
    z = torch.round(model.hyper_analysis(y, quality))
    means, scales = model.hyper_synthesis(z, quality)
    kidx = scale_to_index(scales[0].double().numpy(), tables.trit.scales)
    info = StreamInfo(image_size=(h, w), padding=(0, 0, ph, pw), quality=int(quality))
    stream = encode_latent(y[0].numpy(), means[0].numpy(), kidx, z[0].numpy().astype(np.int64), tables, info=info)
    decoder = LatentDecoder(tables, prior=lambda _z, _h: (means[0].numpy(), kidx))
    rows, fed = [], 0
    for level, end in enumerate(level_boundaries(stream)):
        decoder.feed(stream[fed:end])
        fed = end
        y_hat = torch.from_numpy(decoder.y_hat()[None].astype(np.float32))
        logits = model.classifier(y_hat, quality)
        recon = model.synthesis(y_hat, quality)[..., :h, :w]
        mse = float(((recon - original) ** 2).mean())
        rows.append({
            "level": level,
            "levels": decoder.num_levels,
            "bytes": end,
            "bpp": end * 8.0 / (h * w),
            "psnr": 10 * math.log10(1.0 / max(mse, 1e-12)),
            "top1": int(logits.argmax()),
            "agree": int(logits.argmax()) == teacher_top1,
            "teacher_top1": teacher_top1,
        })
    return rows


def level_report(model: CompressedDomainModel, quality: float, photos: list[tuple[str, np.ndarray]],
                 progress: Optional[Callable[[str], None]] = None) -> dict:
    """Per-photo rows plus a summary at fractions of the depth (levels differ per photo)."""
    model.eval()
    tables = build_entropy_tables(model)
    per_photo = {}
    for name, img in photos:
        if progress:
            progress(name)
        per_photo[name] = photo_levels(model, quality, img, tables)
    summary = []
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        picks = [rows[min(len(rows) - 1, round(frac * (len(rows) - 1)))] for rows in per_photo.values()]
        summary.append({
            "depth": frac,
            "bpp": float(np.mean([r["bpp"] for r in picks])),
            "psnr": float(np.mean([r["psnr"] for r in picks])),
            "agreement": float(np.mean([r["agree"] for r in picks])),
        })
    return {"quality": quality, "photos": len(per_photo), "summary": summary, "per_photo": per_photo}


def held_out_photos(dataset_dir: str | Path, max_side: int = 768, short_side: int = 0,
                    folder: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """Held-out photos (a prepared dataset's ``val`` folder, or any ``folder`` of images).

    ``short_side`` > 0 resizes each so its short side is that many pixels (the scale a
    classifier such as EfficientNet-Lite0 is trained at: its top-1 on a photo at 2-3×
    that scale is far less certain, so agreement there measures noise); otherwise the
    long side is capped at ``max_side``.
    """
    from .data import downscale, load_rgb

    root = Path(folder) if folder is not None else Path(dataset_dir, "val")
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of held-out photos")
    photos = []
    for path in find_images(root, recursive=False):
        img = load_rgb(path)
        factor = min(img.shape[:2]) / short_side if short_side > 0 else max(img.shape[:2]) / max_side
        photos.append((path.stem, downscale(img, factor) if factor > 1 else img))
    return photos
