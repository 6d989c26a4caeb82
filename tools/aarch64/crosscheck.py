"""Cross-platform bit-exactness check of the runtime: encode on one machine, decode on another.

Runs on any Python that imports ``edge_sdk`` (no torch). ``tools/aarch64/run.sh`` drives it on
x86-64 and, under qemu-user, on aarch64; ``docs/platforms.md`` has the results.

    crosscheck.py encode  --bundle B --photos LIST --out DIR [--latents-from DIR2]
    crosscheck.py decode  --bundle B --streams DIR/streams --out REPORT.json [--shard k/n] [--float-every k]
    crosscheck.py merge   --out REPORT.json SHARD.json ...
    crosscheck.py compare --a DIR_A --b DIR_B --reports ... (see ``compare --help``)

``encode`` writes, per photo, the latent the pipeline computed on this machine (``y`` and ``z``,
``latents/*.npz``) and three streams made from it with the integer prior: both symbol orderings,
and an *escape* variant whose residuals are scaled (× ESCAPE_GAIN) past the coded scales, so that
a few percent of the elements leave their trit range and go through the escape chunk. With ``--latents-from`` it also
re-encodes another machine's latents (``reencoded/``): the analysis transform is float ONNX and
may differ by ISA, the entropy path (integer prior, trit planes, range coder) must not.

``decode`` decodes every stream level by level and records, per level, SHA-256 of the scale
indices and means (from the decoded ẑ, once per stream), of ŷ under both reconstruction rules,
and at the last level of the exact residual; classifier logits at ``--checkpoints`` levels and
the reconstruction at the deepest level go to an ``.npz`` beside the report (float outputs of
ONNX Runtime: compared within a tolerance, with top-1 agreement).

``compare`` reads two machines' outputs and prints one JSON summary (``bit_exact``: over the streams
both finished; ``complete``: none is missing); it exits 1 when either is false, that is when any stream
byte, scale index, mean, ŷ or residual differs: b's re-encoding of a's latents against a's streams,
and each stream set decoded on both machines (a's streams, b's re-encoded ones, b's own).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from edge_sdk.runtime.backends import GraphSet, open_backend
from edge_sdk.runtime.bitstream import Ordering, PriorMode
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.codec import LatentDecoder, StreamInfo, encode_latent, level_boundaries, read_header
from edge_sdk.runtime.coders import PlaneState
from edge_sdk.runtime.images import to_uint8
from edge_sdk.runtime.pipeline import Encoder, prior_parameters
from edge_sdk.runtime.tables import POW3

#: the escape variant multiplies y - means by this: about 3 % of lite0's elements then escape
ESCAPE_GAIN = 4.0
VARIANTS = ("sigma", "ev", "ev-escapes")


def sha(arr: np.ndarray | bytes) -> str:
    if isinstance(arr, (bytes, bytearray)):
        return hashlib.sha256(arr).hexdigest()[:32]
    a = np.ascontiguousarray(arr)
    # dtype and shape are part of the digest: equal bytes of another dtype do not count as equal
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:32]


def machine() -> dict:
    import numba
    import onnxruntime

    return {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "onnxruntime": onnxruntime.__version__, "system": platform.platform()}


def read_photo_list(path: Path) -> list[Path]:
    return [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]


def photo_id(index: int, photo: Path) -> str:
    return f"{index:04d}-{photo.stem.replace(' ', '_')[:40]}"


# --------------------------------------------------------------------------------- encode
def variant_latent(variant: str, y: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The y a variant codes: the pipeline's, or (escapes) means + ESCAPE_GAIN · (y − means)."""
    if variant == "ev-escapes":
        return (means.astype(np.float64) + ESCAPE_GAIN * (y.astype(np.float64) - means)).astype(np.float32)
    return y


def escaped_elements(y: np.ndarray, means: np.ndarray, kidx: np.ndarray, bundle: Bundle) -> int:
    """Elements whose residual leaves its trit range, i.e. whose escape code is non-zero."""
    q = np.rint(y.astype(np.float64) - means.astype(np.float64)).astype(np.int64).ravel()
    st = PlaneState.start(np.ascontiguousarray(kidx).ravel().astype(np.int64), bundle.tables.trit)
    centre = (POW3[st.plane_len.astype(np.int64)] - 1) // 2
    return int(np.count_nonzero(np.abs(q) > centre))


