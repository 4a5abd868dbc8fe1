"""bin/bench ipc: SENDREC round trip through the kernel vs through a bare ZeroMQ relay.

Both paths have the same topology (client, broker, server, all separate
processes) and the same message codec; they are measured alternately in one
run, several rounds each, and the medians compared.  Also measures NOTIFY
throughput (notify traps per second from one sender to a receiving server).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import zmq

from bench import positive
from minikern import cli, ipc, sched, sysconf
from minikern.proto import codec
from minikern.boot import System
from minikern.proto import Message
from minikern.const import Call, Err, KCall

CONF = """
boot echo;
service operator { user yes; system GETINFO KILL SHUTDOWN; ipc ALL; };
service bench { system GETINFO; ipc ALL; };
service echo { program bench.echo; ipc ALL; };
"""
ECHO = 8  # the first dynamic slot: echo is the only boot process
PAYLOAD = {"op": 1, "position": 4096, "count": 512}


def _mk_rtt(conn: ipc.Connection, n: int) -> float:
    m = Message(1, PAYLOAD)
    t = time.perf_counter()
    for _ in range(n):
        conn.sendrec(ECHO, m)
    return (time.perf_counter() - t) / n * 1e6


def _relay_rtt(sock: zmq.Socket, n: int) -> float:  # type: ignore[type-arg]
    hdr = codec.encode_request(Call.SENDREC, ECHO)
    t = time.perf_counter()
    for _ in range(n):  # the same work per call as ipc.Connection._trap
        sock.send_multipart([hdr, codec.encode_body(1, PAYLOAD)])
        while not sock.poll(1000):
            pass
        frames = sock.recv_multipart()
        status = codec.decode_reply(frames[0])
        if status is None or codec.decode_body(frames[1]) is None:
            raise RuntimeError("bad relay reply")
        Message(1, {}, status[1], status[2], status[3])
    return (time.perf_counter() - t) / n * 1e6


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=positive, default=7, help="alternating rounds of each path")
    p.add_argument("--calls", type=positive, default=2000, help="round trips per round")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return measure(args.rounds, args.calls)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (ZeroMQ's I/O thread too) onto ``cpus``."""
    for task in sched.threads(pid):
        try:
            os.sched_setaffinity(task, cpus)
        except OSError:
            pass


def _alternate(rounds: int, n: int, a: Callable[[int], float],
               b: Callable[[int], float]) -> tuple[float, float]:
    a(max(1, n // 4))  # warm both paths up first
    b(max(1, n // 4))
    ra, rb = [], []
    for _ in range(rounds):
        ra.append(a(n))
        rb.append(b(n))
    return statistics.median(ra), statistics.median(rb)


def measure(rounds: int = 7, n: int = 2000, notifies: int = 20000) -> dict[str, Any]:
    """Both paths twice: all three processes of a path pinned to one CPU (the stable,
    headline figure: no cross-core wake-ups or migrations, which on a small shared machine
    swing a round trip between two modes ~2x apart), and left to the scheduler."""
    tmp = Path(tempfile.mkdtemp(prefix="mk-bench-"))
    conf = tmp / "system.conf"
    conf.write_text(CONF)
    system = System(tmp / "run", conf)
    procs: list[subprocess.Popen[bytes]] = []
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    try:
        if not system.wait_ready():
            raise RuntimeError("benchmark system did not come up")
        priv = sysconf.parse(CONF).services["bench"].priv()
        conn = ipc.Connection.operator(tmp / "run", "bench", priv)
        env = {**os.environ, "PYTHONPATH": str(cli.REPO_ROOT)}
        for role in ("relay", "server"):
            procs.append(subprocess.Popen([sys.executable, "-m", "bench.relay", role, str(tmp)],
                                          env=env))
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"ipc://{tmp}/front.sock")
        deadline = time.monotonic() + 10
        while True:  # the relay drops requests until the server has announced itself
            sock.send_multipart([codec.encode_request(Call.SENDREC, ECHO),
                                 codec.encode_body(1, {})])
            if sock.poll(100):
                sock.recv_multipart()
                break
            if time.monotonic() > deadline:
                raise RuntimeError("relay did not come up")
        echo = next(p["pid"] for p in conn.kcall(KCall.GETINFO)["procs"] if p["label"] == "echo")
        spread = _alternate(rounds, n, lambda k: _mk_rtt(conn, k), lambda k: _relay_rtt(sock, k))
        everyone = [system.kernel.pid, echo, os.getpid(), procs[0].pid, procs[1].pid]
        cpu = {max(os.sched_getaffinity(0))}
        for pid in everyone:
            pin(pid, cpu)
        pinned = _alternate(rounds, n, lambda k: _mk_rtt(conn, k), lambda k: _relay_rtt(sock, k))
        for pid in everyone:
            pin(pid, set(range(os.cpu_count() or 1)))
        t = time.perf_counter()
        for _ in range(notifies):
            if conn.notify(ECHO) != Err.OK:
                raise RuntimeError("notify failed")
        notify_rate = notifies / (time.perf_counter() - t)
        sock.close()
        conn.close()
        return {"minikern_rtt_us": round(pinned[0], 1), "relay_rtt_us": round(pinned[1], 1),
                "ratio": round(pinned[0] / pinned[1], 3),
                "spread_minikern_rtt_us": round(spread[0], 1),
                "spread_relay_rtt_us": round(spread[1], 1),
                "spread_ratio": round(spread[0] / spread[1], 3), "pinned_cpu": min(cpu),
                "notify_per_s": round(notify_rate), "rounds": rounds, "calls_per_round": n}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        system.halt()
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    return (f"SENDREC round trip, the three processes of each path on CPU {r['pinned_cpu']}: "
            f"minikern {r['minikern_rtt_us']} us, bare relay {r['relay_rtt_us']} us, "
            f"ratio {r['ratio']} (target <= 1.25)\n"
            f"SENDREC round trip, left to the scheduler: minikern "
            f"{r['spread_minikern_rtt_us']} us, bare relay {r['spread_relay_rtt_us']} us, "
            f"ratio {r['spread_ratio']}\n"
            f"NOTIFY throughput: {r['notify_per_s']} notify/s from one sender")
