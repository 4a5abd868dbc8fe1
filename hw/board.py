"""The board: the one process that is the machine (slot HW, label hw; started by bin/boot first).

It owns the I/O port space, physical memory for DMA, the 8259 pair, the 8254
and the devices (hw.board_machine), and talks to three kinds of peers, all
from one loop (a ``zmq.Poller`` over every socket and device fd, woken no
later than the devices' next deadline):

* the kernel, over the bus (``ipc://run_dir/bus.sock``, joined with the
  one-time ``bus_credential`` from its start-up record; minikern.proto.bus,
  docs/PROTOCOL.md "The bus").  The kernel forwards port I/O it has already
  checked against the driver's windows (``Io``), line masks (``IrqCtl``),
  fast-path requests (``IoMap``), deaths (``Gone``) and ``Shutdown``; the
  board answers each ``Io``/``IoMap`` with exactly one ``Done`` and raises
  ``Irq``.
* drivers, over their fast-path channels (hw.board_fastpath).
* tests and the operator, over the control socket (hw.board_ctl).

Interrupts follow MINIX: after every loop turn the board runs the PIC's
INTA cycle, ends the interrupt (specific EOI) and, except for the clock's
IRQ 0, masks the line until the kernel passes on the driver's IRQCTL ENABLE
(``IrqCtl(n, True)``); an edge that arrives meanwhile waits in the IRR.
A device's ``poll`` runs on the turns its host fd has input or its deadline
has come: those are the only times it has work, and skipping it on the other
turns keeps the fast path's round trip short.

The board is also an admitted IPC process (``Connection.from_boot``) so that
GETINFO lists it.  Once it has said hello on the bus it reports its init done
to RS, as SEF does (RS starts the drivers only then, so none runs before the
machine is there); then it sits in RECEIVE, which marks it ready and brings
the kernel's SHUTDOWN message and RS's heartbeat.  It never traps otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from hw.board_ctl import Control
from hw.board_fastpath import FastPath
from hw.board_machine import Audit, Machine
from hw.device import Device
from hw.uart import PtyBackend, SerialBackend, SocketBackend
from hw.wire import TapWire, UdpWire, Wire, WireUnavailable
from minikern import ipc, sef
from minikern.proto import bus as wire
from minikern.proto import codec
from minikern.const import ANY, RS, Call, Err, Kind, KMsg, RsReq

DISK_SIZE = 4 * 1024 * 1024  # the zero-filled image made when --disk names no file
MAX_SDEVIO_BYTES = 256 * 1024  # string I/O answered on the bus (the kernel caps messages at 1 MiB)
_POLLIN = int(zmq.POLLIN)


def default_mac(run_dir: Path) -> bytes:
    """QEMU's locally administered prefix, then bytes of a hash of the run directory."""
    return bytes.fromhex("525400") + hashlib.sha256(str(run_dir).encode()).digest()[:3]


def parse_mac(text: str) -> bytes:
    mac = bytes.fromhex(text.replace(":", ""))
    if len(mac) != 6 or mac[0] & 1:
        raise argparse.ArgumentTypeError(f"not a unicast MAC address: {text!r}")
    return mac


def parse_args(argv: list[str], run_dir: Path) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hw.board")
    ap.add_argument("--disk", default=str(run_dir / "disk.img"), help="ATA disk image")
    ap.add_argument("--nic", default="none", help="none | udp:LOCALPORT:REMOTEPORT | tap:NAME")
    ap.add_argument("--mac", type=parse_mac, default=default_mac(run_dir),
                    help="the NIC's MAC address (default: 52:54:00 and three bytes derived "
                         "from the run directory, so two systems side by side differ)")
    ap.add_argument("--hz", type=int, default=60, help="the PIT's programmed tick rate")
    ap.add_argument("--serial", choices=("socket", "pty"), default="socket",
                    help="COM1's other end: run_dir/com1.sock or a host pty")
    return ap.parse_args(argv)


def make_wire(spec: str) -> Wire | None:
    kind, _, rest = spec.partition(":")
    if kind == "none":
        return None
    try:
        if kind == "udp":
            local, _, remote = rest.partition(":")
            return UdpWire(("127.0.0.1", int(local)), ("127.0.0.1", int(remote)))
        if kind == "tap":
            return TapWire(rest)
    except (ValueError, WireUnavailable) as e:
        print(f"hw: no wire for --nic {spec}: {e}; the NIC has no link", flush=True)
        return None
    print(f"hw: unknown --nic {spec!r}; the NIC has no link", flush=True)
    return None


def make_disk(path: Path) -> Path:
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(DISK_SIZE)
    return path


