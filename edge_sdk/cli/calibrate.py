"""``edge-sdk calibrate``: fit the adaptive decoding controller and report how well it is calibrated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import (DEVICE_OPTION, THREADS_OPTION, app, backend_from_options, console, err_console, fail,
                                 open_bundle, progress_bar, read_labels)
from edge_sdk.runtime.fileio import atomic_write


@app.command()
def calibrate(
    bundle: Path = typer.Option(..., help="Bundle directory (from `edge-sdk export`); the controller is stored in it."),
    images: list[Path] = typer.Option(..., "--images", help="Calibration photos: files or folders (repeatable)."),
    eval_images: list[Path] = typer.Option([], "--eval-images", help="Held-out photos to report on (repeatable). "
                                           "Without them the report uses grouped 5-fold cross-validation by photo."),
    labels: Optional[Path] = typer.Option(None, help="CSV 'file,label' (class index or name). Without it a level is "
                                          "correct when it agrees with the pixel classifier on the original."),
    taus: list[float] = typer.Option([0.5, 0.6, 0.7, 0.8, 0.9], "--tau", help="Thresholds to report (repeatable)."),
    default_threshold: float = typer.Option(0.8, help="The τ Decoder.classify and `run` use when none is given."),
    checkpoints: int = typer.Option(8, help="Levels per stream where the controller is consulted, spread over the "
                                    "bytes (0: every level, one classifier pass per level); stored in the bundle."),
    short_side: int = typer.Option(224, help="Resize photos so the short side is this before encoding (the "
                                   "classifier's native scale); 0 keeps them as they are."),
    views: int = typer.Option(1, help="Views per photo: the whole photo plus random crops, each encoded as its own "
                              "stream (more samples from few photos; views of a photo never straddle folds)."),
    c: Optional[float] = typer.Option(None, "--C", help="Inverse L2 strength of the logistic regression (default: "
                                      "chosen from 0.001-10 by cross-validated log-loss, grouped by photo)."),
    recalibration: str = typer.Option("none", help="isotonic: map the regression's probability through an "
                                      "isotonic fit on its out-of-fold probabilities (needs >= 2 photos); none: "
                                      "the plain regression, PICM-Net's form (measured better with the chosen C, docs/controller.md)."),
    seed: int = typer.Option(0, help="Seed of the crop views."),
    out: Path = typer.Option(Path("calibration_report"), "--out", "-o", help="Folder for report.json, samples and PNGs."),
    write: bool = typer.Option(True, "--write/--no-write", help="Store the fitted controller in the bundle."),
    weights_file: Optional[Path] = typer.Option(None, help="The weights file the bundle was exported from; its sha256 "
                                                "is recorded so `edge-sdk export` can ship this controller with them."),
    device: str = DEVICE_OPTION,
    threads: int = THREADS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Fit the adaptive decoding controller (PICM-Net Algorithm 1) and report its calibration.

    Every photo is encoded, decoded level by level, and the classifier's logits at each
    level become 12 features; a logistic regression learns P(top-1 is correct). The report
    gives the ECE of that probability, and for each τ the accuracy, the bytes saved and
    the ECE of the decisions Algorithm 2 takes, plus the BD-rate of the τ-swept curve
    against fixed-depth decoding. Example:

        edge-sdk calibrate --bundle bundles/lite0 --images photos/ --views 8
    """
    try:
        from edge_sdk.calibration.controller.collect import collect_levels
        from edge_sdk.calibration.photos import find_photos as find_images, load_image_set
        from edge_sdk.calibration.controller.fit import cross_validated_probabilities, fit_controller
        from edge_sdk.calibration.controller.report import build_report, write_plots
        from edge_sdk.runtime.bundle import attach_controller
        from edge_sdk.runtime.fileio import sha256_file
    except ImportError as exc:
        fail(f"calibration needs the [calibrate] extra ({exc.name} is missing): pip install 'edge-sdk[calibrate]'")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        fail("calibration needs scikit-learn: pip install 'edge-sdk[calibrate]'")
    if views < 1:
        fail("--views must be at least 1")
    if recalibration not in ("isotonic", "none"):
        fail(f"--recalibration must be isotonic or none, got {recalibration!r}")
    if checkpoints < 0:
        fail("--checkpoints must be 0 (every level) or more")
    if weights_file is not None and not weights_file.is_file():
        fail(f"--weights-file {weights_file} does not exist")
    if not 0 <= default_threshold <= 1 or not all(0 <= t <= 1 for t in taus):
        fail("thresholds must lie in [0, 1]")
    loaded = open_bundle(bundle)
    if loaded.random_parts:
        err_console.print(f"[bold yellow]warning:[/bold yellow] {bundle} has RANDOM WEIGHTS in "
                          f"{', '.join(loaded.random_parts)}; the controller will describe noise")
    backend = backend_from_options(loaded, device, threads)
    label_map = read_labels(labels, loaded.class_names) if labels else None
    try:
        cal_paths = find_images(images)
        eval_paths = find_images(eval_images) if eval_images else []
    except FileNotFoundError as exc:
        fail(str(exc))
    if not cal_paths:
        fail("no calibration images found")
    overlap = {p.resolve() for p in cal_paths} & {p.resolve() for p in eval_paths}
    if overlap:
        fail(f"{len(overlap)} photo(s) are in both --images and --eval-images, e.g. {sorted(overlap)[0]}")

    def gather(paths, what):
        try:
            photos = load_image_set(paths, short_side=short_side, views=views, seed=seed)
        except Exception as exc:  # noqa: BLE001  (ImageError and Pillow's many types)
            fail(f"cannot read a {what} image: {exc}")
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task(what, total=len(photos))

            def step(name):
                bar.update(task, advance=1, description=f"{what} {name[:40]}")
            return collect_levels(loaded, photos, labels=label_map, backend=backend, progress=step)

    cal = gather(cal_paths, "calibration")
    if cal.correct.all() or not cal.correct.any():
        fail(f"all {cal.correct.size} calibration samples are {'right' if cal.correct.all() else 'wrong'}; "
             "a controller needs both (add harder or easier photos)")
    if recalibration == "isotonic" and len(set(cal.group.tolist())) < 2:
        fail("--recalibration isotonic needs at least 2 calibration photos; give more or use --recalibration none")
    controller = fit_controller(cal, c=c, recalibration=recalibration, classifier_sha256=loaded.graphs["classifier"].sha256,
                                default_threshold=default_threshold, checkpoints=checkpoints,
                                fitted_on={"labels": "real" if label_map else "pixel_classifier top-1",
                                           "short_side": short_side, "views": views, "quality": loaded.quality,
                                           **({"weights_sha256": sha256_file(weights_file)} if weights_file else {})})
    if eval_paths:
        held = gather(eval_paths, "held-out")
        probs, scheme = controller.probability_from_features(held.features), "held-out photos"
    else:
        held = cal
        probs, scheme = cross_validated_probabilities(cal, c=c, recalibration=recalibration), "grouped 5-fold cross-validation by photo"
    report = build_report(held, probs, taus, checkpoints=checkpoints)
    report.update(evaluation=scheme, bundle=str(bundle), controller=controller.to_dict())
    out.mkdir(parents=True, exist_ok=True)
    cal.save(out / "calibration_samples.npz")
    if eval_paths:
        held.save(out / "heldout_samples.npz")
    plots = write_plots(report, out)
    atomic_write(out / "report.json", json.dumps(report, indent=1) + "\n")
    if write:
        attach_controller(bundle, controller)
    if as_json:
        print(json.dumps(report))
        return
    table = Table(title=f"controller on {report['streams']} streams from {report['photos']} photos ({scheme})")
    for col in ("τ", "accuracy", "bpp", "bytes saved", "decision ECE", "its noise floor", "stopped early"):
        table.add_column(col, justify="right")
    for t in report["taus"]:
        table.add_row(f"{t['tau']:g}", f"{t['accuracy']:.1%}", f"{t['bpp']:.3f}", f"{t['bytes_saved']:.1%}",
                      f"{t['decision_ece']:.1%}", f"{t['decision_ece_floor']:.1%}", f"{t['stopped_early']:.0%}")
    table.add_row("full", f"{report['full_depth']['accuracy']:.1%}", f"{report['full_depth']['bpp']:.3f}", "0%", "", "",
                  "")
    console.print(table)
    bd = report["bd_rate_vs_fixed_depth"]
    console.print(f"filter ECE {report['filter_ece']:.1%} over {report['samples']} (stream, level) samples "
                  f"(a perfectly calibrated filter would show {report['filter_ece_floor']:.1%} here; resampling the "
                  f"photos puts it between {report['filter_ece_photo_interval'][0]:.1%} and "
                  f"{report['filter_ece_photo_interval'][1]:.1%}); "
                  f"BD-rate of the τ sweep against fixed-depth decoding: "
                  f"{'n/a (no shared accuracy range)' if bd is None else f'{bd:+.1%}'}; oracle stop "
                  f"{report['oracle']['bpp']:.3f} bpp at {report['oracle']['accuracy']:.1%}")
    console.print(f"report {out / 'report.json'}; plots {', '.join(p.name for p in plots)}"
                  + (f"; controller stored in {bundle}" if write else " (controller not stored: --no-write)"))
