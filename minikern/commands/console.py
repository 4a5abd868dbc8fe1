"""bin/console: attach this terminal to the system's console line (COM1), like `virsh console`.

What you type goes to the system's serial line byte for byte (the tty driver
does the echo and the line editing); what the system writes there is shown.
The terminal is put in raw mode for the session and restored however it ends
(the detach key, the line closing, SIGTERM, SIGHUP).  Ctrl-C is a key like
any other: it goes to the system, where the tty driver turns it into an
interrupt for the program reading the console.

Detach with Ctrl-] (the escape character, as virsh's; --escape changes it:
a letter X means Ctrl-X).  The system keeps running; attach again at any
time.  The board takes one console client at a time: while another is
attached this one is refused (exit 1).  Standard input that is not a
terminal (a pipe) is sent as it is; at its end the command shows what the
system answers until the line has been quiet for a second, and exits
(`printf 'ls\r' | bin/console`).
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import termios
import tty
from pathlib import Path
from types import FrameType

from minikern import cli, params

SOCKET_NAME = params.COM1_SOCKET  # hw/uart.py's SocketBackend, in the run directory
DEFAULT_ESCAPE = "]"
PIPE_QUIET = 1.0  # seconds of silence on the line that end a piped session after its input
REFUSED_WAIT = 0.2  # seconds to wait for a first byte or the board's close (a refused client)
CHUNK = 4096


def escape_byte(key: str) -> int:
    """The byte Ctrl-``key`` sends (``]`` -> 0x1D); ValueError for a key with no control code."""
    if len(key) != 1 or not 0x40 <= ord(key.upper()) <= 0x5F:
        raise ValueError(f"no Ctrl- code for {key!r} (a letter or one of @[\\]^_)")
    return ord(key.upper()) & 0x1F


def split_at_escape(data: bytes, escape: int) -> tuple[bytes, bool]:
    """What to send of ``data`` and whether the person asked to detach (the escape byte and
    anything typed after it are not sent)."""
    at = data.find(bytes([escape]))
    return (data, False) if at < 0 else (data[:at], True)


class Hangup(Exception):
    """SIGTERM or SIGHUP: end the session, restoring the terminal."""


def _hangup(signum: int, frame: FrameType | None) -> None:
    raise Hangup()


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("console", __doc__)
    cmd.add_argument("--escape", default=DEFAULT_ESCAPE,
                     help="the detach key, pressed with Ctrl (default: ] for Ctrl-])")
    return cmd.run(argv, console)


def console(a: argparse.Namespace) -> int:
    try:
        escape = escape_byte(a.escape)
    except ValueError as e:
        return cli.fail("console", str(e))
    path = Path(a.run_dir) / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as e:
        sock.close()
        return cli.fail("console", f"no console line at {path} ({e.strerror}): is a system "
                        "running there, booted with --serial socket?")
    with sock:
        if refused(sock):
            return cli.fail("console", "another console client is attached (the board takes "
                            "one at a time)")
        stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
        name = "^" + chr(escape + 0x40)
        if os.isatty(stdin):
            print(f"Connected to the console of {a.run_dir}\r\nEscape character is {name}",
                  flush=True)
        return session(sock, stdin, stdout, escape)


def refused(sock: socket.socket) -> bool:
    """The board accepts a second client and closes it at once: an EOF before any byte."""
    readable, _, _ = select.select([sock], [], [], REFUSED_WAIT)
    if not readable:
        return False
    try:
        first = sock.recv(CHUNK, socket.MSG_PEEK)
    except OSError:
        return True
    return not first


def session(sock: socket.socket, stdin: int, stdout: int, escape: int) -> int:
    """Relay until detach, the line closing or a hangup; the terminal's mode is put back."""
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    old = {s: signal.signal(s, _hangup) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if saved is not None:
            tty.setraw(stdin)
        return relay(sock, stdin, stdout, escape, interactive=saved is not None)
    except Hangup:
        return cli.EXIT_OK
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            os.write(stdout, b"\r\n")
        for s, handler in old.items():
            signal.signal(s, handler)


def relay(sock: socket.socket, stdin: int, stdout: int, escape: int, interactive: bool) -> int:
    while True:
        readable, _, _ = select.select([sock.fileno(), stdin], [], [])
        if sock.fileno() in readable:
            data = sock.recv(CHUNK)
            if not data:
                os.write(stdout, b"\r\nconsole: the line was closed (the system stopped)\r\n"
                         if interactive else b"")
                return cli.EXIT_FAILED
            os.write(stdout, data)
        if stdin in readable:
            data = os.read(stdin, CHUNK)
            if not data:  # a pipe ended: show the answers until the line is quiet
                while select.select([sock], [], [], PIPE_QUIET)[0] and (data := sock.recv(CHUNK)):
                    os.write(stdout, data)
                return cli.EXIT_OK
            send, detach = split_at_escape(data, escape)
            if send:
                sock.sendall(send)
            if detach:
                return cli.EXIT_OK
