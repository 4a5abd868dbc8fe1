"""The console's shell end to end: a person runs bin/console on a terminal and types the
shell's commands; they run through VFS, RS and the kernel of a booted system."""
from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from minikern import params
from minikern.cli import REPO_ROOT
from minikern.deadline import wait_for
from tests.tty.conftest import Console, Line

pytestmark = pytest.mark.timeout(240)

PROMPT = rb"minikern:/\$ "


def command(term: Line, line: bytes) -> bytes:
    """Type ``line`` and Enter; what the shell printed before its next prompt."""
    term.type(line + b"\r")
    pattern = rb"(?s)" + re.escape(line) + rb"\r\n(.*?)" + PROMPT
    found = re.search(pattern, term.expect(pattern))
    assert found is not None
    return found.group(1)


def test_the_shells_commands_through_bin_console(shell: Console) -> None:
    term = shell.terminal()
    term.expect(rb"Escape character is \^\]")
    term.type(b"\r")  # the first prompt went out before anyone was attached
    term.expect(PROMPT)
    assert command(term, b"mkdir /docs") == b""
    assert command(term, b"echo hello, console > /docs/a.txt") == b""
    assert command(term, b"cat /docs/a.txt") == b"hello, console\r\n"
    assert command(term, b"echo again >> /docs/a.txt") == b""
    assert command(term, b"cp /docs/a.txt /docs/b.txt") == b""
    assert command(term, b"cat /docs/b.txt") == b"hello, console\r\nagain\r\n"
    assert command(term, b"ls /docs") == b"a.txt\r\nb.txt\r\n"
    assert command(term, b"rm /docs/a.txt") == b""
    assert command(term, b"ls") == b"docs/\r\n"
    assert command(term, b"ls /docs") == b"b.txt\r\n"
    assert command(term, b"cat /docs/a.txt").startswith(b"cat: /docs/a.txt: ")
    ps = command(term, b"ps")
    for label in (b"tty", b"sh", b"vfs", b"mfs", b"at_wini"):
        assert re.search(rb"\r\n" + label + rb" +\d+ +\d+ +up ", ps), (label, ps)
    assert b"tty: up" in command(term, b"service tty")
    assert re.fullmatch(rb"request id is \d+ \(21 bytes\)\r\n", command(term, b"lp /docs/b.txt"))
    paper = shell.run_dir / params.LPT1_PAPER
    wait_for(lambda: paper.exists() and paper.read_bytes() == b"hello, console\nagain\n", 60,
             "the file on the paper")
    assert command(term, b"frobnicate").startswith(b"frobnicate: command not found")
    term.type(b"ech\x7f\x7f\x7fecho erased\r")  # erase at the shell's prompt
    term.expect(rb"\r\nerased\r\n" + PROMPT)
    term.type(b"half a line\x03")  # ^C throws the line away: a new prompt
    term.expect(rb"\^C\r\n" + PROMPT)
    before = term.before
    term.type(b"\x1d")  # Ctrl-]: detach
    assert term.proc.wait(timeout=30) == 0
    assert term.mode() == before  # the terminal is as it was
    assert shell.s.endpoint_of("sh")  # the system runs on


def test_the_shell_carries_on_across_a_tty_driver_restart(shell: Console) -> None:
    line = shell.line()
    line.type(b"\r")
    line.expect(PROMPT)
    assert command(line, b"echo first > /f") == b""
    old = shell.s.endpoint_of("tty")
    pid = next(p["pid"] for p in shell.s.info()["procs"] if p["label"] == "tty")
    line.type(b"cat ")  # taken in by the driver (echoed) before the kill
    line.expect(b"cat ")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(p["endpoint"] != old for p in shell.s.info()["procs"]), 30,
             "the driver gone")
    line.type(b"/f\r")  # typed while no driver runs: waits in the UART
    shell.wait_up("tty", old)
    shown = line.expect(rb"first\r\n" + PROMPT)
    assert shown.count(b"first") == 1
    assert command(line, b"echo still here") == b"still here\r\n"
    old_sh = shell.s.endpoint_of("sh")  # now the shell dies, waiting in its read
    os.kill(next(p["pid"] for p in shell.s.info()["procs"] if p["label"] == "sh"), signal.SIGKILL)
    shell.wait_up("sh", old_sh)
    line.expect(PROMPT)  # the new shell's first prompt
    assert command(line, b"echo new shell") == b"new shell\r\n"  # its read got the line


def test_bin_console_reads_a_pipe_and_shows_the_answers(shell: Console) -> None:
    got = subprocess.run([str(REPO_ROOT / "bin" / "console"), "--run-dir", str(shell.run_dir)],
                         input=b"echo piped\r", capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert b"echo piped\r\npiped\r\n" in got.stdout
