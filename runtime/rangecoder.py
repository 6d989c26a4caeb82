"""Reference range coder: plain Python integers, written to read like the spec.

This is the readable definition of the coder in ``docs/bitstream.md`` section 3;
``_kernels.py`` is the fast numba twin, and the tests prove that both write the
same bytes. Use this path to understand or port the format, not for speed
(it codes roughly 0.5 M symbols per second).

State: ``low`` and ``range`` are 64-bit. Every model's total is a power of
two, ``2**P`` with ``P <= 24``. A symbol with cumulative start ``c`` and
frequency ``f`` narrows the interval to ``[low + r*c, low + r*c + r*f)`` with
``r = range >> P``: no division anywhere. Whenever ``range < 2**56`` the top
byte of ``low`` is emitted. A carry out of ``low`` propagates into the bytes
already emitted.
"""

from __future__ import annotations

from bisect import bisect_right

MASK64 = (1 << 64) - 1
RENORM_BOUND = 1 << 56
#: Frequencies of the y escape flag: (no escape, escape) out of 2**16.
ESCAPE_FLAG_FREQS = (65535, 1)
ESCAPE_FLAG_BITS = 16
#: Longest Exp-Golomb prefix a decoder accepts (values below 2**40).
MAX_EG_PREFIX = 40


class RangeCoderError(ValueError):
    """The coded bytes cannot be a valid encoding (only raised while decoding)."""


class RangeEncoder:
    """Byte-oriented range encoder with a 64-bit state."""

    def __init__(self) -> None:
        self.low = 0
        self.range = MASK64
        self.out = bytearray()

    def encode(self, start: int, freq: int, bits: int) -> None:
        """Code the symbol occupying ``[start, start + freq)`` of a total of ``2**bits``."""
        r = self.range >> bits
        low = self.low + r * start
        if low > MASK64:
            self._propagate_carry()
            low &= MASK64
        self.low = low
        self.range = r * freq
        while self.range < RENORM_BOUND:
            self.out.append(self.low >> 56)
            self.low = (self.low << 8) & MASK64
            self.range <<= 8

    def encode_bit(self, bit: int) -> None:
        self.encode(bit, 1, 1)

    def encode_uint(self, value: int) -> None:
        """Exp-Golomb (order 0) with equiprobable bits: n-1 ones, a zero, n-1 low bits of value+1."""
        v = value + 1
        nbits = v.bit_length()
        for _ in range(nbits - 1):
            self.encode_bit(1)
        self.encode_bit(0)
        for i in range(nbits - 2, -1, -1):
            self.encode_bit((v >> i) & 1)

    def _propagate_carry(self) -> None:
        i = len(self.out) - 1
        while self.out[i] == 0xFF:
            self.out[i] = 0
            i -= 1
        self.out[i] += 1

    def finish(self) -> bytes:
        """Emit the fewest bytes that pin a value inside the final interval.

        The decoder reads zeros past the end, so we look for the shortest prefix
        whose zero-extension lies in ``[low, low + range)``; trailing zero bytes
        are then dropped because they carry no information.
        """
        for nbytes in range(9):
            unit = 1 << (64 - 8 * nbytes)
            value = (self.low + unit - 1) // unit * unit  # round low up to a multiple of unit
            if value - self.low < self.range:
                break
        if value > MASK64:
            self._propagate_carry()
            value &= MASK64
        for j in range(nbytes):
            self.out.append((value >> (56 - 8 * j)) & 0xFF)
        while self.out and self.out[-1] == 0:
            self.out.pop()
        return bytes(self.out)


class RangeDecoder:
    """Decoder twin of :class:`RangeEncoder`; reads zeros past the end of ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.range = MASK64
        self.value = 0  # code value minus low: always < range for valid input
        for _ in range(8):
            self.value = (self.value << 8) | self._next_byte()

    def _next_byte(self) -> int:
        byte = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return byte

    def decode(self, cdf: list[int], bits: int) -> int:
        """Decode one symbol given a cumulative table ``[0, c1, ..., 2**bits]``.

        The symbol is the largest ``s`` with ``r * cdf[s] <= value``.
        """
        r = self.range >> bits
        if self.value >= r * cdf[-1]:
            raise RangeCoderError("code value outside the coded interval")
        symbol = bisect_right([r * c for c in cdf], self.value) - 1
        self.value -= r * cdf[symbol]
        self.range = r * (cdf[symbol + 1] - cdf[symbol])
        while self.range < RENORM_BOUND:
            self.value = (self.value << 8) | self._next_byte()
            self.range <<= 8
        return symbol

    def decode_bit(self) -> int:
        return self.decode([0, 1, 2], 1)

    def decode_uint(self) -> int:
        nbits = 1
        while self.decode_bit():
            nbits += 1
            if nbits > MAX_EG_PREFIX:
                raise RangeCoderError("Exp-Golomb prefix too long")
        v = 1
        for _ in range(nbits - 1):
            v = (v << 1) | self.decode_bit()
        return v - 1
