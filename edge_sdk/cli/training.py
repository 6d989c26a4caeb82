"""``edge-sdk data prepare`` and ``edge-sdk train``: photo sets, training runs, their weights and model card.

They need the ``[export]`` (data) or ``[train]`` extra, imported only when a command runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sdk.cli.common import (TORCH_DEVICE_OPTION, TORCH_THREADS_OPTION, console, data_app, err_console, fail,
                                 progress_bar, train_app)


@data_app.command("prepare")
def data_prepare(
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to create (appears atomically)."),
    source: list[Path] = typer.Option(
        [], "--source", help="Extra folder of photos (repeatable); their licence comes from --licence."),
    licence: str = typer.Option("unknown", "--licence", help="Licence of the --source photos (SPDX id)."),
    no_default_sources: bool = typer.Option(
        False, "--no-default-sources", help="Skip the Debian wallpaper packages and the scikit-image/-learn photos."),
    imagenet_train: Optional[Path] = typer.Option(
        None, help="The labelled ImageNet sample's train folder (labels.csv beside the photos); research use only."),
    mirrors: Optional[Path] = typer.Option(
        None, help="Folder of bare git mirrors (owner+name/repo) holding the photo sets of docs/training.md; "
        "each photo records repository, commit, path and licence."),
    protect: list[Path] = typer.Option(
        [], "--protect", help="Extra evaluation folder whose photos (and copies of them) never enter the set "
        "(repeatable). The shared ImageNet val split and Kodak are always protected when present."),
    crop: int = typer.Option(256, help="Training crop side in pixels."),
    val_every: int = typer.Option(6, help="Every N-th photo (by content hash) is held out."),
    short_side: int = typer.Option(
        0, help="Reduce every photo to this short side instead of the 2x JPEG rule (never enlarging): the "
        "classifier's scale, for adapter training (224 matches imagenet-sample/val). 0: the codec's rule."),
    crops_per_megapixel: float = typer.Option(24.0, help="Training crops drawn per megapixel of downscaled photo."),
    seed: int = typer.Option(0, help="Seed of the crop positions."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Build deterministic train/held-out photo sets with each photo's licence recorded.

    Default sources: the photos of the Debian packages lomiri-wallpapers-16.04,
    lomiri-wallpapers-20.04, mate-backgrounds and plasma-workspace-wallpapers
    (apt-get install them; licences are read from their DEP-5 copyright files)
    and, held out, the photos inside the scikit-image and scikit-learn wheels.
    --imagenet-train and --mirrors add in-domain and codec-benchmark-style photos.
    JPEGs are downscaled at least 2x (antialiased) to wash out blocking. The
    split is by photo, never by crop. Evaluation photos (ImageNet val, Kodak,
    --protect) and copies of them never enter; the near-duplicates count once.

    Example (lite0's training set):
    edge-sdk data prepare --out data/photos --imagenet-train IMAGENET_SAMPLE/train
    --mirrors MIRRORS --crop 128 --val-every 10

    The adapter's set, at the classifier's scale: add --short-side 224 --crop 192.
    """
    try:
        from edge_sdk.export.training import data
    except ImportError as exc:
        fail(f"this command needs Pillow ({exc.name} is missing): pip install 'edge-sdk[export]'")
    if out.exists() and not force:
        fail(f"{out} already exists; pass --force to replace it")
    sources = [] if no_default_sources else data.default_sources()
    for folder in source:
        if not folder.is_dir():
            fail(f"--source {folder} is not a folder")
        sources += data.scan_folder(folder, licence)
    try:
        if imagenet_train is not None:
            sources += data.imagenet_sample_photos(imagenet_train)
        if mirrors is not None:
            if not mirrors.is_dir():
                fail(f"--mirrors {mirrors} is not a folder")
            found, missing = data.find_repo_photos(mirrors)
            sources += found
            if missing:
                err_console.print(f"[yellow]no mirror of {', '.join(missing)} in {mirrors}: skipped[/yellow]")
    except data.DataError as exc:
        fail(str(exc))
    protected = data.default_protected_folders() + [p for p in protect]
    for folder in protect:
        if not folder.is_dir():
            fail(f"--protect {folder} is not a folder")
    try:
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task("photos", total=len(sources) + 1)
            manifest = data.prepare_dataset(
                sources, out, crop=crop, val_every=val_every, short_side=short_side,
                crops_per_megapixel=crops_per_megapixel, seed=seed, force=force, protected=protected,
                progress=lambda m: (bar.update(task, description=m), bar.advance(task)))
    except data.DataError as exc:
        fail(str(exc))
    result = {"out": str(out), **manifest["counts"], "licences": manifest["licences"],
              "protected": manifest["protected"]}
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"wrote {out}: {result['train_images']} training photos ({result['train_megapixels']} MP, "
                      f"{result['train_crops']} crops of {crop}px), {result['val_images']} held out, "
                      f"{result['excluded']} left out as evaluation photos or near-duplicates; licences: "
                      f"{', '.join(result['licences'])} (per photo in dataset.json)")


