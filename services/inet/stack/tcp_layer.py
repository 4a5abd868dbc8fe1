"""TCP demultiplexing: which socket a segment belongs to, port allocation, resets for strangers.

Invariants:

* ``connections`` maps (local port, remote address, remote port) to every
  socket from SYN_SENT/SYN_RECEIVED until it reaches CLOSED (TIME_WAIT
  included, so late segments find it); ``listeners`` maps a port to its
  LISTEN socket; ``bound`` holds sockets bound but not yet opened.
* A socket leaves all three tables through ``release`` when it closes.
* A segment for no socket is answered with RST (RFC 9293 3.10.7.1), unless it
  is itself an RST.
"""
from __future__ import annotations

import errno
import random
from collections import Counter
from collections.abc import Callable

from services.inet.stack.events import EventHook
from services.inet.stack.ip import PROTO_TCP, IpPacket
from services.inet.stack.tcp import TcpSocket
from services.inet.stack.tcp_segment import ACK, RST, SYN, build, parse
from services.inet.stack.tcp_send import Payload
from services.inet.stack.tcp_seq import SEQ_MASK, seq_add
from services.inet.stack.tcp_state import TcpState

TCP_EPHEMERAL = range(49152, 65536)

IpOutput = Callable[[int, int, bytes], None]
ConnKey = tuple[int, int, int]


class TcpLayer:
    def __init__(self, local_ip: int, ip_output: IpOutput, clock: Callable[[], float],
                 drops: Counter[str], notify: EventHook, isn: Callable[[], int] | None,
                 rng: random.Random) -> None:
        self.local_ip = local_ip
        self._ip_output = ip_output
        self.clock = clock
        self.drops = drops
        self.notify = notify
        self._isn = isn
        self._rng = rng
        self.connections: dict[ConnKey, TcpSocket] = {}
        self.listeners: dict[int, TcpSocket] = {}
        self.bound: dict[int, TcpSocket] = {}
        self.segments_in = 0
        self.segments_out = 0
        self.resets_sent = 0
        self._closed_totals: Counter[str] = Counter()  # SOCKET_COUNTERS of released sockets
        # Whether the interface's queue takes more data now (the Stack's owner decides);
        # None: always.  TCP holds new data back rather than have the queue drop it.
        self.room: Callable[[], bool] | None = None
        self._next_port = TCP_EPHEMERAL.start + rng.randrange(len(TCP_EPHEMERAL))

    def socket(self) -> TcpSocket:
        return TcpSocket(self)

    def new_isn(self) -> int:
        return (self._isn() if self._isn is not None else self._rng.getrandbits(32)) & SEQ_MASK

    # ---- tables ---------------------------------------------------------

    def bind(self, sock: TcpSocket, port: int) -> int:
        if port == 0:
            port = self._ephemeral(lambda p: True)
        elif not 0 < port < 65536:
            raise OSError(errno.EINVAL, f"bad port {port}")
        if port in self.listeners or port in self.bound:
            raise OSError(errno.EADDRINUSE, f"TCP port {port} in use")
        self.bound[port] = sock
        return port

    def add_listener(self, sock: TcpSocket) -> None:
        self.bound.pop(sock.local_port, None)
        self.listeners[sock.local_port] = sock

    def connect_port(self, sock: TcpSocket) -> int:
        """The local port for an active open: the bound one, or a free ephemeral one."""
        if sock.local_port:
            self.bound.pop(sock.local_port, None)
            if (sock.local_port, sock.remote_ip, sock.remote_port) in self.connections:
                raise OSError(errno.EADDRINUSE, "connection already exists")
            return sock.local_port
        return self._ephemeral(lambda p: (p, sock.remote_ip, sock.remote_port) not in self.connections)

    def add_connection(self, sock: TcpSocket) -> None:
        self.connections[(sock.local_port, sock.remote_ip, sock.remote_port)] = sock

    def release(self, sock: TcpSocket) -> None:
        key = (sock.local_port, sock.remote_ip, sock.remote_port)
        if self.connections.get(key) is sock:
            del self.connections[key]
            self._closed_totals.update(sock.counters())
        if self.listeners.get(sock.local_port) is sock:
            del self.listeners[sock.local_port]
        if self.bound.get(sock.local_port) is sock:
            del self.bound[sock.local_port]

    def _ephemeral(self, free: Callable[[int], bool]) -> int:
        for _ in range(len(TCP_EPHEMERAL)):
            port = self._next_port
            self._next_port = port + 1 if port + 1 < TCP_EPHEMERAL.stop else TCP_EPHEMERAL.start
            if port not in self.listeners and port not in self.bound and free(port):
                return port
        raise OSError(errno.EADDRINUSE, "no free ephemeral TCP port")

    # ---- wire -----------------------------------------------------------

    def input(self, packet: IpPacket) -> None:
        seg = parse(packet.payload, packet.src, packet.dst, self.drops)
        if seg is None:
            return
        self.segments_in += 1
        now = self.clock()
        sock = self.connections.get((seg.dst_port, packet.src, seg.src_port))
        if sock is not None:
            sock.input(seg, now)
            return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None and (seg.flags & (SYN | RST | ACK)) == SYN:
            if len(listener.embryos) + len(listener.accept_queue) >= listener.backlog:
                self.drops["tcp_backlog_full"] += 1
                return
            TcpSocket(self).accept_syn(listener, packet.src, seg, now)
            return
        if listener is not None and seg.flags & RST:
            return
        self.drops["tcp_no_socket"] += 1
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            self.send_segment(packet.src, seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            self.send_segment(packet.src, seg.dst_port, seg.src_port, 0,
                              seq_add(seg.seq, seg.seg_len), RST | ACK, 0)

    def send_segment(self, remote_ip: int, local_port: int, remote_port: int, seq: int, ack: int,
                     flags: int, window: int, payload: Payload = b"", options: bytes = b"") -> None:
        self.segments_out += 1
        if flags & RST:
            self.resets_sent += 1
        self._ip_output(remote_ip, PROTO_TCP, build(self.local_ip, remote_ip, local_port, remote_port,
                                                    seq, ack, flags, window, payload,
                                                    options=options))

    # ---- timers ---------------------------------------------------------

    def tick(self, now: float, held: bool = False) -> None:
        """Run due timers; ``held``: the interface holds frames it cannot send yet."""
        for sock in list(self.connections.values()):
            deadline = sock.next_deadline()
            if deadline is not None and now >= deadline:
                sock.on_timer(now, held)

    def resume(self, now: float) -> None:
        """The interface's queue drained: connections send what waited for room."""
        for sock in list(self.connections.values()):
            if self.room is not None and not self.room():
                return
            sock.resume(now)

    def interface_back(self, now: float) -> None:
        """The interface's driver was replaced and is back: every connection probes for the
        ACKs the old driver lost."""
        for sock in list(self.connections.values()):
            sock.interface_back(now)

    def next_deadline(self) -> float | None:
        return min((d for s in self.connections.values() if (d := s.next_deadline()) is not None),
                   default=None)

    def counters(self) -> dict[str, int]:
        """Segments in and out, and every connection's retransmission and ACK counters
        (those that closed included): for bin/ifconfig and the tests."""
        totals = Counter(self._closed_totals)
        for sock in self.connections.values():
            totals.update(sock.counters())
        return {"segments_in": self.segments_in, "segments_out": self.segments_out,
                "resets_sent": self.resets_sent, **totals}

    def open_count(self) -> int:
        return sum(1 for s in self.connections.values() if s.state is not TcpState.TIME_WAIT)

