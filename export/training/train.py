"""Training: codec (POLC or PICM-Net objective), prior head, and adapter distillation.

One loop serves every stage; a stage only decides which parameters train and which loss
terms are on:

* ``codec``  — POLC step 1: λ(q)·bpp + MSE(2x̂−1, 2x−1) + w·LPIPS; with ``objective="picm"``
  PICM-Net's variant: λ(q)·bpp + w_task·(KL to the teacher's logits + small MSE).
* ``prior``  — only the hyperprior (mean-scale head, h_s, factorized z prior) for the rate,
  everything else frozen: how an official POLC checkpoint becomes trit-plane capable.
* ``adapter`` — codec and backbone frozen; KL to the teacher (the same backbone on the
  original pixels; real labels are not available offline) + POLC's feature distillation.

The quality q is drawn per batch from 1..num_qualities (POLC). The adapter also sees
ŷ with its residual coarsened to a random trit-plane depth — what a partially decoded
stream gives — so that it stays useful before the last plane arrives.

Everything resumable: ``RUN/last.pt`` (model, optimisers, RNG, step) is written
atomically every ``checkpoint_every`` steps; ``RUN/log.csv`` and ``RUN/curves.png`` grow
as it goes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from edge_sdk.runtime.fileio import atomic_file, atomic_write
from edge_sdk.runtime.images import find_images

from ..models.base import CompressedDomainModel
from ..models.entropy_models import gaussian_likelihood

STAGES = ("codec", "prior", "adapter")
#: POLC's bpp weights for q = 1..8 (q = 1 is the lowest rate); models with fewer
#: qualities take evenly spaced entries.
POLC_LAMBDAS = (18.0, 9.32, 4.83, 2.5, 1.3, 0.67, 0.35, 0.18)


class TrainError(RuntimeError):
    pass


@dataclass
class TrainConfig:
    stage: str
    dataset: str
    run_dir: str
    model: str = "lite0"
    objective: str = "polc"  # or "picm" (codec stage only)
    steps: int = 1000
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lambdas: tuple[float, ...] = ()
    mse_weight: float = 1.0
    lpips_weight: float = 1.0
    task_weight: float = 1.0
    distill_weight: float = 0.01
    picm_mse_weight: float = 0.1
    #: crops are taken from windows up to this many times the crop side and downscaled:
    #: the classifier then sees content at the scale of whole photos at its own resolution
    scale_max: float = 1.0
    #: the adapter's own learning rate in the picm codec stage (it starts far from its
    #: optimum at a new scale, the codec close to its own); None: ``lr``
    adapter_lr: Optional[float] = None
    #: the per-quality gain tables' learning rate; None: 20 × ``lr``. At the codec's rate the
    #: rows move ~1e-4 a step and the qualities never separate (measured on lite0's first weights)
    gain_lr: Optional[float] = None
    #: > 1: before training, multiply the latent gain row of quality q by gain_spread^(q − q_default)
    #: (and divide the inverse row), for --init weights whose qualities collapsed into one
    gain_spread: float = 1.0
    grad_clip: float = 1.0
    seed: int = 10086
    device: str = "auto"
    threads: int = 0
    init: Optional[str] = None
    #: then the adapter's tensors from these weights (an earlier adapter as the warm start when the
    #: codec under it was trained further); everything else stays ``init``'s
    init_adapter: Optional[str] = None
    checkpoint_every: int = 100
    log_every: int = 10
    #: a folder of photos (Kodak) measured at full resolution every ``eval_every`` steps: bpp from the
    #: likelihoods of the rounded latents and PSNR of the 8-bit reconstruction, at every quality
    eval_dir: Optional[str] = None
    eval_every: int = 0
    #: 0: every photo of ``eval_dir``; n: the first n (sorted by name)
    eval_images: int = 0
    #: NCHW tensors in channels-last memory order (oneDNN's preferred layout for convolutions on CPU)
    channels_last: bool = False
    #: only crops from photos whose ``dataset.json`` origin starts with one of these (e.g. the
    #: ImageNet-domain photos for the adapter, whose teacher was trained on them); empty: all
    origins: tuple[str, ...] = ()
    #: random brightness, contrast and saturation factors in [1 - j, 1 + j] per crop (adapter
    #: augmentation: the teacher sees the same augmented original)
    color_jitter: float = 0.0
    #: steps at which every learning rate is multiplied by ``lr_drop_factor`` (step decay, as the
    #: learned-codec literature anneals at the end of training); a function of the step alone, so a
    #: resumed run follows the same schedule
    lr_drops: tuple[int, ...] = ()
    lr_drop_factor: float = 0.1

    def lr_scale(self, step: int) -> float:
        """The factor on every learning rate for the optimiser step taken after ``step`` completed steps."""
        return self.lr_drop_factor ** sum(1 for s in self.lr_drops if step >= s)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise TrainError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.objective not in ("polc", "picm"):
            raise TrainError(f"objective must be 'polc' or 'picm', got {self.objective!r}")
        if self.steps < 1 or self.batch_size < 1 or self.crop < 64 or self.crop % 64:
            raise TrainError("steps and batch size must be positive, crop a multiple of 64 (at least 64)")
        if not 1.0 <= self.scale_max <= 16.0:
            raise TrainError(f"scale_max must lie in [1, 16], got {self.scale_max}")
        if not 1.0 <= self.gain_spread <= 4.0:
            raise TrainError(f"gain_spread must lie in [1, 4], got {self.gain_spread}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise TrainError(f"color_jitter must lie in [0, 1), got {self.color_jitter}")
        if any(s < 0 for s in self.lr_drops):
            raise TrainError(f"lr_drops must be steps (0 or positive), got {list(self.lr_drops)}")
        if not 0.0 < self.lr_drop_factor <= 1.0:
            raise TrainError(f"lr_drop_factor must lie in (0, 1], got {self.lr_drop_factor}")
        if self.eval_every < 0 or self.eval_images < 0:
            raise TrainError("eval_every and eval_images must be 0 or positive")
        if self.eval_every and not self.eval_dir:
            raise TrainError("eval_every needs eval_dir (a folder of photos, e.g. Kodak)")


def spread_quality_gains(model: CompressedDomainModel, ratio: float, reference_quality: int) -> None:
    """Multiply latent gain row q by ratio^(q − reference) and divide the inverse row by it.

    The reference quality keeps its weights exactly; the others start at the quantiser step
    their λ asks for instead of at the reference's (the decoder side follows through the inverse
    gain, so reconstructions stay sensible from the first step).
    """
    tables = model.quality_gain_tables()
    roles = {role for _, role in tables.values()}
    if not {"latent", "inverse_latent"} <= roles:
        raise TrainError(f"{model.model_name} has no latent gain tables to spread")
    with torch.no_grad():
        for param, role in tables.values():
            if role not in ("latent", "inverse_latent"):
                continue
            exponents = torch.arange(1, param.shape[0] + 1, dtype=param.dtype, device=param.device) - reference_quality
            factor = ratio ** exponents if role == "latent" else ratio ** -exponents
            param.mul_(factor.view(-1, 1))


def rate_lambdas(config: TrainConfig, levels: int) -> tuple[float, ...]:
    if config.lambdas:
        if len(config.lambdas) != levels:
            raise TrainError(f"need {levels} lambdas (one per quality), got {len(config.lambdas)}")
        return tuple(config.lambdas)
    idx = np.linspace(1, len(POLC_LAMBDAS) - 2, levels).round().astype(int)
    return tuple(POLC_LAMBDAS[i] for i in idx)


class CropSet:
    """The training crops of a prepared dataset, held in memory as uint8; random flips.

    With ``scale_max > 1`` each crop comes from a square window of ``crop·s`` pixels
    (``s`` log-uniform in [1, scale_max], capped by the photo) anywhere in the photo the
    crop index picked, downscaled with Lanczos: the photos are stored at 2× or more
    below the source, and whole photos at a classifier's 224 px are another 3-4× down.
    """

    def __init__(self, dataset_dir: str | Path, crop: int, scale_max: float = 1.0, origins: tuple[str, ...] = (),
                 color_jitter: float = 0.0):
        from .data import load_rgb

        root = Path(dataset_dir)
        meta_path = root / "crops.json"
        if not meta_path.is_file():
            raise TrainError(f"{root} is not a prepared dataset (no crops.json); run `edge-sdk data prepare` first")
        meta = json.loads(meta_path.read_text())
        # plain crops are cut from the stored crop positions; scaled windows come from anywhere in the
        # photo (resized to the crop), so only plain crops are bounded by the dataset's crop size
        if meta["crop"] < crop and scale_max == 1.0:
            raise TrainError(f"dataset crops are {meta['crop']} px, smaller than the requested {crop}; "
                             f"prepare the dataset with --crop {crop} or take scaled windows (scale_max > 1)")
        self.crop = crop
        self.scale_max = float(scale_max)
        self.color_jitter = float(color_jitter)
        crops = meta["crops"]
        if origins:
            records = json.loads((root / "dataset.json").read_text())["images"]
            keep = {r["name"] for r in records if r["origin"].startswith(tuple(origins))}
            crops = [c for c in crops if c[0] in keep]
            if not crops:
                raise TrainError(f"{root} has no training photos whose origin starts with {', '.join(origins)}")
        self.images = {}
        for name in sorted({c[0] for c in crops}):
            self.images[name] = load_rgb(root / "train" / f"{name}.png")
        self.index = [(n, t, l) for n, t, l in crops]
        if not self.index:
            raise TrainError(f"{root} has no training crops")

    def batch(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        x = self._batch(rng, size)
        if self.color_jitter:
            x = self._jitter(x, rng)
        return x

    def _jitter(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        n = x.shape[0]
        j = self.color_jitter
        brightness, contrast, saturation = (torch.from_numpy(rng.uniform(1 - j, 1 + j, n)).float().view(-1, 1, 1, 1)
                                            for _ in range(3))
        x = x * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - gray) * saturation + gray
        return x.clamp(0.0, 1.0)

    def _batch(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        picks = rng.integers(0, len(self.index), size)
        out = np.empty((size, self.crop, self.crop, 3), np.uint8)
        for i, k in enumerate(picks):
            name, top, left = self.index[k]
            img = self.images[name]
            if self.scale_max > 1.0:
                out[i] = self._scaled_window(img, rng)
                continue
            # a random sub-window of the stored crop when training on smaller crops
            top += int(rng.integers(0, min(img.shape[0] - top, 2 * self.crop) - self.crop + 1))
            left += int(rng.integers(0, min(img.shape[1] - left, 2 * self.crop) - self.crop + 1))
            patch = img[top : top + self.crop, left : left + self.crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0

    def _scaled_window(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        s = float(np.exp(rng.uniform(0.0, np.log(self.scale_max))))
        side = min(int(round(self.crop * s)), *img.shape[:2])
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        window = img[top : top + side, left : left + side]
        if rng.random() < 0.5:
            window = window[:, ::-1]
        if side != self.crop:
            window = np.asarray(Image.fromarray(np.ascontiguousarray(window)).resize((self.crop, self.crop), Image.LANCZOS))
        return window


def drop_rows_after(path: Path, step: int) -> None:
    """Rewrite a CSV log (atomically) without the rows whose ``step`` is past ``step``."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "step" not in rows[0]:
        return
    col = rows[0].index("step")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[col]) <= step]
    if len(kept) == len(rows):
        return
    text = io.StringIO(newline="")
    csv.writer(text).writerows(kept)
    atomic_write(path, text.getvalue())


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _lpips(device: torch.device):
    try:
        from stlpips_pytorch import stlpips
    except ImportError as exc:
        raise TrainError("LPIPS needs 'stlpips-pytorch' (pip install 'edge-sdk[train]'), or pass --lpips-weight 0") from exc
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its set-up
        net = stlpips.LPIPS(net="alex", variant="shift_tolerant").to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def trainable_parameters(model: CompressedDomainModel, stage: str, objective: str = "polc") -> list[torch.nn.Parameter]:
    names = dict(model.named_parameters())
    if stage == "adapter":
        keep = [p for n, p in names.items() if n.startswith("adapter.")]
    elif stage == "prior":
        keep = [p for n, p in names.items() if n.startswith(model.prior_prefixes())]
    else:
        task = {id(p) for p in model.task_parameters()}
        keep = [p for p in names.values() if id(p) not in task]
        if objective == "picm":  # the task loss reaches the codec through the adapter, which learns with it
            keep += [p for n, p in names.items() if n.startswith("adapter.")]
    # the quantiles have their own optimiser (auxiliary loss), as in CompressAI
    return [p for p in keep if p is not model.entropy_bottleneck.quantiles]


