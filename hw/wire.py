"""Host backends for a NIC's wire (runs in the board process).

A wire carries whole Ethernet frames (destination MAC first, no preamble, no
FCS) between an emulated NIC and the host.  Every backend has the same four
calls, which is all ``hw.rtl8139`` uses: ``fileno()`` for the board's select
loop, ``send(frame)``, a non-blocking ``recv()`` returning the frames that
have arrived, and ``close()``.

* ``UdpWire``: one raw frame per UDP datagram, no extra header: the framing
  of QEMU's ``-netdev socket,udp=...`` and ``-netdev dgram`` (devices sheet
  7.1, 7.2), so a QEMU guest or a few lines of Python can be the peer.
* ``TapWire``: a Linux TAP interface opened with TUNSETIFF IFF_TAP|IFF_NO_PI
  (sheet 7.3): one read or write is one frame.
* ``LoopWire.pair()``: two ends of an in-host datagram socketpair, for tests.

Never trust the wire: a backend never raises on a bad datagram or a failed
send.  Frames shorter than an Ethernet header (14 bytes) or longer than 1518
bytes (1500-byte payload, header and one VLAN tag) are refused in both
directions and counted, as are host errors.  Short frames (< 60) are legal
here: the receiving NIC pads them.

Decisions: ``UdpWire`` binds and sends only on loopback addresses, and takes
datagrams only from its configured peer (others are counted as foreign and
dropped; QEMU accepts any source).  One ``recv`` returns at most 64 frames so
a flooded wire cannot starve the board's loop; the rest wait for the next turn.
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import random
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

ETH_HLEN = 14
ETH_MAX_FRAME = 1518
RECV_BUFSIZE = 65536          # larger than any datagram, so oversized ones are seen whole
MAX_FRAMES_PER_RECV = 64

# Linux TUN/TAP (linux/if_tun.h), sheet 7.3.
TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
IFREQ_FORMAT = "16sH22x"      # struct ifreq on x86-64: name, flags, padding to 40 bytes


class Wire(Protocol):
    """What a NIC model needs from a host backend."""

    def fileno(self) -> int: ...
    def send(self, frame: bytes) -> None: ...
    def recv(self) -> list[bytes]: ...
    def close(self) -> None: ...


class WireUnavailable(RuntimeError):
    """The host refused to give us this wire (no permission, no TUN device, port taken)."""


@dataclass
class WireFault:
    """Frames lost on the wire (a test knob on the NIC): the next ``count``, then each with ``rate``."""

    rate: float = 0.0
    count: int = 0

    def fires(self, rng: random.Random) -> bool:
        if self.count > 0:
            self.count -= 1
            return True
        return self.rate > 0 and rng.random() < self.rate


@dataclass
class WireCounters:
    frames_sent: int = 0
    frames_received: int = 0
    tx_refused: int = 0      # frame of a size the wire cannot carry
    rx_refused: int = 0
    rx_foreign: int = 0      # UDP datagram from someone other than the peer
    send_errors: int = 0     # the host refused the write (interface down, buffer full)
    recv_errors: int = 0


def carriable(frame: bytes) -> bool:
    """Whether an Ethernet frame (without FCS) has a size this wire carries."""
    return ETH_HLEN <= len(frame) <= ETH_MAX_FRAME


class _DatagramWire:
    """Shared send/recv over a non-blocking datagram socket."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int] | None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._peer = peer
        self.counters = WireCounters()

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, frame: bytes) -> None:
        if not carriable(frame):
            self.counters.tx_refused += 1
            return
        try:
            if self._peer is None:
                self._sock.send(frame)
            else:
                self._sock.sendto(frame, self._peer)
        except OSError:
            self.counters.send_errors += 1
            return
        self.counters.frames_sent += 1

    def recv(self) -> list[bytes]:
        frames: list[bytes] = []
        while len(frames) < MAX_FRAMES_PER_RECV:
            try:
                data, source = self._sock.recvfrom(RECV_BUFSIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters.recv_errors += 1
                break
            if self._peer is not None and source != self._peer:
                self.counters.rx_foreign += 1
            elif not carriable(data):
                self.counters.rx_refused += 1
            else:
                self.counters.frames_received += 1
                frames.append(data)
        return frames

    def close(self) -> None:
        self._sock.close()


def _loopback(address: tuple[str, int], role: str) -> tuple[str, int]:
    host, port = address
    try:
        is_loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback or not 0 <= port <= 0xFFFF:
        raise ValueError(f"UdpWire {role} address must be an IPv4 loopback address, got {address!r}")
    return host, port


class UdpWire(_DatagramWire):
    """Frames as UDP datagrams between ``local`` (bound here) and ``remote`` (QEMU socket/dgram framing)."""

    def __init__(self, local: tuple[str, int], remote: tuple[str, int]) -> None:
        local = _loopback(local, "local")
        remote = _loopback(remote, "remote")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(local)
        except OSError as error:
            sock.close()
            raise WireUnavailable(f"cannot bind UDP wire to {local}: {error}") from error
        super().__init__(sock, remote)

    @property
    def address(self) -> tuple[str, int]:
        """The bound local address (useful when bound to port 0)."""
        host, port = self._sock.getsockname()
        return str(host), int(port)


class LoopWire(_DatagramWire):
    """One end of an in-host wire made of a datagram socketpair (for tests and tools)."""

    @classmethod
    def pair(cls) -> tuple[LoopWire, LoopWire]:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        return cls(left, None), cls(right, None)


class TapWire:
    """A Linux TAP interface: each read is one frame from the host stack, each write one to it.

    The interface exists in the network namespace of the thread that opens it
    and vanishes when the file descriptor closes (unless made persistent).
    """

    def __init__(self, name: str) -> None:
        encoded = name.encode("ascii", "replace")
        if not encoded or len(encoded) >= IFNAMSIZ or b"/" in encoded or b" " in encoded:
            raise ValueError(f"bad interface name {name!r}")
        try:
            fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as error:
            raise WireUnavailable(f"{TUN_DEVICE} does not exist (is the tun module loaded?)") from error
        except PermissionError as error:
            raise WireUnavailable(f"cannot open {TUN_DEVICE}: {error.strerror}; "
                                  "a TAP needs CAP_NET_ADMIN or a persistent TAP owned by this user "
                                  "(ip tuntap add dev NAME mode tap user USER)") from error
        try:
            ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack(IFREQ_FORMAT, encoded, IFF_TAP | IFF_NO_PI))
        except OSError as error:
            os.close(fd)
            hint = " (needs CAP_NET_ADMIN)" if error.errno in (errno.EPERM, errno.EACCES) else ""
            raise WireUnavailable(f"TUNSETIFF {name!r} failed: {error.strerror}{hint}") from error
        self._fd = fd
        self.name = struct.unpack(IFREQ_FORMAT, ifr)[0].rstrip(b"\0").decode("ascii")
        self.counters = WireCounters()

    def fileno(self) -> int:
        return self._fd

    def send(self, frame: bytes) -> None:
        if not carriable(frame):
            self.counters.tx_refused += 1
            return
        try:
            os.write(self._fd, frame)
        except OSError:   # EIO while the interface is down, EAGAIN when its queue is full
            self.counters.send_errors += 1
            return
        self.counters.frames_sent += 1

    def recv(self) -> list[bytes]:
        frames: list[bytes] = []
        while len(frames) < MAX_FRAMES_PER_RECV:
            try:
                data = os.read(self._fd, RECV_BUFSIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters.recv_errors += 1
                break
            if not carriable(data):
                self.counters.rx_refused += 1
            else:
                self.counters.frames_received += 1
                frames.append(data)
        return frames

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
