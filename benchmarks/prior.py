"""What the bit-exact integer prior costs against the float prior (the anchor), same bundle.

Time: the prior step both sides run once per stream — ẑ → (means, scale indices) — on a
512×768 image (ẑ of 8×12), p50 and p90 over ``--repeats`` runs after warm-up, in one process:
the float prior is the bundle's ``hyper_synthesis`` graph on ONNX Runtime plus
``scale_to_index``; the integer prior is the bundle's integer network in NumPy. Whole-stream
encode and decode times are reported too, as context.

Rate: every photo under ``--images`` is resized and centre-cropped to 512×768 and encoded in
both modes; the ratio of total stream bytes (every byte of every file) is the rate cost.

Prints one JSON object with ``prior_ms_p50`` per mode, ``extra_ms_p50`` (integer − float),
``time_ratio`` (integer / float) and ``rate_ratio`` (integer bytes / float bytes).
Run: ``python benchmarks/prior.py --bundle DIR --images DIR [--repeats 30] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

HEIGHT, WIDTH = 512, 768


def crop_512x768(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = max(HEIGHT / h, WIDTH / w)
    img = Image.fromarray(rgb).resize((max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale))), Image.LANCZOS)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - HEIGHT) // 2, (arr.shape[1] - WIDTH) // 2
    return np.ascontiguousarray(arr[top: top + HEIGHT, left: left + WIDTH])


def percentiles(samples: list[float]) -> dict:
    return {"p50": round(float(np.percentile(samples, 50)), 3), "p90": round(float(np.percentile(samples, 90)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    from edge_sdk.calibration.photos import find_photos
    from edge_sdk.runtime.images import pad_image, read_image, to_uint8
    from edge_sdk.runtime.pipeline import Decoder, Encoder, prior_parameters
    from edge_sdk.runtime import PriorMode
    from edge_sdk.runtime.backends import GraphSet, open_backend
    from edge_sdk.runtime.bundle import Bundle

    bundle = Bundle.load(args.bundle)
    if bundle.integer_prior is None:
        raise SystemExit(f"{args.bundle} has no integer prior")
    backend = open_backend("ort:cpu", threads=args.threads)
    graphs = GraphSet(bundle, backend)
    photos = [crop_512x768(to_uint8(read_image(p))) for p in find_photos(args.images)]
    if not photos:
        raise SystemExit("no images found")
    modes = {"float": PriorMode.FLOAT, "integer": PriorMode.INTEGER}

    encoders = {name: Encoder(bundle, backend, prior=mode) for name, mode in modes.items()}
    decoder = Decoder(bundle, backend)
    sizes = {name: 0 for name in modes}
    encode_ms = {name: [] for name in modes}
    decode_ms = {name: [] for name in modes}
    z_first = None
    for rgb in photos:
        for name, enc in encoders.items():
            t = time.perf_counter()
            data = enc.encode(rgb)
            encode_ms[name].append((time.perf_counter() - t) * 1e3)
            sizes[name] += len(data)
            session = decoder.session()
            t = time.perf_counter()
            session.feed(data)
            decode_ms[name].append((time.perf_counter() - t) * 1e3)
        if z_first is None:
            x, _ = pad_image(read_image(rgb), bundle.padding_multiple, bundle.min_size)
            y = graphs.run("analysis", image=x)["y"]
            z_first = np.round(graphs.run("hyper_analysis", y=y)["z"])[0].astype(np.int64)

    prior_ms = {name: [] for name in modes}
    for _ in range(3):  # warm-up
        for mode in modes.values():
            prior_parameters(bundle, graphs, z_first, mode)
    for _ in range(args.repeats):
        for name, mode in modes.items():  # interleaved, so drifts in machine load hit both alike
            t = time.perf_counter()
            prior_parameters(bundle, graphs, z_first, mode)
            prior_ms[name].append((time.perf_counter() - t) * 1e3)

    p50 = {name: float(np.percentile(v, 50)) for name, v in prior_ms.items()}
    print(json.dumps({
        "bundle": str(args.bundle), "images": len(photos), "image_size": [HEIGHT, WIDTH],
        "z_shape": list(z_first.shape), "anchor": "float",
        "prior_ms": {name: percentiles(v) for name, v in prior_ms.items()},
        "prior_ms_p50": {name: round(v, 3) for name, v in p50.items()},
        "extra_ms_p50": round(p50["integer"] - p50["float"], 3),
        "time_ratio": round(p50["integer"] / p50["float"], 3),
        "stream_bytes": sizes,
        "rate_ratio": round(sizes["integer"] / sizes["float"], 5),
        "encode_ms": {name: percentiles(v) for name, v in encode_ms.items()},
        "decode_full_depth_ms": {name: percentiles(v) for name, v in decode_ms.items()},
        "backend": backend.describe(), "machine": platform.machine(), "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
