"""The audit's rate limit: refused calls as ``denied`` events, bounded per caller and window.

Runs in whichever process refuses calls and records them (the kernel, the board).  A
hostile process that repeats a forbidden call must neither fill the disk with its
refusals nor silence the audit for the rest of the boot, so each writer records up to
params.DENIED_PER_WINDOW refusals of one caller per params.DENIED_WINDOW seconds and
only counts the rest.  When a window is over (at the next refusal, of anyone, or at
``flush``), each caller that had refusals suppressed gets one ``denied-suppressed``
event saying how many.  Every refusal is thus either recorded or summed up.

Windows are aligned on the clock (window k is [k*W, (k+1)*W)), so the state is the
current window's counts only: at most one entry per caller refused within it.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from minikern import params


class Writer(Protocol):
    def write(self, kind: str, label: str, **fields: Any) -> dict[str, Any]: ...


@dataclass
class Caller:
    label: str
    recorded: int = 0
    suppressed: int = 0


class Audit:
    """``Audit(events.EventLog(run_dir, "kernel")).denied(label, caller=ep, call=..., ...)``."""

    def __init__(self, log: Writer, clock: Callable[[], float] = time.monotonic,
                 per_window: int = params.DENIED_PER_WINDOW,
                 window: float = params.DENIED_WINDOW) -> None:
        self.log, self.clock = log, clock
        self.per_window, self.window = per_window, window
        self.current = -1  # the window the counts are of
        self.callers: dict[int, Caller] = {}

    def denied(self, label: str, caller: int, **fields: Any) -> None:
        """Record one refused call of ``caller`` (its endpoint), or count it past the rate."""
        now = int(self.clock() // self.window)
        if now != self.current:
            self.flush()
            self.current = now
        c = self.callers.setdefault(caller, Caller(label))
        if c.recorded < self.per_window:
            c.recorded += 1
            self.log.write("denied", label, caller=caller, **fields)
        else:
            c.suppressed += 1

    def flush(self) -> None:
        """Sum up the window's suppressed refusals (the window ends here for the counts)."""
        for endpoint, c in self.callers.items():
            if c.suppressed:
                self.log.write("denied-suppressed", c.label, caller=endpoint,
                               suppressed=c.suppressed, window_s=self.window)
        self.callers.clear()
