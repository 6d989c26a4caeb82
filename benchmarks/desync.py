"""Cross-configuration desync of the prior: how often does a decoder's scale index differ from
the encoder's, and how often does that break the decode? (issue 9)

The encoder side runs analysis and hyper_analysis in one configuration; every decoder
configuration recomputes means and scale indices from the same integer ẑ its own way. A
pair is (image, encoder configuration, decoder configuration), ordered, encoder ≠ decoder.

- prior mode ``float``: each configuration runs its own float ``hyper_synthesis`` and maps
  the scales to indices (``scale_to_index``);
- prior mode ``integer``: each configuration runs the bundle's integer prior in its own
  arithmetic (``INTEGER_VARIANTS``: float32, float64 or int64 GEMMs, 1 or 2 BLAS threads,
  hidden channels reordered so every GEMM sums in another order).

- ``mismatched_indices``: y elements whose index differs, summed over pairs;
  ``mismatched_means``: the same for the means (bit for bit).
- ``failed_decodes``: pairs whose stream does not decode with the decoder's indices (a
  ``BitstreamError``) or decodes to a different ŷ residual. The trit coder reads only the
  indices and the tables (the means only shift ŷ afterwards), so a pair with identical
  indices decodes identically by construction; those are counted as decoded without running
  the decoder, and ``--verify-every`` K decodes every K-th of them anyway as a check.

Configurations (anchor first): ONNX Runtime CPU with 1 thread and every optimisation level,
2 threads, torch eager (when torch and the bundle's weights are available), and the
hyper-synthesis converted to FP16 (when onnxconverter-common is installed). There is no GPU
configuration unless ONNX Runtime's CUDA provider is present.

Prints one JSON line per prior mode with ``pairs``, ``mismatched_indices`` and
``failed_decodes``, plus the same per (encoder, decoder) pair and the worst |Δ log σ| seen.
Run: ``python benchmarks/desync.py --bundle DIR --images DIR [--views 4] [--short-side 224]
[--prior float|integer|both]``.
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

        from edge_sdk.export.models.registry import create_model
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


#: how each configuration runs the integer prior (prior mode INTEGER): GEMM dtype, BLAS threads,
#: and a seed for reordering the hidden channels (another summation order), None = as stored.
INTEGER_VARIANTS = (
    ("float32", 1, None), ("int64", 1, None), ("float32", 1, 1), ("float32", 2, 2),
    ("float32", 2, None), ("float64", 2, None), ("float64", 1, 3), ("float32", 2, 4),
)


def integer_runner(prior, variant):
    import threadpoolctl

    dtype, threads, seed = variant
    net = prior if seed is None else prior.with_hidden_channels_permuted(seed)

    def run(z):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            return net.parameters(z, np.dtype(dtype))
    return run


def measure(mode, bundle, configs, photos, args) -> dict:
    """Every ordered (encoder config, decoder config) pair on every photo, in one prior mode."""
    from edge_sdk.runtime.images import pad_image, read_image
    from edge_sdk.runtime import BitstreamError, LatentDecoder, PriorMode, StreamInfo, encode_latent, scale_to_index

    tables = bundle.tables
    names = list(configs)
    integer = {}
    if mode == "integer":
        integer = {n: integer_runner(bundle.integer_prior, INTEGER_VARIANTS[i % len(INTEGER_VARIANTS)])
                   for i, n in enumerate(names)}
    per_pair = {(e, d): {"pairs": 0, "mismatched_indices": 0, "failed_decodes": 0, "elements": 0,
                         "images_with_mismatch": 0, "worst_abs_dlog_scale": 0.0, "mismatched_means": 0}
                for e in names for d in names if e != d}
    verified = 0
    t0 = time.perf_counter()
    for i, (label, image) in enumerate(photos):
        rgb = read_image(image)
        x, padding = pad_image(rgb, bundle.padding_multiple, bundle.min_size)
        encoded = {}
        for n, run in configs.items():
            y = run("analysis", x)[0]
            encoded[n] = (y, np.round(run("hyper_analysis", y)[0])[0].astype(np.int64))
        cache = {}

        def prior(config, z):
            """(means, indices, scales or None) the configuration derives from ẑ."""
            key = (config, z.tobytes())
            if key not in cache:
                if mode == "integer":
                    means, kidx = integer[config](z)
                    cache[key] = (means, kidx, None)
                else:
                    means, scales = configs[config]("hyper_synthesis", z[None].astype(np.float32))
                    cache[key] = (means[0], scale_to_index(scales[0], tables.trit.scales), scales[0])
            return cache[key]

        for enc in names:
            y, z = encoded[enc]
            means_e, kidx_e, scales_e = prior(enc, z)
            stream = None
            for dec in names:
                if dec == enc:
                    continue
                means_d, kidx_d, scales_d = prior(dec, z)
                bad = int((kidx_d != kidx_e).sum())
                row = per_pair[(enc, dec)]
                if scales_e is not None:
                    row["worst_abs_dlog_scale"] = max(row["worst_abs_dlog_scale"],
                                                      float(np.abs(np.log(scales_d) - np.log(scales_e)).max()))
                row["mismatched_means"] += int((means_d != means_e).sum())
                row["images_with_mismatch"] += int(bad > 0)
                row["pairs"] += 1
                row["elements"] += int(kidx_e.size)
                row["mismatched_indices"] += bad
                if bad or (args.verify_every and row["pairs"] % args.verify_every == 0):
                    if stream is None:
                        info = StreamInfo(codec_id=bundle.stream_codec_id,
                                          image_size=rgb.shape[:2], padding=padding, quality=int(round(bundle.quality)),
                                          prior_mode=PriorMode[mode.upper()])
                        stream = encode_latent(y[0], means_e, kidx_e, z, tables, info=info)
                        want = np.round(y[0] - means_e)
                    try:
                        decoder = LatentDecoder(tables, prior=lambda _z, _h, m=means_d, k=kidx_d: (m, k))
                        decoder.feed(stream)
                        ok = np.array_equal(np.round(decoder.y_hat() - means_d), want)
                    except BitstreamError:
                        ok = False
                    row["failed_decodes"] += int(not ok)
                    verified += int(not bad)
        print(f"\r{mode}: {i + 1}/{len(photos)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    total = {k: sum(r[k] for r in per_pair.values())
             for k in ("pairs", "mismatched_indices", "failed_decodes", "elements", "mismatched_means")}
    out = {"prior_mode": mode, "pairs": total["pairs"], "mismatched_indices": total["mismatched_indices"],
           "failed_decodes": total["failed_decodes"], "mismatched_means": total["mismatched_means"],
           "y_elements_compared": total["elements"], "matching_pairs_decoded_as_a_check": verified}
    if mode == "integer":
        out["integer_variants"] = {n: dict(zip(("gemm_dtype", "blas_threads", "permutation_seed"),
                                               INTEGER_VARIANTS[i % len(INTEGER_VARIANTS)]))
                                   for i, n in enumerate(names)}
    out["per_pair"] = {f"{e} -> {d}": r for (e, d), r in per_pair.items()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--short-side", type=int, default=224)
    ap.add_argument("--verify-every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", choices=("float", "integer", "both"), default="both")
    args = ap.parse_args()

    from edge_sdk.calibration.photos import find_photos, load_image_set
    from edge_sdk.runtime.bundle import Bundle

    bundle = Bundle.load(args.bundle)
    configs = ort_configs(bundle)
    notes = {}
    for name, make in (("torch-eager", torch_config), ("ort-cpu-fp16-hyper-synthesis", fp16_config)):
        runner, why = make(bundle)
        if runner is None:
            notes[name] = why
        else:
            configs[name] = runner
    photos = load_image_set(find_photos(args.images), short_side=args.short_side, views=args.views, seed=args.seed)
    modes = ["float", "integer"] if args.prior == "both" else [args.prior]
    if "integer" in modes and bundle.integer_prior is None:
        sys.exit(f"{args.bundle} has no integer prior; re-export it or pass --prior float")
    for mode in modes:
        result = measure(mode, bundle, configs, photos, args)
        print(json.dumps({"bundle": str(args.bundle), "images": len(photos), "configs": list(configs),
                          "skipped_configs": notes, **result}), flush=True)


if __name__ == "__main__":
    main()