def _run_training(stage: str, **options) -> None:
    try:
        from edge_sdk.export.training import train as training
    except ImportError as exc:
        fail(f"training needs the [train] extra ({exc.name} is missing): pip install 'edge-sdk[train]'")
    as_json = options.pop("as_json")
    resume = options.pop("resume")
    lambdas = options.pop("lambdas")
    try:
        config = training.TrainConfig(stage=stage, lambdas=tuple(lambdas), **options)
    except training.TrainError as exc:
        fail(str(exc))
    try:
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task(f"{stage}", total=config.steps)

            def report(step: int, metrics: dict) -> None:
                shown = " ".join(f"{k}={metrics[k]:.4g}" for k in ("total", "bpp", "psnr", "agree") if
                                 isinstance(metrics.get(k), float))
                bar.update(task, completed=step, description=f"{stage} {shown}")

            metrics = training.train(config, resume=resume, progress=report)
    except (training.TrainError, FileNotFoundError, ImportError) as exc:
        fail(str(exc))
    result = {"run_dir": config.run_dir, "stage": stage, **metrics}
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"{stage} done: {json.dumps(metrics)}; log {config.run_dir}/log.csv, curves "
                      f"{config.run_dir}/curves.png, checkpoint {config.run_dir}/last.pt")


# Options the training commands share, defined once (typer reads them from the annotations).
DatasetOpt = Annotated[Path, typer.Option(help="A folder made by `edge-sdk data prepare`.")]
RunDirOpt = Annotated[Path, typer.Option("--run-dir", help="Where checkpoints, log.csv and curves.png go.")]
ModelOpt = Annotated[str, typer.Option(help="Registered model name.")]
BatchOpt = Annotated[int, typer.Option(help="Crops per step.")]
CropOpt = Annotated[int, typer.Option(help="Crop side (multiple of 64).")]
LrOpt = Annotated[float, typer.Option(help="Adam learning rate.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir (with this command's "
                                         "--lr and --lr-drop: the schedule is a function of the step).")]
LrDropOpt = Annotated[list[int], typer.Option("--lr-drop", help="Multiply every learning rate by --lr-drop-factor "
                                              "from this step on (repeatable; step decay for the end of training).")]
LrDropFactorOpt = Annotated[float, typer.Option(help="Factor of each --lr-drop.")]
JsonMetricsOpt = Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")]
ScaleMaxOpt = Annotated[float, typer.Option(help="Crops come from windows up to this many crop sides wide, downscaled "
                                            "(1: plain crops). 4 covers whole photos at a classifier's 224 px.")]


