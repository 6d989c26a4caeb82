"""Progressive fetch over HTTP: what stopping at the controller's τ saves on a slow link.

Every photo is resized to the classifier's short side (224 px by default), encoded with the
bundle, and served as a plain ``.edgt`` file by a real HTTP server on 127.0.0.1 (uvicorn +
Starlette ``StaticFiles``, a subprocess). For each link and each τ, ``Decoder.fetch`` fetches
each stream with the link's batching policy (``FetchPolicy`` with the link's RTT and
bandwidth: as many checkpoints per request as one bandwidth-delay product holds), and records
the bytes fetched, the round trips and the measured decode compute (hyperprior, entropy
decoding, classifier, controller). Time to answer is modelled on the link:

    time = RTT × round trips + bytes × 8 ÷ bandwidth + measured compute

(HTTP headers and TCP/TLS set-up are left out, for every method alike). The anchors are
fetching the whole stream in one request and decoding it to full depth, and fetching a JPEG or
a WebP file in one request, decoding it and running the bundle's pixel classifier, at the
lowest quality whose agreement (top-1 equal to the pixel classifier's on the original photo,
over all photos) is at least ours at that τ.

Prints one JSON object: ``bytes_fraction_at_tau`` (bytes the answer used, and fetched per
link, as a fraction of the stream, means over photos), ``requests_median`` (round trips per
photo, per link and τ), ``time_to_answer_ms`` (medians over photos: ours, full stream, jpeg,
webp; per link and τ; also the network and compute parts apart, and the wall time over
loopback), the agreements, ``never_erring_controller`` (the link cost of stopping at the first
checkpoint from which the top-1 stays the full depth's: what a better controller could reach
with this transport), and the issue's targets on the LoRa-like link at the controller's
τ. Ours runs the classifier at every checkpoint it visits (Algorithm 2), the full stream once.
Run: ``python benchmarks/streaming.py --bundle DIR [--photos DIR] [--tau 0.5 0.8 ...]``.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: name → (RTT in seconds, bandwidth in bits per second)
LINKS = {"4g": (0.050, 10e6), "lora": (0.500, 50e3)}
QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
#: the compute stages a fetch's prediction reports (Prediction.timings_ms)
DECODE_STAGES = ("hyperprior", "entropy_decode", "classifier", "controller")

_SERVER = """
import socket, sys, uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(128)
print(sock.getsockname()[1], flush=True)
app = Starlette(routes=[Mount("/", StaticFiles(directory=sys.argv[1]))])
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


def link_ms(rtt_s: float, bandwidth_bps: float, round_trips: int, nbytes: int, compute_ms: float) -> float:
    return (rtt_s * round_trips + nbytes * 8 / bandwidth_bps) * 1e3 + compute_ms


def compute_ms(timings: dict) -> float:
    return sum(timings.get(stage, 0.0) for stage in DECODE_STAGES)


def load_photos(args) -> list[tuple[str, np.ndarray]]:
    from edge_sdk.runtime.images import find_images, read_image, resize_short_side, to_uint8
    from edge_sdk.runtime.samples import sample_photos

    paths = [p for folder in args.photos for p in find_images(folder)] if args.photos else \
        [p.path for p in sample_photos()]
    paths = paths[: args.max_images or None]
    return [(p.stem, resize_short_side(to_uint8(read_image(p)), args.short_side)) for p in paths]


def pixel_points(evaluator, rgb: np.ndarray, fmt: str) -> list[dict]:
    """Bytes, top-1 and measured compute (decode + pixel classifier) of one photo at every quality."""
    from PIL import Image

    points = []
    for quality in QUALITIES:
        buf = io.BytesIO()
        if fmt == "jpeg":
            Image.fromarray(rgb).save(buf, "JPEG", quality=quality, optimize=True)
        else:
            Image.fromarray(rgb).save(buf, "WEBP", quality=quality, method=6)
        t = time.perf_counter()
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        top1 = evaluator._pixel_top1(decoded)
        points.append({"quality": quality, "bytes": buf.tell(), "top1": top1,
                       "compute_ms": (time.perf_counter() - t) * 1e3})
    return points


