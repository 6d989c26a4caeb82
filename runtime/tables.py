"""Integer entropy tables: the only probability source of the coder.

Encoder and decoder must derive identical probabilities on every platform, so
all probabilities come from integer tables that are built once (with float64
math, here) and then shipped as integers inside the bundle. Nothing on the
decode path evaluates ``erf`` or ``exp``. The tables' SHA-256 goes into every
stream header, so a decoder holding other tables refuses the stream instead of
decoding garbage. See ``docs/bitstream.md`` sections 4 and 5.

Three tables live here:

* trit tables, one per scale index k: an integer CDF over the ``3**l_k`` bins
  of the discretized, truncated Gaussian N(0, scales[k]**2), every bin >= 1;
* priority keys, one per node of each index's ternary interval tree: the
  expected-variance priority quantized to uint16 at build time, so that the
  order of symbols inside a plane is integer-exact on every platform;
* z tables, one integer CDF per channel of the factorized prior, with one
  extra escape bin for values outside the table.
"""

from __future__ import annotations

import decimal
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import TableError
from .fileio import atomic_write
from .npzfile import read_npz

#: -Phi^-1(1e-9 / 2): the tail cut of compressai's GaussianConditional and of DPICT.
TAIL_K = 6.1094102048693975
#: Largest number of trit planes an element may use (3**16 bins would be 43M entries).
MAX_PLANES = 12
#: Largest CDF total the range coder accepts (docs/bitstream.md 3: range >= 2**56).
MAX_PRECISION_BITS = 24
DEFAULT_TRIT_PRECISION = 24
DEFAULT_Z_PRECISION = 16

_HASH_DOMAIN = b"edge-sdk entropy tables v1\n"
#: the trit tables' uniform mixture weight (4.2): chosen on 12 photos of imagenet-sample/train, where 2^-12 saved
#: 0.15 % of the y bytes on average and made no photo dearer (2^-10 saved more but not everywhere)
DEFAULT_UNIFORM_MASS = 2.0**-12
_PRIO_LOG2_OFFSET = 64.0
#: priority keys per octave of (variance removed / bits); channel priorities use the same unit
PRIO_STEPS_PER_OCTAVE = 512.0

POW3 = np.array([3**i for i in range(MAX_PLANES + 1)], dtype=np.int64)


def log_spaced_scales(lo: float = 0.11, hi: float = 256.0, count: int = 128) -> np.ndarray:
    """The default scale table: ``count`` log-spaced Gaussian scales from ``lo`` to ``hi``.

    ``scales[k]`` is the float64 nearest to ``lo * (hi / lo) ** (k / (count - 1))``, computed
    in 40-digit decimal arithmetic, whose ``exp`` and ``ln`` are correctly rounded: the
    scales go into the tables' hash (hence every codec id), and ``np.exp(np.linspace(...))``
    differs in the last bits between numpy versions and SIMD paths (numpy 2.4.6 moved 37
    of the 128 values), which changed the hash of the same tables from one machine to the next.
    """
    if not (0 < lo < hi) or count < 2:
        raise ValueError("need 0 < lo < hi and count >= 2")
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        log_lo, log_hi = decimal.Decimal(lo).ln(), decimal.Decimal(hi).ln()
        step = (log_hi - log_lo) / (count - 1)
        return np.array([float((log_lo + step * k).exp()) for k in range(count)], dtype=np.float64)


