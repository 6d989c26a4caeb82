"""Fast path: numba-compiled kernels for the range coder and trit-plane loops.

Written by hand because no installable library does per-symbol integer
interval coding from our tables on both x86-64 and aarch64 without a compiler
(constriction has no aarch64 wheel; compressai needs bucketed tables and torch).
Each kernel is the fused, compiled form of ``rangecoder.py`` plus the
``ReferenceCoder`` loops in ``coders.py``; ``tests/runtime/test_engines.py``
proves byte equality.

Element state (see ``coders.PlaneState``): ``prefix`` (int32) holds the trits
decoded so far as a base-3 number, ``rem`` (int8) how many are still unknown;
the element's interval is ``[prefix * 3**rem, (prefix + 1) * 3**rem)``.

Numba note: coder variables are kept ``uint64`` explicitly, because mixing
``uint64`` with ``int64`` silently promotes to float64 in numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U8 = np.uint64(8)
_U16 = np.uint64(16)
_U56 = np.uint64(56)
_RENORM = np.uint64(1 << 56)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_ESC_NO = np.uint64(65535)
_MAX_EG_PREFIX = 40

OK = 0
ERR_INTERVAL = -1  # code value outside the coded interval
ERR_EG_PREFIX = -2  # Exp-Golomb prefix too long


# --------------------------------------------------------------------------- coder


@njit(inline="always")
def _put(out, pos, low, rng, start, freq, bits):
    """Code [start, start + freq) out of 2**bits (all uint64)."""
    r = rng >> bits
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
    """Exp-Golomb order 0 of value >= 0 with equiprobable bits."""
    v = np.uint64(value) + _U1
    nbits = 0
    t = v
    while t > _U0:
        nbits += 1
        t = t >> _U1
    for _ in range(nbits - 1):
        pos, low, rng = _put(out, pos, low, rng, _U1, _U1, _U1)
    pos, low, rng = _put(out, pos, low, rng, _U0, _U1, _U1)
    for i in range(nbits - 2, -1, -1):
        bit = (v >> np.uint64(i)) & _U1
        pos, low, rng = _put(out, pos, low, rng, bit, _U1, _U1)
    return pos, low, rng


@njit
def _finish(out, pos, low, rng):
    """Shortest byte suffix whose zero-extension lies in [low, low + rng); trailing zeros dropped."""
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
def _renorm(data, pos, val, rng):
    while rng < _RENORM:
        byte = np.uint64(data[pos]) if pos < data.size else _U0
        val = (val << _U8) | byte
        pos += 1
        rng = rng << _U8
    return pos, val, rng


@njit(inline="always")
def _start(data):
    val = _U0
    for i in range(8):
        byte = np.uint64(data[i]) if i < data.size else _U0
        val = (val << _U8) | byte
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
    pos, val, rng = _renorm(data, pos, val, r)
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


@njit(inline="always")
def _node(e, kidx, plane_len, prefix, rem, node_start, node_base):
    return node_start[kidx[e]] + node_base[np.int64(plane_len[e]) - np.int64(rem[e])] + np.int64(prefix[e])


@njit(cache=True)
def plane_order(plane, num_planes, plane_len, kidx, prefix, rem, prio_key, node_start, node_base, by_sigma,
                channel_offset, channel_size):
    """Participants of ``plane`` sorted by (key descending, element index ascending).

    ``channel_offset[e // channel_size]`` is added to the node key (zeros unless the stream uses
    the channel-weighted order) and the sum clipped to 1..65535. A counting sort over the
    uint16 key space: stable, so ties keep index order.
    """
    n = plane_len.size
    counts = np.zeros(65537, dtype=np.int64)
    keys = np.empty(n, dtype=np.int32)
    total = 0
    first = num_planes - plane
    for e in range(n):
        if plane_len[e] < first:
            keys[e] = -1
            continue
        if by_sigma:
            key = np.int32(kidx[e])
        else:
            key = np.int32(prio_key[_node(e, kidx, plane_len, prefix, rem, node_start, node_base)])
            key = min(max(key + np.int32(channel_offset[e // channel_size]), np.int32(1)), np.int32(65535))
        keys[e] = key
        counts[65536 - key] += 1
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
def plane_cumulative_costs(order, plane_len, kidx, prefix, rem, node_cost, node_start, node_base):
    """Running sum of the participants' expected trit information (1/256 bit), in plane order."""
    cum = np.empty(order.size, dtype=np.int64)
    total = np.int64(0)
    for j in range(order.size):
        total += node_cost[_node(order[j], kidx, plane_len, prefix, rem, node_start, node_base)]
        cum[j] = total
    return cum


