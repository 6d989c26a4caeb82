"""``edge-sdk encode``, ``decode`` and ``run``: the commands that run a bundle; ``samples`` fetches photos to run it on."""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import (DEVICE_OPTION, MAX_MEMORY_OPTION, MAX_PIXELS_OPTION, THREADS_OPTION, app,
                                 backend_from_options, console, err_console, fail, memory_budget, open_bundle,
                                 progress_bar, read_stream)
from edge_sdk.runtime.fileio import atomic_write
from edge_sdk.runtime.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from edge_sdk.runtime.codec import DEFAULT_TARGET_LEVELS
from edge_sdk.runtime.pipeline import DEEPEST

STREAM_SUFFIX = ".edgt"
#: a local file with this suffix given to ``run --input`` lists stream URLs, one a line
URL_LIST_SUFFIX = ".txt"


# shared by encode and run
SHORT_SIDE_OPTION = typer.Option(0, help="Downscale images so the short side is this before encoding (224: "
                                 "EfficientNet-Lite0's scale); 0 encodes them as they are.")
LEVELS_OPTION = typer.Option(DEFAULT_TARGET_LEVELS, help="The most decodable levels per stream. Each costs about 2 "
                             "bytes of framing (its length, a flush byte, its share of the checks); smaller streams "
                             "get fewer, so framing stays near 1.3 % of the bytes (a 224-px photo: about 30 levels).")
PRIOR_OPTION = typer.Option(None, help="integer (default when the bundle has one): streams decode identically on any "
                            "backend, thread count or precision; float: for decoding on the encoder's exact backend "
                            "setup only (not faster on CPU; see docs/prior.md).")


def _expand(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {STREAM_SUFFIX})
        elif path.is_file():
            files.append(path)
        else:
            fail(f"{path} does not exist")
    if not files:
        fail("no images or streams found in the inputs")
    return files


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _split_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """(local images, streams and folders; stream URLs), URLs given directly or listed in .txt files
    (one a line; blank lines and lines starting with # are skipped)."""
    paths: list[Path] = []
    urls: list[str] = []
    for item in inputs:
        if _is_url(item):
            urls.append(item)
        elif item.lower().endswith(URL_LIST_SUFFIX) and Path(item).is_file():
            try:
                lines = Path(item).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                fail(f"cannot read the URL list {item}: {exc}")
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if not _is_url(line):
                    fail(f"{item}:{number}: {line!r} is not an http(s) URL")
                urls.append(line)
        else:
            paths.append(Path(item))
    return paths, urls


def _fetch_policy(link: Optional[str]):
    """The FetchPolicy of ``--link RTT_MS,KBIT_S`` (None: the default policy)."""
    from edge_sdk.runtime.remote import FetchPolicy

    if link is None:
        return FetchPolicy()
    try:
        rtt_ms, kbit_s = (float(part) for part in link.split(","))
        return FetchPolicy(link_rtt_s=rtt_ms / 1e3, link_bandwidth_bps=kbit_s * 1e3)
    except ValueError:
        fail(f"--link {link!r}: give the round-trip time in ms and the bandwidth in kbit/s, e.g. 500,50")


def _fetch_rows(decoder, urls: list[str], threshold: Optional[float], full_depth: bool, concurrency: int, policy):
    """One result row per URL, in order: the prediction and what fetching cost, or the error (with the
    result at the last complete level when one was reached)."""
    for url, outcome in decoder.fetch_many(urls, threshold, concurrency=concurrency,
                                           level=DEEPEST if full_depth else None, policy=policy):
        if isinstance(outcome, Exception):
            row = {"file": url, "error": str(outcome), "error_type": type(outcome).__name__}
            if outcome.partial is not None:
                row["partial"] = outcome.partial.as_dict()
            if outcome.stats is not None:
                row["fetch"] = outcome.stats.as_dict()
        else:
            row = {"file": url, **outcome.as_dict()}
            row["ms"] = {k: round(v, 1) for k, v in outcome.prediction.timings_ms.items()}
            row["ms"]["total"] = round(outcome.stats.elapsed_ms, 1)
        yield row


def _warn_random(bundle) -> None:
    if bundle.random_parts:
        err_console.print(f"[bold yellow]warning:[/bold yellow] {bundle.path} has RANDOM WEIGHTS in "
                          f"{', '.join(bundle.random_parts)}; its outputs mean nothing")


def _encoder(encoder_class, bundle, backend, short_side: int, prior: Optional[str], levels: int = DEFAULT_TARGET_LEVELS,
             max_pixels: int = DEFAULT_MAX_PIXELS, memory="auto"):
    from edge_sdk.runtime import ChunkSchedule

    try:
        return encoder_class(bundle, backend, short_side=short_side, prior=prior,
                             schedule=ChunkSchedule(target_levels=levels), max_pixels=max_pixels,
                             max_memory=memory)
    except ValueError as exc:
        fail(str(exc))


