"""bin/status: how one service (or every one) is doing, in the manner of `systemctl status`.

For each service: its state (coloured on a terminal) and since when; its
program, pid, endpoint and incarnation; the policy RS applies to it (heartbeat
period, backoff, stable time, intensity limit, recovery script,
dependencies); its failures in the current window, and the countdown to its
restart when RS is waiting out a backoff; the last crash, with its reason and
traceback; the round trip of the last heartbeat; the IPC state and
privileges the kernel reports (GETINFO); and the last lines of its log.

RS's STATUS says how each service is doing (docs/PROTOCOL.md, section 16);
the kernel's process table what runs and what it may do; the event stream
(bin/logs) the crashes and the log lines.  A label the kernel runs but RS
does not supervise (rs itself, a user program) gets what the kernel knows.

Exit status as systemctl's: 0 when the service (every service, without a
LABEL) is up, 3 when one is not (starting, restarting, down or failed); 1
for a label neither RS nor the kernel knows.  With --json: one object per
service (a list without LABEL) with RS's fields, ``ipc``, ``priv``,
``last_crash`` and ``log`` (the event records).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minikern import cli, events
from minikern.commands.logs import format_event
from minikern.commands.ps import ipc_state
from minikern.const import Err, RsReq

if TYPE_CHECKING:  # imported where used: `status --help` loads no ZeroMQ
    from minikern import ipc
    from minikern.identity import Who

EXIT_NOT_UP = 3  # systemctl's "unit is not active"
COLOURS = {"up": "32", "starting": "33", "restarting": "33", "failed": "1;31", "down": "2"}
Row = dict[str, Any]


def seconds(value: float | None) -> str:
    """A duration as a person reads it: 250 ms, 1 s, 1.5 s, 2 min 5 s."""
    if value is None:
        return "off"
    if value < 1:
        return f"{value * 1000:g} ms"
    if value < 120:
        return f"{value:g} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    stamp = datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} ({seconds(max(0.0, round(now - ts, 1)))} ago)"


def policy(s: Row) -> str:
    limit = ("no restart limit" if s.get("restarts") is None
             else f"at most {s['restarts']} restarts in {seconds(s.get('window'))}")
    backoff = ("restart at once" if s.get("backoff") is None
               else f"backoff {seconds(s['backoff'])} doubling to {seconds(s.get('backoff_cap'))}")
    return "; ".join([f"heartbeat {'every ' + seconds(s['period']) if s.get('period') else 'off'}",
                      backoff, f"stable after {seconds(s.get('stable'))}", limit,
                      f"script {s.get('script') or '-'}",
                      "depends on " + (", ".join(s.get("depends") or []) or "nothing")])


def privileges(priv: dict[str, Any] | None) -> str:
    if not priv:
        return "-"
    def names(key: str) -> str:
        return " ".join(str(x) for x in priv.get(key) or []) or "-"
    io = " ".join(f"{r[0]:#x}:{r[1]}" if isinstance(r, list) and len(r) == 2 else str(r)
                  for r in priv.get("io") or []) or "-"
    return (f"traps {names('traps')}; kernel calls {names('kcalls')}; io {io}; "
            f"irq {names('irq')}" + ("; system process" if priv.get("sys_proc") else ""))


def gather(conn: ipc.Connection, run_dir: str, lines: int) -> list[Row]:
    """One row per service RS knows and per other process the kernel runs (no tools)."""
    from minikern import ipc, rsctl
    from minikern.identity import Identity
    identity = Identity(conn)
    live = identity.live()
    if live is None:
        raise ipc.IpcError(Err.EIO, "the kernel did not list its processes (GETINFO)")
    try:
        services = rsctl.call(conn, RsReq.STATUS).get("services", [])
    except rsctl.RsError:
        services = []  # no RS in this system: the kernel's table alone
    names = {p.endpoint: p.label for p in live.values()}
    by_label: dict[str, Who] = {}
    for p in live.values():
        tool = p.operator and (p.priv.get("sys_proc") or p.priv.get("kcalls"))
        if not tool and (p.label not in by_label or p.uptime < by_label[p.label].uptime):
            by_label[p.label] = p  # two holders: the younger is the current one
    rows: list[Row] = []
    for s in services:
        rows.append({**s, "supervised": True})
    for label, w in by_label.items():
        if not any(r["label"] == label for r in rows):
            rows.append({"label": label, "state": "up" if w.ready else "starting",
                         "supervised": False, "pid": w.pid, "endpoint": w.endpoint,
                         "incarnation": w.incarnation, "uptime": w.uptime, "user": w.operator,
                         "since": time.time() - w.uptime})
    log = events.read_all(Path(run_dir))
    for r in rows:
        now_running = by_label.get(r["label"])
        if now_running is not None and now_running.pid != r.get("pid"):
            now_running = None  # RS's instance has gone (or is not the one listed)
        r["ipc"] = (ipc_state(now_running.wait, now_running.peer, names)
                    if now_running is not None else None)
        r["priv"] = now_running.priv if now_running is not None else None
        mine = [e for e in log if e.get("label") == r["label"]]
        r["last_crash"] = next((e for e in reversed(mine) if e.get("kind") == "crash"), None)
        r["log"] = mine[max(0, len(mine) - lines):] if lines else []
    return rows


def render(r: Row, colour: bool, now: float) -> str:
    state = str(r.get("state", "?"))
    dot = f"\033[{COLOURS.get(state, '0')}m●\033[0m" if colour else "●"
    shown = f"\033[{COLOURS.get(state, '0')}m{state}\033[0m" if colour else state
    program = r.get("program") or ("user program" if r.get("user") else "")
    out = [f"{dot} {r['label']}" + (f" - {program} {' '.join(r.get('args') or [])}".rstrip()
                                     if program else "")]

    def line(name: str, text: str) -> None:
        out.append(f"{name:>11}: {text}")

    line("State", f"{shown} since {when(r.get('since'), now)}"
         + (f" (last failure: {r['last_reason']})" if r.get("last_reason") else ""))
    if r.get("pid") is not None:
        line("Process", f"pid {r['pid']}, endpoint {r['endpoint']}, "
             f"incarnation {r.get('incarnation', 0)}")
    else:
        line("Process", f"not running (incarnation {r.get('incarnation', 0)})")
    if not r["supervised"]:
        line("Policy", "not supervised by RS" + (" (a core server)" if r["label"] == "rs" else ""))
    else:
        line("Policy", policy(r) + ("; core server: its failure halts the system"
                                    if r.get("core") else ""))
        limit = f" of {r['restarts']} allowed" if r.get("restarts") is not None else ""
        line("Failures", f"{r.get('window_failures', 0)} in the current window{limit}, "
             f"{r.get('failures', 0)} in a row")
        if r.get("restart_in") is not None:
            line("Restart", f"in {seconds(r['restart_in'])} (backoff)")
        if r.get("heartbeat_ms") is not None:
            line("Heartbeat", f"{r['heartbeat_ms']:.2f} ms round trip")
    if r.get("ipc") is not None:
        line("IPC", str(r["ipc"]))
        line("Privileges", privileges(r.get("priv")))
    crash = r.get("last_crash")
    if crash is not None:
        why = " ".join(str(crash[k]) for k in ("reason", "signal", "detail") if crash.get(k))
        line("Last crash", f"{when(crash.get('ts'), now)}: {events.printable(why)} "
             f"(pid {crash.get('pid', '-')}, RS's action: {crash.get('action', '-')})")
        trace = str(crash.get("traceback") or "").rstrip()
        out.extend("    | " + events.printable(t) for t in trace.splitlines())
    if r.get("log"):  # one line each: the crash's traceback is above
        out.append("")
        out.extend(format_event(e, colour).split("\n", 1)[0] for e in r["log"])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("status", __doc__, json="print the services as JSON")
    cmd.add_argument("label", nargs="?", help="the service (default: every one)")
    cmd.add_argument("-n", "--lines", type=int, metavar="N",
                     help="log lines to show (default 10 for one service, 0 for all)")
    return cmd.run(argv, status)


def status(args: argparse.Namespace) -> int:
    lines = args.lines if args.lines is not None else (10 if args.label else 0)
    with cli.connected(args.run_dir, "status") as conn:
        rows = gather(conn, args.run_dir, max(0, lines))
    if args.label is not None:
        rows = [r for r in rows if r["label"] == args.label]
        if not rows:
            return cli.fail("status", f"no service or process {args.label!r}")
    if args.json:
        print(json.dumps(rows[0] if args.label else rows))
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        now = time.time()
        print("\n\n".join(render(r, colour, now) for r in rows))
    return cli.EXIT_OK if all(r.get("state") == "up" for r in rows) else EXIT_NOT_UP
