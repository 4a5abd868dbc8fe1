"""Hostile peers on the kernel's socket: each weakness reproduced, then the kernel alive,
serving a legitimate round trip, and its memory back within MEMORY_SLACK of where it
started once the attackers have gone (docs/PROTOCOL.md sections 3 and 14).

- Connections per uid: a uid other than the kernel's own holds at most
  MINIKERN_MAX_CONNECTIONS_PER_UID connections; before, one uid could take every
  connection the kernel allows and lock the system's owner out.
- An unfinished message: a peer that sends parts with MORE set and never ends the message
  grew the kernel by the bandwidth (libzmq counts only complete messages against the
  high-water mark); a connection of a process neither started nor admitted is now cut
  after params.UNADMITTED_DEADLINE, which frees what libzmq held.
- A message of many parts from a peer not admitted is refused unread
  (``unadmitted_oversized``).
- Connections per process: an admitted process, of the kernel's own uid (which has no
  bound per uid), holds at most MINIKERN_MAX_CONNECTIONS_PER_PID connections; before, its
  extra connections (never cut: its pid is known) were bounded only by the total.

The attackers run as processes of their own: a connection of a process the kernel knows
(the test's, which holds admitted connections) is never cut.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from minikern import params
from minikern.const import Err
from minikern.cli import REPO_ROOT
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_routing_ids import alive_and_serving, dealer, sockets
from tests.kernel.test_wire import admitted_raw, getinfo

pytestmark = pytest.mark.timeout(180)

MEMORY_SLACK = 50 << 20  # bytes the kernel may keep of an attack once the attacker has gone
PER_UID = 8  # the test's bound on another uid's connections
PER_PID = 6  # the test's bound on one process's connections
TOTAL = 48  # the test's bound on all connections
NOBODY = 65534

# Opens argv[2] connections to argv[1] one at a time; ``admitted`` counts the handshakes
# that succeeded (the kernel's ZAP handler said 200).
CONNECT_EACH = """
held, admitted = [], 0
ENDS = {zmq.EVENT_HANDSHAKE_SUCCEEDED: 1, zmq.EVENT_HANDSHAKE_FAILED_AUTH: 0,
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: 0, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: 0}
for _ in range(int(sys.argv[2])):  # one at a time: each handshake ends before the next
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RECONNECT_IVL, 60_000)  # refused: stays away
    monitor = s.get_monitor_socket()
    s.connect(sys.argv[1])
    while monitor.poll(10_000):
        event = recv_monitor_message(monitor)["event"]
        if event in ENDS:
            admitted += ENDS[event]
            break
    s.disable_monitor()
    monitor.close(0)
    held.append(s)
"""

HOLDER = """
import os, sys, zmq
from zmq.utils.monitor import recv_monitor_message
os.setresgid(int(sys.argv[3]), int(sys.argv[3]), int(sys.argv[3]))  # after the imports: the
os.setresuid(int(sys.argv[3]), int(sys.argv[3]), int(sys.argv[3]))  # interpreter is root's
ctx = zmq.Context()
""" + CONNECT_EACH + """print(admitted, flush=True)
sys.stdin.read()  # holds them until the test closes stdin
"""

ADMITTED_HOLDER = """
import json, os, sys, zmq
from zmq.utils.monitor import recv_monitor_message
from minikern.proto import codec
ctx = zmq.Context()
first = ctx.socket(zmq.DEALER)
first.setsockopt(zmq.LINGER, 0)
first.connect(sys.argv[1])
first.send(codec.encode_hello(open(sys.argv[3], "rb").read(), os.getpid(), "chatty",
                              json.loads(sys.argv[4])))
status = codec.decode_reply(first.recv())[0] if first.poll(10_000) else "no answer"
""" + CONNECT_EACH + """print(status, admitted, flush=True)
sys.stdin.read()  # holds them until the test closes stdin
"""

UNFINISHED = """
import sys, time, zmq
ctx = zmq.Context()
part = b"x" * 65536
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:  # a fresh connection each round: a cut one drops the rest
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.connect(sys.argv[1])
    round_end = min(end, time.monotonic() + 3.0)
    while time.monotonic() < round_end:
        try:
            s.send(part, zmq.SNDMORE | zmq.NOBLOCK)  # never the last part
        except zmq.Again:
            time.sleep(0.001)
    s.close(0)