@app.command()
def encode(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders (JPEG, PNG, WebP, TIFF, BMP, any mode)."),
    bundle: Path = typer.Option(..., help="Bundle directory (from `edge-sdk export`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one NAME.edgt per image), or a file for one image."),
    short_side: int = SHORT_SIDE_OPTION,
    levels: int = LEVELS_OPTION,
    prior: Optional[str] = PRIOR_OPTION,
    device: str = DEVICE_OPTION,
    threads: int = THREADS_OPTION,
    max_pixels: int = MAX_PIXELS_OPTION,
    max_memory: str = MAX_MEMORY_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON line per image."),
) -> None:
    """Encode images into progressive streams (.edgt), written atomically.

    Images are converted to RGB (EXIF rotation, grayscale replicated, alpha over
    white, 16-bit scaled), padded bottom/right to the bundle's multiple; the
    padding is recorded in the stream and removed by the decoder.
    """
    from edge_sdk.runtime import BackendError, LimitError
    from edge_sdk.runtime.images import ImageError
    from edge_sdk.runtime.pipeline import Encoder

    loaded = open_bundle(bundle)
    _warn_random(loaded)
    encoder = _encoder(Encoder, loaded, backend_from_options(loaded, device, threads), short_side, prior, levels,
                       max_pixels, memory_budget(max_memory))
    files = _expand(inputs)
    single = len(files) == 1 and out.suffix == STREAM_SUFFIX
    if not single:
        by_target: dict[str, list[Path]] = {}
        for path in files:
            by_target.setdefault(path.stem + STREAM_SUFFIX, []).append(path)
        clashes = {name: paths for name, paths in by_target.items() if len(paths) > 1}
        if clashes:  # x.png and x.jpg, or a/x.png and b/x.png, would overwrite each other's stream
            listed = "; ".join(f"{name} ← {', '.join(str(p) for p in paths)}" for name, paths in list(clashes.items())[:5])
            fail(f"inputs would write the same stream: {listed}. Encode them into separate folders")
        if out.exists() and not out.is_dir():
            fail(f"--out {out} is a file; several inputs need a folder")
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in files:
        target = out if single else out / (path.stem + STREAM_SUFFIX)
        try:
            encoded = encoder.encode_timed(path)
        except (ImageError, LimitError, BackendError) as exc:  # one bad or too large image never ends the batch
            failures += 1
            err_console.print(f"[red]skipped[/red] {path}: {exc}")
            continue
        atomic_write(target, encoded.data)
        row = {"file": str(path), "stream": str(target), "bytes": len(encoded.data),
               "ms": {k: round(v, 1) for k, v in encoded.timings_ms.items()}}
        print(json.dumps(row)) if as_json else console.print(f"{path} → {target} ({len(encoded.data)} bytes)")
    if failures:
        raise typer.Exit(1)


