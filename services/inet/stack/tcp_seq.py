"""TCP sequence-number arithmetic modulo 2**32 (RFC 793 3.3, RFC 1982).

Every comparison of sequence or acknowledgement numbers in the stack goes
through these helpers; a plain ``<`` on two sequence numbers is a bug once the
space wraps.  Numbers are kept reduced to 0..2**32-1.
"""
from __future__ import annotations

SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b, in -2**31 .. 2**31-1."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_max(a: int, b: int) -> int:
    return a if seq_ge(a, b) else b
