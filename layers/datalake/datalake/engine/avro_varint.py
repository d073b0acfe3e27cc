"""Avro's variable-length zigzag integers (the container's counts, sizes and lengths).

Shared by the header and block parser (``engine.avro``) and the compiled decoder
(``engine.avro_fast``), which therefore need not import each other.
"""

from __future__ import annotations

from datalake.errors import CorruptInput


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the long at ``buf[pos:]``; return it and the position after it.

    Raises
    ------
    IndexError
        When ``buf`` ends inside the number (the caller reads more, or calls it truncated).
    CorruptInput
        When the number runs past 64 bits.
    """
    shift = 0
    result = 0
    while True:
        if pos >= len(buf):
            raise IndexError
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptInput("invalid Avro varint")
    return (result >> 1) ^ -(result & 1), pos


def write_long(n: int) -> bytes:
    """Encode ``n`` as Avro's zigzag varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
