"""Small functions for tests/experiment/test_swifi.py to inject code faults into (a module of
their own: every line of the module a fault is aimed at counts)."""
from __future__ import annotations


def target(x: int) -> str:
    y = x + 1
    if y > 5:
        return "big"
    y = y * 2
    return f"small {y}"


def counter(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total
