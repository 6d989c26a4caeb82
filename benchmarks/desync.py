"""Cross-configuration desync of the float prior: how often does a decoder's scale index differ
from the encoder's, and how often does that break the decode? (issue 9, the measurement)

The encoder side runs analysis, hyper_analysis and hyper_synthesis in one configuration; every
decoder configuration recomputes means and scales from the same integer ẑ with its own
``hyper_synthesis`` and maps the scales to trit-table indices (``scale_to_index``). A pair is
(image, encoder configuration, decoder configuration), ordered, encoder ≠ decoder.

- ``mismatched_indices``: y elements whose index differs, summed over pairs.
- ``failed_decodes``: pairs whose stream does not decode with the decoder's indices (a
  ``BitstreamError``) or decodes to a different ŷ residual. The trit coder reads only the
  indices and the tables (the means only shift ŷ afterwards), so a pair with identical
  indices decodes identically by construction; those are counted as decoded without running
  the decoder, and ``--verify-every`` K decodes every K-th of them anyway as a check.

Configurations (anchor first): ONNX Runtime CPU with 1 thread and every optimisation level,
2 threads, torch eager (when torch and the bundle's weights are available), and the
hyper-synthesis converted to FP16 (when onnxconverter-common is installed). There is no GPU
configuration unless ONNX Runtime's CUDA provider is present.

Prints one JSON object with ``pairs``, ``mismatched_indices`` and ``failed_decodes``, plus the
same per (encoder, decoder) pair and the worst |Δ log σ| seen.
Run: ``python benchmarks/desync.py --bundle DIR --images DIR [--views 4] [--short-side 224]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def ort_configs(bundle) -> dict:
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    configs = {}
    for threads, level in [(1, "all"), (1, "disable"), (1, "basic"), (1, "extended"), (2, "all")]:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = levels[level]
        sessions = {n: ort.InferenceSession(str(bundle.graph_path(n)), opts, providers=["CPUExecutionProvider"])
                    for n in ("analysis", "hyper_analysis", "hyper_synthesis")}
        configs[f"ort-cpu-t{threads}-{level}"] = _ort_runner(sessions)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        sessions = {n: ort.InferenceSession(str(bundle.graph_path(n)), providers=["CUDAExecutionProvider"])
                    for n in ("analysis", "hyper_analysis", "hyper_synthesis")}
        configs["ort-cuda"] = _ort_runner(sessions)
    return configs


def _ort_runner(sessions):
    def run(name, x):
        s = sessions[name]
        return s.run(None, {s.get_inputs()[0].name: x})
    return run


def fp16_config(bundle):
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError:
        return None, "onnxconverter-common not installed"
    import onnxruntime as ort

    model = float16.convert_float_to_float16(onnx.load(str(bundle.graph_path("hyper_synthesis"))), keep_io_types=True)
    half = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    full = {n: ort.InferenceSession(str(bundle.graph_path(n)), providers=["CPUExecutionProvider"])
            for n in ("analysis", "hyper_analysis")}
    full["hyper_synthesis"] = half
    return _ort_runner(full), None


def torch_config(bundle):
    try:
        import torch

        from edge_sdk.export.registry import create_model
    except ImportError:
        return None, "torch not installed"
    model = create_model(bundle.model_name)
    model.load_default_weights(["codec", "adapter", "backbone"])
    model.eval()
    q = bundle.quality

    def run(name, x):
        with torch.no_grad():
            out = getattr(model, name)(torch.from_numpy(x), q)
        return [o.numpy() for o in out] if isinstance(out, tuple) else [out.numpy()]
    return run, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--short-side", type=int, default=224)
    ap.add_argument("--verify-every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from edge_sdk.calibration.collect import find_images, load_image_set
    from edge_sdk.images import pad_image, read_image
    from edge_sdk.runtime import BitstreamError, LatentDecoder, StreamInfo, encode_latent, scale_to_index
    from edge_sdk.runtime.bundle import Bundle

    bundle = Bundle.load(args.bundle)
    tables = bundle.tables
    configs = ort_configs(bundle)
    notes = {}
    for name, make in (("torch-eager", torch_config), ("ort-cpu-fp16-hyper-synthesis", fp16_config)):
        runner, why = make(bundle)
        if runner is None:
            notes[name] = why
        else:
            configs[name] = runner
    photos = load_image_set(find_images(args.images), short_side=args.short_side, views=args.views, seed=args.seed)
    names = list(configs)
    per_pair = {(e, d): {"pairs": 0, "mismatched_indices": 0, "failed_decodes": 0, "elements": 0,
                         "images_with_mismatch": 0, "worst_abs_dlog_scale": 0.0}
                for e in names for d in names if e != d}
    verified = 0
    t0 = time.perf_counter()
    for i, (label, image) in enumerate(photos):
        rgb = read_image(image)
        x, padding = pad_image(rgb, bundle.padding_multiple, bundle.min_size)
        prior = {}
        for n, run in configs.items():
            y = run("analysis", x)[0]
            z = np.round(run("hyper_analysis", y)[0])
            prior[n] = (y, z)
        # the decoder side sees the encoder's ẑ; recompute the prior per decoder config
        for enc in names:
            y, z = prior[enc]
            means_e, scales_e = configs[enc]("hyper_synthesis", z.astype(np.float32))
            kidx_e = scale_to_index(scales_e[0], tables.trit.scales)
            stream = None
            for dec in names:
                if dec == enc:
                    continue
                means_d, scales_d = configs[dec]("hyper_synthesis", z.astype(np.float32))
                kidx_d = scale_to_index(scales_d[0], tables.trit.scales)
                bad = int((kidx_d != kidx_e).sum())
                row = per_pair[(enc, dec)]
                row["worst_abs_dlog_scale"] = max(row["worst_abs_dlog_scale"],
                                                  float(np.abs(np.log(scales_d) - np.log(scales_e)).max()))
                row["images_with_mismatch"] += int(bad > 0)
                row["pairs"] += 1
                row["elements"] += int(kidx_e.size)
                row["mismatched_indices"] += bad
                if bad or (args.verify_every and row["pairs"] % args.verify_every == 0):
                    if stream is None:
                        info = StreamInfo(model_name=bundle.model_name, bundle_hash=bundle.codec_id,
                                          image_size=rgb.shape[:2], padding=padding, quality=int(round(bundle.quality)))
                        stream = encode_latent(y[0], means_e[0], kidx_e, z[0].astype(np.int64), tables, info=info)
                        want = np.round(y[0] - means_e[0])
                    try:
                        decoder = LatentDecoder(tables, prior=lambda _z, _h: (means_d[0], kidx_d))
                        decoder.feed(stream)
                        ok = np.array_equal(np.round(decoder.y_hat() - means_d[0]), want)
                    except BitstreamError:
                        ok = False
                    row["failed_decodes"] += int(not ok)
                    verified += int(not bad)
        print(f"\r{i + 1}/{len(photos)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    total = {k: sum(r[k] for r in per_pair.values()) for k in ("pairs", "mismatched_indices", "failed_decodes", "elements")}
    print(json.dumps({
        "bundle": str(args.bundle), "images": len(photos), "configs": names, "skipped_configs": notes,
        "pairs": total["pairs"], "mismatched_indices": total["mismatched_indices"],
        "failed_decodes": total["failed_decodes"], "y_elements_compared": total["elements"],
        "matching_pairs_decoded_as_a_check": verified,
        "per_pair": {f"{e} -> {d}": r for (e, d), r in per_pair.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }))


if __name__ == "__main__":
    main()
