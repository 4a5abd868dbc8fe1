"""The tty driver in a booted system, through the real UART model: a person types on COM1's
socket (tests/tty/conftest.Line) while a process of the system reads and writes the console."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from minikern.cli import REPO_ROOT
from minikern.const import CDEV_MAX_IO, CharReq, Err
from minikern.deadline import wait_for
from tests.tty.conftest import Console

pytestmark = pytest.mark.timeout(120)


def test_canonical_input_with_erase_is_echoed_and_read_as_one_line(console: Console) -> None:
    conn = console.opened()
    line = console.line()
    reply = console.s.background(console.read, conn, 100)
    wait_for(lambda: console.s.blocked(conn.endpoint, "sendrec-recv"), 30, "the read waiting")
    line.type(b"cax\x7f")
    line.type(b"t notes\r")
    got = reply.result(timeout=30)
    assert got.type == Err.OK and got["data"] == b"cat notes\n"
    line.expect(rb"cax\x08 \x08t notes\r\n")


def test_a_read_waits_until_the_line_is_ended(console: Console) -> None:
    conn = console.opened()
    line = console.line()
    reply = console.s.background(console.read, conn, 100)
    wait_for(lambda: console.s.blocked(conn.endpoint, "sendrec-recv"), 30, "the read waiting")
    line.type(b"no end yet")
    line.expect(b"no end yet")  # echoed: the driver has it, and the read still waits
    assert not reply.done()
    assert console.s.blocked(conn.endpoint, "sendrec-recv")
    line.type(b"\r")
    assert reply.result(timeout=30)["data"] == b"no end yet\n"


def test_raw_input_without_echo(console: Console) -> None:
    conn = console.opened()
    line = console.line()
    r = console.call(conn, CharReq.IOCTL, request="TCSETS",
                     arg={"icanon": False, "echo": False, "vmin": 3})
    assert r.type == Err.OK and r["termios"]["icanon"] is False
    reply = console.s.background(console.read, conn, 10)
    line.type(b"\x7fa")
    line.type(b"\x15")
    assert reply.result(timeout=30)["data"] == b"\x7fa\x15"
    r = console.call(conn, CharReq.WRITE, data=b"shown\n")
    assert r.type == Err.OK and r["count"] == 6
    line.expect(b"shown\r\n")
    assert b"a" not in line.shown()  # no echo


def test_output_and_the_bad_requests(console: Console) -> None:
    conn = console.opened()
    line = console.line()
    text = b"".join(b"line %d of the console's output\n" % i for i in range(60))
    r = console.call(conn, CharReq.WRITE, data=text)
    assert r.type == Err.OK and r["count"] == len(text)
    line.expect(rb"line 59 of the console's output\r\n")
    assert line.shown() == text.replace(b"\n", b"\r\n")
    assert console.call(conn, CharReq.OPEN, minor=3).type == Err.ENXIO
    assert console.call(conn, CharReq.IOCTL, request="DIOCGETP").type == Err.ENOTTY
    assert console.call(conn, CharReq.WRITE, data=b"x" * (CDEV_MAX_IO + 1)).type == Err.E2BIG
    other = console.client()
    assert console.call(other, CharReq.READ, count=1).type == Err.EBADF  # never opened
    assert console.call(conn, CharReq.WRITE, data=b"still here\n").type == Err.OK
    line.expect(b"still here")


def test_input_typed_across_a_driver_restart_is_delivered_once(console: Console) -> None:
    conn = console.opened()
    line = console.line()
    line.type(b"before the kill, ")
    line.expect(b"before the kill, ")  # the driver took it in (it echoed it)
    old = console.s.endpoint_of("tty")
    pid = next(p["pid"] for p in console.s.info()["procs"] if p["label"] == "tty")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(p["endpoint"] != old for p in console.s.info()["procs"]), 30,
             "the driver gone")
    line.type(b"typed while it was down\r")  # waits in the UART
    console.wait_up("tty", old)
    assert console.call(conn, CharReq.READ, count=100).type == Err.ERESTART  # reopen first
    assert console.call(conn, CharReq.OPEN, access=3).type == Err.OK
    got = console.call(conn, CharReq.READ, count=100)
    assert got["data"] == b"before the kill, typed while it was down\n"
    reply = console.s.background(console.read, conn, 100)
    line.type(b"next\r")
    assert reply.result(timeout=30)["data"] == b"next\n"  # nothing doubled in between


def test_bin_console_is_refused_while_another_client_is_attached(console: Console) -> None:
    line = console.line()
    line.type(b"x")  # the board has accepted this client once it took a byte from it
    line.expect(b"x")
    got = subprocess.run([str(REPO_ROOT / "bin" / "console"), "--run-dir", str(console.run_dir)],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert got.returncode == 1 and "another console client is attached" in got.stderr
