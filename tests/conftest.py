"""Fixtures shared by the whole suite, and the session-wide check that nothing is left running."""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Sequence

import psutil
import pytest

from minikern import ipc, sysconf
from minikern.boot import System
from minikern.cli import REPO_ROOT
from minikern.const import KCall
from minikern.deadline import wait_for
from minikern.events import read_all
from minikern.proto import Message

__all__ = ["wait_for"]  # tests import it from here

TEST_CONF = """
boot {boot};
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service client {{ system GETINFO SETALARM PRIVCTL KILL SETGRANT SAFECOPYFROM; ipc ALL; }};
service user {{ user yes; ipc ALL; }};
service narrow {{ system GETINFO; ipc SYSTEM echo; io 0x3f8:8; irq 4; }};
service driver {{ system DEVIO VDEVIO IRQCTL; ipc SYSTEM ALL_SYS; io 0x1f0:8 0x3f6; irq 14; }};
service echo {{ program tests.kernel.agent; args echo; ipc ALL; }};
service agent {{ program tests.kernel.agent; ipc ALL; system SETGRANT SAFECOPYFROM REVOKE; }};
"""


BOOT_DEADLINE = 30.0  # seconds


def conf_entry(label: str) -> str:
    """etc/system.conf's ``service LABEL { ... };`` entry, braces escaped for str.format
    (TEST_CONF-shaped configurations are formatted)."""
    text = (REPO_ROOT / "etc" / "system.conf").read_text()
    found = re.search(rf"^service {label} \{{.*?^\}};", text, re.S | re.M)
    if found is None:
        raise AssertionError(f"etc/system.conf has no {label} service")
    return found.group(0).replace("{", "{{").replace("}", "}}")


