"""The ``edge-sdk`` command line.

``export`` turns a registered model into a bundle (needs the ``[export]`` extra:
torch, timm, onnx); ``models`` lists what can be exported. ``inspect`` shows what
a stream or a bundle holds; ``truncate`` cuts a stream to a level, as a server
does for a client that asked for fewer bytes. Commands that run models on
streams (encode, decode, run, calibrate, eval, build) arrive with their issues;
until then they are absent rather than stubbed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from edge_sdk import __version__
from edge_sdk.runtime import (
    FORMAT_VERSION,
    BitstreamError,
    BundleError,
    EntropyTables,
    TableError,
    level_boundaries,
    read_header,
    truncate_to_level,
)

app = typer.Typer(
    name="edge-sdk",
    help="Progressive, machine-oriented learned image compression for edge GPUs.\n\n"
    "A stream is one progressive bitstream per image: a header, the z section, then "
    "chunks; any prefix that ends on a chunk boundary decodes to a level.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # escape: messages quote things like 'edge-sdk[trt]' that rich would take for markup
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _read_stream(path: Path) -> bytes:
    """The file's bytes once its header has been checked; a clear exit otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    try:
        read_header(data)
    except BitstreamError as exc:
        _fail(f"{path}: {exc}")
    return data


def _describe(data: bytes) -> dict:
    h = read_header(data)
    ends = level_boundaries(data)
    header_bytes = ends[0] - h.z_length
    levels = []
    for j, end in enumerate(ends):
        plane = None if j == 0 else h.plane_of_chunk(j - 1)
        levels.append(
            {
                "level": j,
                "plane": plane if plane is None or plane < h.num_planes else "escape",
                "symbols": 0 if j == 0 else h.chunks[j - 1].symbols,
                "bytes_total": end,
                "complete": end <= len(data),
            }
        )
    available = max(j for j, e in enumerate(ends) if e <= len(data)) if len(data) >= ends[0] else None
    return {
        "format_version": FORMAT_VERSION,
        "model_name": h.model_name,
        "bundle_hash": h.bundle_hash.hex(),
        "tables_hash": h.tables_hash.hex(),
        "image_size": list(h.image_size),
        "padding": list(h.padding),
        "quality": h.quality,
        "prior_mode": h.prior_mode.name.lower(),
        "ordering": h.ordering.name.lower(),
        "y_shape": list(h.y_shape),
        "z_shape": list(h.z_shape),
        "planes": h.num_planes,
        "chunks_per_plane": list(h.chunks_per_plane),
        "levels": h.num_levels,
        "header_bytes": header_bytes,
        "z_bytes": h.z_length,
        "stream_bytes": ends[-1],
        "file_bytes": len(data),
        "decodable_level": available,
        "level_table": levels,
    }


def _load_bundle(path: Path):
    from edge_sdk.runtime.bundle import Bundle

    try:
        return Bundle.load(path)
    except BundleError as exc:
        _fail(str(exc))


def _describe_bundle(path: Path) -> dict:
    bundle = _load_bundle(path)
    m = bundle.manifest
    return {
        "bundle": str(path),
        "model": m["model"]["name"],
        "quality": m["model"]["quality"],
        "latent_channels": m["model"]["latent_channels"],
        "hyper_channels": m["model"]["hyper_channels"],
        "classes": len(bundle.class_names),
        "random_parts": bundle.random_parts,
        "weight_sources": [f"{s.get('part', 'all')}: {s['source']}" for s in m["weights"]["sources"]],
        "padding_multiple": bundle.padding_multiple,
        "min_size": bundle.min_size,
        "codec_id": bundle.codec_id.hex(),
        "tables_hash": bundle.tables.digest.hex(),
        "graphs": {
            name: {"file": g.path.name, "bytes": g.path.stat().st_size, "max_abs_diff": g.max_abs_diff,
                   "inputs": [t.name for t in g.inputs], "outputs": [t.name for t in g.outputs]}
            for name, g in bundle.graphs.items()
        },
        "prior_modes": ["integer", "float"] if bundle.integer_prior is not None else ["float"],
        "integer_prior": m.get("integer_prior"),
        "controller": bundle.controller is not None,
        "exporter": m.get("exporter", {}),
        "created": m.get("created"),
        "verified": True,
    }