"""


def rss(system: SystemUnderTest) -> int:
    return int(psutil.Process(system.system.kernel.pid).memory_info().rss)


def attacker(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO_ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def reachable_by_all(system: SystemUnderTest) -> list[tuple[Path, int]]:
    """Let another uid reach the kernel's socket, as a component in a protection domain of
    its own would (the run directory and the test's temporary directories are the owner's
    alone); return the modes to put back."""
    opened = []
    sock = system.run_dir / params.KERNEL_SOCKET
    for path in [sock, *sock.parents]:
        mode = path.stat().st_mode & 0o7777
        wanted = mode | (0o666 if path == sock else 0o011)
        if wanted != mode:
            opened.append((path, mode))
            os.chmod(path, wanted)
    return opened


def reap(p: subprocess.Popen[str]) -> None:
    if p.stdin is not None:
        p.stdin.close()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def memory_back(system: SystemUnderTest, start: int) -> None:
    def back() -> bool:
        assert system.system.kernel.poll() is None, "the kernel died:\n" + system.console()
        return rss(system) <= start + MEMORY_SLACK
    wait_for(back, 30, f"the kernel's memory back within {MEMORY_SLACK >> 20} MiB of "
             f"{start >> 20} MiB (it holds {rss(system) >> 20} MiB)", interval=0.5)


@pytest.mark.timeout(180)
@pytest.mark.skipif(os.geteuid() != 0, reason="connects from another uid: needs root")
def test_one_uid_cannot_take_every_connection(
        make_system: Callable[..., SystemUnderTest], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS", str(TOTAL))
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS_PER_UID", str(PER_UID))
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS_PER_PID", str(TOTAL))  # the test's own
    system = make_system()
    start = rss(system)
    probe, _ = admitted_raw(system, "probe")
    address = "ipc://" + str(system.run_dir / params.KERNEL_SOCKET)
    opened = reachable_by_all(system)
    holder = attacker(HOLDER, address, str(2 * TOTAL), str(NOBODY))
    try:
        assert holder.stdout is not None
        assert int(holder.stdout.readline()) == PER_UID, "the uid's bound was not held"
        refused = getinfo(probe)["counters"].get("kernel_uid_connection_refused", 0)
        assert refused == 2 * TOTAL - PER_UID
        with sockets() as held:  # the system's owner still connects while they are held
            for _ in range(TOTAL // 2):
                s, _ = admitted_raw(system, "owner")
                held.append(s)
            alive_and_serving(system)
    finally:
        reap(holder)
        for path, mode in opened:
            os.chmod(path, mode)
    alive_and_serving(system)
    memory_back(system, start)


@pytest.mark.timeout(120)
def test_an_admitted_process_cannot_take_every_connection(
        make_system: Callable[..., SystemUnderTest], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS", str(TOTAL))
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS_PER_PID", str(PER_PID))
    system = make_system()
    probe, _ = admitted_raw(system, "probe")
    address = "ipc://" + str(system.run_dir / params.KERNEL_SOCKET)
    holder = attacker(ADMITTED_HOLDER, address, str(2 * TOTAL),
                      str(system.run_dir / params.OPERATOR_KEY),
                      json.dumps(system.conf.services["client"].priv()))
    try:
        assert holder.stdout is not None
        status, extra = holder.stdout.readline().split()
        assert int(status) == Err.OK, "the chatty process was not admitted"
        assert int(extra) == PER_PID - 1, "the process's bound was not held"
        counters = getinfo(probe)["counters"]
        assert counters.get("kernel_pid_connection_refused", 0) == 2 * TOTAL - (PER_PID - 1)
        assert counters.get("kernel_connection_refused", 0) == 0  # the total was never reached
        assert "chatty" in {p["label"] for p in getinfo(probe)["procs"]}  # refused, not dropped
        alive_and_serving(system)  # another process still connects while they are held
    finally:
        reap(holder)
    alive_and_serving(system)


@pytest.mark.timeout(180)
def test_an_unfinished_message_is_cut_with_its_connection(system: SystemUnderTest) -> None:
    start = rss(system)
    probe, _ = admitted_raw(system, "probe")
    address = "ipc://" + str(system.run_dir / params.KERNEL_SOCKET)
    flood = attacker(UNFINISHED, address, "60")
    try:
        def cut() -> int:
            assert system.system.kernel.poll() is None, "the kernel died:\n" + system.console()
            return int(getinfo(probe)["counters"].get("kernel_unadmitted_cut", 0))

        wait_for(lambda: cut() >= 2, 60, "the kernel to cut the unfinished connections")
        alive_and_serving(system)  # while the attack goes on
    finally:
        flood.kill()
        reap(flood)
    alive_and_serving(system)
    memory_back(system, start)


@pytest.mark.timeout(60)
def test_a_message_of_many_parts_from_a_peer_not_admitted_is_refused(
        system: SystemUnderTest) -> None:
    start = rss(system)
    probe, _ = admitted_raw(system, "probe")
    with sockets() as held:
        held.append(dealer("ipc://" + str(system.run_dir / params.KERNEL_SOCKET)))
        for _ in range(20):
            held[-1].send_multipart([b"p" * 4096] * 200)  # 800 KiB each, in 200 parts

        def refused() -> int:
            assert system.system.kernel.poll() is None, "the kernel died:\n" + system.console()
            return int(getinfo(probe)["counters"].get("unadmitted_oversized", 0))

        wait_for(lambda: refused() >= 20, 30, "the kernel to refuse the messages unread")
        assert getinfo(probe)["counters"].get("unadmitted", 0) == 0, "a refused message was decoded"
    alive_and_serving(system)
    memory_back(system, start)
