"""The applications of the RAM disk, the printer and the console (threads of bin/experiment).

Each checks every byte end to end, like experiment/workload.py's:

    ram      16 KiB written to a file in /ram (VFS -> mfs_ram -> memory), fsync'd, read
             back and compared; at the end the RAM disk image is checked with
             fsck.minix -f and every file read again (Rig.check_ram)
    print    a 512-byte job submitted to the spooler as bin/lp does (userland/spool.py),
             waited for until done, and the paper (the board's LPT1, run_dir/lpt1.out)
             compared byte for byte with it: bytes printed twice or never printed are
             corrupted bytes (the spooler promises each byte once, whatever the driver
             does); a job not done within PRINT_WAIT is an error (it is cancelled)
    console  a line typed into COM1's host side (run_dir/com1.sock) and READ from the tty
             driver (minor 0, canonical mode): the line must come back as typed (a wrong
             byte is a corrupted one), and its echo must show on the line (missing or
             garbled echo is an error: the screen is output, nothing is lost for the
             reader); it sets canonical mode and the default settings, and discards
             unread input, when it connects and after a wrong line, as a terminal
             program does

``WORKLOADS`` maps every Target's ``workload`` key to its class.
"""
from __future__ import annotations

import random
import re
import select
import socket
import threading
import time
from pathlib import Path

from drivers.tty.line import Termios
from minikern import cli, ds, ipc
from minikern.const import CDEV_MAX_IO, CharReq, Err
from minikern.proto import Message
from tests.char.printlab import PAPER, compare
from userland import spool

from experiment.workload import (WORKLOADS as BASE, DiskLoad, HelloLoad, Load, NetLoad,
                                 _differ)

PRINT_BYTES = 512
PRINT_WAIT = 8.0  # seconds for a job to be printed
PRINT_POLL = 0.01
ECHO_WAIT = 1.0  # seconds for a typed line's echo to show on the line
SPOOLER_IDLE = 15.0  # seconds for the spooler to finish what an error left


class RamLoad(DiskLoad):
    name_ = "ram"
    root = "/ram/exp"


class PrintLoad(Load):
    name_ = "print"
    interval = 0.1

    def __init__(self, run_dir: Path, seed: int) -> None:
        super().__init__(run_dir, seed)
        self.rng = random.Random(seed)

    def connect(self) -> None:
        self.conn = cli.operator_connection(self.run_dir, "exp-print", privileges="user")
        # after an error: nothing of ours is left to print, so the paper is ours from here
        end = time.monotonic() + SPOOLER_IDLE
        while spool.status(self.conn)["jobs"] and time.monotonic() < end:
            self.stop.wait(PRINT_POLL * 10)

    def paper(self) -> bytes:
        try:
            return (self.run_dir / PAPER).read_bytes()
        except FileNotFoundError:
            return b""

    def op(self, i: int) -> int:
        assert self.conn is not None
        data = self.rng.randbytes(PRINT_BYTES)
        start = len(self.paper())
        job = spool.submit(self.conn, f"exp{i}", data)
        end = time.monotonic() + PRINT_WAIT
        row = None
        while time.monotonic() < end and not self.stop.is_set():
            s = spool.status(self.conn)
            row = next((j for j in s["jobs"] + s["done"] if j["job"] == job), None)
            if row is None or row["state"] in ("done", "cancelled"):
                break
            time.sleep(PRINT_POLL)
        if self.stop.is_set():
            return 0  # the campaign ended while the job printed: not the application's error
        if row is None or row["state"] != "done":
            try:
                spool.cancel(self.conn, job)
            except ipc.IpcError:
                pass  # done or forgotten meanwhile
            raise ipc.IpcError(Err.ETIMEDOUT, f"job {job}: {row['state'] if row else 'gone'}")
        duplicated, lost = compare(data, self.paper()[start:])
        if duplicated or lost:
            self.corrupted.append((time.time(), duplicated + lost))
        return len(data)