def equal_agreement(points_per_photo: list[list[dict]], references: list[int], target: float) -> dict:
    """The lowest quality whose agreement over the photos reaches ``target`` (else the highest)."""
    for index, quality in enumerate(QUALITIES):
        agree = float(np.mean([pts[index]["top1"] == ref for pts, ref in zip(points_per_photo, references)]))
        if agree >= target - 1e-9:
            return {"quality": quality, "index": index, "agreement": agree, "reached": True}
    last = len(QUALITIES) - 1
    agree = float(np.mean([pts[last]["top1"] == ref for pts, ref in zip(points_per_photo, references)]))
    return {"quality": QUALITIES[last], "index": last, "agreement": agree, "reached": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle directory with a controller (edge-sdk export)")
    parser.add_argument("--photos", action="append", default=[], help="folder of photos (repeatable; default: "
                        "the wheel photos of `edge-sdk samples`)")
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--tau", type=float, nargs="*", default=None,
                        help="thresholds (default: 0.3, 0.5, 0.7, the controller's own, 0.9)")
    parser.add_argument("--max-images", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    from edge_sdk.calibration.evaluation.evaluate import EvalSettings, Evaluator
    from edge_sdk.runtime import level_boundaries
    from edge_sdk.runtime.backends import open_backend
    from edge_sdk.runtime.controller import checkpoint_levels
    from edge_sdk.runtime.bundle import Bundle
    from edge_sdk.runtime.pipeline import DEEPEST, Decoder, Encoder
    from edge_sdk.runtime.remote import FetchPolicy, http_pool

    bundle = Bundle.load(args.bundle)
    if bundle.controller is None:
        sys.exit(f"{args.bundle} has no decoding controller: the benchmark measures where it stops")
    backend = open_backend("ort:cpu", threads=args.threads)
    encoder, decoder = Encoder(bundle, backend), Decoder(bundle, backend)
    evaluator = Evaluator(bundle, backend, EvalSettings(lpips=False))
    default_tau = bundle.controller.default_threshold
    taus = sorted(set(args.tau if args.tau else (0.3, 0.5, 0.7, default_tau, 0.9)))
    photos = load_photos(args)
    t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as root:
        streams, references, full, oracle_levels = {}, [], [], {}
        jpeg, webp = [], []
        for name, rgb in photos:
            data = encoder.encode(rgb)
            (Path(root) / f"{name}.edgt").write_bytes(data)
            streams[name] = data
            references.append(evaluator._reference(rgb)["reference"])
            deepest = decoder.classify(data, level=DEEPEST)
            # the stop of a controller that never errs: the first checkpoint from which the top-1 stays
            # the full depth's (an upper bound on what a better controller could save)
            ends = level_boundaries(data)
            marks = checkpoint_levels(ends, bundle.controller.checkpoints)
            tops = [decoder.classify(data, level=m).top_k[0].index for m in marks]
            stable = next(i for i in range(len(tops)) if all(t == tops[-1] for t in tops[i:]))
            oracle_levels[name] = marks[stable]
            full.append({"bytes": len(data), "compute_ms": compute_ms(deepest.timings_ms),
                         "top1": deepest.top_k[0].index})
            jpeg.append(pixel_points(evaluator, rgb, "jpeg"))
            webp.append(pixel_points(evaluator, rgb, "webp"))
        server = subprocess.Popen([sys.executable, "-c", _SERVER, root], stdout=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
            fetched = {}  # (link, tau) → one row per photo
            oracle = {}  # link → one row per photo, fetched to the never-erring controller's stop
            for link, (rtt, bandwidth) in LINKS.items():
                policy = FetchPolicy(link_rtt_s=rtt, link_bandwidth_bps=bandwidth)
                pool = http_pool(policy)
                try:
                    for tau in taus:
                        rows = []
                        for (name, _), ref in zip(photos, references):
                            result = decoder.fetch(f"{base}/{name}.edgt", threshold=tau, policy=policy, pool=pool)
                            pred, stats = result.prediction, result.stats
                            rows.append({"bytes_fetched": stats.bytes_fetched, "bytes_used": pred.bytes_used,
                                         "bytes_total": pred.bytes_total, "round_trips": stats.round_trips,
                                         "compute_ms": compute_ms(pred.timings_ms), "loopback_ms": stats.elapsed_ms,
                                         "level": pred.level, "levels": pred.levels,
                                         "agrees": pred.top_k[0].index == ref})
                        fetched[link, tau] = rows
                    oracle[link] = []
                    for name, _ in photos:
                        stats = decoder.fetch(f"{base}/{name}.edgt", level=oracle_levels[name], policy=policy,
                                              pool=pool).stats
                        oracle[link].append({"bytes_fetched": stats.bytes_fetched, "round_trips": stats.round_trips,
                                             "bytes_total": stats.stream_size})
                finally:
                    pool.clear()
        finally:
            server.terminate()
            server.wait(10)

    def median(values):
        return round(float(statistics.median(values)), 1)

    out = {"bundle": str(args.bundle), "model": bundle.model_name, "photos": len(photos),
           "short_side": args.short_side, "default_tau": default_tau, "taus": taus,
           "links": {k: {"rtt_ms": r * 1e3, "bandwidth_kbit_s": b / 1e3} for k, (r, b) in LINKS.items()},
           "stream_bytes_median": median(f["bytes"] for f in full),
           "agreement": {}, "bytes_fraction_at_tau": {}, "requests_median": {}, "time_to_answer_ms": {}}
    out["agreement"]["full_stream"] = float(np.mean([f["top1"] == r for f, r in zip(full, references)]))
    for tau in taus:
        key = f"{tau:g}"
        first = fetched[next(iter(LINKS)), tau]
        ours_agree = float(np.mean([r["agrees"] for r in first]))
        jq, wq = equal_agreement(jpeg, references, ours_agree), equal_agreement(webp, references, ours_agree)
        out["agreement"][key] = {"ours": ours_agree, "jpeg": {k: jq[k] for k in ("quality", "agreement", "reached")},
                                 "webp": {k: wq[k] for k in ("quality", "agreement", "reached")},
                                 "levels_fraction_mean": round(float(np.mean([r["level"] / r["levels"]
                                                                              for r in first])), 3)}
        out["bytes_fraction_at_tau"][key] = {
            "used": round(float(np.mean([r["bytes_used"] / r["bytes_total"] for r in first])), 3),
            **{f"fetched_{link}": round(float(np.mean([r["bytes_fetched"] / r["bytes_total"]
                                                      for r in fetched[link, tau]])), 3) for link in LINKS}}
        for link, (rtt, bandwidth) in LINKS.items():
            rows = fetched[link, tau]
            out["requests_median"].setdefault(link, {})[key] = statistics.median(r["round_trips"] for r in rows)
            out["time_to_answer_ms"].setdefault(link, {})[key] = {
                "ours": median(link_ms(rtt, bandwidth, r["round_trips"], r["bytes_fetched"], r["compute_ms"])
                               for r in rows),
                "full_stream": median(link_ms(rtt, bandwidth, 1, f["bytes"], f["compute_ms"]) for f in full),
                "jpeg": median(link_ms(rtt, bandwidth, 1, pts[jq["index"]]["bytes"], pts[jq["index"]]["compute_ms"])
                               for pts in jpeg),
                "webp": median(link_ms(rtt, bandwidth, 1, pts[wq["index"]]["bytes"], pts[wq["index"]]["compute_ms"])
                               for pts in webp),
                # the two parts of the model apart: the link alone, and the decode compute alone
                "ours_network_ms": median(link_ms(rtt, bandwidth, r["round_trips"], r["bytes_fetched"], 0.0)
                                          for r in rows),
                "full_stream_network_ms": median(link_ms(rtt, bandwidth, 1, f["bytes"], 0.0) for f in full),
                "ours_compute_ms": median(r["compute_ms"] for r in rows),
                "full_stream_compute_ms": median(f["compute_ms"] for f in full),
                "ours_loopback_wall_ms": median(r["loopback_ms"] for r in rows),
            }
    out["never_erring_controller"] = {
        "bytes_fraction_used": round(float(np.mean([level_boundaries(streams[n])[oracle_levels[n]]
                                                    / len(streams[n]) for n, _ in photos])), 3),
        **{link: {"bytes_fraction_fetched": round(float(np.mean([r["bytes_fetched"] / r["bytes_total"]
                                                                 for r in oracle[link]])), 3),
                  "round_trips_median": statistics.median(r["round_trips"] for r in oracle[link]),
                  "network_ms": median(link_ms(rtt, bw, r["round_trips"], r["bytes_fetched"], 0.0)
                                       for r in oracle[link])}
           for link, (rtt, bw) in LINKS.items()}}
    lora = out["time_to_answer_ms"]["lora"][f"{default_tau:g}"]
    out["targets_lora_at_default_tau"] = {
        "time_ratio_vs_full_stream": round(lora["ours"] / lora["full_stream"], 3),
        "time_ratio_target": 0.5,
        "round_trips_median": out["requests_median"]["lora"][f"{default_tau:g}"],
        "round_trips_target": 3,
    }
    out.update({"seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine(),
                "python": platform.python_version()})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
