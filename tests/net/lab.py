"""The network lab: whole systems wired to a peer, and a fault injector for their NIC driver.

Runs in the test (or bin/bench) process.  Two rigs, each a context manager
that halts every system, reaps every child and deletes what it made, also
when the body fails:

* ``linux_tap``: one system whose board owns a TAP device (``--nic tap:NAME``),
  moved into a fresh network namespace where Linux has LINUX_IP and the
  system SYSTEM_IP.  The peer is ``python -m tests.net.peer`` run inside the
  namespace: the Linux kernel's own TCP/IP.  Needs root (``netns.Unavailable``
  otherwise, with the reason).  Traffic never leaves the namespace.
  The namespace is tests/net/netns.py's (shared with bin/experiment's rig).
* ``udp_pair``: two systems whose boards are joined by the UDP wire on
  127.0.0.1, A at SYSTEM_IP and B at SECOND_IP.  Runs anywhere.

The two boards' NICs have distinct MACs: a board derives its default from
its run directory (hw/board.py, ``--mac``).

``Injector`` is the "kill it every second from the host shell" loop: each
round it looks up the driver's current pid in RS's service table, injects
the fault (SIGKILL, or bin/crash's request), and waits for RS to report a
new instance up before pacing the next round, so every fault hits a live,
fresh instance.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from minikern import cli, params
from minikern.boot import System
from minikern.commands import crash
from minikern.events import read_all
from tests.conftest import BOOT_DEADLINE
from tests.net.netns import Namespace, namespace
from minikern.const import RsReq
from minikern.deadline import wait_for
from minikern import rsctl as ctl

REPO = cli.REPO_ROOT
SYSTEM_IP, LINUX_IP, SECOND_IP = "10.0.0.2", "10.0.0.1", "10.0.0.3"
DRIVER = "rtl8139"
STEP_TIMEOUT = 120.0  # seconds one transfer may take, faults included
INTERVAL = 1.0        # seconds between injected faults


class Children:
    """Every process a rig starts, with its stderr in a file; ``reap`` kills and waits for all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        path = self.log_dir / f"{len(self.procs):02d}-{name}.stderr"
        log = open(path, "wb")
        proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)})
        log.close()
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def read_json(self, proc: subprocess.Popen[bytes], timeout: float = STEP_TIMEOUT
                  ) -> dict[str, Any]:
        """The child's next JSON line; AssertionError (with every stderr) if none comes in time."""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
                if not line:
                    proc.wait(10)
                    raise AssertionError(f"{proc.args!r} exited ({proc.returncode}) without a "
                                         f"result:\n{self.stderr()}")
                if line.lstrip().startswith(b"{"):
                    result: dict[str, Any] = json.loads(line)
                    return result
        raise AssertionError(f"no result from {proc.args!r} within {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}"
                         for p in sorted(self.log_dir.glob("*.stderr")))

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


