"""What calling through the C ABI (libedgesdk) adds to decode-and-classify, against the Python API.

Anchor: the Python API in the same process layout a Python app would have: ``Decoder.session()``,
``feed(stream)``, ``classify(k=5)``. Ours: the same three steps from C
(``edgesdk_session_create`` / ``_feed`` / ``_classify`` / ``_free``, benchmarks/c_api_bench.c),
through the library ``edge-sdk c-lib`` builds, in its own process. Same bundle, same stream (a
photo encoded at ``--short-side`` pixels, 224 by default: EfficientNet-Lite0's scale), same
backend (ONNX Runtime on the CPU, ``--threads``), full depth, no controller stop, so both do
the same work. Rounds alternate C and Python so that load from other processes on the machine
falls on both; latency is p50 / p90 over every timed repeat after ``--warmup`` untimed ones.
``c_call_us`` is the cost of one cheap C call (``edgesdk_session_level``): the boundary itself.

Prints one JSON object with ``c_ms_p50``, ``python_ms_p50`` and ``overhead_pct``
(100 * (c - python) / python).
Run: ``python benchmarks/c_api.py --bundle DIR [--rounds 4] [--repeats 15] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def photo() -> np.ndarray:
    from skimage import data

    return data.coffee()  # 400 x 600; the Encoder resizes it to --short-side


def build_bench(work: Path) -> Path:
    from edge_sdk.capi import build_library

    sdk = build_library(work / "sdk")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "edgesdk"], check=True, capture_output=True,
                           text=True, env={**os.environ, "PKG_CONFIG_PATH": str(sdk)}).stdout
    exe = work / "c_api_bench"
    subprocess.run(["cc", "-O2", str(HERE / "c_api_bench.c"), *shlex.split(flags), "-o", str(exe)], check=True)
    return exe


def run_c(exe: Path, bundle: str, stream: Path, repeats: int, warmup: int, threads: int) -> tuple[list[float], float]:
    out = subprocess.run([str(exe), bundle, str(stream), str(repeats), str(warmup), str(threads)], check=True,
                         capture_output=True, text=True).stdout.split("\n")
    rounds = [float(line.split()[1]) for line in out if line.startswith("round_ms")]
    call_us = next(float(line.split()[1]) for line in out if line.startswith("call_us"))
    return rounds, call_us


def run_python(decoder, data: bytes, repeats: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        session = decoder.session()
        session.feed(data)
        session.classify(k=5)
        t1 = time.perf_counter()
        if i >= warmup:
            times.append((t1 - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from edge_sdk import Decoder, Encoder, open_backend

    backend = open_backend("ort:cpu", threads=args.threads)
    data = Encoder(args.bundle, backend, short_side=args.short_side).encode(photo())
    decoder = Decoder(args.bundle, backend)
    with tempfile.TemporaryDirectory(prefix="edgesdk-bench-") as tmp:
        work = Path(tmp)
        stream = work / "photo.eds"
        stream.write_bytes(data)
        exe = build_bench(work)
        c_ms, py_ms, call_us = [], [], []
        for _ in range(args.rounds):
            rounds, us = run_c(exe, args.bundle, stream, args.repeats, args.warmup, args.threads)
            c_ms += rounds
            call_us.append(us)
            py_ms += run_python(decoder, data, args.repeats, args.warmup)
    c50, p50 = float(np.percentile(c_ms, 50)), float(np.percentile(py_ms, 50))
    print(json.dumps({
        "c_ms_p50": round(c50, 3),
        "python_ms_p50": round(p50, 3),
        "overhead_pct": round(100 * (c50 - p50) / p50, 2),
        "c_ms_p90": round(float(np.percentile(c_ms, 90)), 3),
        "python_ms_p90": round(float(np.percentile(py_ms, 90)), 3),
        "c_call_us_p50": round(float(np.median(call_us)), 3),
        "samples_each": len(c_ms),
        "bundle": Path(args.bundle).name,
        "model": decoder.bundle.model_name,
        "image_size": Decoder.describe(data)["image_size"],
        "stream_bytes": len(data),
        "levels": Decoder.describe(data)["levels"],
        "threads": args.threads,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
