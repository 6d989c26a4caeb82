"""``edge-sdk models`` and ``export``: the registered models and turning one into a bundle.

Both need the ``[export]`` extra (torch, timm, onnx), imported only when they run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import app, console, err_console, fail, open_bundle, progress_bar, step_reporter


def _export_api():
    try:
        from edge_sdk.export.bundle import exporter
        from edge_sdk.export.models import registry
    except ImportError as exc:
        fail(f"this command needs the export dependencies ({exc.name} is missing): pip install 'edge-sdk[export]'")
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
    memory_probe: bool = typer.Option(
        True, "--memory-probe/--no-memory-probe", help="Measure the bundle's peak memory per operation (encode, "
        "decode, run) at two photo sizes in child processes, for --max-memory (`edge-sdk measure-memory` does it "
        "later); with --no-memory-probe only --max-pixels bounds what the bundle is given."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
) -> None:
    """Export a model to a bundle: ONNX graphs (dynamic H, W), manifest.json and a README.

    The graphs are analysis (image → y), hyper_analysis (y → z), hyper_synthesis
    (ẑ → means, scales), classifier (ŷ → logits via the adapter), synthesis
    (ŷ → image) and pixel_classifier (image → logits, the uncompressed
    reference); models whose classifier pools globally add classifier_trunk and
    classifier_head, so large photos are classified in tiles. Each is checked
    against torch in ONNX Runtime at two image sizes; export fails if any output
    differs by more than 1e-3. Then the bundle's memory is measured (about a
    minute for lite0) for --max-memory.

    Example: edge-sdk export --model lite0 --out bundles/lite0
    """
    exporter, registry = _export_api()
    from edge_sdk.export.models.checkpoint import CheckpointError
    from edge_sdk.export.bundle.onnx_export import EXPORT_STEPS, ExportError

    try:
        registry.get_model_info(model)
    except KeyError as exc:
        fail(str(exc.args[0]))
    try:
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task(f"{model}: load weights", total=EXPORT_STEPS)
            step = step_reporter(bar, task, model)
            manifest = exporter.export_model(model, out, checkpoint=checkpoint, quality=quality,
                                             random_weights=random_weights, force=force, progress=step)
            bar.advance(task)
            if memory_probe:
                manifest = _probe_memory(out, bar, f"{model}: memory")
    except (CheckpointError, ExportError, FileNotFoundError, ImportError) as exc:
        fail(str(exc))
    for src in manifest.weights.sources:
        if src.get("part") == "checkpoint" and not as_json:
            err_console.print(f"checkpoint: {src['mapped']} tensors mapped, {len(src['missing'])} missing, "
                              f"{len(src['unexpected'])} unexpected, {len(src['ignored'])} ignored "
                              "(details in manifest.json)")
    summary = {
        "bundle": str(out), "model": model, "quality": manifest.model.quality,
        "random_parts": list(manifest.weights.random_parts), "codec_id": manifest.codec_id,
        "bytes": sum(g.bytes or 0 for g in manifest.graphs.values()),
        "max_abs_diff": {n: g.max_abs_diff for n, g in manifest.graphs.items()},
    }
    if as_json:
        print(json.dumps(summary))
        return
    console.print(f"wrote {out}: {model} q{summary['quality']:g}, {len(manifest.graphs)} graphs, {summary['bytes'] / 1e6:.1f} MB, "
                  f"worst ORT-vs-torch difference {max(summary['max_abs_diff'].values()):.1e}")
    if summary["random_parts"]:
        console.print(f"[bold yellow]RANDOM WEIGHTS[/bold yellow] in {', '.join(summary['random_parts'])}")


def _probe_memory(bundle_dir: Path, bar, label: str, threads: int = 0):
    """Measure and attach the bundle's memory lines under a progress task; the new manifest."""
    from edge_sdk.calibration.memory import DEFAULT_PROBE_SIZES, MemoryProbeError, attach_memory, measure_memory
    from edge_sdk.runtime.bundle import read_manifest
    from edge_sdk.runtime.memory import OPERATIONS

    task = bar.add_task(label, total=len(OPERATIONS) * len(DEFAULT_PROBE_SIZES))
    step = step_reporter(bar, task, label)
    try:
        model = measure_memory(bundle_dir, threads=threads, progress=step)
    except (MemoryProbeError, ValueError) as exc:
        fail(f"{bundle_dir}: the bundle is complete but its memory could not be measured ({exc}); "
             f"run `edge-sdk measure-memory --bundle {bundle_dir}` once the cause is fixed", code=1)
    bar.advance(task)
    attach_memory(bundle_dir, model)
    return read_manifest(bundle_dir)


@app.command("measure-memory")
def measure_memory_command(
    bundle: Path = typer.Option(..., help="Bundle directory; its manifest gains (or replaces) the memory section."),
    threads: int = typer.Option(0, help="CPU threads the probes run ONNX Runtime with (0: all cores), as the "
                                "commands that will use the bundle do."),
    as_json: bool = typer.Option(False, "--json", help="Print the measured lines as JSON."),
) -> None:
    """Measure a bundle's peak memory for encode, decode and run, and store it for --max-memory.

    Each operation runs in a fresh process on two synthetic photos larger than any tile
    (3 and 6 MP); the line through them (fixed working set plus bytes per pixel) is what
    --max-memory checks each photo against before reading its pixels. Re-run it after
    moving a bundle to another kind of machine or ONNX Runtime version.

    Example: edge-sdk measure-memory --bundle bundles/lite0
    """
    open_bundle(bundle)  # a damaged bundle is refused here, before any probe starts
    with progress_bar(disable=as_json) as bar:
        manifest = _probe_memory(bundle, bar, "memory", threads)
    doc = manifest.memory.to_dict()
    if as_json:
        print(json.dumps(doc))
        return
    for op in ("encode", "decode", "run"):
        console.print(f"{op}: {doc[op]['base_bytes'] / 2 ** 20:.0f} MB + {doc[op]['bytes_per_pixel']:.0f} bytes per "
                      f"padded pixel above the process's start")
