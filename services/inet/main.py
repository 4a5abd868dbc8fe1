"""INET: the TCP/IP server (runs in its own process, label inet).

The skeleton every server has: SEF start-up, then receive; notifications
apart (CLOCK: run the stack's timers; DS: a driver came or went; a driver's
notify is never expected), requests through one table.  Requests come from
two sides: the network driver (NetReq HELLO and PULL: frames in, frames
out, see services/inet/netif.py) and the system's programs (SockReq, see
services/inet/sockets.py).  INET never sends a blocking request to a
driver, so a hung or crashed driver cannot stop it; it watches
``drv.net.<label>`` in DS to notice a driver's death and rebirth.

Arguments (system.conf ``args``): --ip, --netmask, --gateway, --if (the
driver's label).
"""
from __future__ import annotations

import argparse
import sys
import time

from minikern import ds, sef
from minikern.codec import Message
from minikern.const import CLOCK, DS, DsFlag, Err, KCall, NetReq, SockReq
from minikern.ipc import IpcError
from services.inet.netif import Netif
from services.inet.sockets import Sockets
from services.inet.stack.stack import Stack

TICK_MS = 20  # the longest the stack's timers wait beyond their deadline


class Inet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        self.netif = Netif(ctx.conn, self.args.interface, ctx.run_dir)
        self.stack = Stack(mac=b"\0" * 6, ip=self.args.ip, netmask=self.args.netmask,
                           gateway=self.args.gateway, send_frame=self.netif.send,
                           clock=time.monotonic)
        self.sockets = Sockets(ctx.conn, self.stack)
        try:
            ds.subscribe(ctx.conn, r"drv\.net\..*", DsFlag.INITIAL | DsFlag.OVERWRITE)
        except IpcError as e:
            print(f"inet: cannot subscribe to DS: {e}", flush=True)
        self.alarm()

    def alarm(self) -> None:
        deadline = self.stack.next_deadline()
        ms = TICK_MS if deadline is None else max(1, min(TICK_MS,
                                                         int((deadline - time.monotonic()) * 1000)))
        self.ctx.conn.kcall(KCall.SETALARM, ms=ms)

    # -- notifications ----------------------------------------------------------------

    def on_notify(self, m: Message) -> None:
        if m.source == CLOCK:
            self.stack.tick()
            self.sockets.retry()
            self.alarm()
        elif m.source == DS:
            self.ds_changes()

    def ds_changes(self) -> None:
        while (change := ds.check(self.ctx.conn)) is not None:
            key = change[0]
            if key != f"drv.net.{self.netif.label}":
                continue
            try:
                state = ds.retrieve(self.ctx.conn, key)
            except IpcError:
                state = "down"
            if state != "up":
                self.netif.driver_gone(f"DS: {key} is {state}")

    # -- requests ---------------------------------------------------------------------

    def do_hello(self, m: Message) -> Message:
        mac, label = m.get("mac"), m.get("label")
        if type(mac) is not bytes or len(mac) != 6 or type(label) is not str:
            return Message(Err.EINVAL)
        status, fields = self.netif.hello(m.source, label, mac)
        if status == Err.OK:
            self.stack.set_mac(mac)
        return Message(status, fields)

    def do_pull(self, m: Message) -> Message:
        rx, done, free = m.get("rx", []), m.get("done", 0), m.get("free", 0)
        if type(rx) is not list or type(done) is not int or type(free) is not int:
            return Message(Err.EINVAL)
        if m.source != self.netif.driver:
            return Message(Err.EPERM)
        for frame in rx:
            if type(frame) is bytes:
                self.netif.counters["rx"] += 1
                self.stack.input(frame)
        if rx:
            self.sockets.retry()
        return Message(Err.OK, {"tx": self.netif.pull(m.source, done, free)})

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
    table: dict[int, sef.Handler] = {NetReq.HELLO: inet.do_hello, NetReq.PULL: inet.do_pull}
    table.update({req: inet.do_socket for req in SockReq})
    sef.serve(ctx, table, on_notify=inet.on_notify)
