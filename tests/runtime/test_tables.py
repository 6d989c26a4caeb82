"""Integer entropy tables: invariants, node frequencies, hashing, save and load."""

import numpy as np
import pytest

from edge_sdk.runtime.errors import TableError
from edge_sdk.runtime.tables import (
    POW3,
    EntropyTables,
    build_trit_tables,
    laplace_z_tables,
    plane_length,
    scale_to_index,
    trit_frequencies,
)


def test_every_bin_and_every_trit_has_nonzero_frequency(tables):
    t = tables.trit
    for k in range(t.num_scales):
        assert np.diff(t.cdf[t.cdf_start[k] : t.cdf_start[k + 1]].astype(np.int64)).min() >= 1
    total = 1 << t.precision_bits
    f0 = t.node_c1.astype(np.int64)
    f1 = t.node_c2.astype(np.int64) - f0
    f2 = total - t.node_c2.astype(np.int64)
    assert f0.min() >= 1 and f1.min() >= 1 and f2.min() >= 1


def test_plane_lengths_cover_the_tail():
    for sigma, length in [(0.2455, 1), (0.2456, 2), (6.629, 4), (6.63, 5), (256.0, 8)]:
        assert plane_length(sigma) == length
    t = build_trit_tables()
    assert np.all(POW3[t.plane_len.astype(int)] >= 2 * t.tail_k * t.scales)


def test_root_node_frequencies_are_the_bin_masses(tables):
    t = tables.trit
    for k in (0, 40, t.num_scales - 1):
        length = int(t.plane_len[k])
        cdf = t.cdf[t.cdf_start[k] : t.cdf_start[k + 1]].astype(np.int64)
        third = POW3[length - 1]
        assert t.node_c1[t.node_start[k]] == cdf[third]
        assert t.node_c2[t.node_start[k]] == cdf[2 * third]


def test_trit_frequencies_sum_to_total_and_follow_masses():
    masses = np.array([[1, 1, 1], [5, 0 + 1, 1000], [2**20, 3, 7]])
    freq = trit_frequencies(masses, 24)
    assert np.all(freq.sum(axis=1) == 1 << 24)
    assert np.all(np.argmax(freq, axis=1) == np.argmax(masses, axis=1))


def test_scale_to_index_nearest_in_log_domain(tables):
    s = tables.trit.scales
    assert np.array_equal(scale_to_index(s, s), np.arange(s.size))
    assert scale_to_index(np.array([1e-6]), s)[0] == 0
    assert scale_to_index(np.array([1e6]), s)[0] == s.size - 1
    with pytest.raises(ValueError):
        scale_to_index(np.array([np.nan]), s)


def test_save_load_round_trip_keeps_digest(tables, tmp_path):
    path = tmp_path / "tables.npz"
    tables.save(path)
    loaded = EntropyTables.load(path)
    assert loaded.digest == tables.digest
    assert np.array_equal(loaded.trit.node_c1, tables.trit.node_c1)


def test_digest_changes_with_any_table(tables):
    other_z = laplace_z_tables([1.0] * tables.z.num_channels)
    assert EntropyTables(trit=tables.trit, z=other_z).digest != tables.digest
    other_trit = build_trit_tables(np.geomspace(0.11, 256, 64))
    assert EntropyTables(trit=other_trit, z=tables.z).digest != tables.digest


def test_damaged_or_foreign_table_files_are_refused(tables, tmp_path):
    path = tmp_path / "tables.npz"
    tables.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(TableError):
        EntropyTables.load(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(TableError, match="not an edge-sdk entropy table"):
        EntropyTables.load(foreign)
    with pytest.raises(TableError):
        EntropyTables.load(tmp_path / "missing.npz")


def test_validate_catches_zero_frequency(tables):
    t = tables.trit
    cdf = t.cdf.copy()
    cdf[5] = cdf[4]  # bin 4 of index 0 now has zero mass
    broken = type(t)(t.scales, t.precision_bits, t.tail_k, t.plane_len, cdf, t.cdf_start, t.prio_key, t.node_start)
    with pytest.raises(TableError, match="zero frequency"):
        broken.validate()


def test_validate_caps_the_scale_count(tables):
    t = tables.trit
    many = np.geomspace(0.11, 256.0, 65536)
    broken = type(t)(many, t.precision_bits, t.tail_k, t.plane_len, t.cdf, t.cdf_start, t.prio_key, t.node_start)
    with pytest.raises(TableError, match="65535"):
        broken.validate()


def test_default_scales_are_the_same_bits_everywhere():
    # the exact rational exponent, evaluated at twice the working precision, rounds to the same
    # float64s: no libm or numpy SIMD path is involved, so the tables' hash cannot drift
    import decimal
    from fractions import Fraction

    from edge_sdk.runtime.tables import log_spaced_scales

    with decimal.localcontext() as ctx:
        ctx.prec = 80
        lo, hi = decimal.Decimal(0.11).ln(), decimal.Decimal(256.0).ln()
        exact = [float((lo + (hi - lo) * k / 127).exp()) for k in range(128)]
    scales = log_spaced_scales()
    assert scales.dtype == np.float64 and scales.tolist() == exact
    assert scales[0] == 0.11 and scales[-1] == 256.0
    ratios = [Fraction(float(b)) / Fraction(float(a)) for a, b in zip(scales[:-1], scales[1:])]
    assert max(ratios) / min(ratios) < 1 + 1e-14  # log-spaced
