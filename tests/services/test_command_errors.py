"""No tracebacks to users: a system error under a command or user program is one line on
stderr, in words, and exit status 1; the system stopping under it says so, not what the
shutdown did to the server it was talking to.  And bin/hwctl's knobs."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hw.board_ctl import KNOBS as BOARD_KNOBS
from minikern import cli, ipc, rsctl
from minikern.const import Err
from minikern.proto.control import KNOBS
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import wait_state
from tests.services.test_commands import BIN, run, vanished_system
from userland.socket import INET_GONE, SocketError

pytestmark = pytest.mark.timeout(90)
Make = Callable[..., SystemUnderTest]
__all__ = ["vanished_system"]  # a fixture, used by name


def test_an_error_with_a_meaning_is_said_in_words_and_named() -> None:
    assert cli.explain(SocketError(Err.ECONNRESET, "recv")) == (
        "recv: " + cli.MEANINGS["ECONNRESET"] + " (ECONNRESET)")
    assert cli.explain(ipc.IpcError(Err.ECALLDENIED, "sendrec")) == (
        "sendrec: " + cli.MEANINGS["ECALLDENIED"] + " (ECALLDENIED)")
    assert cli.explain(ipc.IpcError(Err.ECONNREFUSED)) == (
        cli.MEANINGS["ECONNREFUSED"] + " (ECONNREFUSED)")
    # RS's refusals carry RS's reason, and a socket error its own: both as they are.
    assert cli.explain(rsctl.RsError(Err.EBUSY, "hello is up")) == "EBUSY: hello is up"
    gone = SocketError(Err.EDEADSRCDST, "accept", INET_GONE)
    assert cli.explain(gone) == f"accept: {INET_GONE} (EDEADSRCDST)"
    assert cli.explain(ipc.IpcError(Err.EINVAL, "x")) == "x: EINVAL"  # no meaning: the name


def test_a_refused_call_in_a_command_is_one_line_and_status_1(
        capsys: pytest.CaptureFixture[str]) -> None:
    def reset(_: object) -> int:
        raise SocketError(Err.ECONNRESET, "recv")

    cmd = cli.Command("probe", "probe: a command", run_dir=False, failures=(SocketError,))
    assert cmd.run([], reset) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"probe: recv: {cli.MEANINGS['ECONNRESET']} (ECONNRESET)\n"


@pytest.fixture
def full_system(make_system: Make) -> Iterator[SystemUnderTest]:
    """etc/system.conf as bin/boot boots it (INET and its driver, no wire)."""
    text = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    s = make_system("", text.replace("{", "{{").replace("}", "}}"))
    wait_state(s, "inet", "up", timeout=30)
    yield s


def start(s: SystemUnderTest, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(BIN / args[0]), "--run-dir", str(s.run_dir),
                             *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def waiting_on_inet(s: SystemUnderTest, label: str) -> bool:
    """True once the user program ``label`` is blocked in a call to INET (bin/ps -l's IPC)."""
    rows = json.loads(run("ps", "--run-dir", str(s.run_dir), "--json").stdout or "[]")
    return any(r["label"] == label and r["ipc"] == "reply inet" for r in rows)


def finish(p: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, out, err


def test_inet_restarting_under_nc_is_one_line_naming_inet(full_system: SystemUnderTest) -> None:
    s = full_system
    nc = start(s, "nc", "-l", "5000")
    try:
        wait_for(lambda: waiting_on_inet(s, "nc"), what="nc blocked in accept")
    finally:
        refresh = run("service", "--run-dir", str(s.run_dir), "refresh", "inet")
    assert refresh.returncode == 0, refresh.stderr
    code, out, err = finish(nc)
    assert (code, out) == (1, "")
    assert err == f"nc: accept: {INET_GONE} (EDEADSRCDST)\n"


@pytest.mark.parametrize("program", [["echod", "7"], ["nc", "-l", "7"]])
def test_the_system_halting_under_a_user_program_says_the_system_stopped(
        full_system: SystemUnderTest, program: list[str]) -> None:
    """The kernel answers a stopping system's tools EDEADSRCDST (INET is not what failed)."""
    s = full_system
    p = start(s, *program)
    try:
        wait_for(lambda: waiting_on_inet(s, program[0]), what=f"{program[0]} blocked in accept")
    finally:
        s.system.halt()
    code, _, err = finish(p)
    assert (code, err.splitlines()[-1:]) == (1, [f"{program[0]}: the system stopped "
                                                "(its kernel is gone)"]), err
    assert "Traceback" not in err


def test_hwctl_knobs_are_the_boards_and_each_has_a_meaning() -> None:
    assert set(KNOBS) == set(BOARD_KNOBS)
    r = run("hwctl", "knobs")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[::2]] == list(KNOBS)
    assert all(ln.startswith(" ") and ln.strip() for ln in lines[1::2])
    assert json.loads(run("hwctl", "knobs", "--json").stdout)["nic.link"]["value"] == "true|false"


def test_hwctl_refuses_an_unknown_knob_and_a_value_that_is_not_json(
        vanished_system: Path) -> None:
    rd = ["--run-dir", str(vanished_system)]
    r = run("hwctl", *rd, "set", "nic.cable", "true")
    assert (r.returncode, r.stderr) == (1, "hwctl: no knob 'nic.cable'; `hwctl knobs` lists them\n")
    r = run("hwctl", *rd, "set", "nic.link", "yes please")
    assert r.returncode == 2 and "not a JSON value" in r.stderr
    r = run("hwctl", *rd, "stats")  # a kernel pid alive, but no board: one line
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("hwctl: cannot reach the board's control socket (")