class Node:
    """One booted system of a rig: etc/system.conf with INET at ``ip``, the board's wire ``nic``."""

    def __init__(self, work: Path, name: str, ip: str, nic: str, children: Children) -> None:
        self.name, self.ip, self.children = name, ip, children
        conf = work / f"{name}.conf"
        text = (REPO / "etc" / "system.conf").read_text()
        if f"--ip {SYSTEM_IP} " not in text:
            raise RuntimeError(f"etc/system.conf does not give inet --ip {SYSTEM_IP}")
        conf.write_text(text.replace(f"--ip {SYSTEM_IP} ", f"--ip {ip} "))
        self.run_dir = work / name
        self.system = System(self.run_dir, conf, nic=nic)

    def boot(self) -> None:
        if not self.system.wait_ready(timeout=BOOT_DEADLINE):
            raise RuntimeError(f"system {self.name} did not come up:\n{self.console()}")
        for label in ("inet", DRIVER):
            wait_for(functools.partial(self.is_up, label), 30, f"{label} up")

    def is_up(self, label: str) -> bool:
        return bool(self.service(label)["state"] == "up")

    def service(self, label: str) -> dict[str, Any]:
        for s in ctl.request(self.run_dir, RsReq.STATUS)["services"]:
            if s["label"] == label:
                return dict(s)
        raise AssertionError(f"RS does not know {label}")

    def events(self) -> list[dict[str, Any]]:
        return read_all(self.run_dir)

    def console(self) -> str:
        try:
            return (self.run_dir / params.CONSOLE_LOG).read_text(errors="replace")
        except OSError:
            return ""

    def nc(self, *args: object) -> subprocess.Popen[bytes]:
        """bin/nc in this system, with --json."""
        return self.children.start(f"nc-{self.name}", [
            sys.executable, str(REPO / "bin" / "nc"), "--run-dir", str(self.run_dir),
            *map(str, args), "--json"])

    def tool_json(self, tool: str, *args: str) -> dict[str, Any]:
        """What bin/<tool> says of this system as JSON: its whole output, or its last line."""
        out = subprocess.run([sys.executable, str(REPO / "bin" / tool), "--run-dir",
                              str(self.run_dir), *args], capture_output=True, text=True,
                             timeout=30, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if out.returncode != 0:
            raise AssertionError(f"bin/{tool} {' '.join(args)} failed: {out.stderr.strip()}")
        text = out.stdout.strip()
        try:
            return dict(json.loads(text))
        except ValueError:
            return dict(json.loads(text.splitlines()[-1]))

    def ifstat(self) -> dict[str, Any]:
        """INET's view of the interface (bin/ifconfig --json), its TCP counters included."""
        return self.tool_json("ifconfig", "--json")

    def board_stats(self) -> dict[str, Any]:
        """The board's device counters (bin/hwctl stats): the NIC's, its wire's included."""
        return self.tool_json("hwctl", "stats")

    def halt(self) -> None:
        self.system.halt()


class Injector(threading.Thread):
    """Every ``interval``: inject ``fault`` into the node's current driver instance.

    A fault counts (``pids``) once RS has replaced the instance it was aimed at;
    one that leaves the instance running for LANDING seconds is an error, as is
    anything else that goes wrong here.  After ``stop`` the last fault is still
    followed to its outcome, so every injection is accounted for.
    """

    LANDING = 15.0  # seconds: a hang needs 2 heartbeat periods to be noticed, then a restart

    def __init__(self, node: Node, fault: str = "sigkill", interval: float = INTERVAL,
                 label: str = DRIVER, most: int | None = None) -> None:
        super().__init__(name=f"inject-{fault}", daemon=True)
        self.node, self.fault, self.interval, self.label = node, fault, interval, label
        self.most = most  # faults to inject at the most (None: until stopped)
        self.stopping = threading.Event()
        self.pids: list[int] = []    # the instances the faults replaced, in order
        self.errors: list[str] = []

    @property
    def count(self) -> int:
        return len(self.pids)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            if self.most is not None and self.count >= self.most:
                return
            try:
                svc = self.node.service(self.label)
                if svc["state"] != "up" or not svc.get("pid") or svc["pid"] in self.pids:
                    continue  # not back yet: the next round finds the new instance
                self.inject(svc["pid"])
                self.follow(svc["pid"])
            except Exception as e:  # noqa: BLE001 (reported by the test, never silently lost)
                self.errors.append(f"{type(e).__name__}: {e}")

    def follow(self, pid: int) -> None:
        deadline = time.monotonic() + self.LANDING
        while time.monotonic() < deadline:
            svc = self.node.service(self.label)
            if svc.get("pid") != pid:
                if pid not in self.pids:
                    self.pids.append(pid)
                if svc["state"] == "up" and svc.get("pid"):
                    return
            time.sleep(0.02)
        if pid not in self.pids:
            self.errors.append(f"{self.fault} injected into {self.label} pid {pid}, which was "
                               f"still running {self.LANDING:g} s later")
        else:
            self.errors.append(f"{self.label} not up again {self.LANDING:g} s after pid {pid}")

    def inject(self, pid: int) -> None:
        if self.fault == "sigkill":
            os.kill(pid, signal.SIGKILL)  # what `kill -9 PID` from the host shell does
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            status = crash.main(["--run-dir", str(self.node.run_dir), self.label, self.fault])
        if status != 0:
            raise RuntimeError(f"bin/crash {self.label} {self.fault} exited {status}")

    def stop(self) -> None:
        self.stopping.set()
        self.join(self.LANDING + 10)


@contextlib.contextmanager
def injecting(node: Node, fault: str | None, interval: float = INTERVAL,
              most: int | None = None) -> Iterator[Injector | None]:
    """Run an Injector for the body (none when ``fault`` is None); always stopped after it."""
    if fault is None:
        yield None
        return
    inj = Injector(node, fault, interval, most=most)
    inj.start()
    try:
        yield inj
    finally:
        inj.stop()


class LinuxTap:
    """A system on a TAP device in namespace ``ns``, where Linux is LINUX_IP."""

    def __init__(self, node: Node, netns: Namespace, children: Children) -> None:
        self.node, self.netns, self.children = node, netns, children
        self.ns = netns.name

    def peer(self, *args: object) -> subprocess.Popen[bytes]:
        """tests/net/peer.py run by Linux inside the namespace."""
        return self.netns.peer(self.children, *args)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.netns.ip(*args, check=check)


@contextlib.contextmanager
def linux_tap(work: Path, netns: Namespace | None = None) -> Iterator[LinuxTap]:
    """The rig on ``netns`` (deleted after by its own owner), or on a namespace of its own."""
    with contextlib.ExitStack() as stack:
        ns = netns if netns is not None else stack.enter_context(namespace())
        children = Children(work)
        node = None
        try:
            node = Node(work, "sys", SYSTEM_IP, f"tap:{ns.tap}", children)
            node.boot()  # the board made the TAP in our namespace; Linux's end moves to the new one
            ns.attach(f"{LINUX_IP}/24")
            yield LinuxTap(node, ns, children)
        finally:
            children.reap()
            if node is not None:
                node.halt()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def udp_pair(work: Path) -> Iterator[tuple[Node, Node]]:
    """Systems A (SYSTEM_IP) and B (SECOND_IP) joined by the UDP wire."""
    port_a, port_b = free_udp_port(), free_udp_port()
    children = Children(work)
    nodes: list[Node] = []
    try:
        nodes.append(Node(work, "a", SYSTEM_IP, f"udp:{port_a}:{port_b}", children))
        nodes.append(Node(work, "b", SECOND_IP, f"udp:{port_b}:{port_a}", children))
        for n in nodes:
            n.boot()
        yield nodes[0], nodes[1]
    finally:
        children.reap()
        for n in nodes:
            n.halt()


# Transfers.  Each returns the receiver's count and digest, the sender's digest and the
# receiver's seconds (first byte accepted to end of stream); a child that fails or stays
# silent past STEP_TIMEOUT raises AssertionError with every child's stderr.

def _result(sent: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    return {"bytes": got["bytes"], "sent_sha256": sent["sha256"], "received_sha256": got["sha256"],
            "seconds": got["seconds"]}


def system_to_linux(rig: LinuxTap, nbytes: int, seed: int, port: int) -> dict[str, Any]:
    recv = rig.peer("recv", LINUX_IP, port)
    if not rig.children.read_json(recv, 30).get("ready"):
        raise AssertionError(f"the Linux receiver did not start:\n{rig.children.stderr()}")
    send = rig.node.nc(LINUX_IP, port, "--bytes", nbytes, "--seed", seed)
    got = rig.children.read_json(recv)
    return _result(rig.children.read_json(send), got)


def linux_to_system(rig: LinuxTap, nbytes: int, seed: int, port: int) -> dict[str, Any]:
    recv = rig.node.nc("-l", port)
    send = rig.peer("send", SYSTEM_IP, port, nbytes, seed)  # retries while the port is refused
    sent = rig.children.read_json(send)
    return _result(sent, rig.children.read_json(recv))


def system_to_system(a: Node, b: Node, nbytes: int, seed: int, port: int) -> dict[str, Any]:
    """bin/nc in A sends to bin/nc -l in B; a connect refused while B's nc starts is retried."""
    recv = b.nc("-l", port)
    deadline = time.monotonic() + 30
    while True:
        send = a.nc(b.ip, port, "--bytes", nbytes, "--seed", seed)
        assert send.stdout is not None
        give_up = time.monotonic() + STEP_TIMEOUT
        while (send.poll() is None and time.monotonic() < give_up
               and not select.select([send.stdout], [], [], 0.2)[0]):
            pass  # connecting, or sending: the output comes at the end
        try:
            status = send.wait(30)  # its output (or end of output) is there: it is exiting
        except subprocess.TimeoutExpired:
            break  # read_json tells what it did
        if status == 0 or time.monotonic() > deadline:
            break
        refused = "ECONNREFUSED" in a.children.logs[send.pid].read_text(errors="replace")
        if not refused or recv.poll() is not None:
            break
        time.sleep(0.2)  # B's listener is not bound yet: connect again
    sent = a.children.read_json(send)
    return _result(sent, b.children.read_json(recv))