def encode_streams(bundle: Bundle, graphs: GraphSet, y: np.ndarray, z: np.ndarray, image_size, padding,
                   out: Path, pid: str) -> dict:
    """The three streams of one latent (integer prior) into ``out``; returns their facts."""
    means, kidx = prior_parameters(bundle, graphs, z, PriorMode.INTEGER)
    info = StreamInfo(codec_id=bundle.stream_codec_id, image_size=tuple(image_size), padding=tuple(padding),
                      quality=int(round(bundle.quality)), prior_mode=PriorMode.INTEGER)
    facts = {}
    for variant in VARIANTS:
        ordering = Ordering.SIGMA if variant == "sigma" else Ordering.EXPECTED_VARIANCE
        yv = variant_latent(variant, y, means)
        t = time.perf_counter()
        data = encode_latent(yv, means, kidx, z, bundle.tables, info=info, ordering=ordering)
        ms = (time.perf_counter() - t) * 1e3
        name = f"{pid}.{variant}.bin"
        (out / name).write_bytes(data)
        facts[name] = {"bytes": len(data), "sha": sha(data), "escaped": escaped_elements(yv, means, kidx, bundle),
                       "encode_ms": round(ms, 1)}
    return facts


def cmd_encode(args) -> int:
    bundle = Bundle.load(args.bundle)
    backend = open_backend(args.backend, threads=args.threads)
    encoder = Encoder(bundle, backend, short_side=args.short_side, prior="integer")
    out = Path(args.out)
    (out / "streams").mkdir(parents=True, exist_ok=True)
    (out / "latents").mkdir(parents=True, exist_ok=True)
    photos = read_photo_list(Path(args.photos))[: args.limit or None]
    summary = {"machine": machine(), "bundle": str(args.bundle), "short_side": args.short_side,
               "escape_gain": ESCAPE_GAIN, "photos": {}, "streams": {}, "reencoded": {}}
    t0 = time.perf_counter()

    def save():  # after every item: an interrupted run still leaves what it did
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        (out / "encode.json").write_text(json.dumps(summary, indent=1))

    if args.latents_from:  # first: it is the cheap part (no ONNX), and the one the check needs
        (out / "reencoded").mkdir(exist_ok=True)
        for npz in sorted(Path(args.latents_from, "latents").glob("*.npz")):
            t = time.perf_counter()
            with np.load(npz) as f:
                y, z, size, pad = f["y"], f["z"], f["image_size"], f["padding"]
            summary["reencoded"].update(encode_streams(bundle, encoder.graphs, y, z, size.tolist(), pad.tolist(),
                                                       out / "reencoded", npz.stem))
            save()
            print(f"[reencode] {npz.stem} {time.perf_counter() - t:.1f} s", flush=True)
    for i, photo in enumerate(photos):
        pid = photo_id(i, photo)
        t = time.perf_counter()
        lat = encoder.latent(photo)
        np.savez(out / "latents" / f"{pid}.npz", y=lat.y, z=lat.z, image_size=np.array(lat.image_size),
                 padding=np.array(lat.padding))
        summary["photos"][pid] = {"photo": str(photo), "y": sha(lat.y), "z": sha(lat.z),
                                  "y_shape": list(lat.y.shape), "latent_ms": round((time.perf_counter() - t) * 1e3, 1)}
        summary["streams"].update(encode_streams(bundle, encoder.graphs, lat.y, lat.z, lat.image_size, lat.padding,
                                                 out / "streams", pid))
        if i == 0:  # the stream this tool writes is the one the public Encoder writes
            direct = Encoder(bundle, backend, short_side=args.short_side, prior="integer",
                             ordering=Ordering.EXPECTED_VARIANCE).encode(photo)
            if direct != (out / "streams" / f"{pid}.ev.bin").read_bytes():
                raise SystemExit("encode_latent on the pipeline's latent differs from Encoder.encode")
        save()
        print(f"[encode] {i + 1}/{len(photos)} {pid} {time.perf_counter() - t:.1f} s", flush=True)
    save()
    print(f"[encode] {len(summary['streams'])} streams, {len(summary['reencoded'])} re-encoded, "
          f"{summary['seconds']} s", flush=True)
    return 0


