"""Peak memory of `edge-sdk encode`, `run` and `decode` on large photos (issue 22).

Each command runs in its own process on a photo of 1, 3, 12 and 36 megapixels (scikit-image's
astronaut, Lanczos-resized to 4:3), at the photo's full resolution (``--short-side 0``; `run`
with ``--full-depth``), and its peak resident set is read from ``wait4``'s rusage. The anchor
is the photo itself: ``rss_per_rgb_byte`` divides each peak by the photo's RGB8 size, so the
ratio says what memory per pixel a command costs, independent of the machine.

Analysis and synthesis run in overlapping tiles (``runtime.tiling``), so their share stays
flat; what grows with the photo is the image arrays, the entropy coder's state (about 90 bytes
per latent element) and the classifier, which runs on the whole latent.

Beside each measured peak it prints the peak the bundle's memory model predicts before the
command allocates anything (``runtime.memory``: the manifest's measured line for the operation
plus the resident size of a process that has only loaded the CLI and the bundle, measured here
with ``edge-sdk inspect``), and whether the prediction covered the measurement.

Prints one JSON object: ``peak_rss_mb[command][mp]``, ``predicted_mb[command][mp]``,
``prediction_covers``, ``rss_per_rgb_byte``, ``seconds``, and ``run_decode_12mp_within_1_5_gb``
(the issue's target).
Run: ``python benchmarks/memory.py --bundle DIR [--sizes 1 3 12 36] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ("encode", "run", "decode")


def make_photo(megapixels: float, path: Path) -> tuple[int, int]:
    from PIL import Image
    from skimage import data

    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    Image.fromarray(data.astronaut()).resize((width, height), Image.LANCZOS).save(path)
    return width, height


def peak_of(argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        print(f"{' '.join(argv[1:3])}: exit {proc.returncode}: {err.strip()[-300:]}", file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 3, 12, 36])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "edge_sdk"]
    common = ["--bundle", args.bundle, "--threads", str(args.threads), "--device", "cpu"]
    peak: dict[str, dict[str, float]] = {c: {} for c in COMMANDS}
    seconds: dict[str, dict[str, float]] = {c: {} for c in COMMANDS}
    per_byte: dict[str, dict[str, float]] = {c: {} for c in COMMANDS}
    failed: list[str] = []
    from edge_sdk.runtime.bundle import read_manifest
    from edge_sdk.runtime.images import padded_size

    manifest = read_manifest(args.bundle)
    start_mb, _, _ = peak_of([*cli, "inspect", args.bundle, "--json"])
    predicted: dict[str, dict[str, float]] = {c: {} for c in COMMANDS}
    covers: dict[str, dict[str, bool]] = {c: {} for c in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.sizes:
            key = f"{mp:g}"
            photo, stream, decoded = Path(tmp, f"p{key}.png"), Path(tmp, f"p{key}.edgt"), Path(tmp, f"d{key}.png")
            width, height = make_photo(mp, photo)
            runs = {
                "encode": [*cli, "encode", str(photo), "-o", str(stream), "--short-side", "0", *common],
                "run": [*cli, "run", "--input", str(photo), "--short-side", "0", "--full-depth", "--json", *common],
                "decode": [*cli, "decode", str(stream), "-o", str(decoded), *common],
            }
            for command in COMMANDS:
                mb, secs, code = peak_of(runs[command])
                if code:
                    failed.append(f"{command} {key} MP")
                    continue
                peak[command][key] = round(mb, 1)
                seconds[command][key] = round(secs, 1)
                per_byte[command][key] = round(mb * 2**20 / (width * height * 3), 2)
                if manifest.memory is not None:
                    h, w = padded_size(height, width, manifest.image.padding_multiple, manifest.image.min_size)
                    guess = start_mb + manifest.memory.lines[command].at(h * w) / 2**20
                    predicted[command][key] = round(guess, 1)
                    covers[command][key] = guess >= mb
            for path in (photo, stream, decoded):
                path.unlink(missing_ok=True)
    within = all(peak[c].get("12", float("inf")) <= 1536 for c in ("run", "decode")) if 12 in args.sizes else None
    print(json.dumps({
        "benchmark": "memory", "bundle": args.bundle, "threads": args.threads, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "peak_rss_mb": peak, "predicted_mb": predicted, "prediction_covers": covers,
        "start_rss_mb": round(start_mb, 1), "rss_per_rgb_byte": per_byte, "seconds": seconds,
        "run_decode_12mp_within_1_5_gb": within, "failed": failed,
    }))


if __name__ == "__main__":
    main()
