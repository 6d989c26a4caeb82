"""Training throughput of a registered model's codec stage on this machine, per configuration.

Quality per CPU-hour starts with how many pixels a second an optimiser step gets through.
This times the real codec-stage step (``compute_losses`` + backward + Adam + the quantiles'
auxiliary step) for the choices that change speed: crop side, batch, channels-last memory
order, ``torch.compile`` and thread count. The anchor is the configuration lite0 was first
trained with (crop 128, batch 8, contiguous NCHW, eager, all threads); every row reports its
ratio to the anchor measured in the same run.

    python benchmarks/train_speed.py [--model lite0] [--seconds 40] [--only crop128-b8,crop256-b2]

Prints one JSON object: {"anchor": name, "rows": [{name, steps_per_s, mpx_per_s, ratio_mpx}...]}.
What it cannot say: how fast each configuration *learns* per step (that needs the Kodak
curve of `edge-sdk train codec --eval-dir`, docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from edge_sdk.export.models.registry import create_model
from edge_sdk.export.training.train import TrainConfig, compute_losses, rate_lambdas, trainable_parameters

CONFIGS = {
    # name: (crop, batch, channels_last, compile, threads)
    "crop128-b8": (128, 8, False, False, 0),
    "crop128-b8-channels-last": (128, 8, True, False, 0),
    "crop128-b8-1-thread": (128, 8, False, False, 1),
    "crop128-b16": (128, 16, False, False, 0),
    "crop192-b4": (192, 4, False, False, 0),
    "crop256-b2": (256, 2, False, False, 0),
    "crop256-b8": (256, 8, False, False, 0),
    "crop128-b8-compile": (128, 8, False, True, 0),
}
ANCHOR = "crop128-b8"


def measure(model_name: str, crop: int, batch: int, channels_last: bool, compile_: bool, threads: int,
            seconds: float) -> dict:
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model(model_name).eval()
    config = TrainConfig(stage="codec", dataset="-", run_dir="-", model=model_name, crop=crop, batch_size=batch,
                         lpips_weight=0.0)
    params = trainable_parameters(model, "codec")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    model.entropy_bottleneck.quantiles.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=1e-4)
    aux_opt = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=1e-3)
    lambdas = rate_lambdas(config, model.num_qualities)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = model
    losses_fn = compute_losses
    if compile_:
        losses_fn = torch.compile(compute_losses, dynamic=False)
    images = torch.rand(4, batch, 3, crop, crop)

    def one_step(i: int) -> None:
        x = images[i % 4]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        q = int(rng.integers(1, model.num_qualities + 1))
        losses = losses_fn(step_model, x, float(q), lambdas[q - 1], config, None)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        aux_opt.zero_grad(set_to_none=True)
        model.entropy_bottleneck.aux_loss().backward()
        aux_opt.step()

    t0 = time.perf_counter()
    for i in range(3):  # warm-up (and compilation, reported separately)
        one_step(i)
    warmup = time.perf_counter() - t0
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one_step(steps)
        steps += 1
    elapsed = time.perf_counter() - t0
    torch.set_num_threads(default_threads)
    return {"steps_per_s": steps / elapsed, "mpx_per_s": steps * batch * crop * crop / elapsed / 1e6,
            "warmup_s": warmup, "steps": steps, "threads": threads or default_threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--seconds", type=float, default=40.0, help="timed seconds per configuration")
    ap.add_argument("--only", default="", help="comma-separated configuration names (the anchor is always run)")
    args = ap.parse_args()
    names = [n for n in CONFIGS if not args.only or n in args.only.split(",") or n == ANCHOR]
    rows = []
    for name in names:
        crop, batch, cl, comp, threads = CONFIGS[name]
        try:
            row = {"name": name, "crop": crop, "batch": batch, "channels_last": cl, "compile": comp,
                   **measure(args.model, crop, batch, cl, comp, threads, args.seconds)}
        except Exception as exc:  # a configuration that cannot run here (compile without a compiler) is a result
            row = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
        rows.append(row)
    anchor = next(r for r in rows if r["name"] == ANCHOR)
    for r in rows:
        if "mpx_per_s" in r and "mpx_per_s" in anchor:
            r["ratio_mpx"] = r["mpx_per_s"] / anchor["mpx_per_s"]
            r["ratio_steps"] = r["steps_per_s"] / anchor["steps_per_s"]
    print(json.dumps({"benchmark": "train_speed", "model": args.model, "anchor": ANCHOR, "torch": torch.__version__,
                      "rows": rows}))


if __name__ == "__main__":
    main()