class SystemUnderTest:
    """A booted system in a private run directory, with helpers to connect test endpoints."""

    def __init__(self, run_dir: Path, conf_text: str, wrap: Sequence[str] = ()) -> None:
        self.conf_text = conf_text
        self.conf = sysconf.parse(conf_text)
        conf_path = run_dir.parent / "system.conf"
        conf_path.write_text(conf_text)
        self.run_dir = run_dir
        self.system = System(run_dir, conf_path, wrap=wrap)
        self.conns: list[ipc.Connection] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.futures: list[concurrent.futures.Future[Any]] = []
        try:
            # A generous deadline: on a machine loaded past its cores a boot can take several
            # times its idle 1-3 s, and a test must not fail for the machine's load.
            if not self.system.wait_ready(timeout=BOOT_DEADLINE):
                raise RuntimeError("test system did not come up:\n" + self.console())
        except BaseException:
            self.close()  # no test will hold it to close it later: halted and reaped now
            raise

    def connect(self, label: str = "client", priv_of: str | None = None) -> ipc.Connection:
        priv = self.conf.services[priv_of or label].priv()
        c = ipc.Connection.operator(self.run_dir, label, priv)
        self.conns.append(c)
        return c

    def ask(self, label: str, req: int, /, **fields: Any) -> Message:
        """One request to the component ``label``, from an operator connection of its own."""
        c = self.connect("tester", "operator")
        try:
            return c.sendrec(self.endpoint_of(label), Message(req, fields))
        finally:
            c.close()
            self.conns.remove(c)

    def info(self) -> dict[str, Any]:
        c = self.connect("info", "operator")
        try:
            return c.kcall(KCall.GETINFO)
        finally:
            c.close()
            self.conns.remove(c)

    def proc(self, endpoint: int) -> dict[str, Any] | None:
        return next((p for p in self.info()["procs"] if p["endpoint"] == endpoint), None)

    def endpoint_of(self, label: str) -> int:
        return int(next(p["endpoint"] for p in self.info()["procs"] if p["label"] == label))

    def blocked(self, endpoint: int, wait: str) -> bool:
        p = self.proc(endpoint)
        return p is not None and p["wait"] == wait

    def background(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future = self.pool.submit(fn, *args)
        self.futures.append(future)
        return future

    def console(self) -> str:
        try:
            return (self.run_dir / "console.log").read_text()
        except OSError:
            return ""

    def audit(self) -> list[str]:
        """The refused calls so far: the ``denied`` events, as JSON lines."""
        return [json.dumps(e) for e in read_all(self.run_dir) if e["kind"] == "denied"]

    def close(self) -> None:
        # A ZeroMQ socket closed while another thread waits on it aborts the whole process
        # (libzmq asserts), so a test that failed or timed out with a call still blocked must
        # not take the suite down with it.  Halting first ends every blocked call (the library
        # sees the kernel gone within a second); sockets are closed only once no thread of the
        # pool uses them.  A call that still has not ended keeps its socket, and the process
        # exits with it open, which is harmless.
        self.system.halt()
        self.pool.shutdown(wait=False, cancel_futures=True)
        running = [f for f in self.futures if not f.done()]
        _, still = concurrent.futures.wait(running, timeout=3 * ipc.KERNEL_CHECK_S)
        if still:
            return
        for c in self.conns:
            c.sock.close(linger=0)  # the kernel is gone: no goodbye to deliver


def open_to_components() -> Path:
    """A directory for a run directory that other uids may reach, so that a system booted
    as root runs its components in their own domains (minikern/domain.py): not under
    pytest's temporary root, which pytest keeps 0700 (MINIKERN_TEST_DOMAINS=1, and
    tools/open_root_home.sh for a Python in root's home).  The caller removes it."""
    top = Path(tempfile.mkdtemp(prefix="mk-test-"))
    top.chmod(0o711)
    return top


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[Callable[..., SystemUnderTest]]:
    """Boot test systems; each one that came up is closed after the test, each in turn even
    if closing another fails (one that did not come up was halted as it failed)."""
    with contextlib.ExitStack() as closing:
        tried = 0

        def make(boot: str = "echo", conf: str = TEST_CONF) -> SystemUnderTest:
            nonlocal tried
            tried += 1  # a fresh run directory each time, a failed one's too
            top = tmp_path
            if os.environ.get("MINIKERN_TEST_DOMAINS") == "1":  # as root: components in domains
                top = open_to_components()
                closing.callback(shutil.rmtree, top, ignore_errors=True)  # after the halt
            s = SystemUnderTest(top / f"run{tried - 1}", conf.format(boot=boot))
            closing.callback(s.close)
            return s

        yield make


@pytest.fixture
def system(make_system: Callable[..., SystemUnderTest]) -> SystemUnderTest:
    return make_system()


# Every process the suite starts inherits this mark (the kernel's templates, RS's guardian and
# recovery scripts included, which leave the suite's process tree): the leak check finds
# them by it wherever they were reparented.
SUITE_MARK = "MINIKERN_TEST_SUITE"
os.environ[SUITE_MARK] = f"{os.getpid()}-{time.time()}"


def _suite_processes() -> list[psutil.Process]:
    """Every process the suite started that still has a process-table entry: the test
    process's descendants, and the processes elsewhere that carry the suite's mark."""
    me = psutil.Process()
    try:
        found = {p.pid: p for p in me.children(recursive=True)}
    except psutil.Error:
        found = {}
    for p in psutil.process_iter():
        try:
            if p.pid != me.pid and p.environ().get(SUITE_MARK) == os.environ[SUITE_MARK]:
                found.setdefault(p.pid, p)
        except psutil.Error:  # gone, a zombie (no environment left), or not ours to read
            continue
    return list(found.values())


def _leak(p: psutil.Process) -> str | None:
    """How a leftover process reads in the report, or None if it is no leak: it has ended
    and is not the test process's own child (a zombie elsewhere is its parent's to reap).
    Read in one go, since the process may end, or turn zombie, while it is being read."""
    try:
        with p.oneshot():
            if p.status() == psutil.STATUS_ZOMBIE:
                if p.ppid() != os.getpid():
                    return None
                return f"{p.pid} {p.name()} (exited, never reaped)"
            return f"{p.pid} {' '.join(p.cmdline()) or p.name()}"
    except psutil.NoSuchProcess:  # ended while it was read (ZombieProcess is one too)
        return None
    except psutil.AccessDenied:  # alive, but its details are not ours to read
        return f"{p.pid} (details not readable)"


def _leftovers() -> dict[psutil.Process, str]:
    left = {}
    for p in _suite_processes():
        what = _leak(p)
        if what is not None:
            left[p] = what
    return left


def _clean_up(left: dict[psutil.Process, str]) -> None:
    """Kill what the suite left running and reap what is the test process's own child, so
    that one leak fails the check once and does not outlive the run."""
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass  # ended meanwhile, or not ours to signal
    for p in left:
        with contextlib.suppress(psutil.Error):  # gone already, or still there after 5 s
            p.wait(timeout=5)  # which reaps it, if it is the test process's child


@pytest.fixture(autouse=True, scope="session")
def no_leaked_processes() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10  # what a test halted may still be ending
    left = _leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _leftovers()
    _clean_up(left)
    assert not left, "processes left by the suite: " + ", ".join(left.values())


# CI runs as root with the host tools installed (`make host-tools`): there, a test that skips
# for want of root, a tool or a device did not run, and a suite that quietly skipped its
# Linux-peer or disk tests must not pass.
IN_CI = bool(os.environ.get("CI"))


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def _fail_a_skip_in_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI (the CI variable is set), where every test must "
                           f"run: CI runs as root with `make host-tools` installed.  "
                           f"Skip reason: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_a_skip_in_ci(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_a_skip_in_ci(outcome.get_result())  # type: ignore[attr-defined]
