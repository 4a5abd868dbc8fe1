"""The operator commands, run as a person runs them: bin/ps, bin/service, bin/crash, bin/logs;
and the frame they share: one launcher, one --help, one message and exit status without a
system, one line for a system error."""
from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minikern import cli, params
from minikern.boot import halt
from tests.conftest import TEST_CONF, SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, events, service, wait_event, wait_state

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]
BIN = cli.REPO_ROOT / "bin"
LAUNCHER = BIN / "_launch"


def run(cmd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BIN / cmd), *args],
                          capture_output=True, text=True, timeout=30)


def run_directly(path: Path, *args: str, cwd: Path,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """As a shell runs a command: the file itself, its #! line choosing the interpreter."""
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env=env)


COMMANDS = ["boot", "halt", "ps", "service", "crash", "logs", "hwctl", "nc", "echod", "ifconfig",
            "status", "ds", "mount", "top", "lp", "lpq", "experiment", "console"]
# Each with arguments that would make it talk to the system (all but boot, bench and
# experiment, which boot their own).
NEEDS_SYSTEM = {"halt": [], "ps": [], "service": ["up", "hello"], "crash": ["hello", "kill"],
                "hwctl": ["stats"], "nc": ["-l", "7"], "echod": ["7"], "ifconfig": [],
                "status": [], "ds": ["list"], "mount": ["/nonexistent/mnt"],
                "top": ["-b", "-n", "1"], "lp": ["/dev/null"], "lpq": [], "console": []}