# --------------------------------------------------------------------------------- decode
def checkpoint_levels(levels: int, count: int) -> list[int]:
    """``count`` levels spread from 0 to ``levels`` (both included)."""
    if count <= 1:
        return [levels]
    return sorted({round(levels * k / (count - 1)) for k in range(count)})


def decode_one(bundle: Bundle, graphs: GraphSet, data: bytes, checkpoints: int,
               float_outputs: bool = True, cm_every_level: bool = True) -> tuple[dict, dict]:
    """Hashes of every level's exact results; logits at ``checkpoints`` levels and the deepest
    reconstruction when ``float_outputs`` (not for the escape variant: its latent is no photo's)."""
    header = read_header(data)
    seen = {}

    def prior(z, hdr):
        means, kidx = prior_parameters(bundle, graphs, z, hdr.prior_mode)
        seen.update(z=sha(np.asarray(z, np.int64)), means=sha(means), scale_indices=sha(np.asarray(kidx, np.int64)))
        return means, kidx

    dec = LatentDecoder(bundle.tables, prior=prior, expected_codec_id=bundle.stream_codec_id,
                        channel_priority=bundle.channel_priority)
    ends = level_boundaries(data)
    levels = len(ends) - 1
    wanted = set(checkpoint_levels(levels, checkpoints))
    h, w = header.image_size
    record = {"levels": levels, "y_hat": [], "y_hat_cm": []}
    arrays = {}
    logits = []
    fed = 0
    for level, end in enumerate(ends):
        dec.feed(data[fed:end])
        fed = end
        if dec.level != level:
            raise RuntimeError(f"fed the bytes of level {level}, the decoder reached {dec.level}")
        y_hat = dec.y_hat()
        record["y_hat"].append(sha(y_hat))
        if cm_every_level or level == levels:
            record["y_hat_cm"].append(sha(dec.y_hat("conditional_mean")))
        if float_outputs and level in wanted:
            logits.append(graphs.run("classifier", y_hat=y_hat[None])["logits"][0])
    record.update(seen)
    record["residual"] = sha(dec.residual())
    if float_outputs:
        record["checkpoints"] = sorted(wanted)
        arrays["logits"] = np.stack(logits).astype(np.float32)
        image = graphs.run("synthesis", y_hat=dec.y_hat()[None])["image"][0].transpose(1, 2, 0)
        arrays["image"] = to_uint8(image[:h, :w])
    return record, arrays


def save(report: dict, arrays: Optional[dict], t0: float, out: Path) -> None:
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if arrays is not None:
        np.savez_compressed(out.with_suffix(".npz"), **arrays)
    out.write_text(json.dumps(report, indent=1))


