"""Rate–accuracy evaluation: every decodable depth of our streams against JPEG, WebP and the
same codec coded non-progressively (``edge-sdk eval``; method in docs/evaluation.md).

Per image, every codec point records the bytes of the whole file, the top-1 of a classifier
(ours: the compressed-domain classifier on ŷ; the baselines: the bundle's pixel classifier on
their decoded pixels), the reference it is judged against (the pixel classifier on the
original, and the real label when one is given), PSNR and, when an LPIPS network is
available, LPIPS of the reconstruction. Curves average each setting over the images.

Our points also record the pixel classifier's top-1 on our own decoded pictures: the curve
``edge-sdk pixels`` (same bytes and PSNR, the teacher's answer on what we reconstruct). The
gap between it and ``edge-sdk`` is what the adapter loses or gains over classifying pixels;
the gap between it and JPEG/WebP is what the codec keeps of what the teacher needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from edge_sdk.runtime import level_boundaries, scale_to_index
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.codec import DEFAULT_TARGET_LEVELS
from edge_sdk.runtime.coders import get_coder
from edge_sdk.runtime.fileio import atomic_file, atomic_write
from edge_sdk.runtime.images import psnr, to_uint8
from edge_sdk.runtime.tables import ZTables, build_z_tables

from ..bdrate import bd_rate

CODECS = ("edge-sdk", "non-progressive", "jpeg", "webp")
#: our points judged by the teacher on our decoded pixels instead of by the adapter on ŷ
PIXELS_CURVE = "edge-sdk pixels"
#: shapes, image size, quality and step of a non-progressive file: what a minimal container
#: needs besides the two range-coder payloads (ours carries more: the chunk table, CRCs)
NONPROGRESSIVE_HEADER_BYTES = 16
CACHE_VERSION = 3  # 2: records hold the teacher's confidence and margin; 3: the teacher on our pixels
#: the teacher's top-1 probability from which an image counts as one it is sure of
CONFIDENT = 0.5


def pillow_roundtrip(rgb: np.ndarray, fmt: str, quality: int) -> tuple[int, np.ndarray]:
    """(file bytes, decoded uint8 RGB) of ``rgb`` through Pillow's JPEG (optimized Huffman tables)
    or WebP (method 6): the baselines every evaluation measures in the same run."""
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality), optimize=True)
    elif fmt == "webp":
        Image.fromarray(rgb).save(buf, "WEBP", quality=int(quality), method=6)
    else:
        raise ValueError(f"baseline format must be 'jpeg' or 'webp', got {fmt!r}")
    return buf.tell(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@dataclass(frozen=True)
class EvalSettings:
    depth_points: int = 17  # decoded-depth fractions 0, 1/(n-1), ..., 1 of each stream's levels
    nonprogressive_steps: int = 4  # quantizer steps 3**0 .. 3**(n-1) (what truncating n-1 planes gives)
    jpeg_qualities: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
    webp_qualities: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
    lpips: bool = True
    target_levels: int = DEFAULT_TARGET_LEVELS  # the Encoder's ChunkSchedule: fewer levels, fewer framing bytes

    def __post_init__(self) -> None:
        if self.depth_points < 2 or self.nonprogressive_steps < 1 or self.target_levels < 1:
            raise ValueError("depth_points must be >= 2, nonprogressive_steps and target_levels >= 1")
        for q in self.jpeg_qualities + self.webp_qualities:
            if not 1 <= q <= 100:
                raise ValueError(f"qualities must lie in 1..100, got {q}")

    def digest(self, bundle: Bundle) -> str:
        doc = {"settings": asdict(self), "codec_id": bundle.codec_id.hex(),
               "classifier": bundle.graphs["classifier"].sha256, "version": CACHE_VERSION}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def load_lpips() -> Optional[Callable[[np.ndarray, np.ndarray], float]]:
    """ST-LPIPS (AlexNet, shift-tolerant variant, the loss training uses) from stlpips-pytorch,
    whose wheel carries these weights; vanilla LPIPS would download torchvision's AlexNet,
    which offline machines cannot. None when torch or stlpips-pytorch is missing."""
    try:
        import contextlib

        import torch
        from stlpips_pytorch import stlpips
    except ImportError:
        return None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its set-up
            net = stlpips.LPIPS(net="alex", variant="shift_tolerant").eval()
    except (OSError, RuntimeError):  # weights missing from this install
        return None

    def lpips(a: np.ndarray, b: np.ndarray) -> float:
        def tensor(x):
            return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32) / 127.5 - 1.0)
        with torch.no_grad():
            return float(net(tensor(a), tensor(b)).mean().item())
    return lpips


def gaussian_conditional_tables(scales: np.ndarray, tail_mass: float = 1e-9, precision_bits: int = 16) -> ZTables:
    """One quantized pmf of the discretized N(0, σ²) per table scale, as CompressAI's
    GaussianConditional builds them, with our escape bin for values beyond the tails."""
    from scipy.special import ndtr, ndtri

    tail = -ndtri(tail_mass / 2)
    pmfs, offsets = [], []
    for sigma in scales:
        r = max(1, int(math.ceil(tail * sigma)))
        v = np.arange(-r, r + 1, dtype=np.float64)
        pmfs.append(ndtr((v + 0.5) / sigma) - ndtr((v - 0.5) / sigma))
        offsets.append(-r)
    return build_z_tables(pmfs, offsets, precision_bits)


@dataclass
class Evaluator:
    """Runs every codec on one image at a time; see the module doc."""

    bundle: Bundle
    backend: object
    settings: EvalSettings = field(default_factory=EvalSettings)

    def __post_init__(self) -> None:
        from edge_sdk.runtime import ChunkSchedule
        from edge_sdk.runtime.pipeline import Decoder, Encoder

        self.encoder = Encoder(self.bundle, self.backend, schedule=ChunkSchedule(target_levels=self.settings.target_levels))
        self.decoder = Decoder(self.bundle, self.backend)
        self.graphs = self.encoder.graphs
        self.lpips = load_lpips() if self.settings.lpips else None
        self._gaussian: Optional[ZTables] = None
        self._coder = get_coder("fast")

    # --- shared pieces ----------------------------------------------------------------------
    def _pixel_logits(self, rgb: np.ndarray) -> np.ndarray:
        pixels = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        return self.graphs.run("pixel_classifier", image=pixels)["logits"][0].astype(np.float64)

    def _pixel_top1(self, rgb: np.ndarray) -> int:
        return int(np.argmax(self._pixel_logits(rgb)))

    def _reference(self, rgb: np.ndarray) -> dict:
        """The teacher's answer on the original, with how sure it is: a photo whose top two
        classes are close flips under any codec, near-lossless ones included."""
        logits = self._pixel_logits(rgb)
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        first, second = np.sort(prob)[::-1][:2]
        return {"reference": int(np.argmax(prob)), "reference_confidence": float(first),
                "reference_margin": float(first - second)}

    def _quality(self, original: np.ndarray, decoded: np.ndarray) -> dict:
        return {"psnr": psnr(original, decoded),
                "lpips": self.lpips(original, decoded) if self.lpips is not None else None}

    def _synthesise(self, y_hat: np.ndarray, padding, shape) -> np.ndarray:
        image = self.graphs.run("synthesis", y_hat=y_hat[None].astype(np.float32))["image"][0]
        top, left = padding[0], padding[1]
        image = image[:, top: top + shape[0], left: left + shape[1]]
        return to_uint8(image.transpose(1, 2, 0))

    # --- codecs -----------------------------------------------------------------------------
    def ours(self, rgb: np.ndarray, allocation: bool = False) -> tuple[list[dict], Optional[dict]]:
        data = self.encoder.encode(rgb)
        ends = level_boundaries(data)
        last = len(ends) - 1
        # the same depth fractions on every image, so curves average like with like (a short
        # stream may repeat a level)
        levels = [round(i * last / (self.settings.depth_points - 1)) for i in range(self.settings.depth_points)]
        session = self.decoder.session()
        fed, points, maps = 0, [], {}
        for level in levels:
            session.feed(data[fed: ends[level]])
            fed = ends[level]
            decoded = session.reconstruct()
            points.append({"setting": f"level {level}/{last}", "level": level, "levels": last, "bytes": ends[level],
                           "bytes_total": len(data), "top1": int(np.argmax(session.logits())),
                           "pixel_top1": self._pixel_top1(decoded), **self._quality(rgb, decoded)})
            if allocation:
                maps[level] = session.decoded_bits().sum(axis=0)
        alloc = None
        if allocation:
            alloc = {"levels": levels, "bytes": [ends[lv] for lv in levels], "maps": maps}
        return points, alloc

    def nonprogressive(self, rgb: np.ndarray) -> list[dict]:
        """The same latent, coded in one Gaussian-conditional stream with quantizer step 3**m:
        the grid that truncating m trit planes leaves, coded without progressiveness."""
        if self._gaussian is None:
            self._gaussian = gaussian_conditional_tables(self.bundle.tables.trit.scales)
        scales = self.bundle.tables.trit.scales
        lat = self.encoder.latent(rgb)
        y, means, kidx, z, padding = lat.y, lat.means, lat.scale_indices, lat.z, lat.padding
        z_channels = np.repeat(np.arange(z.shape[0]), z.shape[1] * z.shape[2])
        z_bytes = len(self._coder.encode_z(z.ravel(), z_channels, self.bundle.tables.z))
        points = []
        for m in range(self.settings.nonprogressive_steps):
            step = 3 ** m
            q = np.round((y - means) / step).astype(np.int64).ravel()
            index = scale_to_index(scales[kidx] / step, scales).astype(np.int64).ravel()
            payload = self._coder.encode_z(q, index, self._gaussian)
            if not np.array_equal(self._coder.decode_z(payload, index, self._gaussian), q):
                raise RuntimeError("non-progressive baseline did not decode to its own symbols")
            y_hat = (means + step * q.reshape(y.shape)).astype(np.float32)
            logits = self.graphs.logits(y_hat[None])
            decoded = self._synthesise(y_hat, padding, rgb.shape[:2])
            points.append({"setting": f"step 3^{m}", "step": step,
                           "bytes": NONPROGRESSIVE_HEADER_BYTES + z_bytes + len(payload),
                           "top1": int(np.argmax(logits)), **self._quality(rgb, decoded)})
        return points

    def pillow(self, rgb: np.ndarray, fmt: str, qualities: Sequence[int]) -> list[dict]:
        points = []
        for q in qualities:
            size, decoded = pillow_roundtrip(rgb, fmt, q)
            points.append({"setting": f"q={q}", "quality": int(q), "bytes": size,
                           "top1": self._pixel_top1(decoded), **self._quality(rgb, decoded)})
        return points

    def image(self, name: str, rgb: np.ndarray, label: Optional[int] = None, allocation: bool = False) -> dict:
        rgb = to_uint8(np.asarray(rgb))
        ours, alloc = self.ours(rgb, allocation)
        record = {
            "name": name, "sha256": hashlib.sha256(rgb.tobytes()).hexdigest(), "height": int(rgb.shape[0]),
            "width": int(rgb.shape[1]), **self._reference(rgb), "label": label,
            "codecs": {"edge-sdk": ours, "non-progressive": self.nonprogressive(rgb),
                       "jpeg": self.pillow(rgb, "jpeg", self.settings.jpeg_qualities),
                       "webp": self.pillow(rgb, "webp", self.settings.webp_qualities)},
        }
        if alloc is not None:
            record["allocation"] = {"levels": alloc["levels"], "bytes": alloc["bytes"],
                                    "maps": {str(k): v.round(3).tolist() for k, v in alloc["maps"].items()}}
        return record


# --- aggregation -----------------------------------------------------------------------------
def curves(records: Sequence[dict], min_confidence: float = 0.0) -> dict[str, list[dict]]:
    """Per codec, one point per setting: mean bpp, agreement, accuracy, PSNR, LPIPS over images
    (only those whose teacher top-1 probability is at least ``min_confidence``)."""
    records = [r for r in records if r["reference_confidence"] >= min_confidence]
    out = {}
    for codec in (*CODECS, PIXELS_CURVE):
        if codec == PIXELS_CURVE:
            if not all("pixel_top1" in pt for r in records for pt in r["codecs"]["edge-sdk"]):
                continue
            per_setting = [[{**pt, "top1": pt["pixel_top1"]} for pt in r["codecs"]["edge-sdk"]] for r in records]
        else:
            per_setting = [r["codecs"][codec] for r in records]
        if not per_setting:
            continue
        points = []
        for i in range(min(len(p) for p in per_setting)):
            rows = [(r, p[i]) for r, p in zip(records, per_setting)]
            lpips = [pt["lpips"] for _, pt in rows if pt["lpips"] is not None]
            labelled = [(r, pt) for r, pt in rows if r["label"] is not None]
            finite = [pt["psnr"] for _, pt in rows if math.isfinite(pt["psnr"])]
            points.append({
                "codec": codec,
                "setting": rows[0][1]["setting"] if codec not in ("edge-sdk", PIXELS_CURVE) else
                f"depth {i / max(len(per_setting[0]) - 1, 1):.3g}",
                "bpp": float(np.mean([pt["bytes"] * 8.0 / (r["height"] * r["width"]) for r, pt in rows])),
                "agreement": float(np.mean([pt["top1"] == r["reference"] for r, pt in rows])),
                "accuracy": float(np.mean([pt["top1"] == r["label"] for r, pt in labelled])) if labelled else None,
                "psnr": float(np.mean(finite)) if finite else float("inf"),
                "lpips": float(np.mean(lpips)) if len(lpips) == len(rows) else None,
                "images": len(rows),
            })
        out[codec] = points
    return out


def teacher_stability(records: Sequence[dict], min_confidence: float = CONFIDENT) -> dict:
    """How far the teacher itself lets any codec agree with it on these images.

    ``ceiling``: agreement of each pixel baseline at its highest quality (JPEG/WebP q=95 by
    default, PSNR far above ours): top-1 flips there come from the teacher's near-ties, not from
    the codec, so no codec can be expected to exceed it. ``confident``: how many images the
    teacher gives at least ``min_confidence`` on its top-1.
    """
    conf = np.array([r["reference_confidence"] for r in records])
    ceiling = {}
    for codec in ("jpeg", "webp"):
        # the highest quality given, in whatever order --jpeg-quality / --webp-quality listed them
        points = [max(r["codecs"][codec], key=lambda pt: pt.get("quality", 0)) for r in records
                  if r["codecs"].get(codec)]
        if len(points) == len(records) and points:
            ceiling[f"{codec} {points[0]['setting']}"] = float(np.mean(
                [pt["top1"] == r["reference"] for r, pt in zip(records, points)]))
    return {"images": len(records), "median_confidence": float(np.median(conf)) if len(conf) else None,
            "min_confidence": min_confidence, "confident_images": int((conf >= min_confidence).sum()),
            "ceiling": ceiling}


def bd_rates(curve_set: dict[str, list[dict]], ours: str = "edge-sdk") -> dict:
    """BD-rate of ours against each baseline, on the agreement and on the PSNR axis (fractions;
    negative: ours needs fewer bytes). None where the curves share no range."""
    test = curve_set[ours]
    out = {}
    for codec, ref in curve_set.items():
        if codec == ours:
            continue
        entry = {}
        for axis in ("agreement", "psnr", "accuracy"):
            pairs_ref = [(p["bpp"], p[axis]) for p in ref if p[axis] is not None and math.isfinite(p[axis])]
            pairs_test = [(p["bpp"], p[axis]) for p in test if p[axis] is not None and math.isfinite(p[axis])]
            if len(pairs_ref) < 2 or len(pairs_test) < 2:
                entry[axis] = None
                continue
            entry[axis] = bd_rate(*zip(*pairs_ref), *zip(*pairs_test))
        out[codec] = entry
    return out


# --- the resumable run -------------------------------------------------------------------------
def evaluate(evaluator: Evaluator, images: Sequence[tuple[str, np.ndarray]], cache_dir: Path,
             labels: Optional[dict[str, int]] = None,
             progress: Optional[Callable[[str, bool], None]] = None) -> list[dict]:
    """Evaluate every image, reusing ``cache_dir/<settings digest>/<image sha>.json`` from an
    interrupted or earlier run with the same bundle and settings. The first image also gets
    the bit-allocation maps."""
    folder = Path(cache_dir) / evaluator.settings.digest(evaluator.bundle)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (name, rgb) in enumerate(images):
        rgb = to_uint8(np.asarray(rgb))
        label = labels.get(name.split("#", 1)[0]) if labels else None
        key = hashlib.sha256(rgb.tobytes() + f"|{label}|{i == 0}".encode()).hexdigest()[:24]
        path = folder / f"{key}.json"
        cached = path.is_file()
        if cached:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                cached = False
        if not cached:
            record = evaluator.image(name, rgb, label, allocation=(i == 0))
            atomic_write(path, json.dumps(record))
        record["name"] = name
        records.append(record)
        if progress:
            progress(name, cached)
    return records


# --- outputs -----------------------------------------------------------------------------------
CSV_FIELDS = ("codec", "setting", "bpp", "agreement", "accuracy", "psnr", "lpips", "images")


def write_csv(curve_set: dict[str, list[dict]], path: Path) -> None:
    import csv

    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for points in curve_set.values():
            for p in points:
                writer.writerow({k: ("" if p[k] is None else p[k]) for k in CSV_FIELDS})


def write_plots(curve_set: dict[str, list[dict]], records: Sequence[dict], folder: Path) -> list[Path]:
    """rate_agreement.png, rate_psnr.png and bit_allocation.png (the first image's maps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"edge-sdk": ("C0", "o-"), "non-progressive": ("C1", "s--"), "jpeg": ("C2", "^-"), "webp": ("C3", "v-"),
              PIXELS_CURVE: ("C0", "o:")}
    written = []
    for axis, label, name in (("agreement", "top-1 agreement with the uncompressed teacher", "rate_agreement.png"),
                              ("psnr", "PSNR (dB)", "rate_psnr.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        for codec, points in curve_set.items():
            if codec == PIXELS_CURVE and axis == "psnr":  # the same pictures as edge-sdk's
                continue
            pts = [(p["bpp"], p[axis]) for p in points if p[axis] is not None and math.isfinite(p[axis])]
            if pts:
                color, style = styles.get(codec, ("C4", "x-"))
                ax.plot(*zip(*pts), style, color=color, label=codec, markersize=4)
        ax.set_xlabel("bits per pixel (every byte of the file)")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_title(f"{label.split(' (')[0]} vs rate, {len(records)} images")
        fig.tight_layout()
        with atomic_file(folder / name) as tmp:
            fig.savefig(tmp)
        plt.close(fig)
        written.append(folder / name)
    alloc = next((r.get("allocation") for r in records if r.get("allocation")), None)
    if alloc:
        maps = alloc["maps"]
        keys = [k for k in maps][:: max(1, len(maps) // 4)][-4:]
        if str(alloc["levels"][-1]) not in keys:
            keys = keys[1:] + [str(alloc["levels"][-1])]
        first = next(r for r in records if r.get("allocation"))
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), dpi=120)
        axes = np.atleast_1d(axes)
        vmax = max(float(np.max(maps[k])) for k in keys) or 1.0
        for ax, key in zip(axes, keys):
            im = ax.imshow(np.asarray(maps[key]), cmap="magma", vmin=0, vmax=vmax)
            i = alloc["levels"].index(int(key))
            ax.set_title(f"level {key}: {alloc['bytes'][i]} B", fontsize=9)
            ax.axis("off")
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="bits per latent position (all channels)")
        fig.suptitle(f"{first['name']}: where the bits go as decoding deepens", fontsize=10)
        with atomic_file(folder / "bit_allocation.png") as tmp:
            fig.savefig(tmp)
        plt.close(fig)
        written.append(folder / "bit_allocation.png")
    return written
