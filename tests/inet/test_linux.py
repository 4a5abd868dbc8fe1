"""Interoperability with the Linux kernel's own TCP/IP, across a TAP device in a private network namespace.

The stack runs in a child process inside the namespace (tests/inet/linux_stack.py)
and owns the TAP device; Linux has 10.88.0.1/24 on it, the stack 10.88.0.2.
Linux's side is plain socket code in another child (tests/inet/linux_peer.py).
All traffic stays inside the namespace.  Needs root and /dev/net/tun; the
namespace is deleted and every child reaped even when a test fails.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.inet.linux_stack import LINUX_IP, STACK_IP

REPO = Path(__file__).resolve().parents[2]
TRANSFER_BYTES = 20 * 1024 * 1024
STEP_TIMEOUT = 90.0           # seconds for one child to report

pytestmark = pytest.mark.timeout(180)


class Namespace:
    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, module: str, *args: object) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{module}-{len(self.procs)}.stderr", "wb")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        argv = ["ip", "netns", "exec", self.name, sys.executable, "-m", f"tests.inet.{module}",
                *map(str, args)]
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log)
        log.close()
        self.procs.append(proc)
        return proc

    def read_json(self, proc: subprocess.Popen[bytes], timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"child exited without a result:\n{self.stderr()}")
                result: dict[str, Any] = json.loads(line)
                return result
        raise AssertionError(f"no report from child within {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.stderr")))

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Namespace]:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a network namespace and a TAP device")
    if not os.path.exists("/dev/net/tun") or shutil.which("ip") is None:
        pytest.skip("needs /dev/net/tun and the ip command (iproute2)")
    name = f"mk-inet-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add failed: {made.stderr.strip()}")
    ns = Namespace(name, tmp_path)
    try:
        yield ns
    finally:
        ns.reap()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def start_stack(ns: Namespace, *args: object) -> subprocess.Popen[bytes]:
    proc = ns.spawn("linux_stack", *args)
    assert ns.read_json(proc, 30).get("ready"), ns.stderr()
    return proc


def finish_stack(ns: Namespace, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.close()                          # idle mode stops here; the others stop when done
    return ns.read_json(proc)


def test_linux_pings_the_stack_with_raw_icmp(netns: Namespace) -> None:
    stack = start_stack(netns, "idle")
    pinger = netns.spawn("linux_peer", "ping", STACK_IP, 3)
    result = netns.read_json(pinger, 30)
    assert result == {"sent": 3, "received": 3}, netns.stderr()
    report = finish_stack(netns, stack)
    assert report["echo_answered"] == 3


def test_linux_ping_command(netns: Namespace) -> None:
    if shutil.which("ping") is None:
        pytest.skip("iputils ping is not installed (the raw-socket ping test covers ICMP echo)")
    stack = start_stack(netns, "idle")
    ping = subprocess.run(["ip", "netns", "exec", netns.name, "ping", "-c", "3", "-W", "2", STACK_IP],
                          capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert finish_stack(netns, stack)["echo_answered"] == 3


def test_20_mb_from_linux_to_the_stack(netns: Namespace) -> None:
    stack = start_stack(netns, "sink", 5000)
    sender = netns.spawn("linux_peer", "send", STACK_IP, 5000, TRANSFER_BYTES, 11)
    sent = netns.read_json(sender)
    got = netns.read_json(stack)
    assert got["done"], (got, netns.stderr())
    assert got["bytes"] == TRANSFER_BYTES and got["sha256"] == sent["sha256"]
    mb_s = TRANSFER_BYTES / 1e6 / got["seconds"]
    print(f"\nLinux -> stack: {TRANSFER_BYTES} bytes in {got['seconds']:.2f} s = {mb_s:.1f} MB/s; "
          f"frames in/out {got['frames_in']}/{got['frames_out']}, drops {got['drops']}")


def test_20_mb_from_the_stack_to_linux(netns: Namespace) -> None:
    stack = start_stack(netns, "source", LINUX_IP, 5001, TRANSFER_BYTES, 12)
    receiver = netns.spawn("linux_peer", "recv", 5001)
    assert netns.read_json(receiver, 30).get("ready")
    assert stack.stdin is not None
    stack.stdin.write(b"go\n")
    stack.stdin.flush()
    got = netns.read_json(receiver)
    sent = netns.read_json(stack)
    assert sent["done"] and not sent["error"], (sent, netns.stderr())
    assert got["bytes"] == TRANSFER_BYTES and got["sha256"] == sent["sha256"]
    mb_s = TRANSFER_BYTES / 1e6 / sent["seconds"]
    print(f"\nstack -> Linux: {TRANSFER_BYTES} bytes in {sent['seconds']:.2f} s = {mb_s:.1f} MB/s; "
          f"frames in/out {sent['frames_in']}/{sent['frames_out']}, timeouts {sent['timeouts']}, "
          f"fast retransmits {sent['fast_retransmits']}, drops {sent['drops']}")
