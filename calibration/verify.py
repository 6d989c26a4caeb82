"""Does a backend compute what the bundle's FP32 graphs compute? (``edge-sdk verify``)

Every graph runs on both backends with the inputs it really sees (photos, their y and ẑ,
and ŷ at several decoded depths); the report gives the largest and mean absolute output
difference, top-1 agreement for the classifiers, and PSNR between the two syntheses.
Streams are crossed too: encoded on one backend, decoded on the other, in both directions,
and they must give the identical integer residual.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_sdk.runtime import BitstreamError, level_boundaries
from edge_sdk.runtime.backends import Backend, GraphSet
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.images import pad_image, psnr, read_image, to_uint8
from edge_sdk.runtime.pipeline import Decoder, Encoder

from .int8 import DEPTHS


def _feeds(bundle: Bundle, reference: GraphSet, photos: Sequence[np.ndarray]) -> dict[str, list[dict]]:
    encoder, decoder = Encoder(bundle, reference.backend), Decoder(bundle, reference.backend)
    feeds: dict[str, list[dict]] = {name: [] for name in bundle.graphs}
    for photo in photos:
        rgb = to_uint8(np.asarray(photo))
        x, _ = pad_image(read_image(rgb), bundle.padding_multiple, bundle.min_size)
        feeds["analysis"].append({"image": x})
        feeds["pixel_classifier"].append({"image": x})
        y = reference.run("analysis", image=x)["y"]
        feeds["hyper_analysis"].append({"y": y})
        z = np.round(reference.run("hyper_analysis", y=y)["z"])
        feeds["hyper_synthesis"].append({"z_hat": z})
        data = encoder.encode(rgb)
        ends = level_boundaries(data)
        session, fed = decoder.session(), 0
        for depth in DEPTHS:
            end = ends[round(depth * (len(ends) - 1))]
            session.feed(data[fed:end])
            fed = max(fed, end)
            y_hat = session.latent()[None]
            for name in ("classifier", "synthesis", "classifier_trunk"):
                if name in feeds:
                    feeds[name].append({"y_hat": y_hat})
            if "classifier_head" in feeds:
                trunk = reference.run("classifier_trunk", y_hat=y_hat)["features"]
                feeds["classifier_head"].append({"pooled": trunk.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)})
    return feeds


def verify_backends(bundle: Bundle, reference: Backend, candidate: Backend, photos: Sequence[np.ndarray]) -> dict:
    """Graph-by-graph and stream-level comparison of ``candidate`` against ``reference``."""
    ref, cand = GraphSet(bundle, reference), GraphSet(bundle, candidate)
    graphs = {}
    for name, feed_list in _feeds(bundle, ref, photos).items():
        worst, means, agree, psnrs = 0.0, [], [], []
        for feeds in feed_list:
            a, b = ref.run(name, **feeds), cand.run(name, **feeds)
            for key in a:
                diff = np.abs(a[key].astype(np.float64) - b[key].astype(np.float64))
                worst = max(worst, float(diff.max()))
                means.append(float(diff.mean()))
            if name in ("classifier", "pixel_classifier", "classifier_head"):
                agree.append(int(np.argmax(a["logits"])) == int(np.argmax(b["logits"])))
            if name == "synthesis":
                # the synthesis outputs [0, 1] floats: PSNR of the clipped images at peak 1
                psnrs.append(psnr(np.clip(a["image"], 0, 1), np.clip(b["image"], 0, 1), peak=1.0))
        entry = {"inputs": len(feed_list), "max_abs_diff": worst, "mean_abs_diff": float(np.mean(means))}
        if agree:
            entry["top1_agreement"] = float(np.mean(agree))
        if psnrs:
            entry["min_psnr_db"] = float(min(psnrs))
        graphs[name] = entry
    streams = {"pairs": 0, "failed_decodes": 0, "different_residuals": 0}

    def decode(decoder, data):
        session = decoder.session()
        session.feed(data)
        return session.residual()

    decoders = {"reference": Decoder(bundle, reference), "candidate": Decoder(bundle, candidate)}
    for source in (reference, candidate):
        encoder = Encoder(bundle, source)
        for photo in photos:
            data = encoder.encode(photo)
            results = {}
            for side, decoder in decoders.items():
                streams["pairs"] += 1
                try:
                    results[side] = decode(decoder, data)
                except (BitstreamError, RuntimeError):
                    streams["failed_decodes"] += 1
            if len(results) == 2 and not np.array_equal(results["reference"], results["candidate"]):
                streams["different_residuals"] += 1
    return {"graphs": graphs, "streams": streams}
