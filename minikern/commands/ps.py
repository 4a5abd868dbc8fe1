"""bin/ps: every process of the system, the kernel and the board included.

One row per process (and per configured service RS knows that is down or
failed): label, endpoint, pid, state (starting, up, restarting, down,
failed), incarnation (restarts so far), uptime, CPU (average since the
process started, percent of one CPU) and resident memory, from psutil.
The kernel's process table says what runs (minikern/identity.py, the one
answer to "who is this endpoint"); RS (STATUS) says how each service is
doing.  User programs started from the shell (bin/nc, bin/echod: admitted
with the operator key, holding user privileges and no kernel call) are
listed with ``user`` true; operator tools, this one included, are not.
-l (long) adds each process's IPC state, as the kernel's GETINFO reports it
(``running``, ``recv ANY``, ``recv X``, ``send X``, ``sendrec X`` while the
request waits to be taken, ``reply X`` while its answer is awaited, ``kcall``),
its scheduling queue as the host has it now (``pri``: 0 highest, user programs
7, minikern/sched.py; ``nice`` in the JSON) and its host scheduling class
(``class``: ``rr`` for the bounded real-time class a system queue has when booted as
root, ``other`` for the weighted one, and for a system process demoted from it), and
the reason of the last failure RS saw.  ``--pid LABEL`` prints that service's pid alone (``kill -9 $(bin/ps
--pid rtl8139)``), or exits 1 with a line on stderr when it is not running.  With --json: one JSON array of
objects with the same keys (``ipc`` among them, with ``wait`` and ``peer``
raw), and the raw figures bin/top turns into rates: ``cpu_s`` (CPU seconds
used so far), ``received`` (messages the kernel has delivered to it,
GETINFO's count), and from RS ``heartbeat_ms`` (the last heartbeat's round
trip) and ``restart_in`` (seconds to a restart held back by the backoff).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from typing import TYPE_CHECKING, Any

from minikern import cli
from minikern.const import ANY, NONE, RS, SYSTEM, Err, RsReq, Wait

if TYPE_CHECKING:  # the rest is imported where it is used: `ps --help` loads no ZeroMQ
    from minikern import ipc

COLUMNS = ("label", "endpoint", "pid", "state", "incarnation", "uptime", "cpu", "rss_mb")
LONG = (*COLUMNS, "pri", "class", "ipc", "last_reason")
WAITS = {Wait.SEND.value: "send", Wait.RECV.value: "recv", Wait.SENDREC_SEND.value: "sendrec",
         Wait.SENDREC_RECV.value: "reply"}


def ipc_state(wait: str, peer: int, names: dict[int, str]) -> str:
    """The kernel's Wait and peer in a few words: ``recv ANY``, ``sendrec rs``, ``running``."""
    if wait == "ready":
        return "running"
    if wait not in WAITS:
        return wait  # kcall, or a state this tool does not know yet: as the kernel says
    who = "ANY" if peer == ANY else "SYSTEM" if peer == SYSTEM else names.get(peer, str(peer))
    return f"{WAITS[wait]} {who}"


def _usage(pid: int | None) -> dict[str, Any]:
    """cpu (percent since start), cpu_s (CPU seconds), rss_mb and uptime (s) of a host
    process; None for each when there is no such process."""
    import psutil
    from minikern import sched
    none: dict[str, Any] = {"cpu": None, "cpu_s": None, "rss_mb": None, "uptime": None,
                            "pri": None, "nice": None, "class": None}
    if pid is None:
        return none
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            t, rss, born, nice = p.cpu_times(), p.memory_info().rss, p.create_time(), p.nice()
    except psutil.Error:
        return none
    age, used = max(time.time() - born, 1e-3), t.user + t.system
    return {"cpu": round(used / age * 100, 1), "cpu_s": round(used, 3),
            "rss_mb": round(rss / (1 << 20), 1), "uptime": round(age, 3),
            "pri": sched.queue_of(nice), "nice": nice, "class": sched.policy(pid)}