def cmd_decode(args) -> int:
    bundle = Bundle.load(args.bundle)
    graphs = GraphSet(bundle, open_backend(args.backend, threads=args.threads))
    files = sorted(Path(args.streams).glob("*.bin"))[: args.limit or None]
    k, n = (int(v) for v in args.shard.split("/"))
    files = files[k::n]
    report = {"machine": machine(), "streams_dir": str(args.streams), "streams": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    t0 = time.perf_counter()

    def wants_float(path: Path) -> bool:  # ONNX Runtime's outputs: slow under emulation, so for a few
        return (args.float_every > 0 and "escapes" not in path.name
                and int(path.name.split("-")[0]) % args.float_every == 0)

    files.sort(key=wants_float)  # the exact results of every stream first, then the float outputs
    save(report, arrays, t0, out)
    for i, path in enumerate(files):
        t = time.perf_counter()
        data = path.read_bytes()
        float_outputs = wants_float(path)
        record, arr = decode_one(bundle, graphs, data, args.checkpoints, float_outputs=float_outputs,
                                 cm_every_level=args.cm == "every")
        record["sha"] = sha(data)
        record["decode_s"] = round(time.perf_counter() - t, 2)
        report["streams"][path.name] = record
        arrays.update({f"{path.name}/{k}": v for k, v in arr.items()})
        save(report, arrays if arr else None, t0, out)  # after every stream: a run cut short leaves what it did
        print(f"[decode] {i + 1}/{len(files)} {path.name} {record['levels']} levels {record['decode_s']} s", flush=True)
    save(report, arrays, t0, out)
    print(f"[decode] {len(files)} streams in {report['seconds']} s -> {out}", flush=True)
    return 0


# -------------------------------------------------------------------------------- compare
EXACT_FIELDS = ("sha", "levels", "z", "scale_indices", "means", "residual")


def compare_reports(a: dict, b: dict, arrays_a, arrays_b) -> dict:
    """Field-by-field comparison of two decode reports of the same streams."""
    names = sorted(set(a["streams"]) | set(b["streams"]))
    out = {"streams": 0, "levels": 0, "missing": [], "differing": {}, "logit_max_abs": 0.0,
           "top1_checked": 0, "top1_agree": 0, "image_max_abs": 0, "image_differing_pixels": 0, "image_pixels": 0}
    for name in names:
        ra, rb = a["streams"].get(name), b["streams"].get(name)
        if ra is None or rb is None:
            out["missing"].append(name)
            continue
        out["streams"] += 1
        out["levels"] += ra["levels"] + 1  # level 0 counts: z and the prior's means
        bad = [f for f in EXACT_FIELDS if ra[f] != rb[f]]
        for key in ("y_hat", "y_hat_cm"):
            lv = [i for i, (x, y) in enumerate(zip(ra[key], rb[key])) if x != y]
            if lv or len(ra[key]) != len(rb[key]):
                bad.append(f"{key}@levels{lv[:5]}")
        if bad:
            out["differing"][name] = bad
        if f"{name}/logits" not in arrays_a or f"{name}/logits" not in arrays_b:
            continue
        la, lb = arrays_a[f"{name}/logits"], arrays_b[f"{name}/logits"]
        if la.shape == lb.shape:
            out["logit_max_abs"] = max(out["logit_max_abs"], float(np.abs(la - lb).max()))
            out["top1_checked"] += la.shape[0]
            out["top1_agree"] += int(np.sum(la.argmax(1) == lb.argmax(1)))
        ia, ib = arrays_a[f"{name}/image"].astype(np.int16), arrays_b[f"{name}/image"].astype(np.int16)
        if ia.shape == ib.shape:
            d = np.abs(ia - ib)
            out["image_max_abs"] = max(out["image_max_abs"], int(d.max()))
            out["image_differing_pixels"] += int(np.count_nonzero(d))
            out["image_pixels"] += int(d.size)
    return out


def compare_streams(a: dict, b: dict) -> dict:
    """Two encode summaries' streams of the same names: equal bytes or not."""
    names = sorted(set(a) & set(b))
    differing = [n for n in names if a[n]["sha"] != b[n]["sha"]]
    return {"streams": len(names), "equal": len(names) - len(differing), "differing": differing,
            "only_one_side": sorted(set(a) ^ set(b)), "escaped_elements": sum(a[n]["escaped"] for n in names),
            "streams_with_escapes": sum(1 for n in names if a[n]["escaped"] > 0)}


def load_report(path: Path) -> tuple[dict, dict]:
    report = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz")) as f:
        arrays = {k: f[k] for k in f.files}
    return report, arrays


def cmd_merge(args) -> int:
    """Join the reports (and arrays) of decode shards into one."""
    merged, arrays, seconds = None, {}, 0.0
    for path in args.reports:
        report, arr = load_report(Path(path))
        seconds += report["seconds"]
        if merged is None:
            merged = report
        else:
            merged["streams"].update(report["streams"])
        arrays.update(arr)
    merged["seconds"] = round(seconds, 1)  # summed over the shards: CPU-side time, not wall time
    out = Path(args.out)
    out.write_text(json.dumps(merged, indent=1))
    np.savez_compressed(out.with_suffix(".npz"), **arrays)
    return 0


def cmd_compare(args) -> int:
    a_dir, b_dir = Path(args.a), Path(args.b)
    enc_a = json.loads((a_dir / "encode.json").read_text())
    enc_b = json.loads((b_dir / "encode.json").read_text())
    result = {"a": enc_a["machine"], "b": enc_b["machine"]}
    # 1. the entropy path: b re-encoded a's latents; the bytes must equal a's streams
    result["reencode_b_vs_a"] = compare_streams(enc_a["streams"], enc_b["reencoded"])
    # 2. the whole pipeline from the photo (float ONNX analysis on each ISA): reported, not required
    result["photo_encode_b_vs_a"] = compare_streams(enc_a["streams"], enc_b["streams"])
    result["photo_encode_b_vs_a"]["latent_y_equal"] = sum(
        enc_a["photos"][p]["y"] == enc_b["photos"].get(p, {}).get("y") for p in enc_a["photos"])
    result["photo_encode_b_vs_a"]["latent_z_equal"] = sum(
        enc_a["photos"][p]["z"] == enc_b["photos"].get(p, {}).get("z") for p in enc_a["photos"])
    # 3. decoding: each stream set decoded on both machines. b's re-encoded streams are a's streams
    #    byte for byte (1.), so b's decode of a's streams is b's decode of them too ("sha" is compared)
    exact = not result["reencode_b_vs_a"]["differing"]
    complete = not result["reencode_b_vs_a"]["only_one_side"]
    for label, (pa, pb) in {"a_streams": (args.a_decodes_a, args.b_decodes_a),
                            "b_reencoded": (args.a_decodes_b_reencoded, args.b_decodes_a),
                            "b_streams": (args.a_decodes_b, args.b_decodes_b)}.items():
        ra, xa = load_report(Path(pa))
        rb, xb = load_report(Path(pb))
        cmp = compare_reports(ra, rb, xa, xb)
        cmp["decode_s"] = {"a": ra["seconds"], "b": rb["seconds"]}
        result[f"decode_{label}"] = cmp
        exact = exact and not cmp["differing"] and cmp["streams"] > 0
        complete = complete and not cmp["missing"]
    result["bit_exact"] = exact  # over every stream both machines finished
    result["complete"] = complete  # no stream only one machine finished (an interrupted run)
    ok = exact and complete
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if ok else 1


def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="latents and streams of the listed photos")
    e.add_argument("--bundle", required=True)
    e.add_argument("--photos", required=True, help="a text file: one photo path a line")
    e.add_argument("--out", required=True)
    e.add_argument("--short-side", type=int, default=224)
    e.add_argument("--limit", type=int, default=0)
    e.add_argument("--latents-from", help="another machine's encode folder: re-encode its latents here too")
    d = sub.add_parser("decode", help="decode every stream of a folder level by level")
    d.add_argument("--bundle", required=True)
    d.add_argument("--streams", required=True)
    d.add_argument("--out", required=True, help="report .json (arrays go to the .npz beside it)")
    d.add_argument("--checkpoints", type=int, default=2, help="levels at which the classifier runs (2: level 0 and the deepest)")
    d.add_argument("--limit", type=int, default=0)
    d.add_argument("--cm", choices=("every", "last"), default="every",
                   help="ŷ under the conditional-mean rule at every level or the deepest only (midpoint ŷ: always every)")
    d.add_argument("--shard", default="0/1", help="k/n: decode every n-th stream from the k-th (run n in parallel)")
    d.add_argument("--float-every", type=int, default=1, help="logits and reconstructions for every k-th photo (0: none)")
    for q in (e, d):
        q.add_argument("--backend", default="ort:cpu")
        q.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("compare", help="compare machine a's and machine b's outputs")
    c.add_argument("--a", required=True, help="machine a's encode folder")
    c.add_argument("--b", required=True, help="machine b's encode folder (with --latents-from a)")
    for who in ("a_decodes_a", "b_decodes_a", "a_decodes_b_reencoded", "a_decodes_b", "b_decodes_b"):
        c.add_argument(f"--{who.replace('_', '-')}", required=True, dest=who, help="a decode report .json")
    c.add_argument("--out")
    m = sub.add_parser("merge", help="join decode shards' reports")
    m.add_argument("--out", required=True)
    m.add_argument("reports", nargs="+")
    args = p.parse_args(list(argv) if argv is not None else None)
    return {"encode": cmd_encode, "decode": cmd_decode, "compare": cmd_compare, "merge": cmd_merge}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
