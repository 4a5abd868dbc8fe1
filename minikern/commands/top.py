"""bin/top: the system's processes, live, refreshed in place, as top(1) shows a host's.

One line per process (the kernel, every component, user programs, and each
service RS knows that is not running), as bin/ps gathers them: label, state
(with the countdown to a restart RS holds back), pid, INC (the incarnation:
restarts so far), CPU (percent of one CPU), resident memory, messages per
second (those the kernel delivered to it: GETINFO's ``received``, its
difference between two samples; the kernel's line is the sum, everything it
moved), the last heartbeat's round trip as RS measured it, and the IPC state.
Above them: the time, the kernel's uptime, the processes by state and the
messages per second through the kernel.  The first screen's rates are
averages over each process's life, as top's first screen; every later
one's are over the time since the one before (over its life, for a process
younger than that).

On a terminal the view fills the screen and is redrawn every second (-d
SECONDS); q (or Ctrl-C) quits and leaves the terminal as it was; c, m, n and
l sort by CPU, memory, messages per second and label (the default: the
kernel's table order).  -b (batch) prints the screens one after another as
plain text, with no terminal control, for a file or a pipe (-n N: stop
after N).  --json prints snapshots, one JSON object a line (one unless -n
says): ``ts``, ``interval`` (seconds since the sample before, null for the
first), ``uptime`` (the kernel's), ``msgs_per_s``, ``states`` (how many
processes in each state) and ``rows``, bin/ps's rows with ``cpu`` and
``msgs_per_s`` as shown.  Without -b or --json, and not on a terminal, it
exits 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from minikern import cli
from minikern.commands import ps
from minikern.const import SYSTEM

if TYPE_CHECKING:  # imported where used: `top --help` and `top -b` load no rich
    from rich.console import RenderableType

    from minikern import ipc

Row = dict[str, Any]
Snapshot = dict[str, Any]
# (heading, the row's key, aligned left): the columns, in both the screen and the batch text
COLUMNS = (("LABEL", "label", True), ("STATE", "state", True), ("PID", "pid", False),
           ("INC", "incarnation", False), ("CPU%", "cpu", False), ("MEM MiB", "rss_mb", False),
           ("MSG/S", "msgs_per_s", False), ("HB ms", "heartbeat_ms", False),
           ("IPC", "ipc", True))
SORTS: dict[str, tuple[Callable[[Row], Any], bool]] = {  # --sort: (key, descending)
    "table": (lambda r: 0, False),
    "label": (lambda r: str(r["label"]), False),
    "cpu": (lambda r: r.get("cpu") or 0.0, True),
    "mem": (lambda r: r.get("rss_mb") or 0.0, True),
    "msgs": (lambda r: r.get("msgs_per_s") or 0.0, True),
}
KEYS = {"c": "cpu", "m": "mem", "n": "msgs", "l": "label"}  # a key pressed: its sort
QUIT = ("q", "Q")
STYLES = {"up": "green", "starting": "yellow", "restarting": "yellow", "failed": "bold red",
          "down": "dim"}


class Meter:
    """Turns the running totals of successive samples into rates: CPU percent and messages
    per second for each process, over the time between two samples.  A process is known
    by (pid, endpoint): a restarted service is a new one, whose totals start from 0."""

    def __init__(self) -> None:
        self.last: dict[tuple[int | None, int | None], tuple[float, float | None, int | None]] = {}
        self.then: float | None = None

    def rates(self, rows: list[Row], now: float) -> float | None:
        """Set each row's ``cpu`` and ``msgs_per_s``; the interval since the last call."""
        seen: dict[tuple[int | None, int | None], tuple[float, float | None, int | None]] = {}
        for r in rows:
            if r.get("pid") is None:
                r["msgs_per_s"] = None
                continue
            key, cpu_s, received = (r["pid"], r.get("endpoint")), r.get("cpu_s"), r.get("received")
            before = self.last.get(key)
            if before is not None and now > before[0]:
                dt = now - before[0]
                if cpu_s is not None and before[1] is not None:
                    r["cpu"] = round(max(0.0, cpu_s - before[1]) / dt * 100, 1)
                r["msgs_per_s"] = (None if received is None or before[2] is None
                                   else round(max(0, received - before[2]) / dt, 1))
            else:  # first seen: its life's averages (bin/ps's ``cpu`` is one already)
                age = r.get("uptime") or 0.0
                r["msgs_per_s"] = (None if received is None or age <= 0
                                   else round(received / age, 1))
            seen[key] = (now, cpu_s, received)
        interval = None if self.then is None else round(now - self.then, 3)
        self.last, self.then = seen, now
        return interval


def is_kernel(r: Row) -> bool:
    """The kernel's line: known by its endpoint (a user program may call itself "kernel")."""
    return r.get("endpoint") == SYSTEM


def snapshot(rows: list[Row], meter: Meter, now: float, wall: float) -> Snapshot:
    """One screen's figures from bin/ps's rows (``now`` monotonic, ``wall`` Unix time)."""
    interval = meter.rates(rows, now)
    total = round(sum(r.get("msgs_per_s") or 0.0 for r in rows if not is_kernel(r)), 1)
    kernel = next((r for r in rows if is_kernel(r)), None)
    if kernel is not None:
        kernel["msgs_per_s"] = total
    return {"ts": wall, "interval": interval,
            "uptime": kernel.get("uptime") if kernel is not None else None,
            "msgs_per_s": total, "states": dict(Counter(str(r["state"]) for r in rows)),
            "rows": rows}


def ordered(rows: list[Row], sort: str) -> list[Row]:
    """The rows in ``sort``'s order; the kernel stays first, whatever the order."""
    key, descending = SORTS[sort]
    rest = sorted((r for r in rows if not is_kernel(r)), key=key, reverse=descending)
    return [r for r in rows if is_kernel(r)] + rest


