"""``edge-sdk build`` (TensorRT engines or precision-converted ONNX) and ``edge-sdk verify``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import app, backend_from_options, console, fail, open_bundle, progress_bar


def _sizes(min_size: str, opt_size: str, max_size: str, multiple: int) -> tuple[tuple[int, int], ...]:
    out = []
    for text in (min_size, opt_size, max_size):
        try:
            h, w = (int(v) for v in text.lower().split("x"))
        except ValueError:
            fail(f"sizes are HEIGHTxWIDTH, got {text!r}")
        if h % multiple or w % multiple or h < 1 or w < 1:
            fail(f"size {text} must be a multiple of the bundle's padding multiple {multiple}")
        out.append((h, w))
    if not (out[0][0] <= out[1][0] <= out[2][0] and out[0][1] <= out[1][1] <= out[2][1]):
        fail("need min ≤ opt ≤ max in both height and width")
    return tuple(out)


def _photos(folders: list[Path]) -> list:
    from edge_sdk.calibration.photos import find_photos as find_images
    from edge_sdk.runtime.images import read_image, to_uint8

    try:
        return [to_uint8(read_image(p)) for p in find_images(folders)]
    except FileNotFoundError as exc:
        fail(str(exc))


@app.command()
def build(
    bundle: Path = typer.Option(..., help="Bundle directory (from `edge-sdk export`)."),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8 for the classifiers and the synthesis; the "
                                  "analysis and hyperprior graphs are always FP32."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Engine folder (default: the user cache, "
                                       "$EDGE_SDK_CACHE or ~/.cache/edge-sdk/engines/<codec id>-<precision>)."),
    calib_images: list[Path] = typer.Option([], "--calib-images", help="Photos for INT8 calibration (repeatable); "
                                            "INT8 refuses to run without them."),
    calib_method: str = typer.Option("minmax", help="INT8 activation ranges for the Q/DQ copies (TensorRT 11): "
                                     "minmax, entropy or percentile. TensorRT 10's calibrator is always entropy."),
    min_size: str = typer.Option("64x64", help="Smallest padded image the engines accept, HxW."),
    opt_size: str = typer.Option("512x768", help="The padded image size TensorRT tunes for, HxW."),
    max_size: str = typer.Option("2048x2048", help="Largest padded image the engines accept, HxW."),
    convert_only: bool = typer.Option(False, "--convert-only", help="Only write the FP16 / Q/DQ ONNX copies "
                                      "TensorRT 11 builds from (no TensorRT needed; `verify --backend onnx` "
                                      "runs them under ONNX Runtime)."),
    as_json: bool = typer.Option(False, "--json", help="Print the engine manifest as JSON."),
) -> None:
    """Build TensorRT engines for a bundle, one per graph, cached by what they depend on.

    TensorRT 10 (JetPack 6) builds the FP32 ONNX with FP16/INT8 builder flags and an INT8
    calibrator; TensorRT 11 builds strongly typed networks from ONNX converted to the
    precision first. Engines are keyed by the ONNX sha256, TensorRT version, GPU name and
    compute capability, precision and shape profile; an engine that is already current is
    not rebuilt. Build on the GPU that will run them: engines do not move between GPUs.
    """
    from edge_sdk.runtime.backends.tensorrt import PRECISIONS, build_engines, default_cache_dir, tensorrt_module
    from edge_sdk.runtime.errors import BackendError, PrecisionError

    if precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}")
    loaded = open_bundle(bundle)
    sizes = _sizes(min_size, opt_size, max_size, loaded.padding_multiple)
    photos = _photos(calib_images) if calib_images else []
    target = out or default_cache_dir() / f"{loaded.codec_id.hex()}-{precision}"
    try:
        if not convert_only:
            tensorrt_module()  # the install hint before minutes of calibration work
        feeds = None
        if precision == "int8" and photos:
            from edge_sdk.calibration.int8 import int8_calibration_feeds

            feeds = int8_calibration_feeds(loaded, photos, sizes[1])
        with progress_bar(disable=as_json) as bar:
            task = bar.add_task("build", total=None)
            engines = build_engines(loaded, target, precision, sizes=sizes, calibration=feeds,
                                    convert_only=convert_only, calibration_method=calib_method,
                                    progress=lambda m: bar.update(task, description=m))
    except (BackendError, PrecisionError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps({"out": str(target), "engines": engines.entries}))
        return
    table = Table(title=f"{target}")
    for col in ("graph", "precision", "file", "MB"):
        table.add_column(col)
    for graph, entry in engines.entries.items():
        p = entry.get("key", {}).get("precision", entry.get("precision", ""))
        name = entry.get("file") or entry.get("onnx") or "(bundle ONNX, FP32)"
        size = f"{(target / name).stat().st_size / 1e6:.1f}" if (target / name).is_file() else "—"
        table.add_row(graph, p, name, size)
    console.print(table)


@app.command()
def verify(
    bundle: Path = typer.Option(..., help="Bundle directory."),
    engine: Path = typer.Option(..., help="Engine folder from `edge-sdk build` (with --convert-only for onnx)."),
    backend: str = typer.Option("trt", help="trt: the TensorRT engines; onnx: the converted ONNX under ONNX Runtime."),
    images: list[Path] = typer.Option(..., "--images", help="Photos to compare on (repeatable)."),
    max_images: int = typer.Option(8, help="Use at most this many photos."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compare a backend with ONNX Runtime on the bundle's FP32 graphs, input by input, and
    check that streams decode to the identical latent whichever side encoded them."""
    from edge_sdk.calibration.verify import verify_backends
    from edge_sdk.runtime.backends.tensorrt import EngineDir
    from edge_sdk.runtime.errors import BackendError

    loaded = open_bundle(bundle)
    photos = _photos(images)[:max_images]
    if not photos:
        fail("no photos found under --images")
    try:
        if backend == "onnx":
            entries = EngineDir.open(engine).entries
            files = {g: engine / e["onnx"] for g, e in entries.items() if e.get("onnx")}
            if not files:
                fail(f"{engine} holds no converted ONNX (run `edge-sdk build --convert-only --out {engine}`)")
            candidate = backend_from_options(loaded, "cpu", graph_files=files)
        elif backend == "trt":
            candidate = backend_from_options(loaded, engine=engine, rebuild=False)
        else:
            fail("--backend must be trt or onnx")
        report = verify_backends(loaded, backend_from_options(loaded, "cpu"), candidate, photos)
    except BackendError as exc:
        fail(str(exc))
    report["candidate"] = candidate.describe()
    if as_json:
        print(json.dumps(report))
    else:
        table = Table(title=f"{backend} vs ONNX Runtime FP32, {len(photos)} photos")
        for col in ("graph", "inputs", "max |Δ|", "mean |Δ|", "top-1 agreement", "min PSNR"):
            table.add_column(col)
        for name, g in report["graphs"].items():
            table.add_row(name, str(g["inputs"]), f"{g['max_abs_diff']:.2e}", f"{g['mean_abs_diff']:.2e}",
                          f"{g['top1_agreement']:.0%}" if "top1_agreement" in g else "—",
                          f"{g['min_psnr_db']:.1f} dB" if "min_psnr_db" in g else "—")
        console.print(table)
        s = report["streams"]
        console.print(f"streams: {s['pairs']} decodes, {s['failed_decodes']} failed, "
                      f"{s['different_residuals']} decoded to a different latent")
    if report["streams"]["failed_decodes"] or report["streams"]["different_residuals"]:
        raise typer.Exit(1)
