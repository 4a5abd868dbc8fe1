"""bin/logs: the recovery log, one line per event (run_dir/recovery.log).

Each event is one JSON object with at least ts (Unix seconds), event (crash,
script, restart, up, down, giveup, fatal) and label; services/rs/journal.py
lists the fields of each.  Without --json each is printed as one readable
line (in colour on a terminal); --label keeps one service's events; -f
follows the log as it grows (Ctrl-C ends).  bin/boot in the foreground
prints the same readable lines as they happen.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from minikern import cli, params

COLOURS = {"crash": "31", "giveup": "1;31", "fatal": "1;31", "restart": "32", "up": "32",
           "down": "33", "script": "36", "shutdown": "33", "driver-gone": "33",
           "driver-back": "32"}
_SHOWN = ("reason", "action", "delay_ms", "pid", "old_pid", "new_pid", "old_endpoint",
          "new_endpoint", "downtime_ms", "incarnation", "cause", "by", "signal", "status",
          "script", "phase", "args", "restarts", "window_s", "detail", "error", "endpoint",
          "kept_frames", "resend_frames", "old", "new")


def format_event(e: dict[str, Any], colour: bool = False) -> str:
    """One readable line for a recovery-log event (the traceback and output indented below)."""
    ts = e.get("ts")
    when = (time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
            if isinstance(ts, (int, float)) else "?")
    event = str(e.get("event", "?"))
    head = f"{event:<8}"
    if colour:
        head = f"\033[{COLOURS.get(event, '0')}m{head}\033[0m"
    parts = [f"{k}={e[k]}" for k in _SHOWN if e.get(k) not in (None, "")]
    line = f"{when} {e.get('source', 'rs')}: {head} {e.get('label', '?'):<10} " + " ".join(parts)
    for extra in ("traceback", "output"):
        text = str(e.get(extra) or "").rstrip()
        if text:
            line += "\n" + "\n".join("    | " + t for t in text.splitlines())
    return line


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete lines from ``offset`` on, parsed; returns them and the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    events = []
    for raw in data[:end].splitlines():
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if isinstance(e, dict):
            events.append(e)
    return events, offset + end


def follow(path: Path, forever: bool) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        events, offset = read_events(path, offset)
        yield from events
        if not forever:
            return
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="logs", description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_dir(ap)
    ap.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    ap.add_argument("--json", action="store_true", help="print the raw JSON lines")
    ap.add_argument("--label", help="only this service's events")
    args = ap.parse_args(argv)
    path = Path(args.run_dir) / params.RECOVERY_LOG
    if not path.exists() and not args.follow:
        print(f"logs: no recovery log in {args.run_dir}", file=sys.stderr)
        return 2
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    try:
        for e in follow(path, args.follow):
            if args.label and e.get("label") != args.label:
                continue
            print(json.dumps(e) if args.json else format_event(e, colour), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0
