"""bin/bench devio: port accesses per second from one driver, fast path vs the DEVIO kernel call.

Boots its own system (the board and nothing else) in a temporary run
directory.  The benchmark process then acts as one driver: it connects with
the privileges of the ``devio`` service below (port window 0x3F8:8, the
UART; DEVIO and IOMAP), opens its fast-path channel with IOMAP, and reads the
UART scratch register (0x3FF) in alternating rounds through the channel
(checked by the board against the window the kernel handed out) and through
DEVIO (checked by the kernel, performed by the board over the bus).  The
medians are reported; ``port_ops_per_s`` is the fast path's (target >=
20,000), ``devio_kcall_ops_per_s`` the kernel call's.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import positive
from minikern import devio
from minikern import ipc, sysconf
from minikern.boot import System
from minikern.const import KCall

CONF = """
boot hw;
service operator { user yes; system GETINFO KILL SHUTDOWN; ipc ALL; };
service hw { program hw.board; args --nic none; ipc SYSTEM; };
service devio { system DEVIO IOMAP; ipc SYSTEM; io 0x3f8:8; };
"""
UART_SCR = 0x3FF
TARGET = 20_000


def _fast_rate(ch: devio.Channel, n: int) -> float:
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=positive, default=5, help="alternating rounds of each path")
    p.add_argument("--ops", type=positive, default=20000, help="fast-path accesses per round")
    p.add_argument("--kcall-ops", type=positive, default=3000, help="DEVIO calls per round")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return measure(args.rounds, args.ops, args.kcall_ops)


def measure(rounds: int = 5, ops: int = 20000, kcall_ops: int = 3000) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mk-devio-"))
    conf = tmp / "system.conf"
    conf.write_text(CONF)
    system = System(tmp / "run", conf)
    try:
        if not system.wait_ready():
            raise RuntimeError("benchmark system did not come up")
        priv = sysconf.parse(CONF).services["devio"].priv()
        conn = ipc.Connection.operator(tmp / "run", "devio", priv)
        ch = devio.open_channel(conn)
        ch.outb(UART_SCR, 0xA5)
        if ch.inb(UART_SCR) != 0xA5 or conn.kcall(KCall.DEVIO, port=UART_SCR)["values"] != [0xA5]:
            raise RuntimeError("the scratch register does not read back")
        _fast_rate(ch, ops // 10)
        _kcall_rate(conn, kcall_ops // 10)
        fast, kcall = [], []
        for _ in range(rounds):
            fast.append(_fast_rate(ch, ops))
            kcall.append(_kcall_rate(conn, kcall_ops))
        ch.close()
        conn.close()
        return {"port_ops_per_s": round(statistics.median(fast)),
                "devio_kcall_ops_per_s": round(statistics.median(kcall)),
                "target_port_ops_per_s": TARGET, "rounds": rounds,
                "ops_per_round": ops, "kcall_ops_per_round": kcall_ops}
    finally:
        system.halt()
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    verdict = "meets" if r["port_ops_per_s"] >= r["target_port_ops_per_s"] else "MISSES"
    return (f"port I/O from one driver: fast path {r['port_ops_per_s']} ops/s "
            f"({verdict} the target of {r['target_port_ops_per_s']}), "
            f"DEVIO kernel call {r['devio_kcall_ops_per_s']} ops/s "
            f"(median of {r['rounds']} alternating rounds)")
