"""What progressiveness costs in bytes: our stream against the same latent coded in one piece.

For each photo, the bundle's encoder makes one progressive stream; every level (or, on large
photos, ``--max-points`` levels spread over the stream) is decoded and its reconstruction's
PSNR measured. The anchor is the same latent, same prior, coded non-progressively
(``calibration.evaluation.evaluate.Evaluator.nonprogressive``: a Gaussian-conditional stream
with quantizer step 3^m, the grid that dropping m trit planes leaves, plus z and a 16-byte
container), at steps 3^0 .. 3^(steps-1).

Two photo sets by default: the wheel photos (scikit-image, scikit-learn) at the classifier's
224-px short side, and the Kodak set at full resolution (``--kodak``, default
``../shared/data/kodak`` beside the checkout when present).

Prints one JSON object; per set: ``level0_bpp`` (header + z), ``oneshot_z_bpp`` (z alone),
``full_depth_overhead_pct`` (our whole stream against the one-shot stream at step 1),
``bd_rate_psnr_vs_oneshot_pct`` (Bjøntegaard on the PSNR axis, per photo, then the mean),
``levels_median``, and the framing bytes: header, level table and chunk checks.

It also splits the BD-rate gap in two. At the level that completes a plane, our midpoint
reconstruction is exactly the one-shot grid at step 3^m (same PSNR, checked:
``plane_end_max_psnr_difference_db``), so the bytes between the two streams there
(``plane_end_overhead_bytes``, and ``bd_rate_psnr_vs_oneshot_plane_ends_pct`` from those points
alone) are framing and table precision. The rest of ``bd_rate_psnr_vs_oneshot_pct`` comes from
the levels inside planes: the schedule. ``framing_bytes`` breaks the full-depth overhead into
the header beyond the anchor's 16-byte container, the level table, the checks, and payload
beyond the one-shot payload (flush bytes and the trit tables' probabilities).
Run: ``python benchmarks/progressive.py --bundle DIR [--kodak DIR] [--max-images N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def photo_sets(args) -> list[tuple[str, list[Path], int | None]]:
    from edge_sdk.runtime.images import find_images
    from edge_sdk.runtime.samples import sample_photos

    sets = []
    wheel = [p.path for p in sample_photos()]
    if args.photos:
        wheel = [p for folder in args.photos for p in find_images(folder)]
    if wheel:
        sets.append(("224px", wheel[: args.max_images or None], 224))
    kodak = args.kodak or Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
    if Path(kodak).is_dir():
        sets.append(("kodak", find_images(kodak)[: args.max_images or None], None))
    return sets


def measure(path: Path, short_side, encoder, decoder, evaluator, max_points: int) -> dict:
    from edge_sdk.calibration.bdrate import bd_rate
    from edge_sdk.calibration.evaluation.evaluate import NONPROGRESSIVE_HEADER_BYTES
    from edge_sdk.runtime import level_boundaries
    from edge_sdk.runtime.codec import read_layout
    from edge_sdk.runtime.images import psnr, read_image, resize_short_side, to_uint8

    rgb = to_uint8(read_image(path))
    if short_side:
        rgb = resize_short_side(rgb, short_side)
    pixels = rgb.shape[0] * rgb.shape[1]
    data = encoder.encode(rgb)
    header, table = read_layout(data)
    ends = level_boundaries(data)
    last = len(ends) - 1
    # the level that completes each plane: with the midpoint rule its reconstruction is the
    # one-shot grid at step 3^m, so rates there compare at exactly equal PSNR
    plane_end = np.cumsum(table.chunks_per_plane).tolist()
    wanted = sorted({round(i * last / (max_points - 1)) for i in range(max_points)} | set(plane_end) | {last}) \
        if max_points < last + 1 else list(range(last + 1))
    session, fed, ours = decoder.session(), 0, []
    for level in wanted:
        session.feed(data[fed: ends[level]])
        fed = ends[level]
        ours.append((ends[level] * 8 / pixels, psnr(rgb, session.reconstruct())))
    oneshot = evaluator.nonprogressive(rgb)
    one_rate = [p["bytes"] * 8 / pixels for p in oneshot]
    one_psnr = [p["psnr"] for p in oneshot]
    bd = bd_rate(one_rate, one_psnr, [r for r, _ in ours], [q for _, q in ours])
    checks = sum(table.check_bytes(j) for j in range(table.num_levels))
    # Split the gap: at the plane ends both streams hold the same information (the chain rule),
    # so what separates them there is framing and table precision; what the full-curve BD-rate
    # adds on top comes from the levels inside planes (the schedule: mixing steps 3^(m+1) and
    # 3^m element by element instead of one step in between).
    psnr_at = dict(zip(wanted, (q for _, q in ours)))
    matched = []  # (step exponent m, our bytes, one-shot bytes, our PSNR, one-shot PSNR)
    for m, point in enumerate(oneshot):
        plane = table.num_planes - 1 - m
        level = last if m == 0 else (plane_end[plane] if plane >= 0 else None)
        if level is not None:
            matched.append((m, ends[level], point["bytes"], psnr_at[level], point["psnr"]))
    bd_plane_ends = bd_rate([b * 8 / pixels for _, _, b, _, _ in matched], [q for *_, q in matched],
                            [a * 8 / pixels for _, a, _, _, _ in matched], [q for _, _, _, q, _ in matched]) \
        if len(matched) >= 2 else None
    z_bytes = header.z_length
    oneshot_y = oneshot[0]["bytes"] - NONPROGRESSIVE_HEADER_BYTES - z_bytes
    payload = len(data) - header.size - z_bytes - table.size - checks
    return {
        "photo": path.name, "pixels": pixels, "levels": last, "bytes": len(data),
        "level0_bpp": ends[0] * 8 / pixels, "oneshot_z_bpp": header.z_length * 8 / pixels,
        "oneshot_full_bytes": oneshot[0]["bytes"],
        "full_depth_overhead_pct": (len(data) / oneshot[0]["bytes"] - 1) * 100,
        "bd_rate_psnr_vs_oneshot_pct": None if bd is None else bd * 100,
        "bd_rate_psnr_vs_oneshot_plane_ends_pct": None if bd_plane_ends is None else bd_plane_ends * 100,
        "plane_end_overhead_bytes": {f"3^{m}": int(a - b) for m, a, b, _, _ in matched},
        "plane_end_max_psnr_difference_db": max(abs(qa - qb) for *_, qa, qb in matched),
        "header_bytes": header.size, "level_table_bytes": table.size, "check_bytes": checks,
        "framing_bytes": {"header_beyond_container": header.size - NONPROGRESSIVE_HEADER_BYTES,
                          "level_table": table.size, "checks": checks,
                          "payload_beyond_oneshot": payload - oneshot_y},
        "full_psnr": ours[-1][1], "oneshot_full_psnr": one_psnr[0],
    }


def summarise(rows: list[dict]) -> dict:
    def mean(key):
        values = [r[key] for r in rows if r[key] is not None]
        return round(float(np.mean(values)), 4) if values else None

    return {
        "images": len(rows),
        "level0_bpp": mean("level0_bpp"),
        "oneshot_z_bpp": mean("oneshot_z_bpp"),
        "full_depth_overhead_pct": mean("full_depth_overhead_pct"),
        "bd_rate_psnr_vs_oneshot_pct": mean("bd_rate_psnr_vs_oneshot_pct"),
        "bd_rate_psnr_vs_oneshot_pct_median": round(statistics.median(
            r["bd_rate_psnr_vs_oneshot_pct"] for r in rows if r["bd_rate_psnr_vs_oneshot_pct"] is not None), 4)
        if any(r["bd_rate_psnr_vs_oneshot_pct"] is not None for r in rows) else None,
        "bd_rate_psnr_vs_oneshot_plane_ends_pct": mean("bd_rate_psnr_vs_oneshot_plane_ends_pct"),
        "plane_end_overhead_bytes_median": {key: statistics.median(r["plane_end_overhead_bytes"][key] for r in rows
                                                                   if key in r["plane_end_overhead_bytes"])
                                            for key in sorted({k for r in rows for k in r["plane_end_overhead_bytes"]})},
        "plane_end_max_psnr_difference_db": max(r["plane_end_max_psnr_difference_db"] for r in rows),
        "framing_bytes_median": {key: statistics.median(r["framing_bytes"][key] for r in rows)
                                 for key in rows[0]["framing_bytes"]},
        "levels_median": statistics.median(r["levels"] for r in rows),
        "levels_min": min(r["levels"] for r in rows),
        "bytes_median": statistics.median(r["bytes"] for r in rows),
        "header_bytes_median": statistics.median(r["header_bytes"] for r in rows),
        "level_table_bytes_median": statistics.median(r["level_table_bytes"] for r in rows),
        "check_bytes_median": statistics.median(r["check_bytes"] for r in rows),
        "level0_minus_z_bytes_max": max(round((r["level0_bpp"] - r["oneshot_z_bpp"]) * r["pixels"] / 8) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle directory (edge-sdk export)")
    parser.add_argument("--photos", action="append", default=[], help="folder of photos for the 224-px set "
                        "(repeatable; default: the wheel photos)")
    parser.add_argument("--kodak", type=Path, default=None, help="Kodak folder (full resolution)")
    parser.add_argument("--max-images", type=int, default=0, help="per set (0: all)")
    parser.add_argument("--max-points", type=int, default=33, help="levels decoded per stream for the PSNR curve")
    parser.add_argument("--steps", type=int, default=4, help="one-shot quantizer steps 3^0 .. 3^(steps-1)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--per-image", action="store_true", help="include every photo's row")
    args = parser.parse_args()

    from edge_sdk.calibration.evaluation.evaluate import EvalSettings, Evaluator
    from edge_sdk.runtime.backends import open_backend
    from edge_sdk.runtime.bundle import Bundle
    from edge_sdk.runtime.pipeline import Decoder, Encoder

    bundle = Bundle.load(args.bundle)
    backend = open_backend("ort:cpu", threads=args.threads)
    encoder, decoder = Encoder(bundle, backend), Decoder(bundle, backend)
    evaluator = Evaluator(bundle, backend, EvalSettings(depth_points=2, nonprogressive_steps=args.steps,
                                                        jpeg_qualities=(50,), webp_qualities=(50,), lpips=False))
    t0 = time.perf_counter()
    result = {"bundle": str(args.bundle), "model": bundle.model_name, "quality": bundle.quality}
    for name, paths, short_side in photo_sets(args):
        rows = [measure(p, short_side, encoder, decoder, evaluator, args.max_points) for p in paths]
        result[name] = summarise(rows)
        if args.per_image:
            result[name]["rows"] = rows
    result.update({"seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine(),
                   "python": platform.python_version()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