class Board:
    def __init__(self, run_dir: Path, args: argparse.Namespace, record: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.counters: Counter[str] = Counter()
        self.irq_sent: Counter[int] = Counter()
        self.handlers: dict[Any, Callable[[], None]] = {}
        self.poller = zmq.Poller()
        self.stopping = False
        self.asking: int | None = None  # the request of an outstanding SENDREC to RS
        self.audit = Audit(run_dir)
        serial: SerialBackend = PtyBackend() if args.serial == "pty" else SocketBackend(run_dir)
        self.machine = Machine(run_dir, make_disk(Path(args.disk)), make_wire(args.nic),
                               serial, self.audit, mac=args.mac)
        self.machine.firmware(args.hz)
        self.fast = FastPath(run_dir, self.machine, self.audit, self.watch, self.unwatch)
        self.ctl = Control(run_dir, self.machine, self.stats, self.watch, self.unwatch)
        self.woken: set[Device] = set()  # devices whose host fd has input this turn
        for dev in self.machine.devices:
            fd = dev.fileno()
            if fd is not None:
                self.watch(fd, lambda dev=dev: self.woken.add(dev))  # type: ignore[misc]
        self.bus: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.bus.setsockopt(zmq.LINGER, 0)
        self.bus.connect(record["bus"])
        self.bus.send(wire.encode(wire.Hello(record["bus_credential"])))
        self.watch(self.bus, self.on_bus)
        self.conn = ipc.Connection.from_boot()
        self.watch(self.conn.sock, self.on_kernel_message)
        self._ask_rs(RsReq.INIT_DONE)  # after the hello: the machine is there for drivers
        print(f"hw: board up: serial {getattr(serial, 'path', '?')}, NIC at "
              f"{self.machine.nic.bar_base(0):#x} irq 11, disk {args.disk}, {args.hz} Hz",
              flush=True)

    def watch(self, fd: Any, handler: Callable[[], None]) -> None:
        self.handlers[fd] = handler
        self.poller.register(fd, zmq.POLLIN)

    def unwatch(self, fd: Any) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        timeout: int | None = 0
        while not self.stopping:
            for fd, _ in self.poller.poll(timeout):
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler()
            now, soonest = time.monotonic(), math.inf
            for dev in self.machine.devices:  # poll() only has work on input or at a deadline
                deadline = dev.next_deadline()
                if dev in self.woken or deadline is not None and deadline <= now:
                    try:
                        dev.poll()
                    except Exception:  # a model bug: counted, and the machine runs on
                        self.machine.device_fault(dev)
                    deadline = dev.next_deadline()
                if deadline is not None and deadline < soonest:
                    soonest = deadline
            self.woken.clear()
            self.raise_interrupts()
            timeout = (None if soonest == math.inf
                       else max(0, math.ceil((soonest - time.monotonic()) * 1000)))

    def raise_interrupts(self) -> None:
        m = self.machine
        while (irq := m.pic.pending_irq()) is not None:
            m.end_of_interrupt(irq)
            if irq != 0:
                m.set_masked(irq, True)  # until the driver's IRQCTL ENABLE
            self.irq_sent[irq] += 1
            self._to_kernel(wire.Irq(irq))

    def _to_kernel(self, msg: wire.FromBoard) -> None:
        try:
            self.bus.send(wire.encode(msg), zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters["bus_send_failed"] += 1

    # -- the kernel's side ------------------------------------------------------------

    def _receive(self) -> None:
        self.conn.sock.send(codec.encode_request(Call.RECEIVE, ANY))

    def _ask_rs(self, req: RsReq) -> None:
        self.asking = req
        self.conn.sock.send_multipart([codec.encode_request(Call.SENDREC, RS),
                                       codec.encode_body(req, {})])

    def on_kernel_message(self) -> None:
        """The answer to the board's pending trap, never waited for (the board's loop is its
        devices'): the kernel's SHUTDOWN, RS's heartbeat NOTIFY, which the board answers as
        SEF does (SENDREC PING, whose reply may hand over a fault from bin/crash), and the
        replies to that and to its INIT_DONE (an error when there is no RS: nobody to tell).
        Anything else is counted and ignored."""
        while int(self.conn.sock.get(zmq.EVENTS)) & _POLLIN:
            frames = self.conn.sock.recv_multipart()
            hdr = codec.decode_reply(frames[0])
            body = codec.decode_body(frames[1]) if len(frames) == 2 else None
            kind = hdr[2] if hdr is not None else None
            if kind == Kind.KERNEL and body and body[0] == KMsg.SHUTDOWN:
                self.stopping = True
                return
            if self.asking is not None:  # the one trap outstanding was to RS: it ended so
                pinged, self.asking = self.asking == RsReq.PING, None
                self.counters["heartbeats"] += pinged
                if pinged and hdr is not None and hdr[0] == Err.OK and body and body[0] == Err.OK:
                    fault = body[1].get("fault")
                    if fault:
                        sef.inject_fault(str(fault))
            elif hdr is not None and kind == Kind.NOTIFY and hdr[1] == RS:
                self._ask_rs(RsReq.PING)
                continue
            else:
                self.counters["kernel_message_ignored"] += 1
            self._receive()

    def on_bus(self) -> None:
        while int(self.bus.get(zmq.EVENTS)) & _POLLIN:
            msg = wire.decode_from_kernel(self.bus.recv())  # never trust the wire, even the kernel's
            if msg is None:
                self.counters["bus_malformed"] += 1
                continue
            self.counters["bus_" + type(msg).__name__.lower()] += 1
            handler = BUS_CALLS[type(msg)]
            if not handler(self, msg):
                self.counters["bus_malformed"] += 1

    def do_io(self, msg: wire.Io) -> bool:
        status, result = self.port_io(msg.endpoint, msg.kind, msg.ops, msg.extra)
        self._to_kernel(wire.Done(msg.endpoint, int(status), result))
        return True

    def do_unreadable(self, msg: wire.Unreadable) -> bool:
        self._to_kernel(wire.Done(msg.endpoint, int(Err.EINVAL), {}))  # the driver waits on it
        return False

    def port_io(self, endpoint: int, kind: wire.IoKind, ops: list[wire.Op],
                extra: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Perform accesses the kernel has already checked against the caller's windows."""
        who, m = (endpoint, self.fast.label_of(endpoint)), self.machine
        if kind == wire.IoKind.SDEVIO:
            port, size, _ = ops[0]
            count, data = extra.get("count"), extra.get("data")
            if type(count) is not int or not 0 < count * size <= MAX_SDEVIO_BYTES:
                return Err.EINVAL, {}
            if data is None:
                return Err.OK, {"data": b"".join(m.read(port, size, who).to_bytes(size, "little")
                                                 for _ in range(count))}
            if type(data) is not bytes or len(data) != count * size:
                return Err.EINVAL, {}
            for i in range(0, len(data), size):
                m.write(port, size, int.from_bytes(data[i:i + size], "little"), who)
            return Err.OK, {}
        values: list[int | None] = []
        for port, size, value in ops:
            if value is None:
                values.append(m.read(port, size, who))
            else:
                m.write(port, size, value, who)
                values.append(None)
        return Err.OK, {"values": values}

    def do_irqctl(self, msg: wire.IrqCtl) -> bool:
        if msg.line == 2:  # the cascade: the slave PIC's line is never the kernel's to mask
            return False
        if msg.line != 0:  # the clock's line is the kernel's and is never masked
            self.machine.set_masked(msg.line, not msg.enable)
        return True

    def do_iomap(self, msg: wire.IoMap) -> bool:
        status, result = self.fast.offer(msg.endpoint, msg.label, msg.io, msg.mem)
        self._to_kernel(wire.Done(msg.endpoint, int(status), result))
        return True

    def do_gone(self, msg: wire.Gone) -> bool:
        self.fast.gone(msg.endpoint)
        return True

    def do_shutdown(self, msg: wire.Shutdown) -> bool:
        self.stopping = True
        return True

    def stats(self) -> dict[str, Any]:
        return {**self.machine.stats(), "board": dict(self.counters),
                "refused": dict(codec.refused),
                "fastpath": dict(self.fast.counters), "channels": len(self.fast.channels),
                "irq_sent": {str(k): v for k, v in sorted(self.irq_sent.items())}}

    def close(self) -> None:
        self.ctl.close()
        self.fast.close()
        self.machine.close()
        self.bus.close(0)
        self.conn.sock.close(0)
        self.audit.close()


BUS_CALLS: dict[type, Callable[[Board, Any], bool]] = {
    wire.Io: Board.do_io, wire.IrqCtl: Board.do_irqctl, wire.IoMap: Board.do_iomap,
    wire.Gone: Board.do_gone, wire.Shutdown: Board.do_shutdown,
    wire.Unreadable: Board.do_unreadable,
}


def main() -> None:
    record = ipc.boot_record
    run_dir = Path(record["run_dir"])
    board = Board(run_dir, parse_args(sys.argv[1:], run_dir), record)
    try:
        board.run()
    finally:
        board.close()
    print("hw: board halted", flush=True)
    os._exit(0)
