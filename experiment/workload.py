"""The applications that use each driver while the faults land (threads of bin/experiment).

Each is a thread that repeats one end-to-end operation and checks every byte:

    hello   OPEN and READ the hello driver (endpoint from DS): the greeting, intact
    net     16 KiB through a TCP connection from system A to an echo server on
            system B over the UDP wire (rtl8139 on A both ways), compared byte for
            byte with what was sent
    disk    16 KiB written to a file through VFS, fsync'd (MFS -> at_wini), read
            back and compared; ``verify`` reads every file again (after a reboot)

The RAM disk's, the printer's and the console's are in experiment/devloads.py
(its WORKLOADS maps every Target's ``workload`` key to its class).

Each is paced (``interval``: hello 20, net 10, the files 10, the printer 10 jobs of 512
bytes, the console 20 lines a second at most): flat out, the six of them kept two cores
busy (load 9 to 15 for one trial), so trials side by side slowed each other as much as
they ran, and an overloaded system's heartbeats failed for want of a CPU, not of a fault.

A thread records, with host timestamps: each operation done (bytes), each
error the application saw, and each corrupted byte; the trial reads them
between injections.  A thread never dies of a fault: it records the error,
waits ERROR_PAUSE, reconnects and goes on.
"""
from __future__ import annotations

import hashlib
import itertools
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minikern import cli, ds, ipc
from minikern.const import CharReq, Err
from minikern.proto import Message
from userland.fs import O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY, Files, FsError
from userland.socket import Socket, SocketError

OP_BYTES = 16 * 1024
ERROR_PAUSE = 0.05  # seconds after an error before the next try
DISK_FILES = 8
GREETING = "Hello, World!"


def _differ(a: bytes, b: bytes) -> int:
    """How many bytes of ``a`` are not as in ``b`` (missing ones count)."""
    return sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))