def _print_bundle(info: dict) -> None:
    summary = Table(title=f"{info['bundle']}: edge-sdk bundle", show_header=False)
    for key in ("model", "quality", "latent_channels", "hyper_channels", "classes", "padding_multiple", "min_size",
                "codec_id", "tables_hash", "created"):  # fmt: skip
        summary.add_row(key, str(info[key]))
    summary.add_row("weights", "\n".join(info["weight_sources"]))
    prior = info["integer_prior"]
    summary.add_row("prior modes", ", ".join(info["prior_modes"]) + (
        f" (integer: {prior['index_agreement']['exact']:.1%} of indices equal to the float prior's, "
        f"{prior['index_agreement']['within_one']:.2%} within one)" if prior else
        " (this model's hyper-synthesis does not convert: decode on the encoder's backend setup)"))
    summary.add_row("controller", "yes" if info["controller"] else "no (`edge-sdk calibrate`)")
    console.print(summary)
    graphs = Table(title="graphs (sha256 verified)")
    for col in ("graph", "file", "MB", "inputs", "outputs", "max |ORT - torch|"):
        graphs.add_column(col)
    for name, g in info["graphs"].items():
        graphs.add_row(name, g["file"], f"{g['bytes'] / 1e6:.1f}", ", ".join(g["inputs"]), ", ".join(g["outputs"]),
                       f"{g['max_abs_diff']:.1e}")
    console.print(graphs)
    if info["random_parts"]:
        console.print(f"[bold yellow]RANDOM WEIGHTS[/bold yellow] in {', '.join(info['random_parts'])}: "
                      "results from this bundle mean nothing.")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A stream file written by edge-sdk (or a prefix of one), or a bundle directory."),
    tables: Optional[Path] = typer.Option(None, help="Entropy tables (.npz) to check the stream against."),
    bundle: Optional[Path] = typer.Option(None, help="A bundle directory to check the stream against."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show a stream's header and how many bytes each level needs, or check and describe a bundle.

    For a stream, the header is checked (magic, version, CRC); payloads are not
    decoded, so no model is needed. With --tables or --bundle, also checks that
    the stream was coded with those entropy tables (and that bundle's codec).
    For a bundle directory, every file's sha256, the manifest and the entropy
    tables are verified.
    """
    if path.is_dir():
        info = _describe_bundle(path)
        if as_json:
            print(json.dumps(info))
        else:
            _print_bundle(info)
        return
    stream = path
    info = _describe(_read_stream(stream))
    if tables is not None:
        try:
            digest = EntropyTables.load(tables).digest.hex()
        except TableError as exc:
            _fail(str(exc))
        info["tables_match"] = digest == info["tables_hash"]
    if bundle is not None:
        loaded = _load_bundle(bundle)
        info["tables_match"] = loaded.tables.digest.hex() == info["tables_hash"]
        info["bundle_match"] = loaded.codec_id.hex() == info["bundle_hash"]
    if as_json:
        print(json.dumps(info))
        return
    summary = Table(title=f"{stream.name}: edge-sdk stream v{info['format_version']}", show_header=False)
    for key in ("model_name", "quality", "image_size", "padding", "y_shape", "z_shape", "prior_mode", "ordering",
                "planes", "chunks_per_plane", "levels", "header_bytes", "z_bytes", "stream_bytes", "file_bytes",
                "decodable_level", "tables_hash", "bundle_hash", "tables_match", "bundle_match"):  # fmt: skip
        if key in info:
            summary.add_row(key, str(info[key]))
    console.print(summary)
    levels = Table(title="levels (bytes needed to decode each)")
    for col in ("level", "plane", "symbols", "bytes_total", "complete"):
        levels.add_column(col, justify="right")
    for row in info["level_table"]:
        levels.add_row(*(str(row[c]) if row[c] is not None else "z" for c in ("level", "plane", "symbols", "bytes_total", "complete")))
    console.print(levels)


@app.command()
def truncate(
    stream: Path = typer.Argument(..., help="A complete or partial stream."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the shorter stream (written atomically)."),
    level: Optional[int] = typer.Option(None, help="Keep exactly this level (0 = z only)."),
    max_bytes: Optional[int] = typer.Option(None, help="Keep the highest level that fits in this many bytes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Cut a stream at a chunk boundary, as a server does for a client with a byte budget.

    Give --level or --max-bytes. The result is a valid stream that decodes to
    the chosen level on any edge-sdk decoder.
    """
    if (level is None) == (max_bytes is None):
        _fail("give exactly one of --level and --max-bytes")
    data = _read_stream(stream)
    ends = level_boundaries(data)
    if max_bytes is not None:
        fitting = [j for j, e in enumerate(ends) if e <= min(max_bytes, len(data))]
        if not fitting:
            _fail(f"{max_bytes} bytes cannot hold the header and z section ({ends[0]} bytes)")
        level = fitting[-1]
    if not 0 <= level < len(ends):
        _fail(f"level must lie in 0..{len(ends) - 1}")
    if ends[level] > len(data):
        _fail(f"{stream} holds only {len(data)} bytes; level {level} needs {ends[level]}")
    cut = truncate_to_level(data, level)
    write_atomic(out, cut)
    result = {"level": level, "levels": len(ends) - 1, "bytes": len(cut), "stream_bytes": ends[-1], "out": str(out)}
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"wrote {out}: level {level} of {len(ends) - 1}, {len(cut)} of {ends[-1]} bytes")


def _export_api():
    try:
        from edge_sdk.export import exporter, registry
    except ImportError as exc:
        _fail(f"this command needs the export dependencies ({exc.name} is missing): pip install 'edge-sdk[export]'")
    return exporter, registry


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the models `edge-sdk export --model NAME` knows, with their qualities and weights."""
    _, registry = _export_api()
    rows = []
    for name in registry.list_models():
        info = registry.get_model_info(name)
        rows.append({"name": name, "description": info.description, "qualities": list(info.qualities),
                     "default_quality": info.default_quality, "weights": info.weights_hint, "tags": list(info.tags)})
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="registered models")
    for col in ("name", "qualities", "default", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], f"{min(r['qualities'])}..{max(r['qualities'])}", str(r["default_quality"]), r["description"])
    console.print(table)


@app.command()
def export(
    model: str = typer.Option("lite0", "--model", "-m", help="Registered model name (see `edge-sdk models`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to create (appears atomically when done)."),
    checkpoint: Optional[Path] = typer.Option(
        None, help="Weights: an official POLC checkpoint (.pth.tar, codec-only or step-3 layout) or an edge-sdk "
        ".safetensors/.pth. A report of mapped, missing and unexpected keys is printed."),
    quality: Optional[float] = typer.Option(
        None, help="Rate point baked into the bundle (1 = lowest rate; fractional values interpolate the gains)."),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Allow parts without trained weights to stay random (pipeline tests only); "
        "the manifest, the bundle README and every later output say so."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
) -> None:
    """Export a model to a bundle: six ONNX graphs (dynamic H, W), manifest.json and a README.

    The graphs are analysis (image → y), hyper_analysis (y → z), hyper_synthesis
    (ẑ → means, scales), classifier (ŷ → logits via the adapter), synthesis
    (ŷ → image) and pixel_classifier (image → logits, the uncompressed
    reference). Each is checked against torch in ONNX Runtime at two image
    sizes; export fails if any output differs by more than 1e-3.

    Example: edge-sdk export --model lite0 --out bundles/lite0
    """
    exporter, registry = _export_api()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edge_sdk.export.checkpoint import CheckpointError
    from edge_sdk.export.onnx_export import EXPORT_STEPS, ExportError

    try:
        registry.get_model_info(model)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=err_console, disable=as_json) as bar:
            task = bar.add_task(f"{model}: load weights", total=EXPORT_STEPS)
            first = [True]

            def step(message: str) -> None:
                if not first[0]:
                    bar.advance(task)
                first[0] = False
                bar.update(task, description=f"{model}: {message}")

            manifest = exporter.export_model(model, out, checkpoint=checkpoint, quality=quality,
                                             random_weights=random_weights, force=force, progress=step)
            bar.advance(task)
    except (CheckpointError, ExportError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc))
    for src in manifest["weights"]["sources"]:
        if src.get("part") == "checkpoint" and not as_json:
            err_console.print(f"checkpoint: {src['mapped']} tensors mapped, {len(src['missing'])} missing, "
                              f"{len(src['unexpected'])} unexpected, {len(src['ignored'])} ignored "
                              "(details in manifest.json)")
    summary = {
        "bundle": str(out), "model": model, "quality": manifest["model"]["quality"],
        "random_parts": manifest["weights"]["random_parts"], "codec_id": manifest["codec_id"],
        "bytes": sum(g["bytes"] for g in manifest["graphs"].values()),
        "max_abs_diff": {n: g["max_abs_diff"] for n, g in manifest["graphs"].items()},
    }
    if as_json:
        print(json.dumps(summary))
        return
    console.print(f"wrote {out}: {model} q{summary['quality']:g}, six graphs, {summary['bytes'] / 1e6:.1f} MB, "
                  f"worst ORT-vs-torch difference {max(summary['max_abs_diff'].values()):.1e}")
    if summary["random_parts"]:
        console.print(f"[bold yellow]RANDOM WEIGHTS[/bold yellow] in {', '.join(summary['random_parts'])}")


data_app = typer.Typer(help="Training and held-out photo sets from local files (never the network).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


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
    edge-sdk data prepare --out data/photos --imagenet-train ../shared/data/imagenet-sample/train
    --mirrors /work/.mirror --crop 128 --val-every 10
    """
    try:
        from edge_sdk.export import data
    except ImportError as exc:
        _fail(f"this command needs Pillow ({exc.name} is missing): pip install 'edge-sdk[export]'")
    if out.exists() and not force:
        _fail(f"{out} already exists; pass --force to replace it")
    sources = [] if no_default_sources else data.default_sources()
    for folder in source:
        if not folder.is_dir():
            _fail(f"--source {folder} is not a folder")
        sources += data.scan_folder(folder, licence)
    try:
        if imagenet_train is not None:
            sources += data.imagenet_sample_photos(imagenet_train)
        if mirrors is not None:
            if not mirrors.is_dir():
                _fail(f"--mirrors {mirrors} is not a folder")
            found, missing = data.find_repo_photos(mirrors)
            sources += found
            if missing:
                err_console.print(f"[yellow]no mirror of {', '.join(missing)} in {mirrors}: skipped[/yellow]")
    except data.DataError as exc:
        _fail(str(exc))
    protected = data.default_protected_folders() + [p for p in protect]
    for folder in protect:
        if not folder.is_dir():
            _fail(f"--protect {folder} is not a folder")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=err_console, disable=as_json) as bar:
            task = bar.add_task("photos", total=len(sources) + 1)
            manifest = data.prepare_dataset(
                sources, out, crop=crop, val_every=val_every, crops_per_megapixel=crops_per_megapixel, seed=seed,
                force=force, protected=protected, progress=lambda m: (bar.update(task, description=m), bar.advance(task)))
    except data.DataError as exc:
        _fail(str(exc))
    result = {"out": str(out), **manifest["counts"], "licences": manifest["licences"],
              "protected": manifest["protected"]}
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"wrote {out}: {result['train_images']} training photos ({result['train_megapixels']} MP, "
                      f"{result['train_crops']} crops of {crop}px), {result['val_images']} held out, "
                      f"{result['excluded']} left out as evaluation photos or near-duplicates; licences: "
                      f"{', '.join(result['licences'])} (per photo in dataset.json)")


