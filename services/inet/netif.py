"""INET's side of one Ethernet interface: the driver link and its recovery (runs in INET).

The stack hands frames to ``send``; they wait in ``queue`` until the driver
PULLs them, then sit in ``in_flight`` until the driver reports them done.
When the driver dies (a NOTIFY to it fails with EDEADSRCDST, or DS says
``drv.net.<label>`` is no longer up), the frames in flight go back to the
head of the queue: nothing the driver had not transmitted is lost.  A new
instance introduces itself with HELLO (services/inet/main.py first has the
kernel confirm that the caller is the component started as this interface's
driver: the label in the message is only a claim); INET checks its MAC
against the old one, tells it the receive mode (MINIX eth_restart: DL_CONF,
MAC, re-queue the write, post a read) and from its first PULL the kept
frames flow again.
Frames lost on the way in are left to TCP's retransmission; since the
peer's ACKs are among them, INET then has every TCP connection resend its
head as a probe (``TcpLayer.interface_back``), so a connection whose last
flight went out before the kill gets its ACK in a round trip, not after a
backed-off RTO.
Each of these steps is an event in the system's event stream (source
``inet``, label the interface's driver: driver-gone, driver-up, driver-back,
link, mac-changed) and a readable line on the console.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from minikern import events
from minikern.const import Err
from minikern.ipc import Connection

MAX_QUEUE = 1024  # frames waiting for the driver; beyond, the oldest is dropped (TCP resends)
TCP_QUEUE = 128  # frames queued beyond which TCP holds new data back (room): no drops, and a
# retransmission waits behind at most this many (four PULLs' worth)
MAX_STATS = 32  # counters kept from a driver's statistics


class Netif:
    def __init__(self, conn: Connection, label: str, run_dir: Path) -> None:
        self.conn, self.label = conn, label
        self.events = events.EventLog(run_dir, "inet")
        self.driver: int | None = None
        self.mac: bytes | None = None
        self.queue: deque[bytes] = deque()
        self.in_flight: deque[bytes] = deque()
        self.notified = False
        self.counters = {"tx": 0, "rx": 0, "dropped": 0, "resent": 0, "restarts": 0}
        self.link: bool | None = None  # as the driver last reported it (HELLO or PULL)
        self.driver_stats: dict[str, int] = {}  # the driver's own counters (each PULL)

    def log(self, kind: str, **fields: Any) -> None:
        rec = self.events.write(kind, self.label, **fields)
        print(f"inet: {kind} {self.label} {events.describe(rec)}", flush=True)

    def send(self, frame: bytes) -> None:
        """The stack's output: queue the frame and wake the driver."""
        if len(self.queue) >= MAX_QUEUE:
            self.queue.popleft()
            self.counters["dropped"] += 1
        self.queue.append(frame)
        self.kick()

    def room(self) -> bool:
        """Whether TCP may queue more new data (retransmissions and ACKs always may)."""
        return len(self.queue) < TCP_QUEUE

    def held(self) -> bool:
        """Frames wait for a driver that is being replaced (known, not yet back): TCP must
        not take them for lost."""
        return self.driver is None and self.mac is not None and bool(self.queue)

    def kick(self) -> None:
        if self.driver is None or self.notified:
            return
        self.notified = True  # until its next PULL: notifications coalesce anyway
        if self.conn.notify(self.driver) == Err.EDEADSRCDST:
            self.driver_gone("notify failed: EDEADSRCDST")

    def driver_gone(self, why: str) -> None:
        if self.driver is None:
            return
        kept = len(self.in_flight)
        self.queue.extendleft(reversed(self.in_flight))
        self.in_flight.clear()
        self.log("driver-gone", endpoint=self.driver, reason=why, kept_frames=kept)
        self.driver, self.notified = None, False

    def hello(self, endpoint: int, label: str, mac: bytes,
              link: object = None) -> tuple[int, dict[str, Any]]:
        if label != self.label:
            return Err.EPERM, {}
        self.set_link(endpoint, link)
        self.driver_stats = {}  # a new instance counts from zero
        if self.driver is not None and self.driver != endpoint:
            self.driver_gone("replaced by a new instance")
        if self.mac is not None and mac != self.mac:
            self.log("mac-changed", old=self.mac.hex(":"), new=mac.hex(":"))
        restart = self.mac is not None
        self.mac, self.driver, self.notified = mac, endpoint, False
        if restart:
            self.counters["restarts"] += 1
            self.counters["resent"] += len(self.queue)
            self.log("driver-back", endpoint=endpoint, resend_frames=len(self.queue))
        return Err.OK, {"mode": {"broadcast": True, "multicast": False, "promiscuous": False}}

    def set_link(self, endpoint: int, link: object) -> None:
        """The driver's word on the link (at HELLO, and in a PULL after the NIC's link-change
        interrupt): a change is a ``link`` event; so is a link down at the first HELLO."""
        if type(link) is bool and link != self.link:
            if self.link is not None or not link:
                self.log("link", state="up" if link else "down", endpoint=endpoint)
            self.link = link

    def pull(self, endpoint: int, done: int, free: int, stats: object = None) -> list[bytes]:
        """Completions in, frames out.  Returns the frames to hand to the driver."""
        if endpoint != self.driver:
            return []
        if type(stats) is dict and len(stats) <= MAX_STATS:  # a claim: keep only sane numbers
            self.driver_stats = {k: v for k, v in stats.items()
                                 if type(k) is str and len(k) <= 32 and type(v) is int}
        for _ in range(min(done, len(self.in_flight))):
            self.in_flight.popleft()
        self.notified = False
        out: list[bytes] = []
        while self.queue and len(out) < max(0, free):
            out.append(self.queue.popleft())
        self.in_flight.extend(out)
        self.counters["tx"] += len(out)
        return out
