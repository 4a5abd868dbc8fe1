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
        wait_for(lambda: "started hello" in (run_dir / "console.log").read_text(),
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


def started_order(s: SystemUnderTest) -> list[str]:
    lines = s.console().splitlines()
    return [ln for ln in lines if "board attached" in ln or "started echo" in ln
            or "the board did not join" in ln]


def test_the_boot_image_waits_for_the_board_to_join_the_bus(make_system) -> None:  # type: ignore[no-untyped-def]
    """The machine exists before any driver runs: nothing after the board starts until the
    board is on the bus, however slowly it comes up."""
    s = make_system(boot="hw echo", conf=BOARD_CONF.replace("{board}", "board 0.5"))
    wait_for(lambda: len(started_order(s)) == 2, what="the board and echo")
    order = started_order(s)
    assert "board attached" in order[0] and "started echo" in order[1], order


def test_a_board_that_dies_before_joining_does_not_stop_the_boot(tmp_path: Path) -> None:
    conf = tmp_path / "system.conf"
    conf.write_text(BOARD_CONF.replace("{board}", "no-such-mode").format(boot="hw echo"))
    system = System(tmp_path / "run", conf)
    try:
        wait_for(lambda: "started echo" in system.console.read_text(), what="echo started")
        assert "board attached" not in system.console.read_text()
    finally:
        system.halt()


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
