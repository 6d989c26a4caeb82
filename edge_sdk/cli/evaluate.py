"""``edge-sdk eval``: rate–accuracy at every depth against JPEG, WebP and non-progressive coding."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import (DEVICE_OPTION, THREADS_OPTION, app, backend_from_options, console, err_console, fail,
                                 open_bundle, progress_bar, read_labels)
from edge_sdk.runtime.codec import DEFAULT_TARGET_LEVELS
from edge_sdk.runtime.fileio import atomic_write


def _fmt(value, spec: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞"
    return format(value, spec)


@app.command("eval")
def evaluate_command(
    bundle: Path = typer.Option(..., help="Bundle directory (from `edge-sdk export`)."),
    images: list[Path] = typer.Option(..., "--images", help="Photos: files or folders (repeatable)."),
    out: Path = typer.Option(Path("eval"), "--out", "-o", help="Folder for results.json, curves.csv, PNGs and the "
                             "per-image cache (a rerun with the same bundle and settings resumes from it)."),
    labels: Optional[Path] = typer.Option(None, help="CSV 'file,label' (class index or name): adds accuracy."),
    short_side: int = typer.Option(224, help="Resize photos so the short side is this first (the classifier's "
                                   "scale); 0 keeps them as they are. Every codec sees the same resized photo."),
    depth_points: int = typer.Option(17, help="Decoded depths per stream: 0, 1/(n-1), ..., all of its levels."),
    jpeg_quality: list[int] = typer.Option([5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95], "--jpeg-quality",
                                           help="JPEG qualities (Pillow, optimized Huffman tables; repeatable)."),
    webp_quality: list[int] = typer.Option([5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95], "--webp-quality",
                                           help="WebP qualities (Pillow, method 6; repeatable)."),
    steps: int = typer.Option(4, help="Non-progressive points: the latent coded in one Gaussian-conditional stream "
                              "with quantizer steps 3**0 .. 3**(steps-1)."),
    levels: int = typer.Option(DEFAULT_TARGET_LEVELS, help="Decodable levels our encoder aims for (each costs about 2 "
                               "bytes of framing)."),
    lpips: bool = typer.Option(True, "--lpips/--no-lpips", help="Also LPIPS (AlexNet; needs edge-sdk[train])."),
    device: str = DEVICE_OPTION,
    threads: int = THREADS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print results.json's summary instead of tables."),
) -> None:
    """Measure bytes against machine accuracy for every codec users would otherwise pick.

    For each photo: our stream at several decoded depths (classified from the latent),
    JPEG and WebP over their quality range and the same latent coded non-progressively
    (classified in the pixel domain / from the latent), each point with bpp counting every
    byte of the file, top-1 agreement with the pixel classifier on the original, accuracy
    when --labels is given, PSNR and LPIPS. Then averaged curves, Bjøntegaard delta rates of
    ours against each baseline (agreement and PSNR axes; negative = fewer bytes), and plots:
    rate_agreement.png, rate_psnr.png, bit_allocation.png. Method: docs/evaluation.md.
    """
    from edge_sdk.calibration.photos import find_photos as find_images, load_image_set
    from edge_sdk.calibration.evaluation.evaluate import (CONFIDENT, EvalSettings, Evaluator, bd_rates, curves, evaluate,
                                              teacher_stability, write_csv, write_plots)

    loaded = open_bundle(bundle)
    try:
        settings = EvalSettings(depth_points=depth_points, nonprogressive_steps=steps,
                                jpeg_qualities=tuple(jpeg_quality), webp_qualities=tuple(webp_quality), lpips=lpips,
                                target_levels=levels)
    except ValueError as exc:
        fail(str(exc))
    try:
        paths = find_images(images)
    except FileNotFoundError as exc:
        fail(str(exc))
    if not paths:
        fail("no images found under --images")
    label_map = read_labels(labels, loaded.class_names) if labels else None
    photos = load_image_set(paths, short_side=short_side, views=1,
                            skip=lambda path, exc: err_console.print(f"[yellow]skipped[/yellow] {path}: {exc}"))
    if not photos:
        fail("none of the images under --images could be read")
    evaluator = Evaluator(loaded, backend_from_options(loaded, device, threads), settings)
    if lpips and evaluator.lpips is None:
        err_console.print("[yellow]LPIPS not computed:[/yellow] install edge-sdk[train] (stlpips-pytorch, torch)")
    out.mkdir(parents=True, exist_ok=True)
    reused = 0
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("evaluate", total=len(photos))

        def step(name: str, cached: bool) -> None:
            nonlocal reused
            reused += int(cached)
            bar.update(task, advance=1, description=f"{name}{' (cached)' if cached else ''}")

        records = evaluate(evaluator, photos, out / "cache", label_map, progress=step)
    curve_set = curves(records)
    bd = bd_rates(curve_set)
    full = curve_set["edge-sdk"][-1]
    nonprog = curve_set["non-progressive"][0]
    teacher = teacher_stability(records)
    confident = curves(records, CONFIDENT) if teacher["confident_images"] else {}
    summary = {
        "bundle": str(bundle), "images": len(records), "reused_from_cache": reused, "short_side": short_side,
        "settings": {"depth_points": depth_points, "jpeg_qualities": list(jpeg_quality),
                     "webp_qualities": list(webp_quality), "nonprogressive_steps": steps, "levels": levels},
        "bd_rate_vs": bd,
        "full_depth": {k: full[k] for k in ("bpp", "agreement", "accuracy", "psnr", "lpips")},
        "progressive_overhead_at_full_depth": full["bpp"] / nonprog["bpp"] - 1.0,
        "teacher": teacher,
        "full_depth_confident": ({k: confident["edge-sdk"][-1][k] for k in ("bpp", "agreement", "images")}
                                 if confident else None),
        "curves": curve_set,
        "curves_confident": confident,
    }
    atomic_write(out / "results.json", json.dumps({**summary, "per_image": records}, indent=1))
    write_csv(curve_set, out / "curves.csv")
    plots = write_plots(curve_set, records, out)
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"{len(records)} images ({reused} from cache), bpp counts every byte")
    for col in ("codec", "setting", "bpp", "agreement", "accuracy", "PSNR", "LPIPS"):
        table.add_column(col, justify="right" if col not in ("codec", "setting") else "left")
    for codec, points in curve_set.items():
        shown = points if len(points) <= 6 else [points[i] for i in sorted({0, len(points) // 4, len(points) // 2,
                                                                           3 * len(points) // 4, len(points) - 1})]
        for p in shown:
            table.add_row(codec, p["setting"], f"{p['bpp']:.3f}", f"{p['agreement']:.1%}", _fmt(p["accuracy"], ".1%"),
                          _fmt(p["psnr"], ".2f"), _fmt(p["lpips"], ".3f"))
    console.print(table)
    rates = Table(title="BD-rate of edge-sdk against each baseline (negative: fewer bytes for the same quality)")
    for col in ("baseline", "agreement axis", "PSNR axis", "accuracy axis"):
        rates.add_column(col)
    for codec, entry in bd.items():
        rates.add_row(codec, *(_fmt(None if entry[a] is None else 100 * entry[a], "+.1f") + ("%" if entry[a] is not None
                                                                                               else "")
                               for a in ("agreement", "psnr", "accuracy")))
    console.print(rates)
    console.print(f"progressive coding costs {summary['progressive_overhead_at_full_depth']:+.1%} bytes at full depth "
                  f"against the same latent coded in one stream")
    ceiling = ", ".join(f"{k} {v:.1%}" for k, v in teacher["ceiling"].items())
    console.print(f"teacher: median top-1 probability {teacher['median_confidence']:.2f}; "
                  f"{teacher['confident_images']} of {teacher['images']} images at >= {CONFIDENT:g}. "
                  f"Agreement ceiling (near-lossless baselines): {ceiling or 'n/a'}")
    if summary["full_depth_confident"]:
        fc = summary["full_depth_confident"]
        console.print(f"on the {fc['images']} images the teacher is sure of, full depth agrees {fc['agreement']:.1%} "
                      f"at {fc['bpp']:.3f} bpp")
    console.print(f"wrote {out / 'results.json'}, {out / 'curves.csv'}, " + ", ".join(str(p) for p in plots))