@njit(cache=True)
def plane_symbols(order, s_val, plane_len, kidx, prefix, rem, node_c1, node_c2, node_start, node_base, pow3, bits, trits, freqs):
    """Encoder side: each participant's trit and its frequency (out of 2**bits)."""
    for j in range(order.size):
        e = order[j]
        t = (s_val[e] // pow3[np.int64(rem[e]) - 1]) % 3
        node = _node(e, kidx, plane_len, prefix, rem, node_start, node_base)
        c1 = np.int64(node_c1[node])
        c2 = np.int64(node_c2[node])
        trits[j] = t
        if t == 0:
            freqs[j] = c1
        elif t == 1:
            freqs[j] = c2 - c1
        else:
            freqs[j] = (np.int64(1) << bits) - c2


@njit(cache=True)
def encode_trit_chunk(order, a, b, trits, plane_len, kidx, prefix, rem, node_c1, node_c2, node_start, node_base, bits, out):
    pos = 0
    low = _U0
    rng = _ALL_ONES
    ubits = np.uint64(bits)
    total = _U1 << ubits
    for j in range(a, b):
        e = order[j]
        node = _node(e, kidx, plane_len, prefix, rem, node_start, node_base)
        c1 = np.uint64(node_c1[node])
        c2 = np.uint64(node_c2[node])
        t = trits[j]
        if t == 0:
            pos, low, rng = _put(out, pos, low, rng, _U0, c1, ubits)
        elif t == 1:
            pos, low, rng = _put(out, pos, low, rng, c1, c2 - c1, ubits)
        else:
            pos, low, rng = _put(out, pos, low, rng, c2, total - c2, ubits)
    return _finish(out, pos, low, rng)


@njit(cache=True)
def decode_trit_chunk(order, a, b, plane_len, kidx, prefix, rem, node_c1, node_c2, node_start, node_base, bits, data, trits):
    """Decode the trits of ``order[a:b]`` into ``trits`` and apply them to the state.

    On an invalid code value the elements touched so far are rolled back.
    """
    pos, val, rng = _start(data)
    ubits = np.uint64(bits)
    for j in range(a, b):
        e = order[j]
        node = _node(e, kidx, plane_len, prefix, rem, node_start, node_base)
        r = rng >> ubits
        x1 = r * np.uint64(node_c1[node])
        x2 = r * np.uint64(node_c2[node])
        if val < x1:
            t = 0
            rng = x1
        elif val < x2:
            t = 1
            val -= x1
            rng = x2 - x1
        elif val < (r << ubits):
            t = 2
            val -= x2
            rng = (r << ubits) - x2
        else:
            rollback_trits(order, a, j, prefix, rem)
            return ERR_INTERVAL
        trits[j - a] = t
        prefix[e] = prefix[e] * 3 + t
        rem[e] -= 1
        pos, val, rng = _renorm(data, pos, val, rng)
    return OK


@njit(cache=True)
def apply_trits(order, a, b, trits, prefix, rem):
    for j in range(a, b):
        e = order[j]
        prefix[e] = prefix[e] * 3 + trits[j - a]
        rem[e] -= 1


@njit(cache=True)
def rollback_trits(order, a, b, prefix, rem):
    for j in range(a, b):
        e = order[j]
        prefix[e] = prefix[e] // 3
        rem[e] += 1


@njit(cache=True)
def conditional_mean(prefix, rem, kidx, plane_len, cdf, mom, cdf_start, pow3, out):
    """E[s | s in the element's current interval] - centre, from integer table moments."""
    for e in range(prefix.size):
        width = pow3[np.int64(rem[e])]
        a = cdf_start[kidx[e]] + np.int64(prefix[e]) * width
        b = a + width
        mass = np.float64(np.int64(cdf[b]) - np.int64(cdf[a]))
        first = np.float64(mom[b] - mom[a])
        out[e] = first / mass - np.float64((pow3[np.int64(plane_len[e])] - 1) // 2)


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
            pos, low, rng = _put(out, pos, low, rng, _U0, _ESC_NO, _U16)
        else:
            pos, low, rng = _put(out, pos, low, rng, _ESC_NO, _U1, _U16)
            pos, low, rng = _put_uint(out, pos, low, rng, u - 1)
    return _finish(out, pos, low, rng)


@njit(cache=True)
def decode_escapes(data, overflow):
    pos, val, rng = _start(data)
    for i in range(overflow.size):
        r = rng >> _U16
        x1 = r * _ESC_NO
        if val < x1:
            escaped = False
            rng = x1
        elif val < (r << _U16):
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
def encode_z(values, channel, cdf, cdf_start, offset, bits, out):
    """Regular bin, or the escape bin followed by Exp-Golomb of the zigzag overflow."""
    pos = 0
    low = _U0
    rng = _ALL_ONES
    ubits = np.uint64(bits)
    total = _U1 << ubits
    for i in range(values.size):
        c = channel[i]
        base = cdf_start[c]
        n_regular = cdf_start[c + 1] - base - 2
        v = values[i] - offset[c]
        if 0 <= v < n_regular:
            lo_c = np.uint64(cdf[base + v])
            pos, low, rng = _put(out, pos, low, rng, lo_c, np.uint64(cdf[base + v + 1]) - lo_c, ubits)
        else:
            lo_c = np.uint64(cdf[base + n_regular])
            pos, low, rng = _put(out, pos, low, rng, lo_c, total - lo_c, ubits)
            u = 2 * (v - n_regular) if v >= n_regular else 2 * (-1 - v) + 1
            pos, low, rng = _put_uint(out, pos, low, rng, u)
    return _finish(out, pos, low, rng)


@njit(cache=True)
def decode_z(data, channel, cdf, cdf_start, offset, bits, values):
    pos, val, rng = _start(data)
    ubits = np.uint64(bits)
    for i in range(values.size):
        c = channel[i]
        base = cdf_start[c]
        n_regular = cdf_start[c + 1] - base - 2
        r = rng >> ubits
        if val >= (r << ubits):
            return ERR_INTERVAL
        lo_i = np.int64(0)
        hi_i = n_regular + 1  # bins 0..n_regular (the escape bin is last)
        while hi_i - lo_i > 1:  # largest s with r * cdf[s] <= val
            mid = (lo_i + hi_i) // 2
            if r * np.uint64(cdf[base + mid]) <= val:
                lo_i = mid
            else:
                hi_i = mid
        start = r * np.uint64(cdf[base + lo_i])
        val -= start
        rng = r * np.uint64(cdf[base + lo_i + 1]) - start
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
