"""Host wire backends: UDP (QEMU socket/dgram framing), LoopWire, and TAP against a real Linux stack.

The TAP test creates a network namespace of its own, opens the TAP inside it
(setns around the open), gives it 10.77.0.1/24 there, and deletes the
namespace afterwards: no traffic leaves loopback or that namespace.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hw import rtl8139_regs as regs
from hw import wire as wire_module
from hw.device import Device
from hw.wire import (
    ETH_MAX_FRAME,
    MAX_FRAMES_PER_RECV,
    LoopWire,
    TapWire,
    UdpWire,
    WireUnavailable,
)
from tests.hw.conftest_net import (
    NIC_MAC,
    Driver,
    MemoryDma,
    ethernet,
    make_nic,
    wait_for,
)

CLONE_NEWNET = 0x40000000


@pytest.fixture
def udp_pair() -> Iterator[tuple[UdpWire, socket.socket]]:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2.0)
    wire = UdpWire(("127.0.0.1", 0), peer.getsockname())
    yield wire, peer
    wire.close()
    peer.close()


def drain(wire: UdpWire | LoopWire, count: int) -> list[bytes]:
    frames: list[bytes] = []

    class Poller(Device):
        def poll(self) -> None:
            frames.extend(wire.recv())

        def fileno(self) -> int:
            return wire.fileno()

    assert wait_for(lambda: len(frames) >= count, [Poller()])
    return frames


def test_udp_carries_one_raw_frame_per_datagram(udp_pair: tuple[UdpWire, socket.socket]) -> None:
    wire, peer = udp_pair
    out = ethernet(bytes(6), b"to host")                       # short frames are legal on the wire
    wire.send(out)
    assert peer.recv(65536) == out
    back = [ethernet(NIC_MAC, b"p" * n) for n in (0, 100, ETH_MAX_FRAME - 14)]   # 14 to 1518 bytes
    for frame in back:
        peer.sendto(frame, wire.address)
    assert drain(wire, 3) == back
    assert wire.counters.frames_sent == 1 and wire.counters.frames_received == 3
    assert wire.recv() == []                                   # non-blocking when idle


def test_udp_refuses_bad_sizes_and_strangers(udp_pair: tuple[UdpWire, socket.socket]) -> None:
    wire, peer = udp_pair
    wire.send(b"\x01" * 13)
    wire.send(b"\x01" * (ETH_MAX_FRAME + 1))
    assert wire.counters.tx_refused == 2 and wire.counters.frames_sent == 0
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        stranger.sendto(ethernet(NIC_MAC, b"spoof"), wire.address)
        peer.sendto(b"", wire.address)
        peer.sendto(b"\x02" * 13, wire.address)
        peer.sendto(b"\x03" * 9000, wire.address)
        good = ethernet(NIC_MAC, b"ok")
        peer.sendto(good, wire.address)
        assert drain(wire, 1) == [good]
    finally:
        stranger.close()
    assert wire.counters.rx_foreign == 1 and wire.counters.rx_refused == 3


def test_udp_recv_is_bounded_per_call(udp_pair: tuple[UdpWire, socket.socket]) -> None:
    wire, peer = udp_pair
    for n in range(MAX_FRAMES_PER_RECV + 5):
        peer.sendto(ethernet(NIC_MAC, n.to_bytes(2, "big")), wire.address)
    first = drain(wire, 1)
    assert len(first) == MAX_FRAMES_PER_RECV
    assert len(wire.recv()) == 5


def test_udp_only_on_loopback_and_clear_bind_errors(udp_pair: tuple[UdpWire, socket.socket]) -> None:
    wire, _ = udp_pair
    with pytest.raises(ValueError):
        UdpWire(("0.0.0.0", 0), ("127.0.0.1", 9))
    with pytest.raises(ValueError):
        UdpWire(("127.0.0.1", 0), ("192.0.2.1", 9))
    with pytest.raises(WireUnavailable):
        UdpWire(wire.address, ("127.0.0.1", 9))               # port already bound


def test_loop_wire_pair_is_a_wire() -> None:
    left, right = LoopWire.pair()
    try:
        frame = ethernet(NIC_MAC, b"loop")
        left.send(frame)
        left.send(b"short")
        assert drain(right, 1) == [frame]
        assert left.counters.tx_refused == 1
    finally:
        left.close()
        right.close()


def test_tap_errors_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        TapWire("a-name-that-is-far-too-long")

    def refuse(path: str, flags: int) -> int:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(WireUnavailable, match="CAP_NET_ADMIN"):
        TapWire("mk0")


# -- TAP against Linux, inside a namespace the test owns ------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("the TAP test needs root (CAP_NET_ADMIN) to create a network namespace")
    if shutil.which("ip") is None:
        pytest.skip("the TAP test needs the iproute2 'ip' command")
    if not os.path.exists(wire_module.TUN_DEVICE):
        pytest.skip(f"the TAP test needs {wire_module.TUN_DEVICE}")
    name = f"mk-test-{os.getpid()}"
    made = run("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        yield name
    finally:
        run("ip", "netns", "del", name)


@contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the block with this thread in ``namespace``'s network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{namespace}") as target:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            pytest.skip(f"setns failed: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the original network namespace")


def arp_request(sender_ip: str, target_ip: str) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, NIC_MAC, socket.inet_aton(sender_ip),
                       bytes(6), socket.inet_aton(target_ip))
    return ethernet(b"\xff" * 6, body, NIC_MAC, ethertype=0x0806)


def test_tap_nic_talks_to_linux_in_a_namespace(netns: str) -> None:
    with inside(netns):
        tap = TapWire("mktap0")
    assert tap.name == "mktap0"
    dma = MemoryDma()
    nic, ports = make_nic(dma, tap)
    try:
        for step in (("link", "set", "mktap0", "up"), ("addr", "add", "10.77.0.1/24", "dev", "mktap0")):
            done = run("ip", "-n", netns, *step)
            assert done.returncode == 0, done.stderr
        drv = Driver(ports, 0xC000, dma)
        drv.init(regs.RCR_APM | regs.RCR_AB)
        drv.send(arp_request("10.77.0.2", "10.77.0.1"))
        assert tap.counters.frames_sent == 1, tap.counters
        replies: list[bytes] = []

        def got_reply() -> bool:
            for _, data in drv.receive_all():
                if data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02":
                    replies.append(data[:-4])
            return bool(replies)

        assert wait_for(got_reply, [nic], timeout=3.0), nic.counters
        reply = replies[0]
        assert reply[:6] == NIC_MAC                            # unicast back to the NIC
        assert reply[28:32] == socket.inet_aton("10.77.0.1")   # sender: the Linux side
        assert reply[32:38] == NIC_MAC and reply[38:42] == socket.inet_aton("10.77.0.2")
        stats = run("ip", "netns", "exec", netns, "cat", "/sys/class/net/mktap0/statistics/rx_packets")
        assert int(stats.stdout) >= 1                          # Linux counted our frame
    finally:
        nic.close()
