"""No tracebacks to users: a system error under a command or user program is one line on
stderr, in words, and exit status 1; the system stopping under it says so, not what the
shutdown did to the server it was talking to.  And bin/hwctl's knobs."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hw.board_ctl import KNOBS as BOARD_KNOBS
from minikern import cli, ipc, rsctl
from minikern.boot import halt
from minikern.const import Err
from minikern.proto.control import KNOBS
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, service, wait_state
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


def test_crash_refuses_a_core_server_without_force(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    rd = ["--run-dir", str(s.run_dir)]
    ds_pid = service(s, "ds")["pid"]
    r = run("crash", *rd, "ds", "kill")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("crash: ds is a core server: RS cannot restart it, and its failure "
                        "shuts the whole system down; --force to do it\n")
    assert service(s, "ds")["pid"] == ds_pid  # nothing was done
    assert run("crash", *rd, "hello", "kill").returncode == 0  # a service needs no --force
    r = run("crash", *rd, "ds", "kill", "--force")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "crash: ds is a core server: the system will shut down\n"
    assert s.system.kernel.wait(30) == 0  # the system shut itself down, in order


CRASH_LOOP = """
service boom { program tests.services.nosuchmodule; ipc ALL; backoff off; restarts 2 60s; };
"""


def test_boot_detach_reports_a_crash_loop_and_leaves_the_system_to_look_at(
        tmp_path: Path) -> None:
    text = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    start = re.search(r"service rs \{[^}]*args ([^;]*);", text)
    assert start is not None
    conf = tmp_path / "system.conf"
    conf.write_text(text[:start.start(1)] + "hello boom" + text[start.end(1):] + CRASH_LOOP)
    run_dir = tmp_path / "run"
    try:
        r = subprocess.run([sys.executable, str(BIN / "boot"), "--run-dir", str(run_dir),
                            "--config", str(conf), "--detach"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "system up" not in r.stdout
        problems = r.stderr.splitlines()
        assert problems[0].startswith("boot: boom failed: RS gave up after ")
        assert problems[0].endswith(" failure(s) in a row, the last: exception")
        assert problems[1] == (f"boot: the system is up in {run_dir} without them; see "
                               "bin/status LABEL, bin/halt to stop it")
        assert len(problems) == 2
        assert cli.kernel_pid(run_dir) is not None  # left running, for bin/status
        st = run("status", "--run-dir", str(run_dir), "boom")
        assert st.returncode == 3 and "failed" in st.stdout.splitlines()[1]
    finally:
        halt(run_dir)


def test_a_service_still_restarting_at_the_deadline_is_a_crash_loop(make_system: Make) -> None:
    """Not given up on (its backoff waits 20 s), but not up either: reported, not waited for."""
    s = boot_rs(make_system, start="hello agent", agent="period off;")
    loop_conf = s.conf_text.replace("program tests.services.rs_agent;",
                                    "program tests.services.nosuchmodule; backoff 20s;")
    assert loop_conf != s.conf_text
    t = make_system("rs", loop_conf.replace("{", "{{").replace("}", "}}"))
    troubled = t.system.wait_services(timeout=3.0)
    assert [(x["label"], x["state"]) for x in troubled] == [("agent", "restarting")]
    assert troubled[0]["failures"] >= 2 and troubled[0]["restart_in"] > 0
    assert s.system.wait_services(timeout=10.0) == []  # the healthy system settles
