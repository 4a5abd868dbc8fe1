"""The board: the one process that is the machine (slot HW, label hw; started by bin/boot first).

It owns the I/O port space, physical memory for DMA, the 8259 pair, the 8254
and the devices (hw.board_machine), and talks to three kinds of peers, all
on the one loop every component runs (minikern.loop, through SEF):

* the kernel, over the bus (``ipc://run_dir/bus.sock``, joined with the
  one-time ``bus_credential`` from its start-up record; minikern.proto.bus,
  docs/PROTOCOL.md "The bus").  The kernel forwards port I/O it has already
  checked against the driver's windows (``Io``), line masks (``IrqCtl``),
  fast-path requests (``IoMap``), deaths (``Gone``) and ``Shutdown``; the
  board answers each ``Io``/``IoMap`` with exactly one ``Done`` and raises
  ``Irq``.
* drivers, through their rings in shared memory (hw.board_fastpath, hw.board_ring).
* tests and the operator, over the control socket (hw.board_ctl).

Each of these sockets, and each device's host fd, is a watched source of the
loop; device timing (the PIT's periods, the UART's character timeout) is
loop timers on the loop's clock, which is also the devices' clock.  After
every callback the chipset (hw.board_chipset) re-arms the device timers and
runs the PIC's interrupt cycle.

The board is also an admitted IPC process, a plain SEF component: it builds
the machine and says hello on the bus in its SEF init, so SEF reports its
init done to RS only once the machine is there (RS starts the drivers only
then); SEF answers RS's heartbeat, takes a fault from bin/crash and ends the
board on the kernel's SHUTDOWN.  No callback of the board traps, so its
loop keeps one RECEIVE pending across wakeups (``Loop.hold_receive``): port
I/O and ring requests never cost a round trip to the kernel.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from hw.board_chipset import Chipset
from hw.board_ctl import Control
from hw.board_fastpath import FastPath
from hw.board_machine import Audit, Machine
from hw.uart import PtyBackend, SerialBackend, SocketBackend
from hw.wire import TapWire, UdpWire, Wire, WireUnavailable
from minikern import hosttools, ipc, params, sched, sef
from minikern.const import Err
from minikern.proto import Message, codec
from minikern.proto import bus as wire

DISK_SIZE = 64 * 1024 * 1024  # the image made (sparse) when --disk names no file
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
    """The disk image; one that does not exist yet is made and given a MINIX v3 file system
    (mkfs.minix -3 if the host has it, else services/mfs/mkfs.py).  An existing one is never
    touched."""
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(DISK_SIZE)
        format_disk(path)
    return path


def format_disk(path: Path) -> None:
    tool = hosttools.find("mkfs.minix")
    if tool is not None:
        done = subprocess.run(sched.weighted([tool, "-3", str(path)]), capture_output=True, text=True)
        if done.returncode == 0:
            return
        print(f"hw: {tool} -3 {path} failed ({done.stderr.strip()}); using MFS's mkfs", flush=True)
    from services.mfs.mkfs import mkfs
    mkfs(path)


class Board:
    """The machine and its three kinds of peers, on the component's one loop (``ctx.loop``)."""

    def __init__(self, ctx: sef.Context, args: argparse.Namespace, record: dict[str, Any]) -> None:
        self.loop = ctx.loop
        self.loop.hold_receive = True  # no callback here traps: the RECEIVE outlives each wakeup
        self.loop.timer_slack = 0.001  # a PIT period may end under 1 ms late: sleep, never spin
        self.counters: Counter[str] = Counter()
        self.audit = Audit(ctx.run_dir)
        serial: SerialBackend = PtyBackend() if args.serial == "pty" else SocketBackend(ctx.run_dir)
        self.machine = Machine(ctx.run_dir, make_disk(Path(args.disk)), make_wire(args.nic),
                               serial, self.audit, clock=self.loop.clock.now, mac=args.mac)
        self.machine.firmware(args.hz)
        self.bus: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.bus.setsockopt(zmq.LINGER, 0)
        self.chipset = Chipset(self.loop, self.machine, self.raise_irq)
        self.fast = FastPath(ctx.run_dir, self.machine, self.audit, self.watch, self.unwatch,
                             self.later)
        self.ctl = Control(ctx.run_dir, self.machine, self.stats, self.watch, self.unwatch)
        self.watch(self.bus, self.on_bus)
        self.join_bus(record)
        print(f"hw: board up: serial {getattr(serial, 'path', '?')}, NIC at "
              f"{self.machine.nic.bar_base(0):#x} irq 11, disk {args.disk} (bus master at "
              f"{self.machine.ide.bar_base(4):#x}), {args.hz} Hz",
              flush=True)

    def join_bus(self, record: dict[str, Any]) -> None:
        """Say hello on the bus and wait for the kernel's welcome: until the kernel has taken
        the hello, a driver RS started would find no machine (the connection is made in the
        background, so the init done, on the connection already made, could overtake it)."""
        self.bus.connect(record["bus"])
        self.bus.send(wire.encode(wire.Hello(record["bus_credential"])))  # the machine is there
        if not self.bus.poll(int(params.BUS_WELCOME_WAIT * 1000)):
            raise RuntimeError(f"no welcome on the bus within {params.BUS_WELCOME_WAIT} s")
        got = wire.decode_from_kernel(self.bus.recv())  # the kernel's first frame to the board
        if type(got) is not wire.Welcome:
            raise RuntimeError(f"the bus's first frame is {got!r}, not the kernel's welcome")

    def watch(self, source: Any, fn: Callable[[], None]) -> None:
        """Watch ``source`` on the loop; after ``fn`` the chipset settles (timers, interrupts)."""
        def run() -> None:
            fn()
            self.chipset.settle()
        self.loop.watch(source, run)

    def later(self, delay: float, fn: Callable[[], None]) -> object:
        """A timer on the loop; after ``fn`` the chipset settles, as after a watched source."""
        def run() -> None:
            fn()
            self.chipset.settle()
        return self.loop.call_later(delay, run)

    def unwatch(self, source: Any) -> None:
        self.loop.unwatch(source)

    def raise_irq(self, irq: int) -> None:
        self._to_kernel(wire.Irq(irq))

    def _to_kernel(self, msg: wire.FromBoard) -> None:
        try:
            self.bus.send(wire.encode(msg), zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters["bus_send_failed"] += 1

    # -- the kernel's IPC: SEF answers RS's heartbeat and SHUTDOWN, nothing else is expected --

    def on_unexpected(self, m: Message) -> None:
        self.counters["kernel_message_ignored"] += 1

    def refuse(self, m: Message) -> Message:
        self.counters["request_refused"] += 1
        return Message(Err.EBADREQUEST)

    # -- the bus ----------------------------------------------------------------------

    def on_bus(self) -> None:
        """At most params.BUS_BATCH frames a loop turn (the rest the next turn: the loop's
        poll is level-triggered), so the bus never starves the drivers' rings."""
        for _ in range(params.BUS_BATCH):
            if not int(self.bus.get(zmq.EVENTS)) & _POLLIN:
                return
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

    def do_welcome(self, msg: wire.Welcome) -> bool:
        return False  # once, at join (join_bus): another is refused and counted

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
        """The kernel halts: its SHUTDOWN message, sent right after, ends the board (SEF)."""
        return True

    def stats(self) -> dict[str, Any]:
        return {**self.machine.stats(), "board": dict(self.counters),
                "refused": dict(codec.refused), "loop": dict(self.loop.counters),
                "fastpath": dict(self.fast.counters), "channels": len(self.fast.rings),
                "irq_sent": {str(k): v for k, v in sorted(self.chipset.irq_sent.items())}}

    def close(self) -> None:
        self.unwatch(self.bus)
        self.chipset.close()
        self.ctl.close()
        self.fast.close()
        self.machine.close()
        self.bus.close(0)
        self.audit.close()
        print("hw: board halted", flush=True)


BUS_CALLS: dict[type, Callable[[Board, Any], bool]] = {
    wire.Io: Board.do_io, wire.IrqCtl: Board.do_irqctl, wire.IoMap: Board.do_iomap,
    wire.Gone: Board.do_gone, wire.Shutdown: Board.do_shutdown,
    wire.Welcome: Board.do_welcome, wire.Unreadable: Board.do_unreadable,
}


def main() -> None:
    """SEF's skeleton: the machine is built and on the bus before SEF reports the init done to
    RS (so RS starts no driver before it), then SEF serves: RS's heartbeat, a fault from
    bin/crash and the kernel's SHUTDOWN are SEF's; the board's own work is all callbacks."""
    boards: list[Board] = []

    def init(ctx: sef.Context) -> None:
        args = parse_args(sys.argv[1:], ctx.run_dir)
        boards.append(Board(ctx, args, ipc.boot_record))
        ctx.on_shutdown.append(boards[0].close)

    ctx = sef.startup(init)
    board = boards[0]
    sef.serve(ctx, {}, on_notify=board.on_unexpected, on_kernel=board.on_unexpected,
              default=board.refuse)