@train_app.command("codec")
def train_codec(
    dataset: DatasetOpt,
    run_dir: RunDirOpt,
    model: ModelOpt = "lite0",
    objective: str = typer.Option("polc", help="polc: rate + MSE + LPIPS; picm: rate + task loss + small MSE."),
    steps: int = typer.Option(1000, help="Total optimiser steps (a resumed run continues to this many)."),
    batch_size: BatchOpt = 8,
    crop: CropOpt = 256,
    lr: LrOpt = 1e-4,
    lr_drop: LrDropOpt = [],
    lr_drop_factor: LrDropFactorOpt = 0.1,
    lambdas: list[float] = typer.Option([], "--lambda", help="Rate weight per quality, lowest rate first (repeat "
                                        "once per quality; default: POLC's weights spaced over the model's qualities)."),
    lpips_weight: float = typer.Option(1.0, help="ST-LPIPS weight (polc objective); 0 turns it off."),
    mse_weight: float = typer.Option(1.0, help="MSE weight (polc objective), in POLC's [-1, 1] units."),
    picm_mse_weight: float = typer.Option(0.1, help="MSE weight beside the task loss (picm objective), [-1, 1] units."),
    adapter_lr: Optional[float] = typer.Option(None, help="The adapter's learning rate (picm objective; default: --lr)."),
    gain_lr: Optional[float] = typer.Option(None, help="The per-quality gain tables' learning rate (default: 20 × --lr; "
                                            "at --lr itself the qualities do not separate)."),
    gain_spread: float = typer.Option(1.0, help="With --init: first multiply quality q's latent gain row by "
                                      "SPREAD^(q − default quality), e.g. 1.41, for weights whose qualities collapsed "
                                      "into one rate (edge-sdk eval at each --quality shows it)."),
    scale_max: ScaleMaxOpt = 1.0,
    init: Optional[str] = typer.Option(None, help="Start from these weights (checkpoint or safetensors)."),
    seed: int = typer.Option(10086, help="Seed of crops, qualities and noise."),
    device: str = TORCH_DEVICE_OPTION,
    threads: int = TORCH_THREADS_OPTION,
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints and curve plots."),
    eval_dir: Optional[Path] = typer.Option(None, help="Photos (e.g. Kodak) measured at full resolution during "
                                            "training: bpp and PSNR at every quality, PSNR at 0.5 bpp, in "
                                            "RUN/eval.csv and RUN/eval.png."),
    eval_every: int = typer.Option(0, help="Steps between those measurements (0: none)."),
    eval_images: int = typer.Option(0, help="Measure only the first N photos of --eval-dir (0: all)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last tensors (oneDNN's "
                                       "preferred convolution layout on CPU)."),
    resume: ResumeOpt = False,
    as_json: JsonMetricsOpt = False,
) -> None:
    """Train the codec: POLC's rate + MSE + ST-LPIPS, or PICM-Net's rate + task loss.

    The quality is drawn per step; the factorized z prior's quantiles learn
    with their own optimiser. Example:
    edge-sdk train codec --dataset data/photos --run-dir runs/codec --steps 20000
    """
    _run_training("codec", dataset=str(dataset), run_dir=str(run_dir), model=model, objective=objective, steps=steps,
                  batch_size=batch_size, crop=crop, lr=lr, lr_drops=tuple(lr_drop), lr_drop_factor=lr_drop_factor,
                  lambdas=lambdas, lpips_weight=lpips_weight,
                  mse_weight=mse_weight, picm_mse_weight=picm_mse_weight, adapter_lr=adapter_lr, gain_lr=gain_lr,
                  gain_spread=gain_spread, scale_max=scale_max, init=init, seed=seed,
                  device=device, threads=threads, checkpoint_every=checkpoint_every,
                  eval_dir=str(eval_dir) if eval_dir else None, eval_every=eval_every, eval_images=eval_images,
                  channels_last=channels_last, resume=resume, as_json=as_json)


