"""A network namespace for a Linux peer, with the TAP a board makes moved into it.

Shared by the rigs that put a system's NIC on a TAP (``--nic tap:NAME``) with the Linux
kernel's own TCP/IP as the peer: tests/net/lab.py ``linux_tap`` (tests, bin/bench net)
and experiment/rig.py (bin/experiment).  ``namespace`` makes one (root, /dev/net/tun and
``ip`` needed: ``Unavailable`` otherwise, with the reason) and deletes it after, with the
TAP if it never left the host's namespace; nothing else on the host is touched.
``peer_namespace`` turns a peer choice (PEERS: auto, linux-tap, udp) into a namespace
or None (the UDP wire instead).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from minikern.deadline import wait_for

if TYPE_CHECKING:
    from tests.net.lab import Children


class Unavailable(RuntimeError):
    """This rig cannot be built here (not root, no /dev/net/tun, ip netns add refused)."""


class Namespace:
    """A network namespace made for one rig, and the name of the TAP its board makes.

    The board makes the TAP in the host's namespace (``--nic tap:NAME``); ``attach`` moves
    it into this one, where Linux has its address: traffic never leaves the namespace.
    """

    def __init__(self, name: str, tap: str) -> None:
        self.name, self.tap = name, tap

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True,
                              timeout=30, check=check)

    def attach(self, address: str) -> None:
        """The board is up: move its TAP in here, give Linux ``address`` (ADDR/PREFIX) on it."""
        wait_for(lambda: _ip("link", "show", self.tap).returncode == 0, 10, f"TAP {self.tap}")
        moved = _ip("link", "set", self.tap, "netns", self.name)
        if moved.returncode != 0:
            raise AssertionError(f"ip link set {self.tap} netns {self.name}: "
                                 f"{moved.stderr.strip()}")
        self.ip("link", "set", "lo", "up")
        self.ip("addr", "add", address, "dev", self.tap)
        self.ip("link", "set", self.tap, "up")

    def peer(self, children: Children, *args: object) -> subprocess.Popen[bytes]:
        """tests/net/peer.py run by Linux inside the namespace."""
        return children.start("peer", ["ip", "netns", "exec", self.name, sys.executable, "-m",
                                       "tests.net.peer", *map(str, args)])

    def exists(self) -> bool:
        """The namespace, or the TAP in the host's namespace, is still there."""
        return (self.name in _ip("netns", "list").stdout.split()
                or _ip("link", "show", self.tap).returncode == 0)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def namespace(prefix: str = "mk-net-", tap_prefix: str = "mkt") -> Iterator[Namespace]:
    """A fresh namespace, deleted after the body (its TAP too, if still in the host's
    namespace: a board that never got to ``attach``).  Halt the board inside the body."""
    if os.geteuid() != 0:
        raise Unavailable("needs root: creates a network namespace and a TAP device")
    if not os.path.exists("/dev/net/tun") or shutil.which("ip") is None:
        raise Unavailable("needs /dev/net/tun and the ip command (iproute2)")
    suffix = secrets.token_hex(4)
    ns = Namespace(f"{prefix}{suffix}", f"{tap_prefix}{suffix}")  # an interface name: < 16
    made = _ip("netns", "add", ns.name)
    if made.returncode != 0:
        raise Unavailable(f"ip netns add failed: {made.stderr.strip()}")
    try:
        yield ns
    finally:
        _ip("netns", "del", ns.name)
        if _ip("link", "show", ns.tap).returncode == 0:
            _ip("link", "del", ns.tap)


PEERS = ("auto", "linux-tap", "udp")  # bin/bench net --peer, bin/experiment --net-peer


@contextlib.contextmanager
def peer_namespace(peer: str, what: str, prefix: str = "mk-net-",
                   tap_prefix: str = "mkt") -> Iterator[Namespace | None]:
    """For a choice among PEERS: the namespace of the Linux peer (``linux-tap``; ``auto``
    when it can be made here), or None (``udp``: the rig pairs two systems instead).
    ``linux-tap`` that cannot be made ends the program, saying why (``what``: its name)."""
    with contextlib.ExitStack() as stack:
        ns = None
        if peer != "udp":
            try:
                ns = stack.enter_context(namespace(prefix, tap_prefix))
            except Unavailable as e:
                if peer == "linux-tap":
                    raise SystemExit(f"{what}: {e}") from None
        yield ns
