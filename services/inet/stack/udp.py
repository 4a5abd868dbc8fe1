"""UDP (RFC 768): datagram sockets bound to a local port, with bounded receive queues.

As in POSIX, ``connect`` gives a socket a default peer: ``send`` and ``recv``
then need no address, and only datagrams from that peer are delivered to it
(others are dropped and counted).  ``send`` and ``recv`` on a socket that is
not connected raise ENOTCONN.

A datagram with a checksum that does not verify, a length field that
disagrees with the IP payload, or no socket on its port is dropped and
counted.  A checksum field of zero means the sender did not compute one and
is accepted; a computed checksum of zero is sent as 0xFFFF.
"""
from __future__ import annotations

import errno
import struct
from collections import Counter, deque
from collections.abc import Callable

from services.inet.stack.checksum import checksum, ones_sum, pseudo_header_sum
from services.inet.stack.events import EventHook, SocketEvent
from services.inet.stack.ip import PROTO_UDP, IpPacket, int_to_ip, ip_to_int

UDP_HEADER_LEN = 8
UDP_MAX_PAYLOAD = 1472        # Ethernet MTU minus IP and UDP headers: we never fragment
UDP_QUEUE_LIMIT = 128         # datagrams held per socket before new ones are dropped
UDP_EPHEMERAL = range(49152, 65536)

_HEADER = struct.Struct("!HHHH")

Address = tuple[str, int]
IpOutput = Callable[[int, int, bytes], None]


def build(src: int, dst: int, sport: int, dport: int, data: bytes) -> bytes:
    length = UDP_HEADER_LEN + len(data)
    header = _HEADER.pack(sport, dport, length, 0)
    csum = checksum(header + data, pseudo_header_sum(src, dst, PROTO_UDP, length)) or 0xFFFF
    return _HEADER.pack(sport, dport, length, csum) + data


class UdpSocket:
    def __init__(self, layer: UdpLayer) -> None:
        self._layer = layer
        self.port: int | None = None
        self.peer: Address | None = None  # set by connect
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.dropped = 0
        self.closed = False

    def bind(self, port: int = 0) -> None:
        if self.closed or self.port is not None:
            raise OSError(errno.EINVAL, "socket already bound or closed")
        self.port = self._layer.bind(self, port)

    def sendto(self, data: bytes, address: Address) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "socket closed")
        if len(data) > UDP_MAX_PAYLOAD:
            raise OSError(errno.EMSGSIZE, "datagram larger than one Ethernet frame")
        if self.port is None:
            self.port = self._layer.bind(self, 0)
        self._layer.send(self.port, ip_to_int(address[0]), address[1], bytes(data))
        return len(data)

    def recvfrom(self) -> tuple[bytes, Address] | None:
        return self.queue.popleft() if self.queue else None

    def connect(self, address: Address) -> None:
        """Set the default peer (again, if already connected); binds an ephemeral port if needed."""
        if self.closed:
            raise OSError(errno.EBADF, "socket closed")
        ip, port = address
        if not 0 < port < 65536:
            raise OSError(errno.EINVAL, f"bad port {port}")
        ip = int_to_ip(ip_to_int(ip))
        if self.port is None:
            self.port = self._layer.bind(self, 0)
        self.peer = (ip, port)

    def send(self, data: bytes) -> int:
        if self.peer is None:
            raise OSError(errno.ENOTCONN, "send() on a UDP socket without a peer (connect first)")
        return self.sendto(data, self.peer)

    def recv(self, n: int) -> bytes | None:
        """The next datagram from the peer, cut to ``n`` bytes (the rest is discarded, as POSIX)."""
        if self.peer is None:
            raise OSError(errno.ENOTCONN, "recv() on a UDP socket without a peer (connect first)")
        got = self.recvfrom()
        return None if got is None else got[0][:n]

    @property
    def readable(self) -> bool:
        return bool(self.queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._layer.unbind(self)

    def _deliver(self, data: bytes, address: Address) -> None:
        if len(self.queue) >= UDP_QUEUE_LIMIT:
            self.dropped += 1
            self._layer.drops["udp_queue_full"] += 1
            return
        self.queue.append((data, address))
        self._layer.notify(self, SocketEvent.READABLE)


class UdpLayer:
    def __init__(self, local_ip: int, ip_output: IpOutput, drops: Counter[str], notify: EventHook) -> None:
        self.local_ip = local_ip
        self._ip_output = ip_output
        self.drops = drops
        self.notify = notify
        self.ports: dict[int, UdpSocket] = {}
        self._next_ephemeral = UDP_EPHEMERAL.start

    def bind(self, sock: UdpSocket, port: int) -> int:
        if port == 0:
            port = self._ephemeral()
        if not 0 < port < 65536:
            raise OSError(errno.EINVAL, f"bad port {port}")
        if port in self.ports:
            raise OSError(errno.EADDRINUSE, f"UDP port {port} in use")
        self.ports[port] = sock
        return port

    def unbind(self, sock: UdpSocket) -> None:
        if sock.port is not None and self.ports.get(sock.port) is sock:
            del self.ports[sock.port]

    def send(self, sport: int, dst: int, dport: int, data: bytes) -> None:
        if not 0 < dport < 65536:
            raise OSError(errno.EINVAL, f"bad port {dport}")
        self._ip_output(dst, PROTO_UDP, build(self.local_ip, dst, sport, dport, data))

    def input(self, packet: IpPacket) -> None:
        buf = packet.payload
        if len(buf) < UDP_HEADER_LEN:
            self.drops["udp_short"] += 1
            return
        sport, dport, length, csum = _HEADER.unpack_from(buf)
        if length < UDP_HEADER_LEN or length > len(buf):
            self.drops["udp_bad_length"] += 1
            return
        buf = buf[:length]
        pseudo = pseudo_header_sum(packet.src, packet.dst, PROTO_UDP, length)
        if csum != 0 and ones_sum(buf, pseudo) != 0xFFFF:
            self.drops["udp_bad_checksum"] += 1
            return
        sock = self.ports.get(dport)
        if sock is None:
            self.drops["udp_no_socket"] += 1
            return
        source = (int_to_ip(packet.src), sport)
        if sock.peer is not None and source != sock.peer:
            self.drops["udp_not_from_peer"] += 1
            return
        sock._deliver(bytes(buf[UDP_HEADER_LEN:]), source)

    def _ephemeral(self) -> int:
        for _ in range(len(UDP_EPHEMERAL)):
            port = self._next_ephemeral
            self._next_ephemeral = port + 1 if port + 1 < UDP_EPHEMERAL.stop else UDP_EPHEMERAL.start
            if port not in self.ports:
                return port
        raise OSError(errno.EADDRINUSE, "no free ephemeral UDP port")