train_app = typer.Typer(help="Train a registered model's codec, prior or adapter (resumable).", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _run_training(stage: str, **options) -> None:
    try:
        from edge_sdk.export import train as training
    except ImportError as exc:
        _fail(f"training needs the [train] extra ({exc.name} is missing): pip install 'edge-sdk[train]'")
    as_json = options.pop("as_json")
    resume = options.pop("resume")
    lambdas = options.pop("lambdas")
    try:
        config = training.TrainConfig(stage=stage, lambdas=tuple(lambdas), **options)
    except training.TrainError as exc:
        _fail(str(exc))
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=as_json) as bar:
            task = bar.add_task(f"{stage}", total=config.steps)

            def report(step: int, metrics: dict) -> None:
                shown = " ".join(f"{k}={metrics[k]:.4g}" for k in ("total", "bpp", "psnr", "agree") if
                                 isinstance(metrics.get(k), float))
                bar.update(task, completed=step, description=f"{stage} {shown}")

            metrics = training.train(config, resume=resume, progress=report)
    except (training.TrainError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc))
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
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
ThreadsOpt = Annotated[int, typer.Option(help="torch CPU threads (0: torch's default).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir.")]
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
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
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
                  batch_size=batch_size, crop=crop, lr=lr, lambdas=lambdas, lpips_weight=lpips_weight,
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
    seed: int = typer.Option(10086, help="Seed."),
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    resume: ResumeOpt = False,
    as_json: JsonMetricsOpt = False,
) -> None:
    """Train only the mean-scale hyperprior for the rate, everything else frozen.

    This is how an official POLC checkpoint (whose own entropy model is a
    multistage context model) becomes trit-plane capable.
    """
    _run_training("prior", dataset=str(dataset), run_dir=str(run_dir), model=model, steps=steps, batch_size=batch_size,
                  crop=crop, lr=lr, lambdas=[], init=init, seed=seed, device=device, threads=threads,
                  checkpoint_every=checkpoint_every, resume=resume, as_json=as_json)


