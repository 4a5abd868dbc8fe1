"""INET: the TCP/IP server (runs in its own process, label inet).

The skeleton every server has: SEF start-up, then receive; notifications
apart (DS: a driver came or went; a driver's notify is never expected),
requests through one table; the stack's timers are one timer on SEF's loop
(minikern/loop.py), set to the stack's next deadline (and the next sweep for
dead socket owners while sockets exist) after every message: an idle INET
with no timer running sleeps until a message comes.  Requests come from
two sides: the network driver (NetReq HELLO and PULL: frames in, frames
out, see services/inet/netif.py) and the system's programs (SockReq, see
services/inet/sockets.py).  INET never sends a blocking request to a
driver, so a hung or crashed driver cannot stop it; it watches
``drv.net.<label>`` in DS (RS publishes up, restarting, down, failed) to
notice a driver's death and to nudge a new instance with a NOTIFY.

Nothing a request says is trusted.  A HELLO's label is a claim: INET asks
the kernel who the caller is (minikern/identity.py), and only the component
started as the interface's driver may take the interface.  Every
handler runs under a last-resort guard (services/inet/guard.py): an
exception no check foresaw fails that request alone, never INET.

Arguments (system.conf ``args``): --ip, --netmask, --gateway, --if (the
driver's label).
"""
from __future__ import annotations

import argparse
import sys

from minikern import ds, sef
from minikern.proto import Message
from minikern.const import DS, DsFlag, Err, NetReq, SockReq, err_name
from minikern.identity import Identity
from minikern.ipc import IpcError, KernelGone
from minikern.loop import Timer
from services.inet.guard import Guard
from services.inet.netif import Netif
from services.inet.sockets import Sockets
from services.inet.stack.stack import Stack

EARLIEST = 0.001  # seconds: a deadline already past is served this soon, not in a busy loop