def coarsen_residual(y: torch.Tensor, means: torch.Tensor, planes_dropped: torch.Tensor) -> torch.Tensor:
    """ŷ as if the last k trit planes were not decoded: residual on a 3^k grid (per sample k)."""
    step = (3.0 ** planes_dropped.float()).view(-1, 1, 1, 1)
    r = y - means
    coarse = torch.round(r / step) * step
    return means + (coarse - r).detach() + r


def compute_losses(model, x, quality: float, lam: float, config: TrainConfig, lpips_net, teacher_cache=None,
                   rng: Optional[np.random.Generator] = None) -> dict[str, torch.Tensor]:
    """All loss terms of one batch; ``total`` is what the stage optimises."""
    n, _, h, w = x.shape
    pixels = n * h * w
    y = model.analysis(x, quality)
    z = model.hyper_analysis(y, quality)
    z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
    z_hat = torch.round(z) + (z - z.detach()) if config.stage != "codec" else z_noisy
    means, scales = model.hyper_synthesis(z_hat, quality)
    y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
    y_lik = gaussian_likelihood(y_noisy - means, scales, 0.11)
    z_lik = model.entropy_bottleneck.likelihood(z_noisy + model.entropy_bottleneck.medians().view(1, -1, 1, 1))
    bpp_y = -torch.log2(y_lik).sum() / pixels
    bpp_z = -torch.log2(z_lik).sum() / pixels
    y_hat = torch.round(y - means) + means + ((y - means) - (y - means).detach())  # straight-through
    out = {"bpp": bpp_y + bpp_z, "bpp_y": bpp_y, "bpp_z": bpp_z}
    if config.stage == "prior":
        out["total"] = out["bpp"]
        return out
    if config.stage == "codec":
        x_hat = model.synthesis_unclamped(y_hat, quality)  # a clamp would stop gradients at the range ends
        mse = F.mse_loss(x_hat, x)
        out["mse"] = mse
        out["psnr"] = -10 * torch.log10(mse.detach().clamp_min(1e-10))
        if config.objective == "polc":
            distortion = config.mse_weight * 4.0 * mse  # MSE in [-1, 1] units, as POLC
            if config.lpips_weight > 0:
                out["lpips"] = lpips_net(2 * x_hat - 1, 2 * x - 1).mean()
                distortion = distortion + config.lpips_weight * out["lpips"]
        else:
            with torch.no_grad():
                teacher = model.pixel_classifier(x, quality)
            student = model.classifier(y_hat, quality)
            out["task"] = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True,
                                   reduction="batchmean")
            distortion = config.task_weight * (out["task"] + config.picm_mse_weight * 4.0 * mse)
        out["total"] = lam * out["bpp"] + distortion
        return out
    # adapter: codec frozen, so ŷ carries no gradient; coarsen it to a random decode depth
    with torch.no_grad():
        # mostly full depth, sometimes 1-3 planes short (a 27-step residual grid is almost the means alone)
        k = torch.from_numpy((rng or np.random.default_rng()).choice(4, n, p=[0.5, 0.25, 0.15, 0.1])).to(x.device)
        y_in = coarsen_residual(y.detach(), means.detach(), k)
        teacher_feat = model.pixel_features(x)
        # pixel_classifier(x) is the backbone after pixel_features(x): run the stem once
        teacher = model.classifier_from_features(teacher_feat)
    feat = model.adapter_features(y_in, quality)
    student = model.classifier_from_features(feat)
    out["task"] = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
    out["distill"] = F.mse_loss(feat, teacher_feat)
    out["agree"] = (student.argmax(1) == teacher.argmax(1)).float().mean()
    out["total"] = config.task_weight * out["task"] + config.distill_weight * out["distill"]
    return out