@app.command()
def decode(
    stream: Path = typer.Argument(..., help="A stream (.edgt) or a prefix of one."),
    bundle: Path = typer.Option(..., help="Bundle directory the stream was made with."),
    out: Path = typer.Option(..., "--out", "-o", help="Reconstructed image, written atomically; the suffix picks the format (.png, .jpg, .webp, .bmp, .tif)."),
    level: Optional[int] = typer.Option(None, help="Decode to this level (default: all the bytes hold)."),
    device: str = DEVICE_OPTION,
    threads: int = THREADS_OPTION,
    max_pixels: int = MAX_PIXELS_OPTION,
    max_memory: str = MAX_MEMORY_OPTION,
) -> None:
    """Reconstruct the image a stream (or a prefix of it) holds, at a chosen level."""
    import io

    from PIL import Image

    from edge_sdk.runtime.pipeline import Decoder
    from edge_sdk.runtime import BackendError, BitstreamError, LimitError, TrailingBytesWarning

    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
               ".tiff": "TIFF"}
    fmt = formats.get(out.suffix.lower())
    if fmt is None:
        fail(f"--out {out}: name the image format by the suffix ({', '.join(formats)})")
    loaded = open_bundle(bundle)
    decoder = Decoder(loaded, backend_from_options(loaded, device, threads), max_pixels=max_pixels,
                      max_memory=memory_budget(max_memory))
    data = read_stream(stream)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TrailingBytesWarning)
            image = decoder.reconstruct(data, level=level)
    except (BitstreamError, LimitError, BackendError, ValueError) as exc:
        fail(f"{stream}: {exc}")
    for w in (w for w in caught if issubclass(w.category, TrailingBytesWarning)):
        err_console.print(f"[bold yellow]warning:[/bold yellow] {stream}: {w.message}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    atomic_write(out, buf.getvalue())
    console.print(f"wrote {out} ({image.shape[1]}×{image.shape[0]})")


def _run_one(path: Path, encoder, decoder, trace: bool, threshold: Optional[float] = None,
             full_depth: bool = False) -> dict:
    """Encode (images) or read (streams), then decode progressively; one result row."""
    t0 = time.perf_counter()
    if path.suffix.lower() == STREAM_SUFFIX:
        data = path.read_bytes()
        encode_ms: dict = {}
    else:
        # encode and decode share the process: the whole item is checked against the run line first
        encoder.memory.check(encoder.bundle.manifest.memory, "run", encoder.padded_pixels(path), f"running {path.name}")
        encoded = encoder.encode_timed(path)
        data = encoded.data
        encode_ms = {f"encode_{k}": v for k, v in encoded.timings_ms.items()}
    from edge_sdk.runtime import level_boundaries

    levels = []
    if trace:
        session = decoder.session()
        fed = 0
        for level, end in enumerate(level_boundaries(data)):
            if end > len(data):
                break
            session.feed(data[fed:end])
            fed = end
            if session.level < level:
                continue
            pred = session.classify()
            top = pred.top_k[0]
            levels.append({"level": session.level, "bytes": end, "top1": top[1], "prob": round(top[2], 4),
                           **({"confidence": round(pred.confidence, 4)} if pred.confidence is not None else {})})
    from edge_sdk.runtime import TrailingBytesWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrailingBytesWarning)
        prediction = decoder.classify(data, threshold=threshold, level=DEEPEST if full_depth else None)
    row = {"file": str(path), **prediction.as_dict()}
    trailing = [str(w.message) for w in caught if issubclass(w.category, TrailingBytesWarning)]
    if trailing:
        row["warning"] = "; ".join(trailing)
    row["ms"] = {k: round(v, 1) for k, v in {**encode_ms, **prediction.timings_ms}.items()}
    row["ms"]["total"] = round((time.perf_counter() - t0) * 1e3, 1)
    if trace:
        row["trace"] = levels
    return row