@train_app.command("adapter")
def train_adapter(
    dataset: DatasetOpt,
    run_dir: RunDirOpt,
    init: str = typer.Option(..., help="The trained codec's weights."),
    model: ModelOpt = "lite0",
    steps: int = typer.Option(1000, help="Total optimiser steps."),
    batch_size: BatchOpt = 8,
    crop: CropOpt = 256,
    lr: LrOpt = 1e-4,
    distill_weight: float = typer.Option(0.01, help="Feature-distillation weight (POLC: 0.01)."),
    scale_max: ScaleMaxOpt = 1.0,
    origin: list[str] = typer.Option([], "--origin", help="Only photos whose dataset.json origin starts with this "
                                     "(repeatable), e.g. imagenet-sample and git:ajschumacher/imagen: the "
                                     "teacher's own domain."),
    color_jitter: float = typer.Option(0.0, help="Random brightness/contrast/saturation in [1-J, 1+J] per crop; "
                                       "the teacher sees the same augmented photo."),
    seed: int = typer.Option(10086, help="Seed."),
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
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
                  batch_size=batch_size, crop=crop, lr=lr, lambdas=[], distill_weight=distill_weight,
                  scale_max=scale_max, origins=tuple(origin), color_jitter=color_jitter, init=init,
                  seed=seed, device=device, threads=threads, checkpoint_every=checkpoint_every, resume=resume,
                  as_json=as_json)


