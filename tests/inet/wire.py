"""Two stacks back to back on an in-memory wire, a fake clock, and seeded loss, reordering, duplication.

Everything is deterministic for a given seed: the clock only moves when
``run`` advances it (to the next frame delivery or timer deadline), so
timeouts are exact and tests take no wall-clock time waiting.
"""
from __future__ import annotations

import heapq
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from services.inet.stack import Stack, TcpSocket

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
IP_A = "10.0.0.1"
IP_B = "10.0.0.2"
NETMASK = "255.255.255.0"
LATENCY = 0.001               # seconds one way
MAX_STEP = 0.01               # the clock never jumps further without calling tick()

# A filter sees (sender index, frame) and returns True to drop the frame.
Filter = Callable[[int, bytes], bool]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class TcpView:
    """The TCP fields of a frame, for filters and assertions."""
    flags: int
    seq: int
    ack: int
    window: int
    payload_len: int
    src_port: int
    dst_port: int


def tcp_view(frame: bytes) -> TcpView | None:
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, 16)[0]
    t = 14 + ihl
    sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", frame, t)
    return TcpView(off_flags & 0x3F, seq, ack, window, total - ihl - (off_flags >> 12) * 4, sport, dport)


@dataclass
class Wire:
    seed: int = 0
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    isn_a: int | None = None
    isn_b: int | None = None
    filters: list[Filter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.rng = random.Random(self.seed)
        self.queue: list[tuple[float, int, int, bytes]] = []
        self.order = 0
        self.sent: list[list[bytes]] = [[], []]
        self.lost = 0
        self.a = self._stack(0, MAC_A, IP_A, self.isn_a)
        self.b = self._stack(1, MAC_B, IP_B, self.isn_b)
        self.stacks = (self.a, self.b)

    def _stack(self, index: int, mac: str, ip: str, isn: int | None) -> Stack:
        return Stack(mac, ip, NETMASK, None, lambda f: self._send(index, f), self.clock,
                     isn=(lambda: isn) if isn is not None else None, seed=self.seed * 2 + index)

    def _send(self, src: int, frame: bytes) -> None:
        self.sent[src].append(frame)
        if any(f(src, frame) for f in self.filters) or self.rng.random() < self.loss:
            self.lost += 1
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            delay = LATENCY + (self.rng.random() * 5 * LATENCY if self.rng.random() < self.reorder else 0.0)
            self.order += 1
            heapq.heappush(self.queue, (self.clock.now + delay, self.order, 1 - src, frame))

    def deliver_due(self) -> None:
        while self.queue and self.queue[0][0] <= self.clock.now:
            _, _, dst, frame = heapq.heappop(self.queue)
            self.stacks[dst].input(frame)

    def run(self, done: Callable[[], bool], timeout: float = 60.0,
            step: Callable[[], None] | None = None) -> None:
        """Advance fake time until ``done()``; AssertionError after ``timeout`` fake seconds."""
        limit = self.clock.now + timeout
        while True:
            self.deliver_due()
            for s in self.stacks:
                s.tick()
            if step is not None:
                step()
            if done():
                return
            if self.clock.now >= limit:
                raise AssertionError(f"not done after {timeout} fake seconds")
            candidates = [self.clock.now + MAX_STEP]
            if self.queue:
                candidates.append(self.queue[0][0])
            candidates += [d for s in self.stacks if (d := s.next_deadline()) is not None]
            self.clock.now = max(self.clock.now, min(candidates))

    def connect_pair(self, port: int = 5000) -> tuple[TcpSocket, TcpSocket]:
        """A connected (client on A, server-side socket on B) pair."""
        listener = self.b.tcp_socket()
        listener.bind(port)
        listener.listen()
        client = self.a.tcp_socket()
        client.connect((IP_B, port))
        accepted: list[TcpSocket] = []

        def step() -> None:
            s = listener.accept()
            if s is not None:
                accepted.append(s)
        self.run(lambda: bool(accepted) and client.connected, step=step)
        listener.close()
        return client, accepted[0]


class Transfer:
    """Pushes ``data`` from ``src`` (closing it at the end) and drains ``dst`` until end of stream."""

    def __init__(self, src: TcpSocket, dst: TcpSocket, data: bytes, close: bool = True) -> None:
        self.src, self.dst, self.data, self.close = src, dst, memoryview(data), close
        self.offset = 0
        self.closed = False
        self.received = bytearray()
        self.eof = False
        self.reading = True

    def step(self) -> None:
        while self.offset < len(self.data):
            n = self.src.send(self.data[self.offset:self.offset + 65536])
            if n == 0:
                break
            self.offset += n
        if self.close and not self.closed and self.offset == len(self.data):
            self.src.close()
            self.closed = True
        while self.reading and not self.eof:
            chunk = self.dst.recv(65536)
            if chunk is None:
                break
            if chunk == b"":
                self.eof = True
            self.received += chunk

    def done(self) -> bool:
        return self.eof