def scale_to_index(sigma: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Map Gaussian scales to the nearest table index in the log domain.

    Index k is chosen when ``b[k-1] <= sigma < b[k]`` with ``b[k] = sqrt(scales[k] *
    scales[k+1])``; values below or above the table clamp to its ends. This is the
    model-side float step: a scale exactly on a boundary can land on either side
    on another backend, which is why the header carries a CRC of the indices.
    """
    sigma = np.asarray(sigma)
    if not np.all(np.isfinite(sigma)):
        raise ValueError("scales contain NaN or infinity")
    bounds = np.sqrt(scales[:-1] * scales[1:])
    return np.searchsorted(bounds, sigma, side="right").astype(np.uint16)


def quantize_pmf(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer frequencies summing to ``total``, each >= 1, close to ``weights``.

    Largest-remainder rounding after reserving one count per bin; ties go to the
    lower bin. Used only when building tables, never on the coding path.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = weights.size
    if n == 0 or n > total:
        raise ValueError(f"cannot give {n} bins at least one count out of {total}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights must be finite and non-negative")
    mass = weights.sum()
    spare = total - n
    ideal = weights / mass * spare if mass > 0 else np.full(n, spare / n)
    freq = np.floor(ideal).astype(np.int64)
    remainder = spare - int(freq.sum())
    if remainder:
        order = np.argsort(-(ideal - freq), kind="stable")
        freq[order[:remainder]] += 1
    return freq + 1


def _gaussian_bin_masses(sigma: float, n_bins: int) -> np.ndarray:
    """Mass of N(0, sigma^2) on the integer bins centred on ``(n_bins - 1) / 2``.

    Evaluated on the small-tail side with erfc so that far bins do not cancel.
    """
    centre = (n_bins - 1) // 2
    u = np.abs(np.arange(n_bins, dtype=np.float64) - centre)
    scale = sigma * math.sqrt(2.0)
    erfc = np.frompyfunc(math.erfc, 1, 1)
    upper = erfc((u - 0.5) / scale).astype(np.float64)
    lower = erfc((u + 0.5) / scale).astype(np.float64)
    return 0.5 * (upper - lower)


def plane_length(sigma: float, tail_k: float = TAIL_K) -> int:
    """Smallest l >= 1 with ``3**l >= 2 * tail_k * sigma`` (covers +-tail_k sigma)."""
    need = 2.0 * tail_k * sigma
    length = 1
    while 3**length < need:
        length += 1
    return length


def _priority_keys(cdf: np.ndarray, mom: np.ndarray, length: int) -> np.ndarray:
    """uint16 expected-variance priority for every node of one index's trit tree.

    Node ``(3**d - 1) / 2 + p`` is the interval ``[p * 3**(l-d), (p+1) * 3**(l-d))``
    before its (d+1)-th trit. Priority = (variance removed by the trit) / (its
    entropy in bits) (DPICT's -dD/dR), computed from the base table's integer
    masses (not the renormalized trit frequencies the coder uses) and
    stored as ``floor((log2(prio) + 64) * 512)`` clipped to 1..65535 (0 for none).
    """
    keys = np.zeros((3**length - 1) // 2, dtype=np.uint16)
    cdf = cdf.astype(np.int64)
    for depth in range(length):
        width = 3 ** (length - depth)
        sub = width // 3
        starts = np.arange(3**depth, dtype=np.int64) * width
        masses = np.stack([cdf[starts + (t + 1) * sub] - cdf[starts + t * sub] for t in range(3)])
        firsts = np.stack([mom[starts + (t + 1) * sub] - mom[starts + t * sub] for t in range(3)])
        masses_f = masses.astype(np.float64)
        node_mass = masses_f.sum(axis=0)
        p = masses_f / node_mass
        means = firsts.astype(np.float64) / masses_f
        overall = (p * means).sum(axis=0)
        d_gain = (p * (means - overall) ** 2).sum(axis=0)
        entropy = -(p * np.log2(p)).sum(axis=0)
        prio = d_gain / entropy
        with np.errstate(divide="ignore"):
            scaled = np.floor((np.log2(prio) + _PRIO_LOG2_OFFSET) * PRIO_STEPS_PER_OCTAVE)
        key = np.where(prio > 0, np.clip(scaled, 1, 65535), 0)
        first = (3**depth - 1) // 2
        keys[first : first + 3**depth] = key.astype(np.uint16)
    return keys


def trit_frequencies(masses: np.ndarray, precision_bits: int) -> np.ndarray:
    """Renormalize sub-interval masses (int64, shape (..., 3)) to frequencies summing to 2**P.

    ``f_t = floor(m_t * 2**P / S)`` with ``S = m_0 + m_1 + m_2``; the 0..2 counts
    left over go to the largest ``f_t`` (the first one on ties). Integer-only,
    so every platform derives the same frequencies (docs/bitstream.md 4.3).
    """
    masses = masses.astype(np.int64)
    total = masses.sum(axis=-1, keepdims=True)
    freq = (masses << precision_bits) // total
    leftover = (1 << precision_bits) - freq.sum(axis=-1)
    biggest = np.argmax(freq, axis=-1)
    np.put_along_axis(freq, biggest[..., None], np.take_along_axis(freq, biggest[..., None], -1) + leftover[..., None], -1)
    return freq


def _node_cumulatives(cdf, cdf_start, plane_len, node_start, precision_bits):
    """Cumulative trit frequencies (c1 = f0, c2 = f0 + f1) of every tree node, all indices."""
    c1 = np.empty(int(node_start[-1]), np.uint32)
    c2 = np.empty_like(c1)
    cdf = cdf.astype(np.int64)
    for k in range(plane_len.size):
        length = int(plane_len[k])
        base = int(cdf_start[k])
        for depth in range(length):
            sub = 3 ** (length - depth - 1)
            starts = base + np.arange(3**depth, dtype=np.int64) * 3 * sub
            masses = np.stack([cdf[starts + (t + 1) * sub] - cdf[starts + t * sub] for t in range(3)], axis=-1)
            freq = trit_frequencies(masses, precision_bits)
            at = int(node_start[k]) + (3**depth - 1) // 2
            c1[at : at + 3**depth] = freq[:, 0]
            c2[at : at + 3**depth] = freq[:, 0] + freq[:, 1]
    return c1, c2


#: LOG2_Q8[m] = round(256 * log2(1 + m / 256)): the fractional part of log2 in 1/256 bit. No entry lies
#: within 1e-3 of a rounding tie, so any log2 good to 1e-6 builds the same table (docs/bitstream.md 5.6).
LOG2_Q8 = np.array([round(256 * math.log2(1 + m / 256)) for m in range(256)], dtype=np.int64)


def information_q8(freq: np.ndarray, precision_bits: int) -> np.ndarray:
    """-log2(freq / 2**P) in 1/256 bit, integers only: 256·P − (256·⌊log2 f⌋ + LOG2_Q8[8-bit mantissa])."""
    f = np.asarray(freq, np.int64)
    if np.any(f < 1):
        raise ValueError("frequencies must be at least 1")
    exponent = np.zeros_like(f)
    rest = f.copy()
    for shift in (32, 16, 8, 4, 2, 1):  # floor(log2 f) without floating point
        big = rest >= (1 << shift)
        exponent += np.where(big, shift, 0)
        rest = np.where(big, rest >> shift, rest)
    mantissa = ((f << 8) >> exponent) & 255
    return 256 * precision_bits - (256 * exponent + LOG2_Q8[mantissa])


def _node_costs(c1: np.ndarray, c2: np.ndarray, precision_bits: int) -> np.ndarray:
    """Expected information of every node's trit in 1/256 bit (the chunk cut rule's weights), exact integers."""
    total = 1 << precision_bits
    freqs = np.stack([c1.astype(np.int64), c2.astype(np.int64) - c1, total - c2.astype(np.int64)], axis=-1)
    weighted = freqs * information_q8(np.maximum(freqs, 1), precision_bits)  # a 0 term adds 0 (validate refuses it)
    return (weighted.sum(axis=-1) >> precision_bits).astype(np.int64)


def _moments(cdf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """First-moment prefix sums ``mom[j] = sum_{s<j} s * f[s]`` per table, int64-exact."""
    mom = np.zeros(cdf.size, dtype=np.int64)
    for k in range(starts.size - 1):
        a, b = int(starts[k]), int(starts[k + 1])
        freq = np.diff(cdf[a:b].astype(np.int64))
        mom[a + 1 : b] = np.cumsum(np.arange(freq.size, dtype=np.int64) * freq)
    return mom


@dataclass(frozen=True)
class TritTables:
    """Per-scale-index integer tables for trit-plane coding (flat, offset-indexed)."""

    scales: np.ndarray  # float64 [K], increasing
    precision_bits: int
    tail_k: float
    plane_len: np.ndarray  # uint8 [K]
    cdf: np.ndarray  # uint32 flat; table k is cdf[cdf_start[k]:cdf_start[k+1]], 3**l + 1 entries
    cdf_start: np.ndarray  # int64 [K+1]
    prio_key: np.ndarray  # uint16 flat; (3**l - 1) / 2 nodes per index
    node_start: np.ndarray  # int64 [K+1]: offsets of each index's tree nodes (prio_key, node_c1, node_c2)
    mom: np.ndarray = field(init=False, repr=False)  # int64, aligned with cdf; derived
    node_c1: np.ndarray = field(init=False, repr=False)  # uint32 per node (node_start layout); derived
    node_c2: np.ndarray = field(init=False, repr=False)
    node_cost: np.ndarray = field(init=False, repr=False)  # int64 per node: expected trit information, 1/256 bit
    #: mass mixed uniformly over each table's bins (docs/bitstream.md 4.2); 0 in tables made before it
    uniform_mass: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mom", _moments(self.cdf, self.cdf_start))
        c1, c2 = _node_cumulatives(self.cdf, self.cdf_start, self.plane_len, self.node_start, self.precision_bits)
        object.__setattr__(self, "node_c1", c1)
        object.__setattr__(self, "node_c2", c2)
        object.__setattr__(self, "node_cost", _node_costs(c1, c2, self.precision_bits))

    @property
    def num_scales(self) -> int:
        return int(self.scales.size)

    @property
    def max_plane_len(self) -> int:
        return int(self.plane_len.max())

    def validate(self) -> None:
        s = self.scales
        if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise TableError("trit scale table must be 1-D, finite and positive, with >= 2 entries")
        if np.any(np.diff(s) <= 0):
            raise TableError("trit scale table must be strictly increasing")
        if s.size > 65535:  # indices travel as u16 and serve as uint16 sort keys in sigma order
            raise TableError("trit scale table may hold at most 65535 scales")
        if not 8 <= self.precision_bits <= MAX_PRECISION_BITS:
            raise TableError(f"trit precision must be 8..{MAX_PRECISION_BITS} bits")
        k = s.size
        if self.plane_len.shape != (k,) or self.cdf_start.shape != (k + 1,) or self.node_start.shape != (k + 1,):
            raise TableError("trit table index arrays do not match the scale table")
        if np.any(self.plane_len < 1) or np.any(self.plane_len > MAX_PLANES):
            raise TableError(f"trit plane lengths must be 1..{MAX_PLANES}")
        lens = self.plane_len.astype(np.int64)
        if np.any(np.diff(self.cdf_start) != POW3[lens] + 1) or self.cdf_start[0] != 0:
            raise TableError("trit CDF offsets do not match 3**plane_len + 1 entries per index")
        if np.any(np.diff(self.node_start) != (POW3[lens] - 1) // 2) or self.node_start[0] != 0:
            raise TableError("priority-key offsets do not match (3**plane_len - 1) / 2 nodes per index")
        if self.cdf.size != self.cdf_start[-1] or self.prio_key.size != self.node_start[-1]:
            raise TableError("trit table sizes do not match their offsets")
        if not 0.0 <= self.uniform_mass < 0.5:
            raise TableError(f"uniform_mass {self.uniform_mass} outside [0, 0.5)")
        _check_cdfs(self.cdf, self.cdf_start, 1 << self.precision_bits, "trit")

    def digest_arrays(self) -> list[tuple[str, np.ndarray]]:
        return [
            ("trit.scales", self.scales.astype("<f8")),
            ("trit.precision_bits", np.array([self.precision_bits], "<i8")),
            ("trit.tail_k", np.array([self.tail_k], "<f8")),
            # hashed only when used, so tables made before it keep their hash
            *([("trit.uniform_mass", np.array([self.uniform_mass], "<f8"))] if self.uniform_mass else []),
            ("trit.plane_len", self.plane_len.astype("u1")),
            ("trit.cdf", self.cdf.astype("<u4")),
            ("trit.cdf_start", self.cdf_start.astype("<i8")),
            ("trit.prio_key", self.prio_key.astype("<u2")),
            ("trit.node_start", self.node_start.astype("<i8")),
        ]


@dataclass(frozen=True)
class ZTables:
    """Per-channel integer CDFs of the factorized z prior; the last bin of each is the escape."""

    cdf: np.ndarray  # uint32 flat; channel c: n_c regular bins + 1 escape bin => n_c + 2 entries
    cdf_start: np.ndarray  # int64 [C+1]
    offset: np.ndarray  # int32 [C]: z value of regular bin 0
    precision_bits: int

    @property
    def num_channels(self) -> int:
        return int(self.offset.size)

    @property
    def num_symbols(self) -> np.ndarray:
        """Regular (non-escape) bins per channel."""
        return (np.diff(self.cdf_start) - 2).astype(np.int64)

    def validate(self) -> None:
        c = self.offset.size
        if c < 1 or self.cdf_start.shape != (c + 1,) or self.cdf_start[0] != 0:
            raise TableError("z table offsets do not match the channel count")
        if np.any(np.diff(self.cdf_start) < 3):
            raise TableError("every z channel needs at least one regular bin and the escape bin")
        if self.cdf.size != self.cdf_start[-1]:
            raise TableError("z CDF size does not match its offsets")
        if not 8 <= self.precision_bits <= MAX_PRECISION_BITS:
            raise TableError(f"z precision must be 8..{MAX_PRECISION_BITS} bits")
        _check_cdfs(self.cdf, self.cdf_start, 1 << self.precision_bits, "z")

    def digest_arrays(self) -> list[tuple[str, np.ndarray]]:
        return [
            ("z.cdf", self.cdf.astype("<u4")),
            ("z.cdf_start", self.cdf_start.astype("<i8")),
            ("z.offset", self.offset.astype("<i4")),
            ("z.precision_bits", np.array([self.precision_bits], "<i8")),
        ]


def _check_cdfs(cdf: np.ndarray, starts: np.ndarray, total: int, what: str) -> None:
    cdf = cdf.astype(np.int64)
    firsts = cdf[starts[:-1]]
    lasts = cdf[starts[1:] - 1]
    if np.any(firsts != 0) or np.any(lasts != total):
        raise TableError(f"every {what} CDF must run from 0 to {total}")
    steps = np.diff(cdf)
    steps[starts[1:-1] - 1] = 1  # table boundaries are not steps
    if np.any(steps < 1):
        raise TableError(f"a {what} CDF has a bin with zero frequency")


@dataclass(frozen=True)
class EntropyTables:
    """Everything the coder needs besides the network outputs; travels in the bundle."""

    trit: TritTables
    z: ZTables

    def validate(self) -> "EntropyTables":
        self.trit.validate()
        self.z.validate()
        return self

    @property
    def digest(self) -> bytes:
        """First 16 bytes of the SHA-256 of the canonical tables (written in each header)."""
        h = hashlib.sha256(_HASH_DOMAIN)
        for name, arr in self.trit.digest_arrays() + self.z.digest_arrays():
            h.update(f"{name}:{arr.dtype.str}:{arr.shape}\n".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.digest()[:16]

    def save(self, path: str | Path) -> None:
        """Write the tables as an ``.npz`` (no pickles), atomically."""
        arrays = {name.replace(".", "_"): arr for name, arr in self.trit.digest_arrays() + self.z.digest_arrays()}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "EntropyTables":
        """Read and validate tables written by :meth:`save`; raises :class:`TableError`."""
        arrays = read_npz(path, TableError, "entropy tables")
        try:
            trit = TritTables(
                scales=arrays["trit_scales"].astype(np.float64),
                precision_bits=int(arrays["trit_precision_bits"][0]),
                tail_k=float(arrays["trit_tail_k"][0]),
                plane_len=arrays["trit_plane_len"].astype(np.uint8),
                cdf=arrays["trit_cdf"].astype(np.uint32),
                cdf_start=arrays["trit_cdf_start"].astype(np.int64),
                prio_key=arrays["trit_prio_key"].astype(np.uint16),
                node_start=arrays["trit_node_start"].astype(np.int64),
                uniform_mass=float(arrays["trit_uniform_mass"][0]) if "trit_uniform_mass" in arrays else 0.0,
            )
            z = ZTables(
                cdf=arrays["z_cdf"].astype(np.uint32),
                cdf_start=arrays["z_cdf_start"].astype(np.int64),
                offset=arrays["z_offset"].astype(np.int32),
                precision_bits=int(arrays["z_precision_bits"][0]),
            )
        except (KeyError, IndexError) as exc:
            raise TableError(f"{path} is not an edge-sdk entropy table file (missing {exc})") from exc
        return cls(trit=trit, z=z).validate()


def build_trit_tables(
    scales: np.ndarray | None = None,
    precision_bits: int = DEFAULT_TRIT_PRECISION,
    tail_k: float = TAIL_K,
    uniform_mass: float = DEFAULT_UNIFORM_MASS,
) -> TritTables:
    """Build trit tables for a scale table (default: 128 log-spaced scales, 0.11..256).

    ``uniform_mass`` of each table is spread evenly over its bins: real latents have heavier
    tails than the prior's Gaussian, and without it a residual two bins out at sigma 0.33
    costs 18 bits (docs/bitstream.md 4.2)."""
    if not 0.0 <= uniform_mass < 0.5:
        raise ValueError(f"uniform_mass must lie in [0, 0.5), got {uniform_mass}")
    scales = log_spaced_scales() if scales is None else np.asarray(scales, dtype=np.float64)
    total = 1 << precision_bits
    lens = np.array([plane_length(float(s), tail_k) for s in scales], dtype=np.int64)
    if lens.max() > MAX_PLANES:
        raise ValueError(f"scale {scales.max()} needs more than {MAX_PLANES} trit planes")
    cdfs, keys = [], []
    for sigma, length in zip(scales, lens):
        n_bins = 3 ** int(length)
        masses = _gaussian_bin_masses(float(sigma), n_bins)
        if uniform_mass:
            masses = masses / masses.sum() * (1.0 - uniform_mass) + uniform_mass / n_bins
        freq = quantize_pmf(masses, total)
        cdf = np.concatenate([[0], np.cumsum(freq)]).astype(np.int64)
        mom = np.concatenate([[0], np.cumsum(np.arange(n_bins, dtype=np.int64) * freq)])
        cdfs.append(cdf)
        keys.append(_priority_keys(cdf, mom, int(length)))
    cdf_start = np.concatenate([[0], np.cumsum([c.size for c in cdfs])]).astype(np.int64)
    node_start = np.concatenate([[0], np.cumsum([k.size for k in keys])]).astype(np.int64)
    tables = TritTables(
        scales=scales.copy(),
        precision_bits=precision_bits,
        tail_k=float(tail_k),
        plane_len=lens.astype(np.uint8),
        cdf=np.concatenate(cdfs).astype(np.uint32),
        cdf_start=cdf_start,
        prio_key=np.concatenate(keys).astype(np.uint16),
        node_start=node_start,
        uniform_mass=float(uniform_mass),
    )
    tables.validate()
    return tables


def build_z_tables(
    pmfs: Sequence[np.ndarray],
    offsets: Sequence[int],
    precision_bits: int = DEFAULT_Z_PRECISION,
) -> ZTables:
    """Quantize one pmf per channel (plus an escape bin holding the leftover mass).

    ``pmfs[c][i]`` is the probability of z value ``offsets[c] + i``. The escape bin
    gets ``1 - sum(pmf)`` (at least one count), so values outside the table stay
    codable losslessly.
    """
    if len(pmfs) != len(offsets) or not pmfs:
        raise ValueError("need one offset per pmf and at least one channel")
    total = 1 << precision_bits
    cdfs = []
    for pmf in pmfs:
        pmf = np.asarray(pmf, dtype=np.float64)
        tail = max(0.0, 1.0 - float(pmf.sum()))
        freq = quantize_pmf(np.append(pmf, tail), total)
        cdfs.append(np.concatenate([[0], np.cumsum(freq)]))
    cdf_start = np.concatenate([[0], np.cumsum([c.size for c in cdfs])]).astype(np.int64)
    tables = ZTables(
        cdf=np.concatenate(cdfs).astype(np.uint32),
        cdf_start=cdf_start,
        offset=np.asarray(offsets, dtype=np.int32),
        precision_bits=precision_bits,
    )
    tables.validate()
    return tables


def laplace_z_tables(scales: Sequence[float], support: int = 32, precision_bits: int = DEFAULT_Z_PRECISION) -> ZTables:
    """z tables for discretized zero-mean Laplace priors on ``[-support, support]``.

    A stand-in factorized prior for tests and benchmarks; real bundles carry the
    learned EntropyBottleneck's CDFs instead.
    """
    values = np.arange(-support, support + 1, dtype=np.float64)
    pmfs = []
    for b in scales:
        upper = np.where(values + 0.5 < 0, 0.5 * np.exp((values + 0.5) / b), 1 - 0.5 * np.exp(-(values + 0.5) / b))
        lower = np.where(values - 0.5 < 0, 0.5 * np.exp((values - 0.5) / b), 1 - 0.5 * np.exp(-(values - 0.5) / b))
        pmfs.append(upper - lower)
    return build_z_tables(pmfs, [-support] * len(pmfs), precision_bits)


def default_entropy_tables(z_channels: int, z_scales: Sequence[float] | None = None) -> EntropyTables:
    """Default trit tables plus Laplace z tables: for tests, benchmarks and examples."""
    if z_scales is None:
        z_scales = np.geomspace(0.5, 4.0, z_channels)
    return EntropyTables(trit=build_trit_tables(), z=laplace_z_tables(z_scales)).validate()