def cell(r: Row, key: str) -> str:
    v = r.get(key)
    if key == "state" and r.get("restart_in") is not None:
        return f"{printable(str(v))} {r['restart_in']:.1f}s"
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if key == "heartbeat_ms" else f"{v:.1f}"
    return printable(str(v))


def printable(text: str) -> str:
    """``text`` with control characters escaped: a user program names its own label, and
    must not drive the terminal through it (events.printable's rule, without its imports)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clock_time(s: float) -> str:
    """An uptime in a few characters: 42s, 3m05s, 1h02m."""
    minutes, sec = divmod(int(s), 60)
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


def headline(snap: Snapshot) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(snap["ts"]))
    up = "-" if snap["uptime"] is None else clock_time(snap["uptime"])
    states = ", ".join(f"{n} {s}" for s, n in sorted(snap["states"].items()))
    return (f"top - {stamp} up {up}, {len(snap['rows'])} processes: {states}; "
            f"{snap['msgs_per_s']:.1f} messages/s")


def text(snap: Snapshot, sort: str = "table") -> str:
    """One screen as plain text: the headline, a blank line, the aligned table."""
    rows = [[h for h, _, _ in COLUMNS]]
    rows += [[cell(r, key) for _, key, _ in COLUMNS] for r in ordered(snap["rows"], sort)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) if left else v.rjust(w)
                       for (_, _, left), v, w in zip(COLUMNS, row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([headline(snap), "", *lines])


def screen(snap: Snapshot, sort: str) -> RenderableType:
    """One screen for rich: the headline, the table with the states coloured, the keys."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    table = Table(box=None, header_style="reverse", pad_edge=False)
    for heading, _, left in COLUMNS:
        table.add_column(heading, justify="left" if left else "right", no_wrap=True)
    for r in ordered(snap["rows"], sort):
        cells = [Text(cell(r, key)) for _, key, _ in COLUMNS]
        cells[1].stylize(STYLES.get(str(r["state"]), ""))
        table.add_row(*cells)
    keys = Text(f"sorted by {sort}; q quit, c cpu, m memory, n messages, l label", style="dim")
    return Group(Text(headline(snap), style="bold"), Text(""), table, Text(""), keys)


class Sampler:
    """The system's snapshots, one per call, each with the rates since the one before."""

    def __init__(self, conn: ipc.Connection) -> None:
        self.conn, self.meter = conn, Meter()

    def __call__(self) -> Snapshot:
        rows = ps.collect(self.conn)
        return snapshot(rows, self.meter, time.monotonic(), time.time())


def paced(delay: float, count: int | None) -> Iterator[int]:
    """0, 1, 2, ... (``count`` of them, or without end), the i-th ``delay`` * i seconds after
    the first, so that the time taken to sample does not add up."""
    start, i = time.monotonic(), 0
    while count is None or i < count:
        if i:
            time.sleep(max(0.0, start + i * delay - time.monotonic()))
        yield i
        i += 1


@contextmanager
def keyboard() -> Iterator[Callable[[float], str | None]]:
    """A terminal read key by key (no echo, no line buffering) for the ``with`` block;
    yields ``wait(timeout)``: the key pressed within ``timeout`` seconds, or None.  The
    terminal's settings are put back however the block ends."""
    import select
    import termios
    import tty
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def wait(timeout: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        tty.setcbreak(fd)
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def live(sample: Callable[[], Snapshot], args: argparse.Namespace) -> int:
    """The full-screen view: redrawn every ``args.delay`` seconds, or at once for a key."""
    from rich.console import Console
    from rich.live import Live
    sort, shown = args.sort, 0
    with keyboard() as wait, Live(console=Console(), screen=True, auto_refresh=False) as view:
        while args.iterations is None or shown < args.iterations:
            snap, shown = sample(), shown + 1
            next_at = time.monotonic() + args.delay
            while True:  # this sample on screen until the next is due
                view.update(screen(snap, sort), refresh=True)
                key = wait(next_at - time.monotonic())
                if key is None:
                    break
                if key in QUIT:
                    return cli.EXIT_OK
                sort = KEYS.get(key, sort)  # a sort key redraws at once; others are ignored
    return cli.EXIT_OK


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a count of at least 1: {text!r}")
    return n


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("top", __doc__, json="print snapshots as JSON, one object a line")
    cmd.add_argument("-d", "--delay", type=positive, default=1.0, metavar="SECONDS",
                     help="seconds between screens (default: %(default)s)")
    cmd.add_argument("-n", "--iterations", type=count, metavar="N",
                     help="stop after N screens (--json: 1 unless given)")
    cmd.add_argument("-b", "--batch", action="store_true",
                     help="plain text, one screen after another, no terminal control")
    cmd.add_argument("-s", "--sort", choices=sorted(SORTS), default="table",
                     help="the order of the lines (default: the kernel's table order)")
    return cmd.run(argv, top)


def top(args: argparse.Namespace) -> int:
    if not (args.batch or args.json) and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("top: not a terminal: use -b for plain text, or --json", file=sys.stderr)
        return cli.EXIT_NOT_RUN
    with cli.connected(args.run_dir, "top") as conn:
        sample = Sampler(conn)
        try:
            if not (args.batch or args.json):
                return live(sample, args)
            screens = 1 if args.json and args.iterations is None else args.iterations
            for i in paced(args.delay, screens):
                snap = sample()
                if args.json:
                    snap["rows"] = ordered(snap["rows"], args.sort)
                    print(json.dumps(snap), flush=True)
                else:
                    print(("\n" if i else "") + text(snap, args.sort), flush=True)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how top ends, as top(1): done, not failed
    return cli.EXIT_OK