def test_the_list_of_commands_is_complete() -> None:
    """A command added to bin/ without being added here would escape the --help tests; each
    is a link to the one launcher, whose table names the module that runs it."""
    table = runpy.run_path(str(LAUNCHER), run_name="launcher_table")["COMMANDS"]
    names = sorted(p.name for p in BIN.iterdir() if p != LAUNCHER)
    assert names == sorted([*COMMANDS, "bench"]) == sorted(table)
    for name in names:
        assert (BIN / name).is_symlink() and (BIN / name).resolve() == LAUNCHER.resolve()


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd: str) -> None:
    r = run(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {cmd} ") and "--run-dir" in r.stdout


def test_bench_has_help_for_itself_and_each_benchmark() -> None:
    """bench boots private systems in temporary directories, so it has no --run-dir."""
    r = run("bench", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: bench ")
    for name in ("ipc", "devio", "recovery", "net", "cli", "idle", "print"):
        assert name in r.stdout
        sub = run("bench", name, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: bench {name} ")
        assert "--json" in sub.stdout


@pytest.mark.parametrize("cmd", sorted(NEEDS_SYSTEM))
def test_commands_without_a_system_say_so_in_the_same_words(cmd: str, tmp_path: Path) -> None:
    """Exit status 2 (nothing attempted) and one line naming the directory given, not the
    default; the run directory is accepted after a subcommand too."""
    r = run(cmd, "--run-dir", str(tmp_path), *NEEDS_SYSTEM[cmd])
    assert (r.returncode, r.stderr) == (2, f"{cmd}: no system is running in {tmp_path}\n")
    assert r.stdout == ""


def test_logs_without_a_log_say_so(tmp_path: Path) -> None:
    r = run("logs", "--run-dir", str(tmp_path))
    assert r.returncode == 2 and f"no event log in {tmp_path}" in r.stderr


@pytest.fixture
def vanished_system(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A run directory whose kernel pid is alive but whose system is not there (no operator
    key, no socket): what a command finds when the system halts under it.  The stand-in
    runs as bin/boot starts a kernel (``python -m minikern.kernel RUN_DIR``), so the pid
    file's check (minikern/rundir.py) takes it for the kernel; it only sleeps."""
    fake = tmp_path_factory.mktemp("standin")
    (fake / "minikern" / "kernel").mkdir(parents=True)
    (fake / "minikern" / "__init__.py").touch()
    (fake / "minikern" / "kernel" / "__init__.py").touch()
    (fake / "minikern" / "kernel" / "__main__.py").write_text("import time\ntime.sleep(60)\n")
    stand_in = subprocess.Popen([sys.executable, "-m", "minikern.kernel", str(tmp_path)],
                                cwd=fake, env={**os.environ, "PYTHONPATH": str(fake)})
    (tmp_path / params.KERNEL_PIDFILE).write_text(str(stand_in.pid))
    try:
        wait_for(lambda: cli.kernel_pid(tmp_path), what="the stand-in to run")
        yield tmp_path
    finally:
        stand_in.kill()
        stand_in.wait()


@pytest.mark.parametrize("cmd", ["ps", "service", "crash", "nc", "echod", "ifconfig", "status",
                                 "ds", "top", "lp", "lpq"])
def test_a_system_gone_under_a_command_is_one_line_not_a_traceback(
        cmd: str, vanished_system: Path) -> None:
    r = run(cmd, "--run-dir", str(vanished_system), *NEEDS_SYSTEM[cmd])
    assert (r.returncode, r.stderr) == (1, f"{cmd}: the system stopped (its kernel is gone)\n")


def test_ctrl_c_ends_a_command_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    """As a shell counts a command ended by SIGINT (128 + 2), and without a traceback."""
    def interrupted(_: object) -> int:
        raise KeyboardInterrupt

    assert cli.Command("probe", "probe: a command", run_dir=False).run([], interrupted) == 130
    assert capsys.readouterr() == ("", "")


def test_ctrl_c_while_boot_waits_leaves_no_system_behind(tmp_path: Path) -> None:
    """bin/boot --detach interrupted before its system is up: the status of a command ended
    by SIGINT, no traceback, and no half-booted system left holding the run directory (a
    detached system is not tied to bin/boot, so nothing else would halt it)."""
    conf = tmp_path / "system.conf"
    conf.write_text(TEST_CONF.format(boot="echo never")  # a boot process that never gets ready
                    + "service never { program tests.kernel.agent; args nosuchmode; ipc ALL; };\n")
    run_dir = tmp_path / "run"
    boot = subprocess.Popen([sys.executable, str(BIN / "boot"), "--run-dir", str(run_dir),
                             "--config", str(conf), "--detach"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kernel = wait_for(lambda: cli.kernel_pid(run_dir), what="the kernel to start")
        boot.send_signal(signal.SIGINT)  # bin/boot only: the kernel has a session of its own
        _, err = boot.communicate(timeout=30)
        assert boot.returncode == 130 and "Traceback" not in err, err
        assert cli.kernel_pid(run_dir) is None
        assert not os.path.exists(f"/proc/{kernel}")  # gone, and reaped by bin/boot
    finally:
        if boot.poll() is None:
            boot.kill()
            boot.communicate()
        halt(run_dir)  # what a failed run left behind, if anything


def test_the_launcher_runs_from_any_folder_and_through_links(tmp_path: Path) -> None:
    """A shell runs bin/ps as a file, from anywhere, or through a link of the user's own
    under any name (a link of links, too)."""
    (tmp_path / "ps").symlink_to(BIN / "ps")
    (tmp_path / "mk-ps").symlink_to(BIN / "ps")
    (tmp_path / "mk").symlink_to(tmp_path / "mk-ps")
    for path in (BIN / "ps", tmp_path / "ps", tmp_path / "mk-ps", tmp_path / "mk"):
        r = run_directly(path, "--help", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith("usage: ps "), (path, r.stderr)
    (tmp_path / "nosuch").symlink_to(LAUNCHER)
    r = run_directly(tmp_path / "nosuch", cwd=tmp_path)
    assert r.returncode == 2 and "nosuch: not a command of minikern" in r.stderr
    assert "ps," in r.stderr.split()  # and it says which there are


@pytest.mark.skipif(not (cli.REPO_ROOT / ".venv" / "bin" / "python").exists(),
                    reason="no .venv: the launcher runs python3 itself")
def test_a_command_starts_the_venv_interpreter_alone(tmp_path: Path) -> None:
    """Run from a shell, the launcher goes straight to .venv's interpreter: a python3 found
    on PATH (which would start, then re-execute itself under .venv) is never run."""
    fake = tmp_path / "path"
    fake.mkdir()
    marker = tmp_path / "python3-ran"
    for name in ("python3", "python"):
        (fake / name).write_text(f"#!/bin/sh\ntouch {marker}\nexit 99\n")
        (fake / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    r = run_directly(BIN / "ps", "--help", cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.startswith("usage: ps "), r.stderr
    assert not marker.exists()


@pytest.mark.skipif(not (cli.REPO_ROOT / ".venv" / "bin" / "python").exists(),
                    reason="no .venv to re-execute under")
def test_another_interpreter_hands_over_to_the_venv() -> None:
    """`python3 bin/ps` with an interpreter that cannot see .venv's packages (-S: no site
    packages at all) still works: the launcher re-executes itself under .venv."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    r = subprocess.run([str(base), "-S", str(BIN / "ps"), "--help"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("usage: ps "), r.stderr


def test_bench_refuses_counts_that_measure_nothing() -> None:
    for args in (["ipc", "--rounds", "0"], ["devio", "--ops", "-1"], ["recovery", "--kills", "0"]):
        r = run("bench", *args)
        assert r.returncode == 2 and "is not at least 1" in r.stderr, r.stderr


def test_ps_json_lists_kernel_and_every_process(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    r = run("ps", "--run-dir", str(s.run_dir), "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["label"]: x for x in json.loads(r.stdout)}
    assert set(rows) == {"kernel", "rs", "ds", "hello"}  # no operator tools
    assert rows["kernel"]["pid"] == s.system.kernel.pid
    for row in rows.values():
        assert row["state"] == "up" and row["incarnation"] == 0
        assert row["pid"] > 0 and row["uptime"] >= 0 and row["rss_mb"] > 0
        assert row["cpu"] is not None and isinstance(row["endpoint"], int)
    assert rows["hello"]["endpoint"] == service(s, "hello")["endpoint"]
    text = run("ps", "--run-dir", str(s.run_dir)).stdout
    assert text.splitlines()[0].split()[:4] == ["LABEL", "ENDPOINT", "PID", "STATE"]


def test_service_crash_and_logs_commands(make_system: Make) -> None:
    s = boot_rs(make_system)
    rd = ["--run-dir", str(s.run_dir)]
    pid = service(s, "hello")["pid"]
    r = run("crash", *rd, "hello", "exit")
    assert r.returncode == 0 and str(pid) in r.stdout
    wait_event(s, "restart", "hello")
    r = run("service", *rd, "down", "hello")
    assert r.returncode == 0 and service(s, "hello")["state"] == "down"
    rows = {x["label"]: x for x in json.loads(run("ps", *rd, "--json").stdout)}
    assert rows["hello"]["state"] == "down" and rows["hello"]["pid"] is None
    assert rows["hello"]["incarnation"] == 1
    r = run("service", *rd, "up", "hello")
    assert r.returncode == 0 and "endpoint" in r.stdout
    r = run("service", *rd, "restart", "hello")
    assert r.returncode == 1 and "EBUSY" in r.stderr
    assert r.stderr.startswith("service: ") and r.stderr.count("\n") == 1  # one line, no trace
    r = run("crash", *rd, "hello", "meteor")
    assert r.returncode == 2  # argparse refuses an unknown fault
    lines = [json.loads(x) for x in run("logs", *rd, "--json").stdout.splitlines()]
    kinds = [e["kind"] for e in lines if e["label"] == "hello"]
    assert kinds == ["up", "crash", "restart", "down", "up"]
    assert all(isinstance(e["ts"], float) for e in lines)
    crash = next(e for e in lines if e["kind"] == "crash")
    assert crash["reason"] == "exit" and crash["pid"] == pid
    only = run("logs", *rd, "--label", "hello").stdout.splitlines()
    assert len(only) == 6 and "boot" in only[0].split()  # the boot's marker frames the rest
    assert "crash" in only[2] and "reason=exit" in only[2]
    assert "\033[" not in only[2]  # no colour when not on a terminal


def test_logs_follow_prints_events_as_they_happen(make_system: Make) -> None:
    s = boot_rs(make_system)
    pid = service(s, "hello")["pid"]
    follow = subprocess.Popen(
        [sys.executable, str(BIN / "logs"), "--run-dir", str(s.run_dir),
         "-f", "--label", "hello"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def line_with(*words: str) -> str:
        """The first line printed so far with all these words, or "" (not yet)."""
        return next((ln for ln in lines if all(w in ln.split() for w in words)), "")

    try:
        wait_for(lambda: line_with("up", "hello"), what="the log so far")
        assert follow.poll() is None  # following, not done after the existing lines
        os.kill(pid, signal.SIGKILL)
        crash = wait_for(lambda: line_with("crash", "hello", "reason=signal"),
                         what="the crash, live")
        assert f"pid={pid}" in crash.split() and "\033[" not in crash
        wait_for(lambda: line_with("restart", "hello", f"old_pid={pid}"),
                 what="the restart, live")
        follow.send_signal(signal.SIGINT)  # Ctrl-C ends it, quietly
        follow.wait(10)
        assert follow.returncode == 0
        assert follow.stderr is not None and "Traceback" not in follow.stderr.read()
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        reader.join(5)
        assert follow.stdout is not None and follow.stderr is not None
        follow.stdout.close()
        follow.stderr.close()


def test_service_up_revives_a_service_rs_gave_up_on(make_system: Make) -> None:
    s = boot_rs(make_system, hello="backoff off; restarts 1 60s;")
    rd = ["--run-dir", str(s.run_dir)]
    first = service(s, "hello")["pid"]
    os.kill(first, signal.SIGKILL)
    second = wait_event(s, "restart", "hello")["new_pid"]
    wait_state(s, "hello", "up")
    os.kill(second, signal.SIGKILL)  # a second restart within 60 s: past the limit
    wait_event(s, "giveup", "hello")
    wait_state(s, "hello", "failed")
    rows = {x["label"]: x for x in json.loads(run("ps", *rd, "--json").stdout)}
    assert rows["hello"]["state"] == "failed" and rows["hello"]["pid"] is None
    r = run("service", *rd, "up", "hello")
    assert r.returncode == 0, r.stderr
    revived = service(s, "hello")
    assert revived["state"] == "up" and revived["pid"] not in (None, first, second)
    assert f"pid {revived['pid']}" in r.stdout
    assert events(s, "up", "hello")[-1]["pid"] == revived["pid"]
    # `up` clears the failure history: the next failure is restarted, not given up on.
    os.kill(revived["pid"], signal.SIGKILL)
    again = wait_event(s, "restart", "hello", count=2)
    assert again["old_pid"] == revived["pid"]
    wait_state(s, "hello", "up")
    assert len(events(s, "giveup", "hello")) == 1


def test_service_restart_also_revives_a_failed_service_with_a_clean_history(
        make_system: Make) -> None:
    s = boot_rs(make_system, hello="backoff off; restarts 1 60s;")
    os.kill(service(s, "hello")["pid"], signal.SIGKILL)
    wait_event(s, "restart", "hello")
    os.kill(wait_state(s, "hello", "up")["pid"], signal.SIGKILL)
    wait_event(s, "giveup", "hello")
    wait_state(s, "hello", "failed")
    r = run("service", "--run-dir", str(s.run_dir), "restart", "hello")
    assert r.returncode == 0, r.stderr
    revived = wait_state(s, "hello", "up")
    os.kill(revived["pid"], signal.SIGKILL)  # within the window again, yet restarted
    assert wait_event(s, "crash", "hello", count=3)["action"] == "restart"
    wait_state(s, "hello", "up")
    assert len(events(s, "giveup", "hello")) == 1
