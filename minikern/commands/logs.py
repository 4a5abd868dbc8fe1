"""bin/logs: the system's event stream, one line per event, in time order.

Every component writes its events (boot and halt markers, crashes and
recoveries, drivers coming and going, link changes, refused calls) to
run_dir/events.log: minikern/events.py says how, minikern/event_kinds.py
what each kind holds.  A line shows the date and time, the source (the
component that wrote it), the kind, the label (whom it is about) and the
kind's fields; each boot starts with its boot marker, which stays shown
whatever the filters.  -f prints the last lines (10 unless -n says) and then
each new event as it comes, like journalctl -f; Ctrl-C ends it.  --json prints
the records themselves, one JSON object a line; --schema prints the JSON
Schema of each kind.  bin/boot in the foreground prints the same lines.

--audit is the audit: every refused call, the kernel's and the board's
(the ``denied`` events, and the ``denied-suppressed`` ones that sum up a
caller's refusals past the audit's rate).  --reason R keeps the crashes of
that reason (signal, exception, panic, heartbeat, exit, resource).
events.log rotates by size: its older files, events.log.1 ... .N, are read
first, as one stream.

The run directory's other logs, through the same options: --console prints
console.log, the components' own output (tracebacks as printed), with -n
and -f alone; --alerts prints alerts.log, the records recovery_scripts/rs.alert
writes, one line each as the events are (-n, -f, --since, --label, --reason
and --json apply).

It needs no running system (the log outlives it); with no such log in the
run directory, or no such boot for -b, it exits 2: nothing to read.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minikern import cli, events, params
from minikern.event_kinds import SCHEMAS

Event = dict[str, Any]
MARKERS = ("boot", "halt")
ALERT = {"kind": "alert", "source": "rs.alert", "boot": ""}  # what an alerts.log record lacks
REASONED = ("crash", "alert")  # the records --reason selects from
REASONS = SCHEMAS["crash"].fields["reason"].choices
COLOURS = {"crash": "31", "giveup": "1;31", "fatal": "1;31", "restart": "32", "up": "32",
           "down": "33", "script": "36", "shutdown": "33", "driver-gone": "33",
           "driver-back": "32", "driver-up": "32", "denied": "35", "boot": "1", "halt": "1",
           "alert": "1;33"}


def format_event(e: Event, colour: bool = False, utc: bool = False,
                 blocks: tuple[str, ...] = events.BLOCKS) -> str:
    """One readable line for an event (``blocks``: a traceback or script output indented
    below)."""
    try:
        stamp = datetime.datetime.fromtimestamp(e["ts"], datetime.UTC if utc else None)
        when = stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"
    except (KeyError, TypeError, ValueError, OverflowError, OSError):  # no time a clock shows
        when = f"{'?':<23}"
    kind = events.printable(str(e.get("kind", "?")))
    head = f"{kind:<11}"
    if colour:
        head = f"\033[{COLOURS.get(kind, '0')}m{head}\033[0m"
    words = events.describe(e)
    if kind in MARKERS:
        words = f"id={events.show(e.get('boot', ''))} {words}"
    source = events.printable(str(e.get("source", "?"))) + ":"
    line = f"{when} {source:<9} {head} {events.printable(str(e.get('label', '?'))):<10} {words}"
    for block in blocks:
        text = str(e.get(block) or "").rstrip()
        if text:
            line += "\n" + "\n".join("    | " + events.printable(t) for t in text.splitlines())
    return line.rstrip(" ")


class Follower:
    """The new events of a growing stream, in order.  An event is held back until it is
    ``settle`` seconds old, so that one a racing writer appended later but stamped earlier
    is printed first; ``flush`` lets everything out."""

    def __init__(self, path: Path, offset: int = 0, settle: float = 0.0,
                 clock: Callable[[], float] = time.time, fill: Event | None = None,
                 keep: int = 0) -> None:
        self.reader = events.Reader(path, offset, keep=keep)
        self.settle, self.clock = settle, clock
        self.fill = fill or {}  # fields a record of this file lacks (an alert's kind)
        self.order = events.Order()
        self.pending: list[Event] = []

    def poll(self, flush: bool = False) -> list[Event]:
        new = [{**self.fill, **e} for e in self.reader.read_new()]
        self.pending = events.in_order([*self.pending, *new], self.order)
        cut = len(self.pending)
        if not flush:
            ripe = self.clock() - self.settle
            cut = next((i for i, e in enumerate(self.pending) if e["ts"] > ripe), cut)
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return ready


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: -30s / -5m / -2h / -1d (or "5m ago"), HH:MM[:SS] today, a date and time
    (YYYY-MM-DD[ HH:MM[:SS]]), or @UNIXTIME.  Returns Unix time."""
    now = time.time() if now is None else now
    text = text.strip()
    rel = re.fullmatch(r"-?(\d+(?:\.\d+)?)\s*([smhd])(?:\s+ago)?", text)
    if rel and (text.startswith("-") or text.endswith("ago")):
        return now - float(rel[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[rel[2]]
    if text.startswith("@"):
        try:
            return float(text[1:])
        except ValueError:
            pass
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
        today = datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d")
        text = f"{today} {text}"
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None


def pick_boot(boots: list[str], which: str) -> str | None:
    """``--boot``: 0 is the last boot, -1 the one before, ...; else a prefix of a boot id."""
    if re.fullmatch(r"-?\d+", which) and len(which) < 6:
        n = int(which)
        return boots[n - 1] if -len(boots) < n <= 0 else None
    found = [b for b in boots if b.startswith(which)]
    return found[0] if len(found) == 1 else None


class View:
    """What the options select, and how it is printed."""

    def __init__(self, args: argparse.Namespace, boot: str | None) -> None:
        self.args, self.boot = args, boot
        self.colour = not args.json and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self.last_boot: str | None = None
        self.halted = True

    def selected(self, e: Event) -> bool:
        a = self.args
        if self.boot is not None and e.get("boot") != self.boot:
            return False
        if a.since is not None and e["ts"] < a.since:
            return False
        if not a.json and e.get("kind") in MARKERS:
            return True  # the boots' frame stays, whatever else is filtered
        return ((not a.label or e.get("label") in a.label)
                and (not a.kind or e.get("kind") in a.kind)
                and (not a.source or e.get("source") in a.source)
                and (not a.reason or (e.get("kind") in REASONED and e.get("reason") in a.reason)))

    def show(self, e: Event) -> None:
        if self.args.json:
            print(json.dumps(e), flush=True)
            return
        if e.get("kind") == "boot":
            if not self.halted and self.last_boot is not None:
                print(f"-- boot {events.printable(self.last_boot)} ended without a halt marker "
                      "(its kernel was killed) --")
            self.last_boot, self.halted = str(e.get("boot", "")), False
        elif e.get("kind") == "halt":
            self.halted = True
        print(format_event(e, self.colour, self.args.utc), flush=True)


def count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return n


def command() -> cli.Command:
    cmd = cli.Command("logs", __doc__, json="print the records, one JSON object a line",
                      needs_system=False, failures=(OSError,))
    cmd.add_argument("-f", "--follow", action="store_true",
                     help="print the last events, then new ones as they happen")
    cmd.add_argument("-n", "--lines", type=count, metavar="N",
                     help="only the last N events (with -f: 10 unless given)")
    cmd.add_argument("--since", type=parse_since, metavar="WHEN",
                     help="events from WHEN on: '10m ago' (or --since=-10m), HH:MM, "
                          "'YYYY-MM-DD HH:MM', @UNIXTIME")
    cmd.add_argument("-b", "--boot", nargs="?", const="0", metavar="ID",
                     help="one boot only: 0 (the default) the last, -1 the one before, or an id")
    cmd.add_argument("--label", action="append", help="only events about this label")
    cmd.add_argument("--kind", action="append", choices=sorted(SCHEMAS), metavar="KIND",
                     help="only events of this kind: " + ", ".join(sorted(SCHEMAS)))
    cmd.add_argument("--source", action="append", help="only events this component wrote")
    cmd.add_argument("--reason", action="append", choices=REASONS, metavar="REASON",
                     help="only crashes (and alerts) of this reason: " + ", ".join(REASONS))
    cmd.add_argument("--audit", action="store_true",
                     help="the audit: every refused call, the kernel's and the board's "
                          "(as --kind denied --kind denied-suppressed)")
    which = cmd.add_mutually_exclusive_group()
    which.add_argument("--console", action="store_true",
                       help="console.log instead: the components' own output (-n, -f apply)")
    which.add_argument("--alerts", action="store_true",
                       help="alerts.log instead: rs.alert's records")
    cmd.add_argument("--schema", action="store_true", help="print each kind's JSON Schema")
    cmd.add_argument("--utc", action="store_true", help="show times in UTC")
    return cmd


# The options that do not apply to console.log (free text) and to alerts.log (no boots, no
# kinds): given with --console or --alerts, a usage error.
NOT_FOR = {"console": ("json", "since", "boot", "label", "kind", "source", "reason", "audit",
                       "schema", "utc"),
           "alerts": ("boot", "kind", "source", "audit", "schema")}


def main(argv: list[str] | None = None) -> int:
    cmd = command()
    args = cmd.parse_args(argv)
    for log, options in NOT_FOR.items():
        given = [o for o in options if getattr(args, o) not in (None, False)]
        if getattr(args, log) and given:
            cmd.error(f"--{given[0]} does not apply to --{log}")  # exits 2
    if args.audit:
        args.kind = [*(args.kind or []), "denied", "denied-suppressed"]
    return cmd.call(args, run)


def run(args: argparse.Namespace) -> int:
    """Print what ``args`` select; 2 when there is nothing to read."""
    if args.schema:
        print(json.dumps({k: s.json_schema(k) for k, s in SCHEMAS.items()}, indent=2))
        return cli.EXIT_OK
    if args.console:
        return console(args)
    name, what = ((params.ALERT_LOG, "alert log") if args.alerts
                  else (params.EVENT_LOG, "event log"))
    path = Path(args.run_dir) / name
    if not path.exists() and not args.follow:
        print(f"logs: no {what} in {args.run_dir}", file=sys.stderr)
        return cli.EXIT_NOT_RUN
    follower = Follower(path, settle=params.FOLLOW_SETTLE, fill=ALERT if args.alerts else None,
                        keep=0 if args.alerts else params.EVENT_LOG_KEEP)
    try:
        return show(args, follower)
    finally:  # however it ended, say what could not be shown
        if follower.reader.skipped:
            print(f"logs: {follower.reader.skipped} line(s) of {path} are not events; skipped",
                  file=sys.stderr)


def show(args: argparse.Namespace, follower: Follower) -> int:
    backlog = follower.poll(flush=True)
    boot = None
    if args.boot is not None:
        boot = pick_boot(list(follower.order.boots), args.boot)
        if boot is None:
            print(f"logs: no boot {args.boot!r} in {follower.reader.path}", file=sys.stderr)
            return cli.EXIT_NOT_RUN
    view = View(args, boot)
    backlog = [e for e in backlog if view.selected(e)]
    lines = 10 if args.follow and args.lines is None else args.lines
    for e in backlog if lines is None else backlog[max(0, len(backlog) - lines):]:
        view.show(e)
    try:
        while args.follow:
            time.sleep(0.1)
            for e in follower.poll():
                if view.selected(e):
                    view.show(e)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how -f ends, as journalctl -f: done, not failed
    return cli.EXIT_OK


def console(args: argparse.Namespace) -> int:
    """--console: console.log's last lines (all, or -n; 10 with -f), then with -f each new
    line as it is written.  Control characters are escaped, as in the events."""
    path = Path(args.run_dir) / params.CONSOLE_LOG
    if not path.exists() and not args.follow:
        print(f"logs: no console log in {args.run_dir}", file=sys.stderr)
        return cli.EXIT_NOT_RUN
    reader = events.Reader(path)
    backlog = reader.read_lines()
    lines = 10 if args.follow and args.lines is None else args.lines
    try:
        for raw in backlog if lines is None else backlog[max(0, len(backlog) - lines):]:
            print(events.printable(raw.decode(errors="replace")), flush=True)
        while args.follow:
            time.sleep(0.1)
            for raw in reader.read_lines():
                print(events.printable(raw.decode(errors="replace")), flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how -f ends
    return cli.EXIT_OK
