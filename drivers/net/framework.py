"""The network driver framework (MINIX libnetdriver): it owns the loop, a driver fills in callbacks.

Runs in each network driver's process.  The framework does what every
network driver must: SEF start-up (fresh or restart), the heartbeat answer
(SEF), interrupt dispatch and re-enabling, and the conversation with INET.
(RS, not the driver, publishes ``drv.net.<label>`` up or down in DS, for it
sees deaths the driver cannot report.)

That conversation is one-way blocking by design: INET never sends a request
to a driver, it only NOTIFYs it ("there is work"), so a hung or dead driver
can never block INET.  The driver does the calling (SENDREC to INET):

* ``NetReq.HELLO {label, mac, link}`` after every (re)initialization; INET
  answers with the receive mode to program and starts treating this endpoint
  as the interface's driver (MINIX eth_restart's reconfiguration);
* ``NetReq.PULL {rx: [frames], done: n, free: k, stats, link}`` whenever frames
  came in, transmissions completed, the link changed (the NIC's link-change
  interrupt) or INET notified; INET answers ``{tx: [frames]}`` with at most
  ``k`` frames to transmit.  ``link`` is the driver's last reading of the
  link, so INET (bin/ifconfig, the ``link`` event) sees a cable pulled when
  the NIC says so, not at the driver's next restart.

Frames INET handed over and has not seen counted in ``done`` stay INET's to
resend if this driver dies.

The driver takes up to TX_QUEUE frames per PULL, more than a NIC's few
transmit slots (the RTL8139 has four), and feeds the slots from that queue as
they complete: one PULL round trip moves a window's worth of frames, not four.
A queued frame is not ``done`` until the device says it was sent, so INET
still resends it if the driver dies first.  ``kick`` starts what ``transmit``
queued, in one bus round trip for several frames.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from minikern import ds, sef
from minikern.proto import Message
from minikern.const import CLOCK, HARDWARE, Err, IrqOp, KCall, NetReq
from minikern.ipc import IpcError

RX_BACKLOG = 512  # frames kept while INET is unreachable (oldest dropped first)
RETRY_MS = 100  # how often to look for INET again while it is unreachable
MAX_PULL_BYTES = 48 * 1024  # received bytes carried by one PULL (a message is at most 64 KiB)
PULL_SLICE = 0.05  # seconds of trading before the loop goes back to RECEIVE (pings wait there)
TX_QUEUE = 32  # frames taken from INET ahead of the device's slots (32 full frames < 64 KiB)


class NetDriver(Protocol):
    """The callbacks a network driver provides."""

    irq: int

    def init(self, ctx: sef.Context) -> bytes:
        """Find and reset the device, set up rings; return the MAC address."""

    def set_mode(self, mode: dict[str, Any]) -> None:
        """Program the receive mode INET asked for (broadcast, multicast, promiscuous)."""

    def interrupt(self) -> None:
        """Acknowledge the device's interrupt and collect what it reports."""

    def receive(self) -> list[bytes]:
        """Frames received since the last call."""

    def transmit(self, frame: bytes) -> None:
        """Put one frame in a transmit slot; called only while ``tx_free()`` is positive.
        The device may wait for ``kick`` to start it."""

    def kick(self) -> None:
        """Start every frame ``transmit`` placed since the last kick (and note completions)."""

    def tx_free(self) -> int:
        """Transmit slots free now."""

    def tx_done(self) -> int:
        """Transmissions completed since the last call."""

    def link(self) -> bool:
        """The link as the device last showed it (read at reset and at each link-change
        interrupt): cheap, the framework sends it in every PULL."""

    def stats(self) -> dict[str, int]: ...


class Framework:
    def __init__(self, driver: NetDriver) -> None:
        self.drv = driver
        self.inet: int | None = None
        self.backlog: deque[bytes] = deque(maxlen=RX_BACKLOG)
        self.done = 0
        self.greeted = False
        self.txq: deque[bytes] = deque()  # frames from INET waiting for a transmit slot

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        self.mac = self.drv.init(ctx)
        ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=self.drv.irq)

    def find_inet(self) -> bool:
        if self.inet is None:
            try:
                self.inet = ds.retrieve_label(self.ctx.conn, "inet")
            except IpcError:
                self.ctx.conn.kcall(KCall.SETALARM, ms=RETRY_MS)
                return False
        if not self.greeted:
            try:
                r = self.ctx.conn.sendrec(self.inet, Message(NetReq.HELLO, {
                    "label": self.ctx.label, "mac": self.mac, "link": self.drv.link()}))
            except IpcError:
                self.inet = None
                self.ctx.conn.kcall(KCall.SETALARM, ms=RETRY_MS)
                return False
            if r.type == Err.OK:
                self.drv.set_mode(r.fields.get("mode", {}))
                self.greeted = True
        return self.greeted

    def pull(self) -> None:
        """Trade received frames and completions for frames to send, until INET has none.

        Under a steady stream there may always be more; after PULL_SLICE the loop
        returns to RECEIVE anyway (a CLOCK notification brings it back), so a busy
        driver still answers RS's heartbeat rather than being taken for hung.
        """
        self.backlog.extend(self.drv.receive())
        self.done += self.drv.tx_done()
        slice_end = time.monotonic() + PULL_SLICE
        while self.find_inet():
            if time.monotonic() > slice_end:
                self.ctx.conn.kcall(KCall.SETALARM, ms=1)
                return
            rx, size = [], 0
            while self.backlog and size + len(self.backlog[0]) <= MAX_PULL_BYTES:
                size += len(self.backlog[0])
                rx.append(self.backlog.popleft())
            free, inet = TX_QUEUE - len(self.txq), self.inet or 0
            try:
                r = self.ctx.conn.sendrec(inet, Message(NetReq.PULL, {
                    "rx": rx, "done": self.done, "free": free, "stats": self.drv.stats(),
                    "link": self.drv.link()}))
            except IpcError:
                self.backlog.extendleft(reversed(rx))
                self.inet, self.greeted = None, False
                continue
            self.done = 0
            tx = r.fields.get("tx", []) if r.type == Err.OK else []
            self.txq.extend(frame for frame in tx[:max(free, 0)] if isinstance(frame, bytes))
            self.feed()
            self.backlog.extend(self.drv.receive())
            self.done += self.drv.tx_done()
            if not self.backlog and not self.done and (not tx or len(self.txq) >= TX_QUEUE):
                return

    def feed(self) -> None:
        """Move queued frames into the device's free slots, kicking it after each batch,
        until the queue is empty or the slots stay full (their completion interrupt, or
        the next PULL, brings the loop back)."""
        while self.txq:
            free = self.drv.tx_free()
            if free <= 0:
                return
            for _ in range(min(free, len(self.txq))):
                self.drv.transmit(self.txq.popleft())
            self.drv.kick()

    def on_notify(self, m: Message) -> None:
        if m.source == HARDWARE:
            self.drv.interrupt()
            self.ctx.conn.kcall(KCall.IRQCTL, op=IrqOp.ENABLE, irq=self.drv.irq)
            self.feed()  # slots freed
        elif m.source == CLOCK:
            pass  # retry finding INET
        elif m.source != self.inet:  # a new INET (restarted) calling: find it again in DS
            self.inet, self.greeted = None, False
        self.pull()


def run(driver: NetDriver) -> None:
    """A network driver's whole main(): start, then serve until shutdown."""
    fw = Framework(driver)
    ctx = sef.startup(fw.init)
    fw.pull()
    sef.serve(ctx, {}, on_notify=fw.on_notify)

