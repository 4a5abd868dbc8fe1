"""The real-time class with its bound (minikern/sched.py): booted as root, the queues in
RT_QUEUES are SCHED_RR in MINIX's order, every thread of the process; a thread that runs
RT_BOUND_US without blocking is demoted to SCHED_OTHER and takes its class back after
RT_PENALTY; one that will not give it up is killed by the host; what a real-time process
starts through ``sched.weighted`` runs in the weighted class.  These need root (or a host
that grants SCHED_RR) and skip elsewhere, saying why."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from minikern import params, sched
from minikern.cli import REPO_ROOT
from minikern.const import KERNEL_Q, USER_Q
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

SLEEPER = "import time; time.sleep(60)"
THREADS = ("import threading, time\n"
           "for _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
           "print('ready', flush=True); time.sleep(60)")
# bound() installed (as the template and the kernel do), then a CPU loop that never blocks
SPINNER = "from minikern import sched\nsched.bound()\nprint('ready', flush=True)\nwhile True: pass"
# the same, but deaf to SIGXCPU: it keeps the class past its bound
DEAF = ("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "print('ready', flush=True)\nwhile True: pass")


def _start(code: str, ready: bool = False, **env: str) -> subprocess.Popen[str]:
    """``code`` in a child Python; with ``ready``, once it has printed "ready"."""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env})
    if ready:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _reap(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
    for f in (p.stdout, p.stderr):
        if f is not None:
            f.close()


@pytest.fixture(scope="module")
def realtime() -> None:
    """Skip unless this host grants SCHED_RR to a child (root, and real-time bandwidth)."""
    if not params.REALTIME:
        pytest.skip("MINIKERN_REALTIME=0: the real-time class is turned off")
    p = _start(SLEEPER)
    try:
        os.sched_setscheduler(p.pid, os.SCHED_RR, os.sched_param(1))
    except PermissionError:
        pytest.skip("the host refuses SCHED_RR (needs root with CAP_SYS_NICE, and real-time "
                    "bandwidth in this cgroup)")
    finally:
        _reap(p)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        _reap(p)


def rr_priority(tid: int) -> int | None:
    """The SCHED_RR priority of thread ``tid``, None if it is not SCHED_RR."""
    return os.sched_getparam(tid).sched_priority if sched.policy(tid) == "rr" else None


def test_system_queues_are_real_time_in_minix_order_bounded(
        realtime: None, procs: list[subprocess.Popen[str]]) -> None:
    queues = [KERNEL_Q, 1, 2, 3, params.DEFAULT_PRIORITY, params.TEMPLATE_QUEUE, USER_Q - 1,
              USER_Q]
    for q in queues:
        procs.append(_start(SLEEPER))
        assert sched.apply(procs[-1].pid, q) is None
    got = {q: rr_priority(p.pid) for q, p in zip(queues, procs, strict=True)}
    rt = [q for q in queues if q in sched.RT_QUEUES]
    # the kernel and RS, the drivers, DS, the servers and the templates are real-time, each
    # queue above the next; the queues of the user programs and the one above them are not
    assert rt == [q for q in queues if q <= params.TEMPLATE_QUEUE]
    assert all(got[q] is not None for q in rt), got
    prios = [got[q] or 0 for q in rt]
    assert min(prios) > params.RT_PRIORITY_BASE
    assert prios == sorted(prios, reverse=True) and len(set(prios)) == len(prios)
    assert got[USER_Q - 1] is None and got[USER_Q] is None
    for q, p in zip(queues, procs, strict=True):
        # still the queue's nice value (what bin/ps reads back, and the class if demoted)
        assert sched.current(p.pid) == q
        if q in sched.RT_QUEUES:  # the bound: SIGXCPU first, SIGKILL after the grace
            assert resource.prlimit(p.pid, resource.RLIMIT_RTTIME) == (
                params.RT_BOUND_US, params.RT_BOUND_US + params.RT_KILL_GRACE_US)
        else:  # nor may it make itself real-time later
            assert resource.prlimit(p.pid, resource.RLIMIT_RTPRIO) == (0, 0)
            assert sched.policy(p.pid) == "other"


def test_every_thread_is_placed_and_a_user_queue_takes_the_class_away(
        realtime: None, procs: list[subprocess.Popen[str]]) -> None:
    p = _start(THREADS, ready=True)
    procs.append(p)
    tids = sched.threads(p.pid)
    assert len(tids) == 4
    sched.apply(p.pid, 2)
    assert {rr_priority(t) for t in tids} == {sched.rt_priority(2)}
    sched.apply(p.pid, USER_Q)
    assert {rr_priority(t) for t in tids} == {None}
    assert {os.getpriority(os.PRIO_PROCESS, t) for t in tids} == {0}


def test_a_spinning_process_is_demoted_at_its_bound_then_takes_its_class_back(
        realtime: None, procs: list[subprocess.Popen[str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params, "RT_BOUND_US", 100_000)  # the bound apply sets on it
    p = _start(SPINNER, ready=True, MINIKERN_RT_PENALTY="1")  # the penalty it serves
    procs.append(p)
    sched.apply(p.pid, 2)  # (it may be demoted before this test runs again: it says so below)
    wait_for(lambda: sched.policy(p.pid) == "other", 20, "the spinner demoted")
    assert p.poll() is None  # demoted, not killed: the hard limit was never reached
    assert os.getpriority(os.PRIO_PROCESS, p.pid) == sched.nice_of(2)  # its weight kept
    # root: it may take the class back, at its own priority, after the penalty
    wait_for(lambda: rr_priority(p.pid) == sched.rt_priority(2), 20, "the class back")
    p.kill()
    _, err = p.communicate()
    assert "demoted from SCHED_RR for 1 s: a thread ran" in err


def test_a_process_deaf_to_its_bound_is_killed_by_the_host(
        realtime: None, procs: list[subprocess.Popen[str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params, "RT_BOUND_US", 100_000)
    monkeypatch.setattr(params, "RT_KILL_GRACE_US", 200_000)
    p = _start(DEAF, ready=True)
    procs.append(p)
    sched.apply(p.pid, 2)
    wait_for(lambda: p.poll() is not None, 20, "the host to kill the deaf spinner")
    assert p.returncode == -signal.SIGKILL


CHILD_CLASS = textwrap.dedent("""
    import os, subprocess, sys
    from minikern import sched
    ask = [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"]
    for argv in (ask, sched.weighted(ask)):
        print(subprocess.run(argv, capture_output=True, text=True).stdout.strip(), flush=True)
    import time; time.sleep(60)
""")


def test_what_a_real_time_process_starts_through_weighted_is_not_real_time(
        realtime: None, procs: list[subprocess.Popen[str]]) -> None:
    # the parent placed before it runs: start it stopped at its first line, place, go on
    p = _start("import os, signal; os.kill(os.getpid(), signal.SIGSTOP)\n" + CHILD_CLASS)
    procs.append(p)
    wait_for(lambda: _state(p.pid) == "T", 10, "the child stopped")
    sched.apply(p.pid, 2)
    os.kill(p.pid, signal.SIGCONT)
    assert p.stdout is not None
    plain, weighted = p.stdout.readline().strip(), p.stdout.readline().strip()
    assert plain == str(os.SCHED_RR)  # inherited: its bound's SIGXCPU would kill a mkfs
    assert weighted == str(os.SCHED_OTHER)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
