"""Waiting on a condition with a deadline (tools, benchmarks and tests; never a bare sleep)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T | None], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.005, error: type[Exception] = AssertionError) -> T:
    """Poll ``cond`` until it returns something true and return that; raise ``error`` at the
    deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise error(f"timed out after {timeout:g} s waiting for {what}")