class Load(threading.Thread):
    name_ = "load"
    interval = 0.0  # seconds between two operations (0: flat out)

    def __init__(self, run_dir: Path, seed: int) -> None:
        super().__init__(daemon=True, name=f"exp-{self.name_}")
        self.run_dir, self.seed = run_dir, seed
        self.stop = threading.Event()
        self.ops: list[tuple[float, int]] = []  # (time done, bytes)
        self.began = 0.0  # when the last operation done began
        self.errors: list[tuple[float, str]] = []
        self.corrupted: list[tuple[float, int]] = []  # (time seen, bytes wrong)
        self.conn: ipc.Connection | None = None

    def connect(self) -> None:
        raise NotImplementedError

    def op(self, i: int) -> int:
        raise NotImplementedError

    def disconnect(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self) -> None:
        try:
            self._loop()
        finally:  # a thread told to stop (or given up) gives its connection back
            self.reset()

    def _loop(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                if self.conn is None:
                    self.connect()
                began = time.time()
                n = self.op(i)
                self.ops.append((time.time(), n))
                self.began = began
                i += 1
                if self.interval:
                    self.stop.wait(self.interval)
            except ipc.KernelGone:
                self.errors.append((time.time(), "kernel gone"))
                return
            except (ipc.IpcError, FsError, SocketError, OSError) as e:
                self.errors.append((time.time(), f"{type(e).__name__}: {e}"[:200]))
                self.reset()
                self.stop.wait(ERROR_PAUSE)

    def reset(self) -> None:
        """After an error: start again from a new connection."""
        try:
            self.disconnect()
        except Exception:  # noqa: BLE001 (a broken connection may fail to close too)
            self.conn = None

    def last_done(self) -> float:
        return self.ops[-1][0] if self.ops else 0.0

    def pace(self, before: float) -> float:
        """The median seconds between two operations before ``before`` (the last 50)."""
        times = [t for t, _ in self.ops if t < before][-51:]
        gaps = sorted(b - a for a, b in itertools.pairwise(times))
        return gaps[len(gaps) // 2] if gaps else 0.0

    def renew(self) -> Load:
        """A new thread that goes on with this one's records, for one stuck in a call that
        will never return (a reply sent elsewhere): this one is told to stop, and left."""
        self.stop.set()
        new = self._again()
        new.ops, new.errors, new.corrupted = self.ops, self.errors, self.corrupted
        new.errors.append((time.time(), "stuck: the application gave up its connection"))
        # When its call returns at last, this thread ends the operation it was in: what it
        # sees then (a file the new one rewrote since, say) is no one's record.
        self.ops, self.errors, self.corrupted = [], [], []
        return new

    def _again(self) -> Load:
        return type(self)(self.run_dir, self.seed + 1)

    def done_after(self, t: float) -> bool:
        """An operation begun after ``t`` has finished (one begun before may have been
        served by a driver that died since: its death's error comes after)."""
        return bool(self.ops) and self.began > t

    def halt(self) -> None:
        self.stop.set()
        self.join(30)


class HelloLoad(Load):
    name_ = "hello"
    interval = 0.05

    def connect(self) -> None:
        self.conn = cli.operator_connection(self.run_dir, "exp-hello")

    def op(self, i: int) -> int:
        assert self.conn is not None
        ep = ds.retrieve_label(self.conn, "hello")
        for req in (CharReq.OPEN, CharReq.READ):
            r = self.conn.sendrec(ep, Message(req))
            if r.type != Err.OK:
                raise ipc.IpcError(r.type, f"hello {req.name}")
        data = r.get("data")
        text = data if isinstance(data, str) else repr(data)
        if text != GREETING:
            self.corrupted.append((time.time(), _differ(text.encode(), GREETING.encode())))
        return len(GREETING)


class NetLoad(Load):
    """Needs ``echo``: a callable that (re)starts the echo server on B and gives its port."""
    name_ = "net"
    interval = 0.1

    def __init__(self, run_dir: Path, seed: int, peer_ip: str,
                 echo: Callable[[], int]) -> None:
        super().__init__(run_dir, seed)
        self.peer_ip, self.echo = peer_ip, echo
        self.sock: Socket | None = None
        self.rng = random.Random(seed)

    def _again(self) -> Load:
        return NetLoad(self.run_dir, self.seed + 1, self.peer_ip, self.echo)

    def connect(self) -> None:
        port = self.echo()
        self.conn = cli.operator_connection(self.run_dir, "exp-net", privileges="user")
        deadline = time.monotonic() + 10
        while True:
            self.sock = Socket(self.conn)
            try:
                self.sock.connect(self.peer_ip, port)
                return
            except SocketError:  # B's echo server not listening yet
                self.sock.close()
                if time.monotonic() > deadline or self.stop.wait(0.1):
                    raise

    def op(self, i: int) -> int:
        assert self.sock is not None
        data = self.rng.randbytes(OP_BYTES)
        self.sock.sendall(data)
        got = b""
        while len(got) < len(data):
            piece = self.sock.recv()
            if not piece:
                raise SocketError(Err.EIO, "echo", "the echo server closed the connection")
            got += piece
        if got != data:
            self.corrupted.append((time.time(), _differ(got, data)))
        return len(data)

    def disconnect(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except (SocketError, ipc.IpcError):
                pass
            self.sock = None
        super().disconnect()


class DiskLoad(Load):
    name_ = "disk"
    interval = 0.1
    root = "/exp"  # the folder of its files (the RAM disk's load: /ram/exp)

    def __init__(self, run_dir: Path, seed: int) -> None:
        super().__init__(run_dir, seed)
        self.files: Files | None = None
        self.expected: dict[str, str] = {}  # path -> sha256 of what it must hold
        self.rng = random.Random(seed)

    def _again(self) -> Load:
        new = type(self)(self.run_dir, self.seed + 1)
        new.expected = self.expected
        return new

    def connect(self) -> None:
        self.conn = cli.operator_connection(self.run_dir, "exp-disk", privileges="user")
        self.files = Files(self.conn)
        if not self.files.exists(self.root):
            self.files.mkdir(self.root)

    def path(self, i: int) -> str:
        """Operation ``i``'s file: each incarnation its own (one given up may still write its
        own, late), DISK_FILES of them in turn."""
        return f"{self.root}/s{self.seed}-f{i % DISK_FILES}"

    def op(self, i: int) -> int:
        assert self.files is not None
        f = self.files
        path = self.path(i)
        data = self.rng.randbytes(OP_BYTES)
        self.expected.pop(path, None)  # until the write is known done, its content is not
        fd = f.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        try:
            f.write(fd, data)
            f.fsync(fd)
        finally:
            f.close(fd)
        self.expected[path] = hashlib.sha256(data).hexdigest()
        fd = f.open(path, O_RDONLY)
        try:
            got = f.read(fd, OP_BYTES + 1)
        finally:
            f.close(fd)
        if got != data:
            self.corrupted.append((time.time(), _differ(got, data)))
        return 2 * len(data)


def verify(run_dir: Path, expected: dict[str, str]) -> dict[str, Any]:
    """Read every file the disk load left (a rebooted system: from the disk itself)."""
    bad: list[str] = []
    with cli.connected(run_dir, "exp-verify", privileges="user") as conn:
        files = Files(conn)
        for path, digest in sorted(expected.items()):
            try:
                fd = files.open(path, O_RDONLY)
                try:
                    data = files.read(fd, OP_BYTES + 1)
                finally:
                    files.close(fd)
            except FsError as e:
                bad.append(f"{path}: {e}")
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                bad.append(f"{path}: sha256 differs")
    return {"files": len(expected), "bad": bad}


WORKLOADS: dict[str, type[Load]] = {"hello": HelloLoad, "net": NetLoad, "disk": DiskLoad}