def load_eval_photos(folder: str | Path, limit: int = 0) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) of the photos in ``folder``, sorted by name; the first ``limit`` if > 0."""
    from .data import load_rgb

    paths = find_images(folder, recursive=False)
    if limit:
        paths = paths[:limit]
    if not paths:
        raise TrainError(f"{folder} holds no photos to evaluate on")
    return [(p.name, load_rgb(p)) for p in paths]


@torch.no_grad()
def rate_distortion(model: CompressedDomainModel, photos: list[tuple[str, np.ndarray]], quality: float,
                    device: torch.device = torch.device("cpu")) -> dict:
    """Mean bpp (ideal code length of the rounded ŷ and ẑ under the model's own priors) and mean PSNR
    (dB, 8-bit reconstruction, peak 255) over ``photos`` at full resolution, as CompressAI reports Kodak.

    The ideal length leaves out the stream's framing (header, chunk table, checks), which
    ``edge-sdk eval`` counts; it is the figure the published learned-codec curves use.
    """
    from .report import pad_to_multiple

    bpps, psnrs = [], []
    for _name, img in photos:
        h, w = img.shape[:2]
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255.0).to(device)
        xp, _ = pad_to_multiple(x, model.padding_multiple, model.min_input_size)
        y = model.analysis(xp, quality)
        z_hat = torch.round(model.hyper_analysis(y, quality))
        means, scales = model.hyper_synthesis(z_hat, quality)
        y_hat = torch.round(y - means) + means
        bits = -torch.log2(gaussian_likelihood(y_hat - means, scales, 0.11)).sum()
        bits = bits - torch.log2(model.entropy_bottleneck.likelihood(z_hat + model._medians())).sum()
        x_hat = model.synthesis(y_hat, quality)[..., :h, :w]
        rec = torch.round(x_hat * 255.0)
        mse = torch.mean((rec - torch.round(x * 255.0)) ** 2).item()
        bpps.append(bits.item() / (h * w))
        psnrs.append(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))
    return {"quality": quality, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}


def rate_distortion_curve(model: CompressedDomainModel, photos: list[tuple[str, np.ndarray]],
                          device: torch.device = torch.device("cpu"),
                          progress: Optional[Callable[[], None]] = None) -> list[dict]:
    """:func:`rate_distortion` at every quality of the model, lowest rate first."""
    rows = []
    for q in range(1, model.num_qualities + 1):
        rows.append(rate_distortion(model, photos, float(q), device))
        if progress:
            progress()
    return rows


def psnr_at_bpp(points: list[dict], bpp: float) -> Optional[float]:
    """PSNR at ``bpp`` interpolated linearly in log-bpp between measured points; None outside their span."""
    pts = sorted((p["bpp"], p["psnr"]) for p in points)
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1 and b1 > b0:
            t = (np.log(bpp) - np.log(b0)) / (np.log(b1) - np.log(b0))
            return float(p0 + t * (p1 - p0))
    return None


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Loss curves from log.csv (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    keys = [k for k in ("total", "bpp", "psnr", "lpips", "task", "distill", "agree") if rows[0].get(k) not in (None, "")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    steps = [int(r["step"]) for r in rows]
    for ax, key in zip(axes[0], keys):
        vals = np.array([float(r[key]) for r in rows])
        ax.plot(steps, vals, lw=0.6, alpha=0.35)
        window = max(1, len(vals) // 30)  # the quality changes every step: show the trend too
        if window > 1:
            smooth = np.convolve(vals, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, lw=1.4)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(png_path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def plot_eval(eval_csv: Path, png_path: Path) -> None:
    """PSNR against bpp at each evaluation (colour: training hours), and PSNR at 0.5 bpp against hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(eval_csv.open()))
    if not rows:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = sorted({int(r["step"]) for r in rows})
    cmap = plt.get_cmap("viridis")
    for i, st in enumerate(steps):
        pts = sorted((float(r["bpp"]), float(r["psnr"])) for r in rows if int(r["step"]) == st)
        hours = float(next(r["trained_seconds"] for r in rows if int(r["step"]) == st)) / 3600
        left.plot(*zip(*pts), "o-", ms=3, color=cmap(i / max(1, len(steps) - 1)), label=f"{hours:.1f} h")
    left.set_xlabel("bpp (ideal code length)")
    left.set_ylabel("PSNR (dB)")
    left.grid(alpha=0.3)
    if len(steps) <= 8:
        left.legend(fontsize=7)
    at = [(float(r["trained_seconds"]) / 3600, float(r["psnr_at_0.5bpp"])) for r in rows
          if r["quality"] in ("1.0", "1") and r["psnr_at_0.5bpp"]]
    if at:
        right.plot(*zip(*at), "o-")
    right.set_xlabel("training hours (this run)")
    right.set_ylabel("PSNR at 0.5 bpp (dB)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(png_path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def load_adapter_weights(model: CompressedDomainModel, path: str) -> int:
    """Load only the adapter's tensors of ``path`` into ``model``; how many were loaded."""
    from ..models.checkpoint import CheckpointError, load_state_dict_into, read_state_dict

    prefixes = model.weight_groups().get("adapter")
    if not prefixes:
        raise TrainError(f"--init-adapter: {type(model).__name__} has no adapter")
    try:
        state = read_state_dict(path)
    except CheckpointError as exc:
        raise TrainError(f"--init-adapter: {exc}") from exc
    state = {k: v for k, v in state.items() if k.startswith(prefixes)}
    report = load_state_dict_into(model, state, path)
    expected = [k for k in model.state_dict() if k.startswith(prefixes)]
    if report.shape_mismatch or report.unexpected or len(report.mapped) != len(expected):
        raise TrainError(f"--init-adapter {path} does not hold this model's adapter "
                         f"({len(report.mapped)} of {len(expected)} tensors fit):\n{report.summary()}")
    return len(report.mapped)


def train(config: TrainConfig, resume: bool = False, progress: Optional[Callable[[int, dict], None]] = None) -> dict:
    """Run (or resume) a training stage; returns the last logged metrics."""
    from ..models.checkpoint import load_checkpoint
    from ..models.registry import create_model

    run = Path(config.run_dir)
    last = run / "last.pt"
    if run.exists() and any(run.iterdir()) and not resume:
        raise TrainError(f"{run} is not empty; pass --resume to continue it or choose another --run-dir")
    if resume and not last.is_file():
        raise TrainError(f"nothing to resume in {run} (no last.pt)")
    run.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = create_model(config.model)
    if hasattr(model, "load_default_weights"):
        model.load_default_weights(["backbone"])  # the frozen teacher/backbone, where one is packaged
    if config.init:
        report = load_checkpoint(model, config.init)
        if report.shape_mismatch or not report.mapped:
            raise TrainError(f"--init {config.init} does not fit {config.model}:\n{report.summary()}")
    if config.init_adapter:
        load_adapter_weights(model, config.init_adapter)
    if config.gain_spread != 1.0 and not resume:  # a resumed run's state already holds the spread rows
        from ..models.registry import get_model_info

        spread_quality_gains(model, config.gain_spread, get_model_info(config.model).default_quality)
    model.to(device)
    params = trainable_parameters(model, config.stage, config.objective)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    adapter_ids = {id(p) for n, p in model.named_parameters() if n.startswith("adapter.")}
    gain_ids = {id(p) for p, _ in model.quality_gain_tables().values()}
    groups = [{"params": [p for p in params if id(p) not in adapter_ids | gain_ids], "lr": config.lr},
              {"params": [p for p in params if id(p) in adapter_ids], "lr": config.adapter_lr or config.lr},
              {"params": [p for p in params if id(p) in gain_ids], "lr": config.gain_lr or 20 * config.lr}]
    groups = [g for g in groups if g["params"]]
    # each group's learning rate before the schedule: set on every step, so a resumed run takes the
    # schedule and the --lr of its command line, not the rates stored with the optimiser state
    base_lrs = [g["lr"] for g in groups]
    opt = torch.optim.Adam(groups)
    train_quantiles = config.stage in ("codec", "prior")
    model.entropy_bottleneck.quantiles.requires_grad_(train_quantiles)
    aux_opt = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=config.aux_lr) if train_quantiles else None
    (run / "config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    data = CropSet(config.dataset, config.crop, config.scale_max, tuple(config.origins), config.color_jitter)
    lambdas = rate_lambdas(config, model.num_qualities)
    lpips_net = _lpips(device) if config.stage == "codec" and config.objective == "polc" and config.lpips_weight > 0 else None
    # restore RNG states last: building LPIPS and the data consumes random numbers
    step = 0
    trained_seconds = 0.0  # wall time spent in optimiser steps, summed over resumed segments
    if resume:
        state = torch.load(last, map_location=device, weights_only=False)
        saved = TrainConfig(**{**state["config"], "lambdas": tuple(state["config"]["lambdas"]),
                               "origins": tuple(state["config"].get("origins", ())),
                               "lr_drops": tuple(state["config"].get("lr_drops", ()))})
        if (saved.stage, saved.model, saved.objective) != (config.stage, config.model, config.objective):
            raise TrainError(f"{run} holds a {saved.stage}/{saved.model}/{saved.objective} run, not "
                             f"{config.stage}/{config.model}/{config.objective}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if aux_opt is not None and state.get("aux_optimizer"):
            aux_opt.load_state_dict(state["aux_optimizer"])
        step = state["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        trained_seconds = float(state.get("trained_seconds", 0.0))
        # a run killed between checkpoints logged steps the resumed run takes again
        for name in ("log.csv", "eval.csv"):
            drop_rows_after(run / name, step)
    # frozen parts stay in eval mode (BatchNorm statistics of the backbone must not drift)
    model.eval()
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    eval_photos = load_eval_photos(config.eval_dir, config.eval_images) if config.eval_every else []

    def evaluate() -> None:
        # its own RNG use would change the training stream: the eval draws no random numbers
        rows = rate_distortion_curve(model, eval_photos, device)
        at = psnr_at_bpp(rows, 0.5)
        path = run / "eval.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "trained_seconds", "quality", "bpp", "psnr", "psnr_at_0.5bpp"])
            for r in rows:
                w.writerow([step, f"{trained_seconds:.3f}", r["quality"], f"{r['bpp']:.5f}", f"{r['psnr']:.4f}",
                            "" if at is None else f"{at:.4f}"])
        plot_eval(path, run / "eval.png")

    if eval_photos and step == 0:
        evaluate()
    log_path = run / "log.csv"
    fields = ["step", "q", "total", "bpp", "bpp_y", "bpp_z", "mse", "psnr", "lpips", "task", "distill", "agree",
              "aux", "seconds"]
    new_log = not log_path.exists()
    log_file = log_path.open("a", newline="")
    writer = csv.DictWriter(log_file, fieldnames=fields)
    if new_log:
        writer.writeheader()
    metrics: dict = {}
    t0 = time.perf_counter()
    try:
        while step < config.steps:
            t_step = time.perf_counter()
            q = int(rng.integers(1, model.num_qualities + 1))
            x = data.batch(rng, config.batch_size).to(device)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            losses = compute_losses(model, x, float(q), lambdas[q - 1], config, lpips_net, rng=rng)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            scale = config.lr_scale(step)
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * scale
            opt.step()
            aux = None
            if aux_opt is not None:
                aux_opt.zero_grad(set_to_none=True)
                aux = model.entropy_bottleneck.aux_loss()
                aux.backward()
                aux_opt.step()
            step += 1
            trained_seconds += time.perf_counter() - t_step
            if not all(torch.isfinite(v).all() for v in losses.values()):
                raise TrainError(f"step {step}: a loss became non-finite ({ {k: float(v) for k, v in losses.items()} })")
            if step % config.log_every == 0 or step == config.steps:
                metrics = {k: float(v.detach()) for k, v in losses.items()}
                metrics.update(step=step, q=q, aux=float(aux.detach()) if aux is not None else "",
                               seconds=round(time.perf_counter() - t0, 1))
                writer.writerow({k: metrics.get(k, "") for k in fields})
                log_file.flush()
            if progress:
                progress(step, metrics)
            if step % config.checkpoint_every == 0 or step == config.steps:
                with atomic_file(last) as tmp:
                    torch.save({
                        "config": asdict(config), "step": step, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict() if aux_opt else None,
                        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                        "trained_seconds": trained_seconds,
                    }, tmp)
                plot_curves(log_path, run / "curves.png")
            if eval_photos and step % config.eval_every == 0:
                evaluate()
    finally:
        log_file.close()
    return metrics


def export_weights(run_or_checkpoint: str | Path, out: str | Path, groups: tuple[str, ...] = ("codec", "adapter"),
                   dtype: torch.dtype = torch.float16) -> dict:
    """Write the trained groups of a run as a safetensors file (fp16 by default) for shipping."""
    from safetensors.torch import save_file

    from ..models.checkpoint import weight_group_of
    from ..models.registry import create_model

    path = Path(run_or_checkpoint)
    if path.is_dir():
        path = path / "last.pt"
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = create_model(state["config"]["model"])
    model.load_state_dict(state["model"])
    # the shipped z tables are derived from the quantiles: make sure they sit on the density. Only
    # stages that moved the density need it; an adapter run's codec is its --init's, already settled,
    # and settling again moves the tail quantiles of narrow channels (up to 0.36 on lite0), so the
    # codec of an adapter run's weights would no longer be the one measured
    if state["config"]["stage"] in ("codec", "prior"):
        model.entropy_bottleneck.settle_quantiles()
    tensors = {}
    for key, value in model.state_dict().items():
        if weight_group_of(model, key) in groups and value.is_floating_point():
            tensors[key] = value.to(dtype).contiguous()
        elif weight_group_of(model, key) in groups:
            tensors[key] = value.contiguous()
    meta = {"model": state["config"]["model"], "step": str(state["step"]), "groups": ",".join(groups)}
    with atomic_file(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the temporary is 0600; shipped weights are ordinary files
    return {"tensors": len(tensors), "bytes": Path(out).stat().st_size, **meta}
