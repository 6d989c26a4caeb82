"""The fast (numba) path writes exactly the reference path's bytes, and each decodes the other."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from helpers import make_latent, prior_of, priority_for
from edge_sdk.runtime import ChunkSchedule, LatentDecoder, Ordering, encode_latent
from edge_sdk.runtime.codec import RECONSTRUCTIONS


@given(
    seed=st.integers(0, 2**31),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)),
    lo=st.sampled_from([0.05, 0.3, 2.0]),
    hi=st.sampled_from([0.5, 8.0, 300.0]),
    ordering=st.sampled_from(list(Ordering)),
    levels=st.sampled_from([1, 8, 64]),
    outliers=st.booleans(),
)
def test_reference_and_fast_write_identical_bytes(tables, seed, shape, lo, hi, ordering, levels, outliers):
    y, means, kidx, z = make_latent(tables, shape, seed, (lo, max(lo * 1.01, hi)))
    if outliers:
        y = y.copy()
        y.flat[0] += 1e6
        z = z.copy()
        z.flat[0] = -5000
    schedule = ChunkSchedule(target_levels=levels, framing_budget=1.0)
    priority = priority_for(ordering, shape[0], seed)
    ref = encode_latent(y, means, kidx, z, tables, ordering=ordering, schedule=schedule, coder="reference",
                        channel_priority=priority)
    fast = encode_latent(y, means, kidx, z, tables, ordering=ordering, schedule=schedule, coder="fast",
                         channel_priority=priority)
    assert ref == fast
    q = np.rint(y.astype(np.float64) - means)
    for coder in ("reference", "fast"):
        dec = LatentDecoder(tables, prior=prior_of(means, kidx), coder=coder, channel_priority=priority)
        dec.feed(fast)
        assert dec.complete
        assert np.array_equal(dec.residual(), q)
        assert np.array_equal(dec.z, z)


def test_paths_agree_on_every_intermediate_reconstruction(tables):
    y, means, kidx, z = make_latent(tables, (6, 5, 5), seed=3)
    data = encode_latent(y, means, kidx, z, tables, schedule=ChunkSchedule(target_levels=16, framing_budget=1.0))
    decs = [LatentDecoder(tables, prior=prior_of(means, kidx), coder=c) for c in ("reference", "fast")]
    for i in range(len(data)):
        for d in decs:
            d.feed(data[i : i + 1])
        if decs[0].ready:
            assert decs[0].level == decs[1].level
            for rule in RECONSTRUCTIONS:
                np.testing.assert_array_equal(decs[0].y_hat(rule), decs[1].y_hat(rule))
