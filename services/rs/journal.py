"""The recovery log and the naming of failures.  Runs inside RS.

The recovery log (run_dir/recovery.log, params.RECOVERY_LOG) has one JSON
object per line, appended and flushed as each event happens, so bin/logs -f
and bin/boot show it live and a crash of RS loses at most the line being
written.  Every line has ``ts`` (Unix seconds), ``event`` and ``label``:

    crash    reason (exit | signal | panic | exception | heartbeat | resource),
             pid, endpoint, incarnation, action (restart | backoff | script |
             giveup | fatal); status or signal; detail (panic reason, error,
             resource figure); traceback for an exception
    script   script, args, phase (start | done); on done: status and output
    restart  old_pid, new_pid, old_endpoint, new_endpoint, downtime_ms,
             incarnation, cause (restart | refresh)
    up       pid, endpoint, incarnation (a fresh start: boot or operator up)
    down     pid, by (operator | script)
    giveup   restarts, window_s (the intensity limit was exceeded)
    fatal    a core server (rs, ds) died: the system shuts down
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from minikern import params


class Journal:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / params.RECOVERY_LOG
        self.file = open(self.path, "a", buffering=1)

    def write(self, event: str, label: str, **fields: Any) -> dict[str, Any]:
        rec = {"ts": round(time.time(), 6), "event": event, "label": label, **fields}
        try:
            self.file.write(json.dumps(rec, default=str) + "\n")
        except OSError:
            pass  # a full disk must not stop recovery
        return rec

    def close(self) -> None:
        self.file.close()


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
