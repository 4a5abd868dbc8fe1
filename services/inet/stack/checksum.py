"""The Internet checksum (RFC 1071) for IPv4, ICMP, UDP and TCP.

Why ``int.from_bytes``: 2**16 is 1 modulo 0xFFFF, so the whole buffer read as
one big-endian integer is congruent to the sum of its 16-bit words modulo
0xFFFF, which is the ones'-complement sum up to the representation of zero.
The conversion and the modulo both run in C, so a 1500-byte packet costs a
few microseconds instead of a Python loop over 750 words.
"""
from __future__ import annotations

import struct

_ONES_MOD = 0xFFFF
Buffer = bytes | bytearray | memoryview


def ones_sum(data: Buffer, initial: int = 0) -> int:
    """16-bit ones'-complement sum of ``data`` (zero-padded to even length) plus ``initial``.

    The result is in 0..0xFFFF and is 0 only when everything summed was zero
    (end-around-carry addition of non-zero words never yields 0x0000).
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    total += initial
    folded = total % _ONES_MOD
    if folded == 0 and total != 0:
        return 0xFFFF
    return folded


def checksum(data: Buffer, initial: int = 0) -> int:
    """The value to store in a checksum field that was zero while summing."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: Buffer, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo-header (RFC 793 3.1, RFC 768) for TCP and UDP."""
    return ones_sum(struct.pack("!IIHH", src, dst, proto, length))
