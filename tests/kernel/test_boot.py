"""bin/boot and bin/halt as a person uses them, and no orphans in any way the system ends."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from minikern import cli
from minikern.boot import System
from minikern.const import KCall
from tests.conftest import TEST_CONF, SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(90)
BIN = cli.REPO_ROOT / "bin"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def system_pids(run_dir: Path) -> list[int]:
    conn = cli.operator_connection(run_dir, "test")
    try:
        pids = [p["pid"] for p in conn.kcall(KCall.GETINFO)["procs"] if p["pid"] != os.getpid()]
    finally:
        conn.close()
    kernel = cli.kernel_pid(run_dir)
    assert kernel is not None
    return [kernel, *pids, *(c.pid for c in psutil.Process(kernel).children())]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout)


def test_detach_then_halt_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    r = run(str(BIN / "boot"), "--run-dir", str(run_dir), "--detach")
    assert r.returncode == 0, r.stderr
    assert "system up" in r.stdout
    pids = system_pids(run_dir)
    assert len(pids) >= 3  # kernel, the boot image, templates
    again = run(str(BIN / "boot"), "--run-dir", str(run_dir), "--detach")
    assert again.returncode == 1 and "already running" in again.stderr
    r = run(str(BIN / "halt"), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert all(gone(p) for p in pids)  # halt returned only once every process was gone
    # ... and each went by itself, at its SHUTDOWN, none killed at the grace's end (the file
    # servers' last CLOSE once waited for a successor of a driver that had exited)
    console = (run_dir / "console.log").read_text()
    exits = re.findall(r"(\S+) \(endpoint \d+, pid \d+\) exited with (.*)", console)
    assert exits and all(how == "status 0" for _, how in exits), exits
    assert run(str(BIN / "halt"), "--run-dir", str(run_dir)).returncode == 2  # none to halt
    assert oct(run_dir.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_foreground_boot_shuts_down_cleanly(tmp_path: Path, signo: int) -> None:
    """Ctrl-C and SIGTERM alike: the system is halted in order and boot itself exits 0
    (not killed by the signal, not leaving the system up)."""
    run_dir = tmp_path / "run"
    boot = subprocess.Popen([sys.executable, str(BIN / "boot"), "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: cli.kernel_pid(run_dir) and (run_dir / "operator.key").exists(),
                 what="kernel up")
        # a deadline for a hang, not a time asserted: the fresh-clone CI of the real-time tree
        # once passed 10 s here (cause not found; two other runs passed)
        wait_for(lambda: "started hello" in (run_dir / "console.log").read_text(), 30,
                 what="boot image up")
        pids = system_pids(run_dir)
        boot.send_signal(signo)
        out, _ = boot.communicate(timeout=30)
    finally:
        if boot.poll() is None:
            boot.kill()
            boot.wait()
    assert boot.returncode == 0, out
    assert "started hello" in out and "shutting down" in out and "halted" in out
    assert "Traceback" not in out
    for marker in ("boot", "halt"):  # the event stream's lines, as bin/logs prints them
        assert re.search(rf"^\d{{4}}-\d\d-\d\d \S+ kernel: +{marker} +kernel +id=", out, re.M), out
    wait_for(lambda: all(gone(p) for p in pids), what="every process gone")
    assert cli.kernel_pid(run_dir) is None


def test_components_die_with_a_killed_kernel(system: SystemUnderTest) -> None:
    pids = system_pids(system.run_dir)
    os.kill(system.system.kernel.pid, signal.SIGKILL)
    system.system.kernel.wait()
    wait_for(lambda: all(gone(p) for p in pids), what="components exited after the kernel")


def test_operator_tools_notice_a_dead_kernel(system: SystemUnderTest) -> None:
    from minikern.ipc import KernelGone
    c = system.connect("c", "client")
    fut = system.background(c.receive)
    wait_for(lambda: system.blocked(c.endpoint, "recv"))
    os.kill(system.system.kernel.pid, signal.SIGKILL)
    with pytest.raises(KernelGone):
        fut.result(15)


BOARD_CONF = TEST_CONF + "service hw {{ program tests.kernel.agent; args {board}; ipc SYSTEM; }};\n"


def console_lines(system: System, *marks: str) -> list[str]:
    return [ln for ln in system.console.read_text().splitlines() if any(m in ln for m in marks)]


def test_the_kernel_starts_the_boot_image_in_order_waiting_for_nothing(tmp_path: Path) -> None:
    """Mechanism only: the kernel starts each boot process in turn and never waits on one (when
    a process may begin its work is for its manager to say, as RS does for the drivers), so
    echo runs before a slow board has joined the bus."""
    conf = tmp_path / "system.conf"
    conf.write_text(BOARD_CONF.replace("{board}", "board 1.0").format(boot="hw echo"))
    system = System(tmp_path / "run", conf)
    try:
        wait_for(lambda: console_lines(system, "board attached"), what="the board on the bus")
        marks = ["started hw", "started echo", "board attached"]
        order = [m for ln in console_lines(system, *marks) for m in marks if m in ln]
        assert order == marks
    finally:
        system.halt()


def test_a_board_that_dies_first_does_not_stop_a_boot_without_rs(tmp_path: Path) -> None:
    conf = tmp_path / "system.conf"
    conf.write_text(BOARD_CONF.replace("{board}", "board exit").format(boot="hw echo"))
    system = System(tmp_path / "run", conf)
    try:
        wait_for(lambda: console_lines(system, "started echo"), what="echo started")
        wait_for(lambda: console_lines(system, "hw (endpoint"), what="the board's exit")
        assert not console_lines(system, "board attached")
    finally:
        system.halt()


def test_halt_ends_a_process_that_never_takes_its_shutdown(system: SystemUnderTest) -> None:
    """A stopped process cannot act on SHUTDOWN; halting kills it after the grace, and the
    kernel still ends in order (its sockets removed), with every process gone."""
    pids = system_pids(system.run_dir)
    echo = next(p["pid"] for p in system.info()["procs"] if p["label"] == "echo")
    os.kill(echo, signal.SIGSTOP)
    assert system.system.halt() is True
    assert all(gone(p) for p in pids)  # halt returned only once every process was gone
    assert "halted" in system.console()
    assert not list(system.run_dir.glob("*.sock")) and cli.kernel_pid(system.run_dir) is None


def test_boot_config_option_boots_that_configuration(tmp_path: Path) -> None:
    """--config FILE is what boots: only its boot image runs (not etc/system.conf's), and it
    is the configuration the run directory keeps for the other commands."""
    import json

    from minikern.boot import halt
    conf_text = TEST_CONF.format(boot="echo")
    conf = tmp_path / "small.conf"
    conf.write_text(conf_text)
    run_dir = tmp_path / "run"
    try:
        r = run(str(BIN / "boot"), "--run-dir", str(run_dir), "--config", str(conf),
                "--detach")
        assert r.returncode == 0, r.stderr
        ps = run(str(BIN / "ps"), "--run-dir", str(run_dir), "--json")
        assert ps.returncode == 0, ps.stderr
        labels = sorted(row["label"] for row in json.loads(ps.stdout))
        assert labels == ["echo", "kernel"]
        assert (run_dir / "system.conf").read_text() == conf_text
        console = (run_dir / "console.log").read_text()
        assert "started echo" in console and "started hello" not in console
        pids = system_pids(run_dir)
    finally:
        halt(run_dir)  # a no-op when nothing runs there
    wait_for(lambda: all(gone(p) for p in pids), what="every process gone")