def _number(value: object) -> float | None:
    """A figure from RS's answer, if it is one (RS is another process: its fields are checked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def collect(conn: ipc.Connection) -> list[dict[str, Any]]:
    from minikern import ipc, rsctl
    from minikern.identity import Identity
    identity = Identity(conn)
    live = identity.live()
    if live is None:
        raise ipc.IpcError(Err.EIO, "the kernel did not list its processes (GETINFO)")
    services: dict[str, dict[str, Any]] = {}
    try:
        services = {s["label"]: s for s in rsctl.call(conn, RsReq.STATUS).get("services", [])}
    except rsctl.RsError:
        pass  # no RS in this system: the kernel's table alone
    names = {p.endpoint: p.label for p in live.values()}
    rows = [{"label": "kernel", "endpoint": SYSTEM, "pid": identity.kernel_pid, "state": "up",
             "incarnation": 0, **_usage(identity.kernel_pid), "manager": None,
             "user": False, "ipc": None, "wait": None, "peer": None, "priv": None,
             "last_reason": None, "received": None, "heartbeat_ms": None, "restart_in": None}]
    for p in live.values():
        user = p.operator and not p.priv.get("sys_proc") and not p.priv.get("kcalls")
        if p.operator and not user:
            continue  # an operator tool
        svc = None if user else services.pop(p.label, None)
        state = "up" if p.ready or user else "starting"
        if svc is not None and svc.get("pid") == p.pid:
            state = svc["state"]
        rows.append({"label": p.label, "endpoint": p.endpoint, "pid": p.pid, "state": state,
                     "incarnation": svc["incarnation"] if svc else p.incarnation,
                     **_usage(p.pid), "uptime": p.uptime,
                     "manager": p.manager if p.manager != NONE else None,
                     "user": user, "last_reason": svc.get("last_reason") if svc else None,
                     "ipc": ipc_state(p.wait, p.peer, names), "wait": p.wait, "peer": p.peer,
                     "priv": p.priv, "received": p.received,
                     "heartbeat_ms": _number(svc.get("heartbeat_ms")) if svc else None,
                     "restart_in": _number(svc.get("restart_in")) if svc else None})
    for svc in services.values():  # known to RS but not running
        rows.append({"label": svc["label"], "endpoint": None, "pid": None,
                     "state": svc["state"], "incarnation": svc["incarnation"], "uptime": None,
                     "cpu": None, "cpu_s": None, "rss_mb": None, "pri": None, "nice": None,
                     "class": None, "manager": RS, "user": False,
                     "last_reason": svc.get("last_reason"), "ipc": None, "wait": None,
                     "peer": None, "priv": None, "received": None, "heartbeat_ms": None,
                     "restart_in": _number(svc.get("restart_in"))})
    return rows


LEFT = ("label", "ipc", "last_reason")  # text columns, aligned left; numbers right


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    def cell(v: object) -> str:
        return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)
    cells = [[c.upper() for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) if c in LEFT else v.rjust(w)
                               for c, v, w in zip(columns, row, widths, strict=True)).rstrip()
                     for row in cells)


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("ps", __doc__, json="print one JSON array")
    cmd.add_argument("-l", "--long", action="store_true",
                     help="add the IPC state and the last failure's reason")
    cmd.add_argument("--pid", metavar="LABEL", help="print the pid of LABEL alone")
    return cmd.run(argv, ps)


def ps(args: argparse.Namespace) -> int:
    with cli.connected(args.run_dir, "ps") as conn:
        rows = collect(conn)
    if args.pid is not None:
        pid = next((r["pid"] for r in rows if r["label"] == args.pid and r["pid"]), None)
        if pid is None:
            known = any(r["label"] == args.pid for r in rows)
            return cli.fail("ps", f"{args.pid} is not running" if known
                            else f"no process or service {args.pid!r}")
        print(json.dumps(pid) if args.json else pid)
        return cli.EXIT_OK
    print(json.dumps(rows) if args.json else table(rows, LONG if args.long else COLUMNS))
    return cli.EXIT_OK