class Inet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def init(self, ctx: sef.Context) -> None:
        self.ctx, self.loop = ctx, ctx.loop
        self.guard = Guard()
        self.identity = Identity(ctx.conn)
        self.netif = Netif(ctx.conn, self.args.interface, ctx.run_dir)
        self.stack = Stack(mac=b"\0" * 6, ip=self.args.ip, netmask=self.args.netmask,
                           gateway=self.args.gateway, send_frame=self.netif.send,
                           clock=self.loop.clock.now)
        self.stack.output_held = self.netif.held
        self.stack.tcp.room = self.netif.room
        self.sockets = Sockets(ctx.conn, self.stack, self.guard, self.loop.clock.now,
                               self.identity)
        try:
            ds.subscribe(ctx.conn, r"drv\.net\..*", DsFlag.INITIAL | DsFlag.OVERWRITE)
        except IpcError as e:
            print(f"inet: cannot subscribe to DS: {e}", flush=True)
        self.timer: Timer | None = None
        self.alarm()

    def alarm(self) -> None:
        """Set the one timer to the next time INET has timed work (the stack's next deadline,
        the next sweep for dead owners), or none.  A timer already due no later is kept (it
        may ring early: ``tick`` finds nothing due and sets it again, never late)."""
        now = self.loop.clock.now()
        due = min((d for d in (self.stack.next_deadline(), self.sockets.next_due())
                   if d is not None), default=None)
        if due is not None:
            due = max(due, now + EARLIEST)
        if self.timer is not None and not self.timer.cancelled:
            if due is not None and self.timer.when <= due:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(due, self.tick) if due is not None else None

    def tick(self) -> None:
        self.timer = None
        self.stack.tick()
        self.sockets.tick()
        self.sockets.retry()
        self.alarm()

    # -- notifications ----------------------------------------------------------------

    def on_notify(self, m: Message) -> None:
        if m.source == DS:
            try:
                self.ds_changes()
            except KernelGone:
                raise
            except Exception as e:  # noqa: BLE001 (a bad DS entry must not take INET down)
                self.guard.failed("DS notification", e)
            self.sockets.retry()
            self.alarm()

    def ds_changes(self) -> None:
        key = f"drv.net.{self.netif.label}"
        while True:
            try:
                change = ds.check(self.ctx.conn)
            except KernelGone:
                raise
            except IpcError as e:
                print(f"inet: DS check failed: {e}", flush=True)
                return
            if change is None:
                return
            if change[0] == key:
                self.driver_state(key)

    def driver_state(self, key: str) -> None:
        """RS's word on the driver: up, restarting, down or failed (services/rs/publish.py)."""
        try:
            state = ds.retrieve(self.ctx.conn, key)
        except KernelGone:
            raise
        except IpcError as e:
            state = f"unreadable ({e})"
        if state != "up":
            self.netif.driver_gone(f"DS: {key} is {state}")
            return
        # A new instance is up.  It says HELLO by itself once it finds INET; the NOTIFY
        # makes it look at once (drivers/net/framework.py answers a notify from the INET it
        # knows with a PULL, preceded by a HELLO if it has not greeted this INET yet).
        label = self.netif.label
        try:
            endpoint = ds.retrieve_label(self.ctx.conn, label)
        except KernelGone:
            raise
        except (IpcError, ValueError, TypeError) as e:
            self.netif.log("driver-up", error=f"no endpoint for {label} in DS: {e}")
            return
        status = self.ctx.conn.notify(endpoint)
        self.netif.log("driver-up", endpoint=endpoint, notify=err_name(status))

    # -- requests ---------------------------------------------------------------------

    def table(self) -> dict[int, sef.Handler]:
        """The request table: every handler under the last resort."""
        table: dict[int, sef.Handler] = {NetReq.HELLO: self.do_hello, NetReq.PULL: self.do_pull}
        table.update({req: self.do_socket for req in SockReq})
        table[SockReq.IFSTAT] = self.do_ifstat
        return {req: self.guarded(handler) for req, handler in table.items()}

    def guarded(self, handler: sef.Handler) -> sef.Handler:
        """``handler`` under the last resort: an unforeseen exception fails one request."""
        def run(m: Message) -> Message | None:
            try:
                return handler(m)
            except KernelGone:
                raise
            except Exception as e:  # noqa: BLE001 (this request fails, not INET)
                self.guard.failed(m.type, e)
                return Message(Err.EINVAL)
            finally:  # a frame or a request may have started a stack timer
                self.alarm()
        return run

    def refuse(self, m: Message, code: Err, why: str) -> Message:
        self.guard.refused(m.type, code, m.source, why)
        return Message(code)

    def do_hello(self, m: Message) -> Message:
        mac, label = m.get("mac"), m.get("label")
        if type(mac) is not bytes or len(mac) != 6 or type(label) is not str:
            return self.refuse(m, Err.EINVAL, "malformed")
        caller = self.identity.who(m.source)
        if caller is None and not self.identity.ok:
            return self.refuse(m, Err.EPERM, "cannot verify the caller: GETINFO failed")
        if label != self.netif.label or caller is None or not caller.is_component(label):
            known = "unknown to the kernel" if caller is None else (
                f"kernel label {caller.label!r}, operator {caller.operator}")
            return self.refuse(m, Err.EPERM, f"claims {label!r}; {known}")
        restarts = self.netif.counters["restarts"]
        status, fields = self.netif.hello(m.source, label, mac, m.get("link"))
        if status == Err.OK:
            self.stack.set_mac(mac)
        if self.netif.counters["restarts"] > restarts:  # a new instance: the old one's
            self.stack.tcp.interface_back(self.loop.clock.now())  # ACKs in were lost
        return Message(status, fields)

    def do_pull(self, m: Message) -> Message:
        rx, done, free = m.get("rx", []), m.get("done", 0), m.get("free", 0)
        if type(rx) is not list or type(done) is not int or type(free) is not int:
            return self.refuse(m, Err.EINVAL, "malformed")
        if m.source != self.netif.driver:
            return self.refuse(m, Err.EPERM, "not the interface's driver")
        self.netif.set_link(m.source, m.get("link"))  # absent or not a bool: no word on it
        for frame in rx:
            if type(frame) is bytes:
                self.netif.counters["rx"] += 1
                self.stack.input(frame)
        tx = self.netif.pull(m.source, done, free, m.get("stats"))
        if tx:
            self.stack.tcp.resume(self.loop.clock.now())  # room in the queue again
        if rx or tx:
            self.sockets.retry()
        return Message(Err.OK, {"tx": tx})

    def do_ifstat(self, m: Message) -> Message:
        """The interface as INET sees it (bin/ifconfig): anyone allowed to talk to INET may ask."""
        n = self.netif
        return Message(Err.OK, {
            "interface": n.label, "ip": self.args.ip, "netmask": self.args.netmask,
            "gateway": self.args.gateway, "mac": n.mac.hex(":") if n.mac else None,
            "driver": n.driver, "link": n.link, "queued": len(n.queue),
            "in_flight": len(n.in_flight), "inet": dict(n.counters),
            "tcp": self.stack.tcp.counters(),
            "drops": dict(self.stack.drops),  # what the stack dropped, by reason (udp_queue_full, ...)
            "driver_stats": dict(n.driver_stats)})

    def do_socket(self, m: Message) -> Message | None:
        reply = self.sockets.request(m)
        self.sockets.retry()
        return reply


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="inet")
    ap.add_argument("--ip", default="10.0.0.2")
    ap.add_argument("--netmask", default="255.255.255.0")
    ap.add_argument("--gateway", default="10.0.0.1")
    ap.add_argument("--if", dest="interface", default="rtl8139")
    return ap.parse_args(argv)


def main() -> None:
    inet = Inet(parse_args(sys.argv[1:]))
    ctx = sef.startup(inet.init)
    sef.serve(ctx, inet.table(), on_notify=inet.on_notify)
