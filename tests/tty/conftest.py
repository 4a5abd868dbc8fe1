"""Booted systems with the console: the board's COM1 on its socket, the tty driver (and for the
shell's tests, the storage stack and the shell), and ``Line``, a person at the other end of the
serial line who types and reads the screen.

    def test_x(console: Console) -> None:
        line = console.line()                # connected to run_dir/com1.sock
        line.type(b"ls\\r")
        line.expect(b"notes.txt")            # waits (with a deadline) for it on the screen
"""
from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minikern import ipc, params, rsctl
from minikern.cli import REPO_ROOT
from minikern.const import CharReq, Err, RsReq
from minikern.deadline import wait_for
from minikern.proto import Message
from tests.conftest import SystemUnderTest, conf_entry
from tests.storage.conftest import Storage, make_storage  # noqa: F401 (a fixture, used below)

UP_DEADLINE = 60.0  # seconds for the driver (and the shell) to come up on a loaded machine
SCREEN_DEADLINE = 30.0  # seconds for an expected text to show on the screen

CONF = """
boot hw rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service hw {{ program hw.board; args --nic none --hz 60 --serial socket; ipc SYSTEM rs; }};
service rs {{ program services.rs.main; args tty;
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; period 2s; }};
"""


class Screen:
    """What a person's screen showed so far, read all the time by a thread from ``fd``
    (``recv(n)`` takes what is there), and what they type."""

    def __init__(self, fd: int, recv: Callable[[int], bytes]) -> None:
        self.fd, self.recv = fd, recv
        self.screen = bytearray()
        self.seen = 0  # ``expect`` looks from here on
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            readable, _, _ = select.select([self.fd], [], [], 0.1)
            if readable:
                try:
                    data = self.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.screen += data

    def shown(self) -> bytes:
        with self.lock:
            return bytes(self.screen)

    def expect(self, pattern: bytes, timeout: float = SCREEN_DEADLINE) -> bytes:
        """Wait until ``pattern`` (a regex) shows after what earlier expects matched; the
        screen from there to the end of the match."""
        rx = re.compile(pattern)
        try:
            found = wait_for(lambda: rx.search(self.shown(), self.seen), timeout,
                             f"{pattern!r} on the screen")
        except AssertionError:
            raise AssertionError(f"{pattern!r} not on the screen; it shows "
                                 f"{self.shown()[self.seen:]!r}") from None
        assert found is not None
        text = self.shown()[self.seen:found.end()]
        self.seen = found.end()
        return text

    def halt_reader(self) -> None:
        self.stop.set()
        self.reader.join(timeout=5)


class Line(Screen):
    """The person's end of COM1: what they type, and what the screen showed so far.

    The thread reads the line all the time, as a terminal does: the UART sends at once and
    the board drops what its socket cannot take, and a Unix socket holds only a few hundred
    one-byte sends that nobody reads."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        super().__init__(self.sock.fileno(), self.sock.recv)

    def type(self, keys: bytes) -> None:
        self.sock.sendall(keys)

    def close(self) -> None:
        self.halt_reader()
        self.sock.close()


class Terminal(Screen):
    """bin/console run on a pseudo terminal, as a person runs it: ``type`` presses keys on
    the terminal, the screen is what bin/console prints there."""

    def __init__(self, run_dir: Path) -> None:
        self.master, self.slave = os.openpty()
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            [str(REPO_ROOT / "bin" / "console"), "--run-dir", str(run_dir)],
            stdin=self.slave, stdout=self.slave, stderr=self.slave, start_new_session=True)
        master = self.master
        super().__init__(master, lambda n: os.read(master, n))

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def mode(self) -> list[object]:
        return termios.tcgetattr(self.slave)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.halt_reader()
        os.close(self.master)
        os.close(self.slave)


class Console:
    """A booted system with COM1 on its socket and the tty driver (and more, as configured)."""

    def __init__(self, system: SystemUnderTest) -> None:
        self.s = system
        self.lines: list[Line | Terminal] = []

    @property
    def run_dir(self) -> Path:
        return self.s.run_dir

    def terminal(self) -> Terminal:
        term = Terminal(self.run_dir)
        self.lines.append(term)
        return term

    def line(self) -> Line:
        line = Line(self.run_dir / params.COM1_SOCKET)
        self.lines.append(line)
        return line

    def wait_up(self, label: str, old: int | None = None) -> int:
        """The endpoint of ``label`` once RS says it is up (at another endpoint than ``old``):
        RS's word, for a program that never receives (the shell) never shows ``ready``."""
        def up() -> int | None:
            conn = self.s.connect("waiter", "operator")
            try:
                services = rsctl.call(conn, RsReq.STATUS).get("services", [])
            finally:
                conn.close()
                self.s.conns.remove(conn)
            for svc in services:
                if svc["label"] == label and svc["state"] == "up" and svc["endpoint"] != old:
                    return int(svc["endpoint"])
            return None
        try:
            endpoint = wait_for(up, UP_DEADLINE, f"{label} up")
        except AssertionError as e:
            raise AssertionError(f"{e}; the console log ends:\n{self.s.console()[-3000:]}") \
                from None
        assert endpoint is not None
        return endpoint

    def client(self) -> ipc.Connection:
        return self.s.connect("tester", "operator")

    def call(self, conn: ipc.Connection, rtype: CharReq, **fields: object) -> Message:
        return conn.sendrec(self.s.endpoint_of("tty"), Message(rtype, {"minor": 0, **fields}))

    def read(self, conn: ipc.Connection, count: int) -> Message:
        """A READ (for ``SystemUnderTest.background``: it may wait long)."""
        return self.call(conn, CharReq.READ, count=count)

    def opened(self) -> ipc.Connection:
        conn = self.client()
        r = self.call(conn, CharReq.OPEN, access=3)
        assert r.type == Err.OK, r
        return conn

    def close(self) -> None:
        for line in self.lines:
            line.close()


@pytest.fixture
def console(make_system: Callable[..., SystemUnderTest]) -> Iterator[Console]:
    c = Console(make_system("hw rs ds", CONF + conf_entry("tty")))
    c.wait_up("tty")
    yield c
    c.close()


@pytest.fixture
def shell(make_storage: Callable[..., Storage]) -> Iterator[Console]:  # noqa: F811
    """The storage stack, the printer and its spooler, the tty driver and the shell (its first
    prompt not yet read)."""
    st = make_storage(rs_args="at_wini mfs vfs printer lpd tty sh",
                      extra_conf="".join(conf_entry(n) for n in ("printer", "lpd", "tty", "sh")))
    c = Console(st.s)
    c.wait_up("sh")
    yield c
    c.close()
