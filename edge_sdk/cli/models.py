"""``edge-sdk models`` and ``export``: the registered models and turning one into a bundle.

Both need the ``[export]`` extra (torch, timm, onnx), imported only when they run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import app, console, err_console, fail, progress_bar


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
    from edge_sdk.export.models.checkpoint import CheckpointError
    from edge_sdk.export.bundle.onnx_export import EXPORT_STEPS, ExportError

    try:
        registry.get_model_info(model)
    except KeyError as exc:
        fail(str(exc.args[0]))
    try:
        with progress_bar(disable=as_json) as bar:
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
    console.print(f"wrote {out}: {model} q{summary['quality']:g}, six graphs, {summary['bytes'] / 1e6:.1f} MB, "
                  f"worst ORT-vs-torch difference {max(summary['max_abs_diff'].values()):.1e}")
    if summary["random_parts"]:
        console.print(f"[bold yellow]RANDOM WEIGHTS[/bold yellow] in {', '.join(summary['random_parts'])}")
