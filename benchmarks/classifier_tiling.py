"""What classifying a large photo in trunk tiles costs in logits and time (issue 22).

For each photo (full resolution, no downscaling) the stream's fully decoded latent is
classified twice per margin: by the whole ``classifier`` graph (the anchor) and by
``classifier_trunk`` on overlapping tiles pooled into ``classifier_head`` (``GraphSet.logits``'s
large-photo path, here with the margin overridden). It reports the largest logit difference,
whether top-1 agrees, and the tiled time as a ratio of the whole graph's, per margin.

Prints one JSON object: ``photos[name][margin] = {max_abs_logit_diff, top1_agrees, time_ratio}``
and, per margin, the worst difference and the top-1 agreement over all photos.
Run: ``python benchmarks/classifier_tiling.py --bundle DIR PHOTO... [--margins 8 16 24]
[--tile-pixels N] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from edge_sdk.runtime.backends import GraphSet, open_backend
    from edge_sdk.runtime.bundle import Bundle
    from edge_sdk.runtime.pipeline import Decoder, Encoder
    from edge_sdk.runtime.tiling import DEFAULT_CLASSIFIER_TILE_PIXELS, pooled_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--margins", type=int, nargs="+", default=[8, 16, 24])
    ap.add_argument("--tile-pixels", type=int, default=DEFAULT_CLASSIFIER_TILE_PIXELS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bundle = Bundle.load(args.bundle)
    tiling = bundle.manifest.classifier_tiling
    if tiling is None:
        raise SystemExit(f"{args.bundle} has no classifier trunk and head (its model does not tile the classifier)")
    backend = open_backend("ort:cpu", threads=args.threads)
    graphs = GraphSet(bundle, backend)
    encoder, decoder = Encoder(bundle, backend, max_memory=None), Decoder(bundle, backend, max_memory=None)
    photos: dict[str, dict] = {}
    for path in args.photos:
        session = decoder.session()
        session.feed(encoder.encode(path))
        y_hat = session.latent()[None].astype(np.float32)
        t = time.perf_counter()
        whole = graphs.run("classifier", y_hat=y_hat)["logits"][0]
        whole_s = time.perf_counter() - t
        row = {"latent": list(y_hat.shape[2:])}
        for margin in args.margins:
            t = time.perf_counter()
            pooled = pooled_features(lambda tile: graphs.run("classifier_trunk", y_hat=tile)["features"], y_hat,
                                     scale_num=tiling.scale_num, scale_den=tiling.scale_den, margin=margin,
                                     tile_pixels=args.tile_pixels)
            tiled = graphs.run("classifier_head", pooled=pooled)["logits"][0]
            row[str(margin)] = {"max_abs_logit_diff": round(float(np.abs(tiled - whole).max()), 5),
                                "top1_agrees": bool(np.argmax(tiled) == np.argmax(whole)),
                                "time_ratio": round((time.perf_counter() - t) / whole_s, 2)}
        photos[Path(path).name] = row
    summary = {str(m): {"worst_logit_diff": max(r[str(m)]["max_abs_logit_diff"] for r in photos.values()),
                        "top1_agreement": float(np.mean([r[str(m)]["top1_agrees"] for r in photos.values()])),
                        "mean_time_ratio": round(float(np.mean([r[str(m)]["time_ratio"] for r in photos.values()])), 2)}
               for m in args.margins}
    print(json.dumps({"benchmark": "classifier_tiling", "bundle": args.bundle, "bundle_margin": tiling.margin,
                      "tile_pixels": args.tile_pixels, "threads": args.threads, "photos": photos,
                      "by_margin": summary}))


if __name__ == "__main__":
    main()