class Line:
    """COM1's host side: the board takes one client at a time, so the rig holds one ``Line``
    for the whole trial (a renewed application goes on with it).  A thread reads the screen
    all along, as a terminal does."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.screen = bytearray()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True, name="exp-com1")
        self.reader.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.1)
            if readable:
                data = self.sock.recv(65536)
                if not data:
                    return
                with self.lock:
                    self.screen += data

    def type(self, keys: bytes) -> None:
        self.sock.sendall(keys)

    def shown(self) -> bytes:
        with self.lock:
            return bytes(self.screen)

    def close(self) -> None:
        self.stop.set()
        self.reader.join(timeout=5)
        self.sock.close()


def _lost_from(got: bytes, want: bytes) -> bool:
    """Whether ``got`` is ``want`` with some bytes missing and none changed or added: the
    console's rule for a driver's death is that a typed byte is delivered or lost, never
    wrong (README, "the console")."""
    rest = iter(want)
    return len(got) < len(want) and all(b in rest for b in got)


class ConsoleLoad(Load):
    name_ = "console"
    # A person at the console, typing fast: 20 lines a second.  Typed flat out, the UART's
    # interrupt per byte made the tty the busiest process, and the campaign's CPU limit
    # (60%) killed it while other drivers' faults loaded the machine ("resource", charged
    # to those faults as components hit beyond their driver).
    interval = 0.05

    def __init__(self, run_dir: Path, seed: int, line: Line) -> None:
        super().__init__(run_dir, seed)
        self.line = line
        self.tty = 0
        self.seen = len(line.shown())  # the echo of this application's lines, from here
        self.typed: set[bytes] = set()  # lines typed before the current one

    def _again(self) -> Load:
        new = ConsoleLoad(self.run_dir, self.seed + 1, self.line)
        new.typed = self.typed
        return new

    def call(self, m: Message) -> Message:
        assert self.conn is not None
        r = self.conn.sendrec(self.tty, m)
        if r.type != Err.OK:
            raise ipc.IpcError(r.type, f"tty {CharReq(m.type).name}")
        return r

    def connect(self) -> None:
        self.conn = cli.operator_connection(self.run_dir, "exp-tty")
        self.tty = ds.retrieve_label(self.conn, "tty")
        self.call(Message(CharReq.OPEN, {"minor": 0, "access": 3}))
        self.sane()

    def sane(self) -> None:
        """Set the modes this program reads in (``stty sane``) and discard the input not yet
        read (``tcflush(TCIFLUSH)``), as a terminal program does when it starts and after
        garbage: the tty backs its settings and unread input up in DS and restores them when
        restarted, so a fault that corrupted a setting, or left a backlog of bogus input (a
        driver reading the wrong register took 256 bytes of its IER for typed CRs), survives
        the driver's restarts, and a program that reads one line for each it types would
        never catch up."""
        self.call(Message(CharReq.IOCTL, {"minor": 0, "request": "TCSETS",
                                          "arg": Termios().to_wire()}))
        self.call(Message(CharReq.IOCTL, {"minor": 0, "request": "TCFLSH", "arg": "in"}))

    def read_line(self) -> bytes:
        r = self.call(Message(CharReq.READ, {"minor": 0, "count": CDEV_MAX_IO}))
        data = r.get("data")
        if not isinstance(data, bytes) or len(data) > CDEV_MAX_IO:
            raise ipc.IpcError(Err.EIO, "tty: a read answered with bad data")
        return data

    def op(self, i: int) -> int:
        text = f"exp {self.seed} {i} {self.seed * 7919 + i:08x}".encode()
        self.line.type(text + b"\r")
        want = text + b"\n"
        self.typed.add(want)  # typed: if this read fails, it is read later, and not wrong
        while True:
            got = self.read_line()
            if got == want:
                break
            if got in self.typed:
                continue  # a line typed before an error, delivered now: late, not wrong
            if _lost_from(got, want):  # typed while the driver died: lost, none wrong
                self.errors.append((time.time(), f"{len(want) - len(got)} typed bytes lost "
                                    f"(read {got[:40]!r})"))
                self.sane()
                break
            self.corrupted.append((time.time(), _differ(got, want)))
            self.sane()
            break
        echo = re.compile(re.escape(text + b"\r\n"))
        end = time.monotonic() + ECHO_WAIT
        while (found := echo.search(self.line.shown(), self.seen)) is None:
            if time.monotonic() > end or self.stop.wait(0.002):
                self.errors.append((time.time(), f"no echo of line {i}"))
                self.seen = len(self.line.shown())
                return len(text)
        self.seen = found.end()
        return len(text)


WORKLOADS: dict[str, type[Load]] = {**BASE, "ram": RamLoad, "print": PrintLoad,
                                    "console": ConsoleLoad}
__all__ = ["WORKLOADS", "HelloLoad", "NetLoad", "DiskLoad", "RamLoad", "PrintLoad",
           "ConsoleLoad", "Line"]
