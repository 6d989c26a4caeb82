"""Compressed-domain classification against decode-then-classify, same bundle, same backend.

Anchor: the pixel path a user would otherwise run — entropy-decode ŷ, synthesise the
image, classify the pixels with the same backbone (``pixel_classifier``). Ours: the
latent path — entropy-decode ŷ, classify it through the adapter (``classifier``). Both
include the hyperprior and entropy decoding of the same stream at full depth, so the
ratio is what skipping pixel reconstruction buys end to end.

Each path runs in its own process (so peak RSS is the path's own), on a 512×768 photo
(scikit-image's astronaut and coffee, resized) encoded once up front. Latency per stage
is reported as p50 and p90 over ``--repeats`` runs after warm-up.

Prints one JSON object with ``latent_ms_p50``, ``pixel_ms_p50`` and ``ratio``
(latent / pixel), per-stage percentiles and peak RSS.
Run: ``python benchmarks/pipeline.py --bundle DIR [--repeats 20] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HEIGHT, WIDTH = 512, 768


def photo() -> np.ndarray:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.coffee()).resize((WIDTH, HEIGHT), Image.LANCZOS)
    return np.asarray(img)


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def run_path(bundle_dir: str, path: str, repeats: int, threads: int) -> dict:
    from edge_sdk.runtime.pipeline import Decoder, Encoder
    from edge_sdk.runtime.backends import open_backend

    backend = open_backend("ort:cpu", threads=threads)
    data = Encoder(bundle_dir, backend).encode(photo())
    decoder = Decoder(bundle_dir, backend)
    stages: dict[str, list[float]] = {}
    totals = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        session = decoder.session()
        session.feed(data)
        if path == "latent":
            timings = session.classify().timings_ms
        else:
            image = session.reconstruct()
            t = time.perf_counter()
            x = image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
            decoder.graphs.run("pixel_classifier", image=x)
            timings = {**session.timings_ms, "pixel_classifier": (time.perf_counter() - t) * 1e3}
        total = (time.perf_counter() - t0) * 1e3
        if i >= 2:  # warm-up: session creation, numba and ORT first-run costs
            totals.append(total)
            for k, v in timings.items():
                stages.setdefault(k, []).append(v)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "ms_p50": percentile(totals, 50),
        "ms_p90": percentile(totals, 90),
        "stages_ms": {k: {"p50": percentile(v, 50), "p90": percentile(v, 90)} for k, v in stages.items()},
        "peak_rss_mb": round(peak_mb, 1),
        "stream_bytes": len(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--path", choices=("latent", "pixel"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        print(json.dumps(run_path(args.bundle, args.path, args.repeats, args.threads)))
        return
    results = {}
    for path in ("latent", "pixel"):
        out = subprocess.run([sys.executable, __file__, "--bundle", args.bundle, "--repeats", str(args.repeats),
                              "--threads", str(args.threads), "--path", path], capture_output=True, text=True, check=True)
        results[path] = json.loads(out.stdout.strip().splitlines()[-1])
    from edge_sdk.runtime.bundle import Bundle

    bundle = Bundle.load(args.bundle)
    print(json.dumps({
        "benchmark": "pipeline",
        "image": f"{HEIGHT}x{WIDTH}",
        "bundle": bundle.model_name,
        "quality": bundle.quality,
        "random_weights": bundle.random_parts,
        "repeats": args.repeats,
        "latent_ms_p50": results["latent"]["ms_p50"],
        "latent_ms_p90": results["latent"]["ms_p90"],
        "pixel_ms_p50": results["pixel"]["ms_p50"],
        "pixel_ms_p90": results["pixel"]["ms_p90"],
        "ratio": results["latent"]["ms_p50"] / results["pixel"]["ms_p50"],
        "latent": results["latent"],
        "pixel": results["pixel"],
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }))


if __name__ == "__main__":
    main()