@train_app.command("prior")
def train_prior(
    dataset: DatasetOpt,
    run_dir: RunDirOpt,
    init: str = typer.Option(..., help="The frozen codec's weights (e.g. an official POLC checkpoint)."),
    model: ModelOpt = "lite0",
    steps: int = typer.Option(1000, help="Total optimiser steps."),
    batch_size: BatchOpt = 8,
    crop: CropOpt = 256,
    lr: LrOpt = 1e-4,
    lr_drop: LrDropOpt = [],
    lr_drop_factor: LrDropFactorOpt = 0.1,
    seed: int = typer.Option(10086, help="Seed."),
    device: str = TORCH_DEVICE_OPTION,
    threads: int = TORCH_THREADS_OPTION,
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    resume: ResumeOpt = False,
    as_json: JsonMetricsOpt = False,
) -> None:
    """Train only the mean-scale hyperprior for the rate, everything else frozen.

    This is how an official POLC checkpoint (whose own entropy model is a
    multistage context model) becomes trit-plane capable.
    """
    _run_training("prior", dataset=str(dataset), run_dir=str(run_dir), model=model, steps=steps, batch_size=batch_size,
                  crop=crop, lr=lr, lr_drops=tuple(lr_drop), lr_drop_factor=lr_drop_factor, lambdas=[], init=init,
                  seed=seed, device=device, threads=threads,
                  checkpoint_every=checkpoint_every, resume=resume, as_json=as_json)


@train_app.command("adapter")
def train_adapter(
    dataset: DatasetOpt,
    run_dir: RunDirOpt,
    init: str = typer.Option(..., help="The trained codec's weights."),
    init_adapter: Optional[str] = typer.Option(None, help="Start the adapter from these weights' adapter tensors "
                                               "(an earlier run's, when the codec under it trained further); the "
                                               "codec stays --init's."),
    model: ModelOpt = "lite0",
    steps: int = typer.Option(1000, help="Total optimiser steps."),
    batch_size: BatchOpt = 8,
    crop: CropOpt = 256,
    lr: LrOpt = 1e-4,
    lr_drop: LrDropOpt = [],
    lr_drop_factor: LrDropFactorOpt = 0.1,
    distill_weight: float = typer.Option(0.01, help="Feature-distillation weight (POLC: 0.01)."),
    scale_max: ScaleMaxOpt = 1.0,
    origin: list[str] = typer.Option([], "--origin", help="Only photos whose dataset.json origin starts with this "
                                     "(repeatable), e.g. imagenet-sample and git:ajschumacher/imagen: the "
                                     "teacher's own domain."),
    color_jitter: float = typer.Option(0.0, help="Random brightness/contrast/saturation in [1-J, 1+J] per crop; "
                                       "the teacher sees the same augmented photo."),
    seed: int = typer.Option(10086, help="Seed."),
    device: str = TORCH_DEVICE_OPTION,
    threads: int = TORCH_THREADS_OPTION,
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    resume: ResumeOpt = False,
    as_json: JsonMetricsOpt = False,
) -> None:
    """Train the adapter with codec and backbone frozen: KL to the teacher + feature distillation.

    The teacher is the same backbone on the original pixels (no labels are
    needed). ŷ is coarsened to a random trit-plane depth so the adapter also
    works on partially decoded streams.
    """
    _run_training("adapter", dataset=str(dataset), run_dir=str(run_dir), model=model, steps=steps,
                  batch_size=batch_size, crop=crop, lr=lr, lr_drops=tuple(lr_drop), lr_drop_factor=lr_drop_factor,
                  lambdas=[], distill_weight=distill_weight,
                  scale_max=scale_max, origins=tuple(origin), color_jitter=color_jitter, init=init,
                  init_adapter=init_adapter, seed=seed, device=device, threads=threads,
                  checkpoint_every=checkpoint_every, resume=resume, as_json=as_json)


