"""Fast path: numba-compiled kernels for the range coder and trit-plane loops.

Written by hand because no installable library does per-symbol integer
interval coding from our tables on both x86-64 and aarch64 without a compiler
(constriction has no aarch64 wheel; compressai needs bucketed tables and torch).
Each kernel is the fused, compiled form of the reference in ``rangecoder.py``
plus ``tritplane.py``'s reference loops; ``tests/runtime/test_engines.py``
proves byte equality.

Numba note: every coder variable is kept ``uint64`` explicitly, because mixing
``uint64`` with ``int64`` silently promotes to float64 in numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U8 = np.uint64(8)
_U56 = np.uint64(56)
_RENORM = np.uint64(1 << 56)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_ESC_NO = np.uint64(65535)
_ESC_TOTAL = np.uint64(65536)
_MAX_EG_PREFIX = 40

OK = 0
ERR_INTERVAL = -1  # code value outside the coded interval
ERR_EG_PREFIX = -2  # Exp-Golomb prefix too long


# --------------------------------------------------------------------------- coder


@njit(inline="always")
def _put(out, pos, low, rng, start, freq, total):
    r = rng // total
    new_low = low + r * start
    if new_low < low:  # wrapped: carry into the bytes already written
        i = pos - 1
        while out[i] == 255:
            out[i] = 0
            i -= 1
        out[i] += 1
    low = new_low
    rng = r * freq
    while rng < _RENORM:
        out[pos] = np.uint8(low >> _U56)
        pos += 1
        low = low << _U8
        rng = rng << _U8
    return pos, low, rng


@njit(inline="always")
def _put_uint(out, pos, low, rng, value):
    v = np.uint64(value) + _U1
    nbits = 0
    t = v
    while t > _U0:
        nbits += 1
        t = t >> _U1
    two = np.uint64(2)
    for _ in range(nbits - 1):
        pos, low, rng = _put(out, pos, low, rng, _U1, _U1, two)
    pos, low, rng = _put(out, pos, low, rng, _U0, _U1, two)
    for i in range(nbits - 2, -1, -1):
        bit = (v >> np.uint64(i)) & _U1
        pos, low, rng = _put(out, pos, low, rng, bit, _U1, two)
    return pos, low, rng


@njit
def _finish(out, pos, low, rng):
    nbytes = 0
    value = _U0
    carry = False
    while nbytes <= 8:
        if nbytes == 0:
            carry = low != _U0
            value = _U0
            ok = (_U0 - low) < rng if carry else True
        else:
            mask = (_U1 << np.uint64(64 - 8 * nbytes)) - _U1
            s = low + mask
            carry = s < low
            value = s & (~mask)
            ok = (value - low) < rng
        if ok:
            break
        nbytes += 1
    if carry:
        i = pos - 1
        while out[i] == 255:
            out[i] = 0
            i -= 1
        out[i] += 1
    for j in range(nbytes):
        out[pos] = np.uint8((value >> np.uint64(56 - 8 * j)) & np.uint64(255))
        pos += 1
    while pos > 0 and out[pos - 1] == 0:
        pos -= 1
    return pos


@njit(inline="always")
def _byte(data, pos):
    if pos < data.size:
        return np.uint64(data[pos])
    return _U0


@njit(inline="always")
def _renorm(data, pos, val, rng):
    while rng < _RENORM:
        val = (val << _U8) | _byte(data, pos)
        pos += 1
        rng = rng << _U8
    return pos, val, rng


@njit(inline="always")
def _start(data):
    val = _U0
    for i in range(8):
        val = (val << _U8) | _byte(data, i)
    return 8, val, _ALL_ONES


@njit(inline="always")
def _get_bit(data, pos, val, rng):
    r = rng >> _U1
    if val < r:
        bit = 0
    elif val < r + r:
        bit = 1
        val -= r
    else:
        return -1, pos, val, rng
    rng = r
    pos, val, rng = _renorm(data, pos, val, rng)
    return bit, pos, val, rng


@njit(inline="always")
def _get_uint(data, pos, val, rng):
    nbits = 1
    while True:
        bit, pos, val, rng = _get_bit(data, pos, val, rng)
        if bit < 0:
            return ERR_INTERVAL, pos, val, rng
        if bit == 0:
            break
        nbits += 1
        if nbits > _MAX_EG_PREFIX:
            return ERR_EG_PREFIX, pos, val, rng
    v = 1
    for _ in range(nbits - 1):
        bit, pos, val, rng = _get_bit(data, pos, val, rng)
        if bit < 0:
            return ERR_INTERVAL, pos, val, rng
        v = (v << 1) | bit
    return v - 1, pos, val, rng


# --------------------------------------------------------------------- trit planes


@njit(cache=True)
def plane_order(plane, num_planes, plane_len, kidx, lo, rem, prio_key, prio_start, pow3, by_sigma):
    """Participants of ``plane`` sorted by (key descending, element index ascending).

    A counting sort over the uint16 key space: stable, so ties keep index order.
    """
    n = plane_len.size
    counts = np.zeros(65537, dtype=np.int64)
    keys = np.empty(n, dtype=np.int64)
    total = 0
    for e in range(n):
        length = plane_len[e]
        if num_planes - length > plane:
            keys[e] = -1
            continue
        k = kidx[e]
        if by_sigma:
            key = k
        else:
            r = rem[e]
            depth = length - r
            node = (pow3[depth] - 1) // 2 + lo[e] // pow3[r]
            key = np.int64(prio_key[prio_start[k] + node])
        keys[e] = key
        counts[65535 - key + 1] += 1
        total += 1
    for b in range(1, 65537):
        counts[b] += counts[b - 1]
    order = np.empty(total, dtype=np.int64)
    for e in range(n):
        key = keys[e]
        if key >= 0:
            slot = 65535 - key
            order[counts[slot]] = e
            counts[slot] += 1
    return order


@njit(cache=True)
def plane_symbols(order, s_val, lo, rem, kidx, cdf, cdf_start, pow3, trits, freqs, totals):
    """Encoder side: the trit of every participant plus its frequency and interval total."""
    for j in range(order.size):
        e = order[j]
        sub = pow3[rem[e] - 1]
        base = cdf_start[kidx[e]] + lo[e]
        t = (s_val[e] - lo[e]) // sub
        c0 = np.int64(cdf[base])
        ct = np.int64(cdf[base + t * sub])
        ct1 = np.int64(cdf[base + (t + 1) * sub])
        trits[j] = t
        freqs[j] = ct1 - ct
        totals[j] = np.int64(cdf[base + 3 * sub]) - c0


@njit(cache=True)
def encode_trit_chunk(order, a, b, trits, lo, rem, kidx, cdf, cdf_start, pow3, out):
    pos = 0
    low = _U0
    rng = _ALL_ONES
    for j in range(a, b):
        e = order[j]
        sub = pow3[rem[e] - 1]
        base = cdf_start[kidx[e]] + lo[e]
        t = np.int64(trits[j])
        c0 = np.uint64(cdf[base])
        ct = np.uint64(cdf[base + t * sub])
        ct1 = np.uint64(cdf[base + (t + 1) * sub])
        c3 = np.uint64(cdf[base + 3 * sub])
        pos, low, rng = _put(out, pos, low, rng, ct - c0, ct1 - ct, c3 - c0)
    return _finish(out, pos, low, rng)


@njit(cache=True)
def decode_trit_chunk(order, a, b, lo, rem, kidx, cdf, cdf_start, pow3, data, trits):
    """Decode trits of ``order[a:b]`` into ``trits[0:b-a]``; element state is not touched."""
    pos, val, rng = _start(data)
    for j in range(a, b):
        e = order[j]
        sub = pow3[rem[e] - 1]
        base = cdf_start[kidx[e]] + lo[e]
        c0 = np.uint64(cdf[base])
        c1 = np.uint64(cdf[base + sub]) - c0
        c2 = np.uint64(cdf[base + 2 * sub]) - c0
        total = np.uint64(cdf[base + 3 * sub]) - c0
        r = rng // total
        x1 = r * c1
        x2 = r * c2
        if val < x1:
            t = 0
            rng = x1
        elif val < x2:
            t = 1
            val -= x1
            rng = x2 - x1
        elif val < r * total:
            t = 2
            val -= x2
            rng = r * total - x2
        else:
            return ERR_INTERVAL
        trits[j - a] = t
        pos, val, rng = _renorm(data, pos, val, rng)
    return OK


@njit(cache=True)
def commit_trits(order, a, b, trits, lo, rem, pow3):
    for j in range(a, b):
        e = order[j]
        r = rem[e] - 1
        lo[e] += np.int64(trits[j - a]) * pow3[r]
        rem[e] = r


@njit(cache=True)
def conditional_mean(lo, rem, kidx, plane_len, cdf, mom, cdf_start, pow3, out):
    """E[s | s in the element's current interval] - centre, from integer table moments."""
    for e in range(lo.size):
        base = cdf_start[kidx[e]]
        a = base + lo[e]
        b = a + pow3[rem[e]]
        mass = np.float64(np.int64(cdf[b]) - np.int64(cdf[a]))
        first = np.float64(mom[b] - mom[a])
        out[e] = first / mass - np.float64((pow3[plane_len[e]] - 1) // 2)


# ------------------------------------------------------------------------ escapes


@njit(cache=True)
def encode_escapes(overflow, out):
    """Per edge element: flag (65535:1 out of 2**16), then Exp-Golomb(overflow - 1) if set."""
    pos = 0
    low = _U0
    rng = _ALL_ONES
    for i in range(overflow.size):
        u = overflow[i]
        if u == 0:
            pos, low, rng = _put(out, pos, low, rng, _U0, _ESC_NO, _ESC_TOTAL)
        else:
            pos, low, rng = _put(out, pos, low, rng, _ESC_NO, _U1, _ESC_TOTAL)
            pos, low, rng = _put_uint(out, pos, low, rng, u - 1)
    return _finish(out, pos, low, rng)


@njit(cache=True)
def decode_escapes(data, overflow):
    pos, val, rng = _start(data)
    for i in range(overflow.size):
        r = rng // _ESC_TOTAL
        x1 = r * _ESC_NO
        if val < x1:
            escaped = False
            rng = x1
        elif val < r * _ESC_TOTAL:
            escaped = True
            val -= x1
            rng = r
        else:
            return ERR_INTERVAL
        pos, val, rng = _renorm(data, pos, val, rng)
        if escaped:
            v, pos, val, rng = _get_uint(data, pos, val, rng)
            if v < 0:
                return v
            overflow[i] = v + 1
        else:
            overflow[i] = 0
    return OK


# ---------------------------------------------------------------------------- z


@njit(cache=True)
def encode_z(values, channel, cdf, cdf_start, offset, out):
    pos = 0
    low = _U0
    rng = _ALL_ONES
    for i in range(values.size):
        c = channel[i]
        base = cdf_start[c]
        n_regular = cdf_start[c + 1] - base - 2
        total = np.uint64(cdf[cdf_start[c + 1] - 1])
        v = values[i] - offset[c]
        if 0 <= v < n_regular:
            lo_c = np.uint64(cdf[base + v])
            pos, low, rng = _put(out, pos, low, rng, lo_c, np.uint64(cdf[base + v + 1]) - lo_c, total)
        else:
            lo_c = np.uint64(cdf[base + n_regular])
            pos, low, rng = _put(out, pos, low, rng, lo_c, total - lo_c, total)
            u = 2 * (v - n_regular) if v >= n_regular else 2 * (-1 - v) + 1
            pos, low, rng = _put_uint(out, pos, low, rng, u)
    return _finish(out, pos, low, rng)


@njit(cache=True)
def decode_z(data, channel, cdf, cdf_start, offset, values):
    pos, val, rng = _start(data)
    for i in range(values.size):
        c = channel[i]
        base = cdf_start[c]
        n_regular = cdf_start[c + 1] - base - 2
        total = np.uint64(cdf[cdf_start[c + 1] - 1])
        r = rng // total
        target = val // r
        if target >= total:
            return ERR_INTERVAL
        lo_i = np.int64(0)
        hi_i = n_regular + 1  # bins 0..n_regular (escape is the last)
        while hi_i - lo_i > 1:
            mid = (lo_i + hi_i) // 2
            if np.uint64(cdf[base + mid]) <= target:
                lo_i = mid
            else:
                hi_i = mid
        start = np.uint64(cdf[base + lo_i])
        val -= r * start
        rng = r * (np.uint64(cdf[base + lo_i + 1]) - start)
        pos, val, rng = _renorm(data, pos, val, rng)
        if lo_i < n_regular:
            values[i] = lo_i + offset[c]
        else:
            u, pos, val, rng = _get_uint(data, pos, val, rng)
            if u < 0:
                return u
            if u % 2 == 0:
                values[i] = n_regular + u // 2 + offset[c]
            else:
                values[i] = -1 - (u - 1) // 2 + offset[c]
    return OK
