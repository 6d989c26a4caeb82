"""Entropy-coding benchmark: our trit-plane coder against constriction on the same symbols.

Latent: 320 channels x 32 x 48 (a 512x768 image), Gaussian scales log-uniform
in [0.1, 50], residuals drawn from them. Both sides code the same trit
decomposition, plane by plane, and both timings include the probability
derivation:

* ours: ``encode_latent`` / ``LatentDecoder`` (integer tables, our range
  coder, 64-level chunk schedule, chunk table and CRCs);
* anchor: constriction 0.5.0 ``RangeEncoder``/``RangeDecoder`` with
  ``Categorical(perfect=False)`` fed exact float64 Gaussian trit probabilities
  from ``scipy.special.ndtr`` at each element's exact scale, one stream for
  the whole latent (no chunks: the anchor pays no framing).

Overheads are against the same ideal for both: the sum of -log2 p of the
coded trits under the exact Gaussian at the exact scale. Ours counts every
byte of the stream except the z payload (header, chunk table, CRCs, escapes).

Prints one JSON object. Run: ``python benchmarks/entropy.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from edge_sdk.runtime import LatentDecoder, encode_latent
from edge_sdk.runtime.codec import ChunkSchedule
from edge_sdk.runtime.tables import POW3, default_entropy_tables, scale_to_index


def make_latent(seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (320, 32, 48)
    sigma = np.exp(rng.uniform(np.log(0.1), np.log(50.0), shape))
    means = rng.normal(0.0, 2.0, shape).astype(np.float32)
    y = (means + rng.normal(0.0, 1.0, shape) * sigma).astype(np.float32)
    z = rng.integers(-4, 5, (192, 2, 3))
    return y, means, sigma, z


def _interval_mass(lo, hi, centre, sigma):
    """Exact N(0, sigma^2) mass of symbol bins lo..hi (inclusive), tail-side evaluation."""
    from scipy.special import ndtr

    a = (lo - centre - 0.5) / sigma
    b = (hi - centre + 0.5) / sigma
    upper = a > 0  # both edges above the mean: evaluate on the upper tail
    return np.where(upper, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))


def _plane_probs(lo, rem, centre, sigma):
    sub = POW3[rem - 1]
    masses = np.stack([_interval_mass(lo + t * sub, lo + (t + 1) * sub - 1, centre, sigma) for t in range(3)], axis=1)
    masses = np.maximum(masses, 1e-300)
    return masses / masses.sum(axis=1, keepdims=True)


def anchor_encode(s_val, plane_len, centre, sigma):
    import constriction

    num_planes = int(plane_len.max())
    lo = np.zeros_like(s_val)
    rem = plane_len.copy()
    enc = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(perfect=False)
    ideal = 0.0
    for plane in range(num_planes):
        idx = np.flatnonzero(num_planes - plane_len <= plane)
        probs = _plane_probs(lo[idx], rem[idx], centre[idx], sigma[idx])
        sub = POW3[rem[idx] - 1]
        trits = ((s_val[idx] - lo[idx]) // sub).astype(np.int32)
        ideal -= float(np.log2(probs[np.arange(idx.size), trits]).sum())
        enc.encode(trits, model, probs)
        lo[idx] += trits * sub
        rem[idx] -= 1
    return enc.get_compressed(), ideal


def anchor_decode(compressed, plane_len, centre, sigma):
    import constriction

    num_planes = int(plane_len.max())
    lo = np.zeros(plane_len.size, np.int64)
    rem = plane_len.copy()
    dec = constriction.stream.queue.RangeDecoder(compressed)
    model = constriction.stream.model.Categorical(perfect=False)
    for plane in range(num_planes):
        idx = np.flatnonzero(num_planes - plane_len <= plane)
        probs = _plane_probs(lo[idx], rem[idx], centre[idx], sigma[idx])
        trits = dec.decode(model, probs).astype(np.int64)
        lo[idx] += trits * POW3[rem[idx] - 1]
        rem[idx] -= 1
    return lo


def _median_time(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--levels", type=int, default=64, help="the most levels our chunk schedule makes")
    args = parser.parse_args()

    y, means, sigma, z = make_latent()
    tables = default_entropy_tables(z.shape[0])
    kidx = scale_to_index(sigma, tables.trit.scales)
    schedule = ChunkSchedule(target_levels=args.levels)

    # The anchor codes the same decomposition: same plane lengths and symbols.
    plane_len = tables.trit.plane_len.astype(np.int64)[kidx.ravel()]
    centre = (POW3[plane_len] - 1) // 2
    q = np.rint(y.astype(np.float64) - means).astype(np.int64).ravel()
    s_val = np.clip(q + centre, 0, 2 * centre)
    n_symbols = int(plane_len.sum())

    def ours_encode():
        return encode_latent(y, means, kidx, z, tables, schedule=schedule)

    def ours_decode(data):
        dec = LatentDecoder(tables, prior=lambda _z, _h: (means, kidx))
        dec.feed(data)
        return dec

    data = ours_encode()  # compiles the kernels
    ours_decode(data)
    t_enc, data = _median_time(ours_encode, args.repeats)
    t_dec, dec = _median_time(lambda: ours_decode(data), args.repeats)
    assert dec.complete and np.array_equal(dec.residual().ravel(), q), "our decode is not lossless"

    sig = sigma.ravel()
    a_enc, (compressed, ideal) = _median_time(lambda: anchor_encode(s_val, plane_len, centre, sig), args.repeats)
    a_dec, lo = _median_time(lambda: anchor_decode(compressed, plane_len, centre, sig), args.repeats)
    assert np.array_equal(lo, s_val), "anchor decode mismatch"

    header = dec.header
    ours_bytes = len(data) - header.z_length
    anchor_bytes = compressed.size * 4
    result = {
        "ours_encode_msym_s": round(n_symbols / t_enc / 1e6, 3),
        "ours_decode_msym_s": round(n_symbols / t_dec / 1e6, 3),
        "anchor_encode_msym_s": round(n_symbols / a_enc / 1e6, 3),
        "anchor_decode_msym_s": round(n_symbols / a_dec / 1e6, 3),
        "ours_overhead_pct": round((8 * ours_bytes - ideal) / ideal * 100, 4),
        "anchor_overhead_pct": round((8 * anchor_bytes - ideal) / ideal * 100, 4),
        "decode_speedup_vs_anchor": round(a_dec / t_dec, 2),
        "encode_speedup_vs_anchor": round(a_enc / t_enc, 2),
        "symbols": n_symbols,
        "elements": int(y.size),
        "ideal_bytes": round(ideal / 8),
        "ours_bytes": ours_bytes,
        "anchor_bytes": anchor_bytes,
        "levels": dec.table.num_levels,
        "planes": dec.table.num_planes,
        "ours_encode_ms": round(t_enc * 1e3, 1),
        "ours_decode_ms": round(t_dec * 1e3, 1),
        "anchor_encode_ms": round(a_enc * 1e3, 1),
        "anchor_decode_ms": round(a_dec * 1e3, 1),
        "repeats": args.repeats,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
