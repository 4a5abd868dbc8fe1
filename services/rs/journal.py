"""RS's events and the naming of failures.  Runs inside RS.

RS writes its events (crash, script, restart, up, down, giveup, fatal,
shutdown) to the system's event stream through ``Journal``, source ``rs``:
each is appended as it happens, so bin/logs -f and bin/boot show it live and
a crash of RS loses at most the record being written.  The fields of each kind
are in minikern/event_kinds.py.  ``classify_exit`` names why a process ended.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from minikern import params
from minikern.events import EventLog


class Journal:
    def __init__(self, run_dir: Path) -> None:
        self.log = EventLog(run_dir, "rs")

    def write(self, event: str, label: str, **fields: Any) -> dict[str, Any]:
        """Append an event of kind ``event`` about ``label``; returns the record written
        (a full disk loses the event, never stops recovery)."""
        return self.log.write(event, label, **fields)

    def close(self) -> None:
        self.log.close()


def signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return str(signo)


def classify_exit(run_dir: Path, pid: int, status: int, signo: int) -> dict[str, Any]:
    """Name why a process ended, from the kernel's exit notice and SEF's crash record."""
    record: dict[str, Any] = {}
    path = run_dir / params.CRASH_DIR / f"{pid}.json"
    try:
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            record = loaded
        os.unlink(path)
    except (OSError, ValueError):
        pass
    if signo:
        return {"reason": "signal", "signal": signal_name(signo)}
    if record.get("kind") == "panic" or status == params.EXIT_PANIC:
        return {"reason": "panic", "status": status,
                "detail": str(record.get("reason", "panic (no record)"))}
    if record.get("kind") == "exception" or status == params.EXIT_EXCEPTION:
        return {"reason": "exception", "status": status,
                "detail": str(record.get("error", "")),
                "traceback": str(record.get("traceback", ""))}
    return {"reason": "exit", "status": status}