@train_app.command("export-weights")
def train_export_weights(
    run_dir: Path = typer.Argument(..., help="A training run folder (or its last.pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="The .safetensors file to write (atomically)."),
    full_precision: bool = typer.Option(False, "--fp32", help="Keep float32 (default: float16, half the size)."),
) -> None:
    """Write a run's codec and adapter weights as safetensors, ready for `edge-sdk export --checkpoint`."""
    try:
        import torch

        from edge_sdk.export.training import train as training
    except ImportError as exc:
        fail(f"needs the [train] extra ({exc.name} is missing)")
    if not (run_dir / "last.pt").is_file() and not run_dir.is_file():
        fail(f"{run_dir} holds no training checkpoint (last.pt)")
    info = training.export_weights(run_dir, out, dtype=torch.float32 if full_precision else torch.float16)
    console.print(f"wrote {out}: {info['tensors']} tensors, {info['bytes'] / 1e6:.1f} MB, step {info['step']}")


@train_app.command("rd-curve")
def train_rd_curve(
    weights: Path = typer.Option(..., help="Weights to measure (.safetensors from `train export-weights`, or any "
                                 "checkpoint `export --checkpoint` reads)."),
    images: Path = typer.Option(..., help="Folder of photos measured at full resolution (e.g. Kodak)."),
    model: ModelOpt = "lite0",
    at_bpp: float = typer.Option(0.5, help="Also give the PSNR interpolated (on log-bpp) at this rate."),
    limit: int = typer.Option(0, help="Only the first N photos, sorted by name (0: all)."),
    threads: int = TORCH_THREADS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the curve as JSON."),
) -> None:
    """Rate-distortion of weights at every quality, as training's --eval-dir measures it.

    bpp is the ideal code length of the rounded latents under the model's own priors (the
    figure published learned-codec curves use; `edge-sdk eval` counts every byte of a real
    stream instead), PSNR that of the 8-bit reconstruction, both averaged over the photos.
    Example: edge-sdk train rd-curve --weights W.safetensors --images KODAK
    """
    try:
        import torch

        from edge_sdk.export.models.checkpoint import CheckpointError, load_checkpoint
        from edge_sdk.export.models.registry import create_model
        from edge_sdk.export.training import train as training
    except ImportError as exc:
        fail(f"needs the [train] extra ({exc.name} is missing)")
    if not weights.is_file():
        fail(f"--weights {weights} is not a file")
    if threads:
        torch.set_num_threads(threads)
    try:
        net = create_model(model)
        report = load_checkpoint(net, weights)
        photos = training.load_eval_photos(images, limit)
    except (training.TrainError, CheckpointError) as exc:
        fail(str(exc))
    except KeyError as exc:  # an unknown --model; its message names the registered ones
        fail(exc.args[0])
    if report.shape_mismatch or not report.mapped:
        fail(f"{weights} does not fit {model}:\n{report.summary()}")
    net.eval()
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("qualities", total=net.num_qualities)
        rows = training.rate_distortion_curve(net, photos, progress=lambda: bar.advance(task))
    at = training.psnr_at_bpp(rows, at_bpp)
    result = {"weights": str(weights), "photos": len(photos), "qualities": rows, "at_bpp": at_bpp,
              "psnr_at_bpp": at}
    if as_json:
        print(json.dumps(result))
        return
    for r in rows:
        console.print(f"quality {r['quality']:g}: {r['bpp']:.4f} bpp, {r['psnr']:.2f} dB")
    shown = "outside the measured rates" if at is None else f"{at:.2f} dB"
    console.print(f"PSNR at {at_bpp:g} bpp: {shown} ({len(photos)} photos)")


#: the Pillow qualities a card measures Kodak at: 0.1-1.2 bpp on Kodak for both formats
CARD_PILLOW_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def _kodak_figures(net, folder: Path, card: Path, plot: Optional[Path]) -> dict:
    """The weights at every quality and Pillow's JPEG / WebP on the same photos, plus the plot."""
    import numpy as np

    from edge_sdk.calibration.evaluation.evaluate import pillow_roundtrip
    from edge_sdk.export.training import train as training
    from edge_sdk.export.training.model_card import plot_kodak
    from edge_sdk.runtime.images import psnr

    try:
        photos = training.load_eval_photos(folder)
    except training.TrainError as exc:
        fail(str(exc))
    figures: dict = {"photos": len(photos)}
    with progress_bar() as bar:
        task = bar.add_task("Kodak", total=net.num_qualities + 2 * len(CARD_PILLOW_QUALITIES))
        figures["ours"] = training.rate_distortion_curve(net, photos, progress=lambda: bar.advance(task))
        for fmt in ("jpeg", "webp"):
            figures[fmt] = []
            for q in CARD_PILLOW_QUALITIES:
                bpps, psnrs = [], []
                for _name, rgb in photos:
                    size, decoded = pillow_roundtrip(rgb, fmt, q)
                    bpps.append(size * 8.0 / (rgb.shape[0] * rgb.shape[1]))
                    psnrs.append(psnr(rgb, decoded))
                figures[fmt].append({"quality": q, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))})
                bar.advance(task)
    plot = plot or card.with_name(card.stem + "_kodak.png")
    plot_kodak(figures, plot)
    # the card links the plot relative to itself, so both can move together
    figures["plot"] = os.path.relpath(plot.resolve(), card.resolve().parent)
    return figures


