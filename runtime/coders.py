"""Two interchangeable implementations of the coding steps: reference and fast.

:class:`ReferenceCoder` spells every step out in plain Python on top of
``rangecoder.py`` (slow, meant to be read). :class:`FastCoder` runs the fused
numba kernels. They write identical bytes; ``tritplane.py`` and ``codec.py``
do not care which one they hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .rangecoder import ESCAPE_FLAG_FREQS, ESCAPE_FLAG_TOTAL, RangeCoderError, RangeDecoder, RangeEncoder
from .tables import POW3, TritTables, ZTables


@dataclass
class PlaneState:
    """Per-element trit-plane state shared by encoder and decoder.

    ``lo`` is the lower end of the element's interval in the symbol domain
    ``[0, 3**plane_len)``; ``rem`` is how many trits are still unknown, so the
    interval is ``[lo, lo + 3**rem)``.
    """

    kidx: np.ndarray  # int64 [N] scale index
    plane_len: np.ndarray  # int64 [N]
    lo: np.ndarray  # int64 [N]
    rem: np.ndarray  # int64 [N]
    num_planes: int

    @classmethod
    def start(cls, kidx: np.ndarray, tables: TritTables) -> "PlaneState":
        kidx = np.ascontiguousarray(kidx, dtype=np.int64)
        plane_len = tables.plane_len.astype(np.int64)[kidx]
        return cls(
            kidx=kidx,
            plane_len=plane_len,
            lo=np.zeros_like(kidx),
            rem=plane_len.copy(),
            num_planes=int(plane_len.max()) if plane_len.size else 0,
        )

    def participants(self, plane: int) -> int:
        return int(np.count_nonzero(self.num_planes - self.plane_len <= plane))

    def edges(self) -> np.ndarray:
        """Flat indices of elements whose final symbol sits on a table edge."""
        top = POW3[self.plane_len] - 1
        return np.flatnonzero((self.lo == 0) | (self.lo == top))


class Coder(Protocol):
    name: str

    def plane_order(self, plane: int, st: PlaneState, tables: TritTables, by_sigma: bool) -> np.ndarray: ...
    def plane_symbols(
        self, order: np.ndarray, st: PlaneState, tables: TritTables, s_val: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def encode_chunk(self, order, a: int, b: int, trits, st: PlaneState, tables: TritTables) -> bytes: ...
    def decode_chunk(self, order, a: int, b: int, st: PlaneState, tables: TritTables, payload: bytes) -> np.ndarray: ...
    def commit(self, order, a: int, b: int, trits, st: PlaneState) -> None: ...
    def encode_escapes(self, overflow: np.ndarray) -> bytes: ...
    def decode_escapes(self, payload: bytes, count: int) -> np.ndarray: ...
    def encode_z(self, values: np.ndarray, channel: np.ndarray, tables: ZTables) -> bytes: ...
    def decode_z(self, payload: bytes, channel: np.ndarray, tables: ZTables) -> np.ndarray: ...
    def conditional_mean(self, st: PlaneState, tables: TritTables) -> np.ndarray: ...


class ReferenceCoder:
    """Plain-Python coding steps: the executable form of docs/bitstream.md."""

    name = "reference"

    def plane_order(self, plane, st, tables, by_sigma):
        keys = {}
        for e in range(st.kidx.size):
            length = int(st.plane_len[e])
            if st.num_planes - length > plane:
                continue  # element has not started yet
            k = int(st.kidx[e])
            if by_sigma:
                keys[e] = k
            else:
                rem = int(st.rem[e])
                depth = length - rem
                node = (3**depth - 1) // 2 + int(st.lo[e]) // 3**rem
                keys[e] = int(tables.prio_key[tables.prio_start[k] + node])
        order = sorted(keys, key=lambda e: (-keys[e], e))
        return np.array(order, dtype=np.int64)

    def _interval(self, e, st, tables):
        sub = 3 ** (int(st.rem[e]) - 1)
        base = int(tables.cdf_start[st.kidx[e]]) + int(st.lo[e])
        cum = [int(tables.cdf[base + t * sub]) for t in range(4)]
        return sub, [c - cum[0] for c in cum]

    def plane_symbols(self, order, st, tables, s_val):
        n = order.size
        trits = np.empty(n, np.uint8)
        freqs = np.empty(n, np.int64)
        totals = np.empty(n, np.int64)
        for j, e in enumerate(order):
            sub, cum = self._interval(e, st, tables)
            t = (int(s_val[e]) - int(st.lo[e])) // sub
            trits[j], freqs[j], totals[j] = t, cum[t + 1] - cum[t], cum[3]
        return trits, freqs, totals

    def encode_chunk(self, order, a, b, trits, st, tables):
        enc = RangeEncoder()
        for j in range(a, b):
            _, cum = self._interval(order[j], st, tables)
            t = int(trits[j])
            enc.encode(cum[t], cum[t + 1] - cum[t], cum[3])
        return enc.finish()

    def decode_chunk(self, order, a, b, st, tables, payload):
        dec = RangeDecoder(payload)
        out = np.empty(b - a, np.uint8)
        for j in range(a, b):
            _, cum = self._interval(order[j], st, tables)
            out[j - a] = dec.decode(cum)
        return out

    def commit(self, order, a, b, trits, st):
        for j in range(a, b):
            e = order[j]
            st.rem[e] -= 1
            st.lo[e] += int(trits[j - a]) * 3 ** int(st.rem[e])

    def encode_escapes(self, overflow):
        enc = RangeEncoder()
        no, yes = ESCAPE_FLAG_FREQS
        for u in overflow:
            if u == 0:
                enc.encode(0, no, ESCAPE_FLAG_TOTAL)
            else:
                enc.encode(no, yes, ESCAPE_FLAG_TOTAL)
                enc.encode_uint(int(u) - 1)
        return enc.finish()

    def decode_escapes(self, payload, count):
        dec = RangeDecoder(payload)
        flag_cdf = [0, ESCAPE_FLAG_FREQS[0], ESCAPE_FLAG_TOTAL]
        out = np.zeros(count, np.int64)
        for i in range(count):
            if dec.decode(flag_cdf):
                out[i] = dec.decode_uint() + 1
        return out

    def encode_z(self, values, channel, tables):
        enc = RangeEncoder()
        for v, c in zip(values.tolist(), channel.tolist()):
            cdf = tables.cdf[tables.cdf_start[c] : tables.cdf_start[c + 1]].tolist()
            n = len(cdf) - 2
            sym = v - int(tables.offset[c])
            if 0 <= sym < n:
                enc.encode(cdf[sym], cdf[sym + 1] - cdf[sym], cdf[-1])
            else:
                enc.encode(cdf[n], cdf[-1] - cdf[n], cdf[-1])
                enc.encode_uint(2 * (sym - n) if sym >= n else 2 * (-1 - sym) + 1)
        return enc.finish()

    def decode_z(self, payload, channel, tables):
        dec = RangeDecoder(payload)
        out = np.empty(channel.size, np.int64)
        for i, c in enumerate(channel.tolist()):
            cdf = tables.cdf[tables.cdf_start[c] : tables.cdf_start[c + 1]].tolist()
            n = len(cdf) - 2
            sym = dec.decode(cdf)
            if sym == n:
                u = dec.decode_uint()
                sym = n + u // 2 if u % 2 == 0 else -1 - (u - 1) // 2
            out[i] = sym + int(tables.offset[c])
        return out

    def conditional_mean(self, st, tables):
        a = tables.cdf_start[st.kidx] + st.lo
        b = a + POW3[st.rem]
        mass = tables.cdf[b].astype(np.int64) - tables.cdf[a].astype(np.int64)
        first = tables.mom[b] - tables.mom[a]
        return first / mass - (POW3[st.plane_len] - 1) // 2


class FastCoder:
    """The same steps through numba kernels (compiled on first use, cached on disk)."""

    name = "fast"

    def __init__(self) -> None:
        from . import _kernels

        self._k = _kernels

    def plane_order(self, plane, st, tables, by_sigma):
        return self._k.plane_order(
            plane, st.num_planes, st.plane_len, st.kidx, st.lo, st.rem,
            tables.prio_key, tables.prio_start, POW3, by_sigma,
        )

    def plane_symbols(self, order, st, tables, s_val):
        n = order.size
        trits = np.empty(n, np.uint8)
        freqs = np.empty(n, np.int64)
        totals = np.empty(n, np.int64)
        self._k.plane_symbols(order, s_val, st.lo, st.rem, st.kidx, tables.cdf, tables.cdf_start, POW3, trits, freqs, totals)
        return trits, freqs, totals

    def encode_chunk(self, order, a, b, trits, st, tables):
        out = np.zeros(3 * (b - a) + 16, np.uint8)  # <= 24 bits per trit + flush
        n = self._k.encode_trit_chunk(order, a, b, trits, st.lo, st.rem, st.kidx, tables.cdf, tables.cdf_start, POW3, out)
        return out[:n].tobytes()

    def decode_chunk(self, order, a, b, st, tables, payload):
        trits = np.empty(b - a, np.uint8)
        data = np.frombuffer(payload, np.uint8)
        status = self._k.decode_trit_chunk(order, a, b, st.lo, st.rem, st.kidx, tables.cdf, tables.cdf_start, POW3, data, trits)
        if status != self._k.OK:
            raise RangeCoderError("code value outside the coded interval")
        return trits

    def commit(self, order, a, b, trits, st):
        self._k.commit_trits(order, a, b, trits, st.lo, st.rem, POW3)

    def encode_escapes(self, overflow):
        overflow = np.ascontiguousarray(overflow, np.int64)
        out = np.zeros(16 * overflow.size + 16, np.uint8)
        n = self._k.encode_escapes(overflow, out)
        return out[:n].tobytes()

    def decode_escapes(self, payload, count):
        out = np.zeros(count, np.int64)
        status = self._k.decode_escapes(np.frombuffer(payload, np.uint8), out)
        if status != self._k.OK:
            raise RangeCoderError("escape section does not decode")
        return out

    def encode_z(self, values, channel, tables):
        values = np.ascontiguousarray(values, np.int64)
        out = np.zeros(16 * values.size + 16, np.uint8)  # <= 2 + 2*40 bits per value
        n = self._k.encode_z(values, channel, tables.cdf, tables.cdf_start, tables.offset.astype(np.int64), out)
        return out[:n].tobytes()

    def decode_z(self, payload, channel, tables):
        out = np.empty(channel.size, np.int64)
        status = self._k.decode_z(
            np.frombuffer(payload, np.uint8), channel, tables.cdf, tables.cdf_start, tables.offset.astype(np.int64), out
        )
        if status != self._k.OK:
            raise RangeCoderError("z section does not decode")
        return out

    def conditional_mean(self, st, tables):
        out = np.empty(st.lo.size, np.float64)
        self._k.conditional_mean(st.lo, st.rem, st.kidx, st.plane_len, tables.cdf, tables.mom, tables.cdf_start, POW3, out)
        return out


_CODERS: dict[str, Coder] = {}


def get_coder(name: str = "fast") -> Coder:
    """``"fast"`` (numba kernels) or ``"reference"`` (plain Python, same bytes)."""
    if name not in ("fast", "reference"):
        raise ValueError(f"unknown coder {name!r}; choose 'fast' or 'reference'")
    if name not in _CODERS:
        _CODERS[name] = FastCoder() if name == "fast" else ReferenceCoder()
    return _CODERS[name]
