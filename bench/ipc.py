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
from typing import Any

import zmq

from minikern import cli, codec, ipc, sysconf
from minikern.boot import System
from minikern.codec import Message
from minikern.const import Call, Err

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
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds of each path")
    p.add_argument("--calls", type=int, default=2000, help="round trips per round")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return measure(args.rounds, args.calls)


def measure(rounds: int = 7, n: int = 2000, notifies: int = 20000) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mk-bench-"))
    conf = tmp / "system.conf"
    conf.write_text(CONF)
    system = System(tmp / "run", conf)
    procs: list[subprocess.Popen[bytes]] = []
    ctx = zmq.Context.instance()
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
        _mk_rtt(conn, n // 4)
        _relay_rtt(sock, n // 4)
        mk, relay = [], []
        for _ in range(rounds):
            mk.append(_mk_rtt(conn, n))
            relay.append(_relay_rtt(sock, n))
        t = time.perf_counter()
        for _ in range(notifies):
            if conn.notify(ECHO) != Err.OK:
                raise RuntimeError("notify failed")
        notify_rate = notifies / (time.perf_counter() - t)
        sock.close()
        conn.close()
        mk_med, relay_med = statistics.median(mk), statistics.median(relay)
        return {"minikern_rtt_us": round(mk_med, 1), "relay_rtt_us": round(relay_med, 1),
                "ratio": round(mk_med / relay_med, 3), "notify_per_s": round(notify_rate),
                "rounds": rounds, "calls_per_round": n}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        system.halt()
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    return (f"SENDREC round trip: minikern {r['minikern_rtt_us']} us, bare relay "
            f"{r['relay_rtt_us']} us, ratio {r['ratio']} (target <= 1.25)\n"
            f"NOTIFY throughput: {r['notify_per_s']} notify/s from one sender")