@train_app.command("card")
def train_card(
    weights: Path = typer.Option(..., help="The shipped weights (.safetensors from export-weights)."),
    runs: list[Path] = typer.Option(..., "--run", help="Training run folders, in order (repeatable)."),
    dataset: Optional[Path] = typer.Option(
        None, help="A prepared dataset whose held-out photos the level report decodes. The card's data lines come "
        "from each --run's own training set (config.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model card (.md); a .json with the figures goes beside it."),
    note: list[str] = typer.Option([], "--note", help="A line for the card's notes (repeatable)."),
    model: ModelOpt = "lite0",
    qualities: list[float] = typer.Option([2.0], "--quality", help="Qualities to evaluate (repeatable)."),
    short_side: int = typer.Option(224, help="Resize held-out photos so the short side is this (the classifier's "
                                   "scale); 0: cap the long side at --max-side instead."),
    max_side: int = typer.Option(512, help="Long-side cap when --short-side is 0."),
    images: Optional[Path] = typer.Option(None, help="Evaluate these photos instead of the dataset's held-out ones."),
    level_report: bool = typer.Option(True, "--level-report/--no-level-report", help="Decode the held-out photos "
                                      "level by level through the real stream (torch) at each --quality."),
    kodak: Optional[Path] = typer.Option(None, help="Kodak (or any folder of photos): measure the weights at every "
                                         "quality at full resolution, with Pillow's JPEG and WebP in the same run, "
                                         "beside the published curves."),
    kodak_plot: Optional[Path] = typer.Option(None, help="Where the Kodak plot (PNG) goes; the card links to it "
                                              "(default: beside the card, <card>_kodak.png)."),
    evaluation: Optional[Path] = typer.Option(None, "--eval", help="results.json of `edge-sdk eval` on the bundle "
                                              "exported from these weights: its curves beside JPEG and WebP."),
    evaluation_title: str = typer.Option("Machine accuracy", "--eval-title", help="Heading of that section, e.g. "
                                         "which photos it measured."),
    threads: int = TORCH_THREADS_OPTION,
) -> None:
    """Evaluate weights and write the model card (Markdown, with its figures in a .json beside it).

    Example (the shipped lite0):
    edge-sdk train card --weights export/weights/lite0.safetensors --run RUN ...
    --kodak KODAK --eval eval_val/results.json --no-level-report --out export/weights/lite0.md
    """
    try:
        import torch

        from edge_sdk.export.training import report as reporting
        from edge_sdk.export.training import train as training
        from edge_sdk.export.models.checkpoint import load_checkpoint
        from edge_sdk.export.training.model_card import write_model_card
        from edge_sdk.export.models.registry import create_model
    except ImportError as exc:
        fail(f"needs the [train] extra ({exc.name} is missing)")
    if threads:
        torch.set_num_threads(threads)
    summary = None
    if evaluation is not None:
        try:
            summary = json.loads(evaluation.read_text())
            summary.pop("per_image", None)
            if "edge-sdk" not in summary["curves"]:
                raise KeyError("curves has no edge-sdk entry")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"--eval {evaluation} is not the results.json of `edge-sdk eval` ({exc})")
    net = create_model(model)
    net.load_default_weights(["backbone"])
    load_checkpoint(net, weights)
    net.eval()
    reports = []
    if level_report:
        if dataset is None and images is None:
            fail("the level report decodes held-out photos: give --dataset (or --images), or --no-level-report")
        photos = reporting.held_out_photos(dataset, max_side=max_side, short_side=short_side, folder=images)
        if not photos:
            fail(f"{dataset} has no held-out photos")
        for q in qualities:
            with console.status(f"quality {q:g}: {len(photos)} photos, every level"):
                reports.append(reporting.level_report(net, q, photos))
    kodak_figures = None
    if kodak is not None:
        kodak_figures = _kodak_figures(net, kodak, out, kodak_plot)
    run_rows = []
    # each run names its training set in config.json (the codec and the adapter train on different ones)
    used_by: dict[str, list[str]] = {}
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        used_by.setdefault(cfg["dataset"], []).append(run.name)
        log = (run / "log.csv").read_text().strip().splitlines()
        last = log[-1].split(",")
        # a resumed run restarts its clock: add up the segments
        seconds, previous = 0.0, 0.0
        for line in log[1:]:
            now = float(line.split(",")[-1])
            if now < previous:
                seconds += previous
            previous = now
        seconds += previous
        run_rows.append({"stage": cfg["stage"] + (f" ({cfg['objective']})" if cfg["stage"] == "codec" else ""),
                         "steps": int(last[0]), "batch": cfg["batch_size"], "crop": cfg["crop"],
                         "seconds": seconds,
                         "device": cfg["device"] if cfg["device"] != "auto" else
                         ("cuda" if torch.cuda.is_available()
                          else f"cpu ({cfg.get('threads') or torch.get_num_threads()} threads)"),  # the run's, not ours
                         "command": f"edge-sdk train {cfg['stage']} (config.json of {run.name})"})
    datasets = []
    for folder, names in used_by.items():
        manifest = Path(folder) / "dataset.json"
        if not manifest.is_file():
            fail(f"run {names[0]} trained on {folder}, which holds no dataset.json any more")
        datasets.append((json.loads(manifest.read_text()), names))
    write_model_card(out, name=model, runs=run_rows, datasets=datasets, reports=reports,
                     notes=[f"Weights: {weights.name}, float16.", *note],
                     scale=f"short side {short_side} px" if short_side > 0 else f"long side ≤ {max_side} px",
                     kodak=kodak_figures, evaluation=summary, evaluation_title=evaluation_title)
    if kodak_figures:
        at = {k: training.psnr_at_bpp(kodak_figures[k], 0.5) for k in ("ours", "webp", "jpeg")}
        console.print("Kodak PSNR at 0.5 bpp: " + ", ".join(f"{k} {v:.2f} dB" for k, v in at.items() if v is not None))
    for rep in reports:
        console.print(f"quality {rep['quality']:g}: " + "; ".join(
            f"{s['depth']:.0%}: {s['bpp']:.3f} bpp, {s['psnr']:.1f} dB, {s['agreement']:.0%} agree" for s in rep["summary"]))
    console.print(f"wrote {out}")
