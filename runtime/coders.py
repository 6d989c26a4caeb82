"""Two interchangeable implementations of the coding steps: reference and fast.

:class:`ReferenceCoder` spells every step out in plain Python on top of
``rangecoder.py`` and derives each trit's frequencies from the base CDF on the
spot (slow, meant to be read). :class:`FastCoder` runs the fused numba kernels
over the precomputed node tables. They write identical bytes; ``codec.py``
does not care which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from .rangecoder import ESCAPE_FLAG_BITS, ESCAPE_FLAG_FREQS, RangeCoderError, RangeDecoder, RangeEncoder
from .tables import POW3, TritTables, ZTables

#: NODE_BASE[d] = (3**d - 1) / 2: index of the first tree node at depth d.
NODE_BASE = (POW3 - 1) // 2


@dataclass
class PlaneState:
    """Per-element trit-plane state shared by encoder and decoder.

    ``prefix`` holds the trits known so far as a base-3 number and ``rem`` how
    many trits are still unknown, so the element's interval in the symbol
    domain ``[0, 3**plane_len)`` is ``[prefix * 3**rem, (prefix + 1) * 3**rem)``.
    """

    kidx: np.ndarray  # int32 [N] scale index
    plane_len: np.ndarray  # int8 [N]
    prefix: np.ndarray  # int32 [N]
    rem: np.ndarray  # int8 [N]
    num_planes: int

    @classmethod
    def start(cls, kidx: np.ndarray, tables: TritTables) -> "PlaneState":
        kidx = np.ascontiguousarray(kidx, dtype=np.int32).ravel()
        plane_len = tables.plane_len.astype(np.int8)[kidx]
        return cls(
            kidx=kidx,
            plane_len=plane_len,
            prefix=np.zeros(kidx.size, np.int32),
            rem=plane_len.copy(),
            num_planes=int(plane_len.max()) if plane_len.size else 0,
        )

    def participants(self, plane: int) -> int:
        """Elements coded in ``plane``: those whose length reaches it (LSB-aligned planes)."""
        return int(np.count_nonzero(self.plane_len >= self.num_planes - plane))

    def symbols(self) -> np.ndarray:
        """Final symbols ``s`` in ``[0, 3**plane_len)`` (only meaningful once rem == 0)."""
        return self.prefix.astype(np.int64) * POW3[self.rem]

    def edges(self) -> np.ndarray:
        """Flat indices of elements whose final symbol sits on a table edge."""
        s = self.symbols()
        return np.flatnonzero((s == 0) | (s == POW3[self.plane_len] - 1))


class Coder(Protocol):
    name: str

    def plane_order(self, plane: int, st: PlaneState, tables: TritTables, by_sigma: bool,
                    channel_offset: Optional[np.ndarray] = None) -> np.ndarray: ...
    def plane_cumulative_costs(self, order, st: PlaneState, tables: TritTables) -> np.ndarray: ...
    def plane_symbols(self, order, st: PlaneState, tables: TritTables, s_val) -> tuple[np.ndarray, np.ndarray]: ...
    def encode_chunk(self, order, a: int, b: int, trits, st: PlaneState, tables: TritTables) -> bytes: ...
    def decode_chunk(self, order, a: int, b: int, st: PlaneState, tables: TritTables, payload: bytes) -> np.ndarray: ...
    def apply(self, order, a: int, b: int, trits, st: PlaneState) -> None: ...
    def rollback(self, order, a: int, b: int, st: PlaneState) -> None: ...
    def encode_escapes(self, overflow: np.ndarray) -> bytes: ...
    def decode_escapes(self, payload: bytes, count: int) -> np.ndarray: ...
    def encode_z(self, values: np.ndarray, channel: np.ndarray, tables: ZTables) -> bytes: ...
    def decode_z(self, payload: bytes, channel: np.ndarray, tables: ZTables) -> np.ndarray: ...
    def conditional_mean(self, st: PlaneState, tables: TritTables) -> np.ndarray: ...


class ReferenceCoder:
    """Plain-Python coding steps: the executable form of docs/bitstream.md.

    ``decode_chunk`` applies the decoded trits to the state (as the fast path
    does); ``rollback`` undoes that when the chunk's CRC fails.
    """

    name = "reference"

    def plane_order(self, plane, st, tables, by_sigma, channel_offset=None):
        keys = {}
        channel_size = st.kidx.size // channel_offset.size if channel_offset is not None else 1
        for e in range(st.kidx.size):
            length, rem, k = int(st.plane_len[e]), int(st.rem[e]), int(st.kidx[e])
            if length < st.num_planes - plane:
                continue  # element has not started yet
            if by_sigma:
                keys[e] = k
            else:
                node = (3 ** (length - rem) - 1) // 2 + int(st.prefix[e])
                keys[e] = int(tables.prio_key[tables.node_start[k] + node])
                if channel_offset is not None:  # CHANNEL_WEIGHTED (docs/bitstream.md 5.2)
                    keys[e] = min(max(keys[e] + int(channel_offset[e // channel_size]), 1), 65535)
        return np.array(sorted(keys, key=lambda e: (-keys[e], e)), dtype=np.int64)

    def plane_cumulative_costs(self, order, st, tables):
        """Running sum of each participant's expected trit information (docs/bitstream.md 5.6)."""
        cum, total = np.empty(order.size, np.int64), 0
        for j, e in enumerate(order):
            length, rem, k = int(st.plane_len[e]), int(st.rem[e]), int(st.kidx[e])
            node = (3 ** (length - rem) - 1) // 2 + int(st.prefix[e])
            total += int(tables.node_cost[tables.node_start[k] + node])
            cum[j] = total
        return cum

    @staticmethod
    def _cumulative(e, st, tables):
        """[0, f0, f0 + f1, 2**P] for the element's next trit (docs/bitstream.md 4.3)."""
        rem = int(st.rem[e])
        sub = 3 ** (rem - 1)
        base = int(tables.cdf_start[st.kidx[e]]) + int(st.prefix[e]) * 3 * sub
        edges = [int(tables.cdf[base + t * sub]) for t in range(4)]
        masses = [edges[t + 1] - edges[t] for t in range(3)]
        total = sum(masses)
        bits = tables.precision_bits
        freq = [(m << bits) // total for m in masses]
        biggest = freq.index(max(freq))
        freq[biggest] += (1 << bits) - sum(freq)
        return [0, freq[0], freq[0] + freq[1], 1 << bits]

    def plane_symbols(self, order, st, tables, s_val):
        trits = np.empty(order.size, np.uint8)
        freqs = np.empty(order.size, np.int64)
        for j, e in enumerate(order):
            cum = self._cumulative(e, st, tables)
            t = (int(s_val[e]) // 3 ** (int(st.rem[e]) - 1)) % 3
            trits[j], freqs[j] = t, cum[t + 1] - cum[t]
        return trits, freqs

    def encode_chunk(self, order, a, b, trits, st, tables):
        enc = RangeEncoder()
        for j in range(a, b):
            cum = self._cumulative(order[j], st, tables)
            t = int(trits[j])
            enc.encode(cum[t], cum[t + 1] - cum[t], tables.precision_bits)
        return enc.finish()

    def decode_chunk(self, order, a, b, st, tables, payload):
        dec = RangeDecoder(payload)
        out = np.empty(b - a, np.uint8)
        for j in range(a, b):
            e = order[j]
            try:
                t = dec.decode(self._cumulative(e, st, tables), tables.precision_bits)
            except RangeCoderError:
                self.rollback(order, a, j, st)
                raise
            out[j - a] = t
            st.prefix[e] = st.prefix[e] * 3 + t
            st.rem[e] -= 1
        return out

    def apply(self, order, a, b, trits, st):
        for j in range(a, b):
            e = order[j]
            st.prefix[e] = st.prefix[e] * 3 + trits[j - a]
            st.rem[e] -= 1

    def rollback(self, order, a, b, st):
        for j in range(a, b):
            e = order[j]
            st.prefix[e] //= 3
            st.rem[e] += 1

    def encode_escapes(self, overflow):
        enc = RangeEncoder()
        no, yes = ESCAPE_FLAG_FREQS
        for u in overflow.tolist():
            if u == 0:
                enc.encode(0, no, ESCAPE_FLAG_BITS)
            else:
                enc.encode(no, yes, ESCAPE_FLAG_BITS)
                enc.encode_uint(u - 1)
        return enc.finish()

    def decode_escapes(self, payload, count):
        dec = RangeDecoder(payload)
        flag_cdf = [0, ESCAPE_FLAG_FREQS[0], 1 << ESCAPE_FLAG_BITS]
        out = np.zeros(count, np.int64)
        for i in range(count):
            if dec.decode(flag_cdf, ESCAPE_FLAG_BITS):
                out[i] = dec.decode_uint() + 1
        return out

    def encode_z(self, values, channel, tables):
        enc = RangeEncoder()
        bits = tables.precision_bits
        for v, c in zip(values.tolist(), channel.tolist()):
            cdf = tables.cdf[tables.cdf_start[c] : tables.cdf_start[c + 1]].tolist()
            n = len(cdf) - 2
            sym = v - int(tables.offset[c])
            if 0 <= sym < n:
                enc.encode(cdf[sym], cdf[sym + 1] - cdf[sym], bits)
            else:
                enc.encode(cdf[n], cdf[-1] - cdf[n], bits)
                enc.encode_uint(2 * (sym - n) if sym >= n else 2 * (-1 - sym) + 1)
        return enc.finish()

    def decode_z(self, payload, channel, tables):
        dec = RangeDecoder(payload)
        out = np.empty(channel.size, np.int64)
        for i, c in enumerate(channel.tolist()):
            cdf = tables.cdf[tables.cdf_start[c] : tables.cdf_start[c + 1]].tolist()
            n = len(cdf) - 2
            sym = dec.decode(cdf, tables.precision_bits)
            if sym == n:
                u = dec.decode_uint()
                sym = n + u // 2 if u % 2 == 0 else -1 - (u - 1) // 2
            out[i] = sym + int(tables.offset[c])
        return out

    def conditional_mean(self, st, tables):
        width = POW3[st.rem]
        a = tables.cdf_start[st.kidx] + st.prefix.astype(np.int64) * width
        b = a + width
        mass = tables.cdf[b].astype(np.int64) - tables.cdf[a].astype(np.int64)
        return (tables.mom[b] - tables.mom[a]) / mass - (POW3[st.plane_len] - 1) // 2


#: the fast path's channel offsets when the order has none: one zero for the whole latent
_NO_OFFSET = np.zeros(1, np.int32)


class FastCoder:
    """The same steps through numba kernels (compiled on first use, cached on disk)."""

    name = "fast"

    def __init__(self) -> None:
        from . import _kernels

        self._k = _kernels

    def plane_order(self, plane, st, tables, by_sigma, channel_offset=None):
        offsets = _NO_OFFSET if channel_offset is None else np.ascontiguousarray(channel_offset, np.int32)
        return self._k.plane_order(
            plane, st.num_planes, st.plane_len, st.kidx, st.prefix, st.rem,
            tables.prio_key, tables.node_start, NODE_BASE, by_sigma, offsets, st.kidx.size // offsets.size,
        )  # fmt: skip

    def _nodes(self, st, tables):
        return st.plane_len, st.kidx, st.prefix, st.rem, tables.node_c1, tables.node_c2, tables.node_start, NODE_BASE

    def plane_cumulative_costs(self, order, st, tables):
        return self._k.plane_cumulative_costs(
            order, st.plane_len, st.kidx, st.prefix, st.rem, tables.node_cost, tables.node_start, NODE_BASE)

    def plane_symbols(self, order, st, tables, s_val):
        trits = np.empty(order.size, np.uint8)
        freqs = np.empty(order.size, np.int64)
        self._k.plane_symbols(order, s_val, *self._nodes(st, tables), POW3, tables.precision_bits, trits, freqs)
        return trits, freqs

    def encode_chunk(self, order, a, b, trits, st, tables):
        out = np.zeros(3 * (b - a) + 16, np.uint8)  # <= 24 bits per trit + flush
        n = self._k.encode_trit_chunk(order, a, b, trits, *self._nodes(st, tables), tables.precision_bits, out)
        return out[:n].tobytes()

    def decode_chunk(self, order, a, b, st, tables, payload):
        trits = np.empty(b - a, np.uint8)
        data = np.frombuffer(payload, np.uint8)
        status = self._k.decode_trit_chunk(order, a, b, *self._nodes(st, tables), tables.precision_bits, data, trits)
        if status != self._k.OK:
            raise RangeCoderError("code value outside the coded interval")
        return trits

    def apply(self, order, a, b, trits, st):
        self._k.apply_trits(order, a, b, trits, st.prefix, st.rem)

    def rollback(self, order, a, b, st):
        self._k.rollback_trits(order, a, b, st.prefix, st.rem)

    def encode_escapes(self, overflow):
        overflow = np.ascontiguousarray(overflow, np.int64)
        out = np.zeros(16 * overflow.size + 16, np.uint8)  # flag + Exp-Golomb of < 2**40
        n = self._k.encode_escapes(overflow, out)
        return out[:n].tobytes()

    def decode_escapes(self, payload, count):
        out = np.zeros(count, np.int64)
        if self._k.decode_escapes(np.frombuffer(payload, np.uint8), out) != self._k.OK:
            raise RangeCoderError("escape section does not decode")
        return out

    def encode_z(self, values, channel, tables):
        values = np.ascontiguousarray(values, np.int64)
        out = np.zeros(16 * values.size + 16, np.uint8)  # bin + Exp-Golomb of < 2**40
        n = self._k.encode_z(
            values, channel, tables.cdf, tables.cdf_start, tables.offset.astype(np.int64), tables.precision_bits, out
        )
        return out[:n].tobytes()

    def decode_z(self, payload, channel, tables):
        out = np.empty(channel.size, np.int64)
        status = self._k.decode_z(
            np.frombuffer(payload, np.uint8), channel, tables.cdf, tables.cdf_start,
            tables.offset.astype(np.int64), tables.precision_bits, out,
        )  # fmt: skip
        if status != self._k.OK:
            raise RangeCoderError("z section does not decode")
        return out

    def conditional_mean(self, st, tables):
        out = np.empty(st.prefix.size, np.float64)
        self._k.conditional_mean(st.prefix, st.rem, st.kidx, st.plane_len, tables.cdf, tables.mom, tables.cdf_start, POW3, out)
        return out


_CODERS: dict[str, Coder] = {}


def get_coder(name: str = "fast") -> Coder:
    """``"fast"`` (numba kernels) or ``"reference"`` (plain Python, same bytes)."""
    if name not in ("fast", "reference"):
        raise ValueError(f"unknown coder {name!r}; choose 'fast' or 'reference'")
    if name not in _CODERS:
        _CODERS[name] = FastCoder() if name == "fast" else ReferenceCoder()
    return _CODERS[name]