@train_app.command("export-weights")
def train_export_weights(
    run_dir: Path = typer.Argument(..., help="A training run folder (or its last.pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="The .safetensors file to write (atomically)."),
    full_precision: bool = typer.Option(False, "--fp32", help="Keep float32 (default: float16, half the size)."),
) -> None:
    """Write a run's codec and adapter weights as safetensors, ready for `edge-sdk export --checkpoint`."""
    try:
        import torch

        from edge_sdk.export import train as training
    except ImportError as exc:
        _fail(f"needs the [train] extra ({exc.name} is missing)")
    if not (run_dir / "last.pt").is_file() and not run_dir.is_file():
        _fail(f"{run_dir} holds no training checkpoint (last.pt)")
    info = training.export_weights(run_dir, out, dtype=torch.float32 if full_precision else torch.float16)
    console.print(f"wrote {out}: {info['tensors']} tensors, {info['bytes'] / 1e6:.1f} MB, step {info['step']}")


@train_app.command("card")
def train_card(
    weights: Path = typer.Option(..., help="The shipped weights (.safetensors from export-weights)."),
    runs: list[Path] = typer.Option(..., "--run", help="Training run folders, in order (repeatable)."),
    dataset: Path = typer.Option(..., help="The prepared dataset (its held-out photos are evaluated)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model card (.md); a .json with the figures goes beside it."),
    note: list[str] = typer.Option([], "--note", help="A line for the card's notes (repeatable)."),
    model: ModelOpt = "lite0",
    qualities: list[float] = typer.Option([2.0], "--quality", help="Qualities to evaluate (repeatable)."),
    short_side: int = typer.Option(224, help="Resize held-out photos so the short side is this (the classifier's "
                                   "scale); 0: cap the long side at --max-side instead."),
    max_side: int = typer.Option(512, help="Long-side cap when --short-side is 0."),
    images: Optional[Path] = typer.Option(None, help="Evaluate these photos instead of the dataset's held-out ones."),
    threads: ThreadsOpt = 0,
) -> None:
    """Evaluate weights on the held-out photos level by level and write the model card."""
    try:
        import torch

        from edge_sdk.export import report as reporting
        from edge_sdk.export.checkpoint import load_checkpoint
        from edge_sdk.export.model_card import write_model_card
        from edge_sdk.export.registry import create_model
    except ImportError as exc:
        _fail(f"needs the [train] extra ({exc.name} is missing)")
    if threads:
        torch.set_num_threads(threads)
    net = create_model(model)
    net.load_default_weights(["backbone"])
    load_checkpoint(net, weights)
    photos = reporting.held_out_photos(dataset, max_side=max_side, short_side=short_side, folder=images)
    if not photos:
        _fail(f"{dataset} has no held-out photos")
    reports = []
    for q in qualities:
        with console.status(f"quality {q:g}: {len(photos)} photos, every level"):
            reports.append(reporting.level_report(net.eval(), q, photos))
    run_rows = []
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
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
                         ("cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"),
                         "command": f"edge-sdk train {cfg['stage']} (config.json of {run.name})"})
    dataset_meta = json.loads((dataset / "dataset.json").read_text())
    write_model_card(out, name=model, runs=run_rows, dataset=dataset_meta, reports=reports,
                     notes=[f"Weights: {weights.name}, float16.", *note],
                     scale=f"short side {short_side} px" if short_side > 0 else f"long side ≤ {max_side} px")
    for rep in reports:
        console.print(f"quality {rep['quality']:g}: " + "; ".join(
            f"{s['depth']:.0%}: {s['bpp']:.3f} bpp, {s['psnr']:.1f} dB, {s['agreement']:.0%} agree" for s in rep["summary"]))
    console.print(f"wrote {out}")


@app.command()
def version() -> None:
    """Print the edge-sdk version and the stream format version it reads."""
    print(f"edge-sdk {__version__} (stream format {FORMAT_VERSION})")


# registers encode, decode, run, doctor, calibrate, eval, build and verify on `app`
from edge_sdk import cli_run as _cli_run  # noqa: E402,F401
from edge_sdk import cli_calibrate as _cli_calibrate  # noqa: E402,F401
from edge_sdk import cli_eval as _cli_eval  # noqa: E402,F401
from edge_sdk import cli_engine as _cli_engine  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