@app.command()
def run(
    inputs: list[str] = typer.Option(..., "--input", "-i", help="Images, streams (.edgt) or folders of them, stream "
                                     "URLs (http:// or https://), or .txt files listing URLs one a line (repeatable)."),
    bundle: Path = typer.Option(..., help="Bundle directory (from `edge-sdk export`)."),
    threshold: Optional[float] = typer.Option(None, help="Stop at the first level whose controller confidence "
                                              "(P(top-1 correct)) reaches this; default: the controller's own τ. "
                                              "Needs a calibrated bundle (`edge-sdk calibrate`)."),
    full_depth: bool = typer.Option(False, "--full-depth", help="Ignore the controller: decode every byte."),
    short_side: int = SHORT_SIDE_OPTION,
    levels: int = LEVELS_OPTION,
    prior: Optional[str] = PRIOR_OPTION,
    trace: bool = typer.Option(False, "--trace", help="Classify at every level and report the top class and bytes there."),
    engine: Optional[Path] = typer.Option(None, help="Run TensorRT engines from this folder (`edge-sdk build`) "
                                          "instead of ONNX Runtime; stale ones are rebuilt with a message."),
    device: str = DEVICE_OPTION,
    threads: int = THREADS_OPTION,
    max_pixels: int = MAX_PIXELS_OPTION,
    max_memory: str = MAX_MEMORY_OPTION,
    concurrency: int = typer.Option(4, min=1, max=256, help="Stream URLs fetched at once (one connection each)."),
    link: Optional[str] = typer.Option(None, help="RTT_MS,KBIT_S of the link to the stream URLs (500,50 for LoRa): "
                                       "the first request and the first batch of levels are then one "
                                       "bandwidth-delay product (docs/streaming.md); default: batches of 1, 2, 4, "
                                       "... controller checkpoints after a 1 KB first request."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per item, nothing else on stdout."),
) -> None:
    """Classify images or streams from the compressed latent, without reconstructing pixels.

    Images are encoded first (the same bundle), then decoded progressively; each
    item gives the top-5 classes, the level reached, bytes used and total, and
    milliseconds per stage. With a controller in the bundle (`edge-sdk calibrate`)
    decoding stops at the first level it trusts at --threshold; without one, or with
    --full-depth, every byte is decoded. --trace shows how the answer evolves level
    by level.

    Stream URLs are fetched from any HTTP server that answers range requests: a short
    first range, then only the levels the controller needs, --concurrency at a time
    (docs/streaming.md); each row adds what the fetch cost (bytes, requests, levels).
    """
    from edge_sdk.runtime.images import ImageError
    from edge_sdk.runtime.pipeline import Decoder, Encoder
    from edge_sdk.runtime import BackendError, BitstreamError, LimitError

    loaded = open_bundle(bundle)
    if threshold is not None and (full_depth or loaded.controller is None):
        fail("--threshold conflicts with --full-depth" if full_depth else
             f"--threshold needs a decoding controller and {bundle} has none; fit one with "
             f"`edge-sdk calibrate --bundle {bundle} --images DIR`, or run without --threshold (full depth)")
    if threshold is not None and not 0 <= threshold <= 1:
        fail("--threshold must lie in [0, 1]")
    _warn_random(loaded)
    backend = backend_from_options(loaded, device, threads, engine)
    budget = memory_budget(max_memory)  # one start and one limit for the encoder and decoder of each item
    encoder = _encoder(Encoder, loaded, backend, short_side, prior, levels, max_pixels, budget)
    decoder = Decoder(loaded, backend, max_pixels=max_pixels, max_memory=budget)
    paths, urls = _split_inputs(inputs)
    if urls and trace:
        fail("--trace classifies every level of a whole file; it does not apply to stream URLs")
    policy = _fetch_policy(link)
    files = _expand(paths) if paths or not urls else []
    rows, failures = [], 0
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("run", total=len(files) + len(urls))
        for row in _fetch_rows(decoder, urls, threshold, full_depth, concurrency, policy) if urls else ():
            bar.update(task, description=row["file"].rsplit("/", 1)[-1])
            failures += "error" in row
            rows.append(row)
            if as_json:
                print(json.dumps(row), flush=True)
            bar.advance(task)
        for path in files:
            bar.update(task, description=path.name)
            try:
                row = _run_one(path, encoder, decoder, trace, threshold, full_depth)
            except (ImageError, BitstreamError, LimitError, BackendError, OSError) as exc:
                # one bad, too large or out-of-memory item is reported; the rest of the batch still runs
                failures += 1
                row = {"file": str(path), "error": str(exc)}
            rows.append(row)
            if as_json:
                print(json.dumps(row), flush=True)
            bar.advance(task)
    if not as_json:
        from rich.markup import escape

        for row in rows:
            if "trace" in row:
                t = Table(title=f"{Path(row['file']).name}: top-1 at each level")
                for col in ("level", "bytes", "top-1", "prob"):
                    t.add_column(col, justify="right" if col != "top-1" else "left")
                for r in row["trace"]:
                    t.add_row(str(r["level"]), str(r["bytes"]), r["top1"][:40], f"{r['prob']:.2f}")
                console.print(t)
        summary = Table(title=f"{len(rows)} items, bundle {loaded.model_name} q{loaded.quality:g}")
        for col in ("file", "top-1", "prob", "P(correct)", "level", "bytes used / total", "ms"):
            summary.add_column(col)
        for row in rows:
            if "error" in row:
                summary.add_row(row["file"].rsplit("/", 1)[-1], f"[red]{escape(row['error'][:60])}[/red]", "", "", "",
                                "", "")
                continue
            top = row["top_k"][0]
            fetched = f" ({row['fetch']['bytes_fetched']} fetched in {row['fetch']['requests']} requests)" \
                if "fetch" in row else ""
            summary.add_row(row["file"].rsplit("/", 1)[-1], top["name"][:40], f"{top['prob']:.2f}",
                            f"{row['confidence']:.2f}" if "confidence" in row else "-",
                            f"{row['level']}/{row['levels']}", f"{row['bytes_used']}/{row['bytes_total']}{fetched}",
                            f"{row['ms']['total']:.0f}")
        console.print(summary)
        for row in rows:
            if "warning" in row:
                err_console.print(f"[bold yellow]warning:[/bold yellow] {row['file']}: {row['warning']}")
        ok = [r for r in rows if "error" not in r]
        if ok:
            console.print(f"median {statistics.median(r['ms']['total'] for r in ok):.0f} ms per item")
    if failures:
        raise typer.Exit(1)


@app.command()
def samples(out: Path = typer.Option(..., "--out", "-o", help="Folder to copy the photos into.")) -> None:
    """Copy the real photos that ship inside the scikit-image/scikit-learn wheels (with their licences)."""
    from edge_sdk.runtime.samples import copy_samples

    try:
        copied = copy_samples(out)
    except FileNotFoundError as exc:
        fail(str(exc))
    console.print(f"copied {len(copied)} photos to {out} (licences in {out / 'LICENSES.txt'})")
