"""Benchmarks behind bin/bench: each prints figures measured side by side in one run."""
from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """An argparse type: a count of at least 1 (a benchmark of nothing measures nothing)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not at least 1")
    return n
