"""bin/bench devio: checked port accesses per second from one driver, ring vs the DEVIO kernel call.

Boots its own system (the board and nothing else) in a temporary run
directory.  The benchmark process then acts as one driver: it connects with
the privileges of the ``devio`` service below (port window 0x3F8:8, the
UART; DEVIO and IOMAP), attaches its ring with IOMAP, and reads the UART
scratch register (0x3FF) in alternating rounds:

- ``port_ops_per_s``: through the ring one ``inb`` at a time, each waiting
  for its answer before the next: a round trip per access, checked by the
  board against the window the kernel handed out (target >= 200,000; the
  figure this benchmark has always reported);
- ``batched_port_ops_per_s``: through the ring in batches (``vec`` of
  ``--batch`` reads): every read is its own slot, checked, performed and
  answered on its own, and a batch costs one wait;
- ``devio_kcall_ops_per_s``: the DEVIO kernel call (checked by the kernel,
  performed by the board over the bus).

The medians are reported.  Then ``--refusals`` reads of a port outside the
window (0x2FF): each must raise ECALLDENIED, and once the system is halted
the board's audit must account for every one (``denied`` records plus the
rate limit's ``denied-suppressed`` sums): ``refusals_audited``.  ``load_avg``
is the host's one-minute load average before and after: the figures mean
little without it on a shared machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import positive
from minikern import devio, events, ipc, sysconf
from minikern.boot import System
from minikern.const import Err, KCall
from minikern.proto import ring

CONF = """
boot hw;
service operator { user yes; system GETINFO KILL SHUTDOWN; ipc ALL; };
service hw { program hw.board; args --nic none; ipc SYSTEM; };
service devio { system DEVIO IOMAP; ipc SYSTEM; io 0x3f8:8; };
"""
UART_SCR = 0x3FF
OUTSIDE = 0x2FF  # COM2's scratch register: not in the window
TARGET = 200_000


def _batch_rate(ch: devio.Channel, n: int, batch: int) -> float:
    ops: list[tuple[int, int, int | None]] = [(UART_SCR, 1, None)] * batch
    rounds = max(1, n // batch)
    t = time.perf_counter()
    for _ in range(rounds):
        ch.vec(ops)
    return rounds * batch / (time.perf_counter() - t)


def _single_rate(ch: devio.Channel, n: int) -> float:
    inb = ch.inb
    t = time.perf_counter()
    for _ in range(n):
        inb(UART_SCR)
    return n / (time.perf_counter() - t)


def _kcall_rate(conn: ipc.Connection, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        conn.kcall(KCall.DEVIO, port=UART_SCR, size=1)
    return n / (time.perf_counter() - t)


def _refuse(ch: devio.Channel, n: int) -> int:
    refused = 0
    for _ in range(n):
        try:
            ch.inb(OUTSIDE)
        except devio.ChannelError as e:
            refused += e.code == Err.ECALLDENIED
    return refused


def _audited(run_dir: Path) -> int:
    """The board's refusals of the ``devio`` driver, recorded or summed up."""
    n = 0
    for e in events.read_all(run_dir):
        if e.get("source") == "hw" and e.get("label") == "devio":
            if e["kind"] == "denied" and e.get("call") == "DEVIO":
                n += 1
            elif e["kind"] == "denied-suppressed":
                n += int(e.get("suppressed", 0))
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=positive, default=5, help="alternating rounds of each path")
    p.add_argument("--ops", type=positive, default=20000,
                   help="one-at-a-time ring accesses per round")
    p.add_argument("--batched-ops", type=positive, default=50000,
                   help="batched ring accesses per round")
    p.add_argument("--kcall-ops", type=positive, default=3000, help="DEVIO calls per round")
    p.add_argument("--batch", type=positive, default=ring.MAX_CHAIN,
                   help=f"accesses per batch (at most {ring.MAX_CHAIN})")
    p.add_argument("--refusals", type=positive, default=500, help="refused accesses to audit")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return measure(args.rounds, args.ops, args.kcall_ops, min(args.batch, ring.MAX_CHAIN),
                   args.batched_ops, args.refusals)


def measure(rounds: int = 5, ops: int = 20000, kcall_ops: int = 3000, batch: int = ring.MAX_CHAIN,
            batched_ops: int = 50000, refusals: int = 500) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mk-devio-"))
    conf = tmp / "system.conf"
    conf.write_text(CONF)
    load_before = os.getloadavg()[0]
    system = System(tmp / "run", conf)
    try:
        if not system.wait_ready():
            raise RuntimeError("benchmark system did not come up")
        priv = sysconf.parse(CONF).services["devio"].priv()
        conn = ipc.Connection.operator(tmp / "run", "devio", priv)
        ch = devio.open_channel(conn)
        ch.outb(UART_SCR, 0xA5)
        if ch.inb(UART_SCR) != 0xA5 or conn.kcall(KCall.DEVIO, port=UART_SCR)["values"] != [0xA5] \
                or ch.vec([(UART_SCR, 1, None)] * batch) != [0xA5] * batch:
            raise RuntimeError("the scratch register does not read back")
        _single_rate(ch, ops // 10)
        _batch_rate(ch, batched_ops // 10, batch)
        _kcall_rate(conn, kcall_ops // 10)
        single, batched, kcall = [], [], []
        for _ in range(rounds):
            single.append(_single_rate(ch, ops))
            batched.append(_batch_rate(ch, batched_ops, batch))
            kcall.append(_kcall_rate(conn, kcall_ops))
        refused = _refuse(ch, refusals)
        ch.close()
        conn.close()
    finally:
        system.halt()
        audited = _audited(tmp / "run")
        shutil.rmtree(tmp, ignore_errors=True)
    return {"port_ops_per_s": round(statistics.median(single)),
            "batched_port_ops_per_s": round(statistics.median(batched)),
            "devio_kcall_ops_per_s": round(statistics.median(kcall)),
            "target_port_ops_per_s": TARGET, "batch": batch, "rounds": rounds,
            "ops_per_round": ops, "batched_ops_per_round": batched_ops,
            "kcall_ops_per_round": kcall_ops, "refusals": refusals,
            "refusals_refused": refused, "refusals_audited": audited,
            "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def report(r: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        return "meets" if r[key] >= r["target_port_ops_per_s"] else "MISSES"

    audit = ("every one audited" if r["refusals_audited"] == r["refusals"] == r["refusals_refused"]
             else f"{r['refusals_refused']} refused, {r['refusals_audited']} audited: NOT ALL")
    return (f"checked port accesses from one driver's ring: {r['port_ops_per_s']}/s one at a "
            f"time ({verdict('port_ops_per_s')} the target of {r['target_port_ops_per_s']}), "
            f"{r['batched_port_ops_per_s']}/s in batches of {r['batch']} "
            f"({verdict('batched_port_ops_per_s')} it); DEVIO kernel call "
            f"{r['devio_kcall_ops_per_s']}/s (median of {r['rounds']} alternating rounds); "
            f"{r['refusals']} refused accesses, {audit}; load average {r['load_avg']}")
