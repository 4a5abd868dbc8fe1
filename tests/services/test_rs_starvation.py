"""RS tells a hung service from one starved of a CPU (services/rs/starvation.py), on a fake
clock with the services' scheduler statistics and the kernel's count of messages delivered
to them scripted: a service that waited on the run queue at least a period since its last
answer and hardly ran, or ran and kept receiving messages, gets one more period, at most
HEARTBEAT_STARVED_MAX times in a row; one that ran without waiting, slept (blocked), or
looped without receiving is hung, as MINIX's RS has it."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from minikern import params
from services.rs.service import State
from services.rs.starvation import Sched, hardly_ran, read, starved
from tests.services.rs_fake import Rig

pytestmark = pytest.mark.timeout(10)
EPS = 1e-6
PERIOD = 1.0


class Scheduler:
    """x's main thread as /proc/<pid>/schedstat would show it: the test says how each second
    of fake time is spent (running, waiting for a CPU, or asleep)."""

    def __init__(self, r: Rig) -> None:
        self.r, self.at, self.ran, self.waited = r, r.now, 0.0, 0.0
        self.mode = "asleep"

    def spend(self, mode: str, until: float) -> None:
        self.r.run_to(until - EPS)  # RS looks at the end of the stretch, not before
        self._account(until - EPS)
        self.mode = mode
        self.r.run_to(until)

    def _account(self, t: float) -> None:
        if self.mode == "running":
            self.ran += t - self.at
        elif self.mode == "waiting":
            self.waited += t - self.at
        self.at = t

    def __call__(self, pid: int) -> Sched:
        self._account(self.r.now)
        return Sched(self.ran, self.waited)


class Delivered:
    """The kernel's count of messages delivered to x: ``per_second`` of fake time."""

    def __init__(self, r: Rig, per_second: float = 0.0) -> None:
        self.r, self.per_second, self.t0 = r, per_second, r.now

    def __call__(self, endpoint: int) -> int:
        return int((self.r.now - self.t0) * self.per_second)


def rig(tmp_path: Path, sched_class: type[Scheduler] | None = None,
        delivered: float = 0.0) -> tuple[Rig, Scheduler]:
    r = Rig(tmp_path, f"period {PERIOD:g}s; backoff off;")
    sched = (sched_class or Scheduler)(r)
    r.rs.sched_of = sched
    r.rs.received_of = Delivered(r, delivered)
    r.start()
    return r, sched


def test_a_starved_service_gets_more_periods_and_is_spared_by_its_answer(
        tmp_path: Path) -> None:
    r, sched = rig(tmp_path)
    t0 = r.now
    sched.mode = "waiting"  # runnable from its last answer on, never given a CPU
    r.run_to(t0 + 2 * PERIOD + EPS)
    assert r.state() is State.UP and r.kills() == []  # a hang would be due at 2 periods
    r.run_to(t0 + 3 * PERIOD + EPS)
    assert r.state() is State.UP
    assert [e["periods"] for e in r.events("starved")] == [1, 2]
    ep = r.x.instance.endpoint if r.x and r.x.instance else -1
    r.rs.pong(ep)  # it got a CPU and answered: the count starts again
    t1 = r.now
    sched.mode = "asleep"
    r.run_to(t1 + 2 * PERIOD - EPS)
    assert r.state() is State.UP
    r.run_to(t1 + 2 * PERIOD)
    assert r.state() is State.RESTARTING and r.kills() == [signal.SIGKILL]


def test_starvation_defers_the_verdict_a_bounded_number_of_periods(tmp_path: Path) -> None:
    r, sched = rig(tmp_path)
    t0 = r.now
    sched.mode = "waiting"  # never given a CPU (or a blocked process seen as one)
    due = t0 + (params.HEARTBEAT_MISSES + params.HEARTBEAT_STARVED_MAX) * PERIOD
    r.run_to(due - EPS)
    assert r.state() is State.UP
    r.run_to(due)
    assert r.state() is State.RESTARTING
    assert r.events("crash")[-1]["reason"] == "heartbeat"
    assert len(r.events("starved")) == params.HEARTBEAT_STARVED_MAX


@pytest.mark.parametrize("mode", ["running", "asleep"])
def test_a_service_that_ran_or_slept_is_hung_at_two_periods(tmp_path: Path, mode: str) -> None:
    r, sched = rig(tmp_path)
    t0 = r.now
    sched.mode = mode
    r.run_to(t0 + 2 * PERIOD - EPS)
    assert r.state() is State.UP
    r.run_to(t0 + 2 * PERIOD)
    assert r.state() is State.RESTARTING and r.events("starved") == []


class Shared(Scheduler):
    """A loop that gets ``share`` of a CPU and waits the rest (a hog beside it)."""

    share = 1 / 3

    def _account(self, t: float) -> None:
        self.ran += (t - self.at) * self.share
        self.waited += (t - self.at) * (1 - self.share)
        self.at = t


def test_an_endless_loop_that_gets_its_share_of_a_cpu_and_receives_nothing_is_hung(
        tmp_path: Path) -> None:
    # beside two hogs on a core it runs a third of the time and waits the rest: busy, so RS
    # looks at what it received, gives it one period, and sees nothing more delivered
    r, _ = rig(tmp_path, Shared)
    t0 = r.now
    r.run_to(t0 + 3 * PERIOD - EPS)
    assert r.state() is State.UP
    r.run_to(t0 + 3 * PERIOD)
    assert r.state() is State.RESTARTING
    assert [e["received"] for e in r.events("starved")] == [0]


def test_a_busy_server_that_keeps_receiving_is_spared_up_to_the_bound(tmp_path: Path) -> None:
    r, _ = rig(tmp_path, Shared, delivered=50.0)  # serving 50 requests a second, slowly
    t0 = r.now
    due = t0 + (params.HEARTBEAT_MISSES + params.HEARTBEAT_STARVED_MAX) * PERIOD
    r.run_to(due - EPS)
    assert r.state() is State.UP
    r.run_to(due)
    assert r.state() is State.RESTARTING  # a server that never answers RS is hung all the same


def test_waiting_a_period_is_what_starvation_needs() -> None:
    zero = Sched(0.0, 0.0)
    assert starved(zero, Sched(0.1, 0.9), 1.0) is None  # waited under a period
    assert starved(zero, Sched(0.2, 1.6), 1.0) == Sched(0.2, 1.6)
    assert hardly_ran(Sched(0.2, 1.6), 1.0) and not hardly_ran(Sched(0.25, 1.7), 1.0)
    assert starved(None, Sched(0.2, 1.6), 1.0) is None  # no sample at its last answer


def test_read_gives_this_process_its_own_times_or_none_for_a_missing_one() -> None:
    me = read(os.getpid())
    if me is None:
        pytest.skip("no /proc/<pid>/schedstat on this kernel (CONFIG_SCHED_INFO off)")
    assert me.ran > 0 and me.waited >= 0
    assert read(2 ** 22 + 1) is None  # beyond pid_max: no such process


def test_read_counts_every_thread_not_the_main_one_alone() -> None:
    """A ping's answer runs on libzmq's I/O thread too: a process's times are its threads'."""
    before = read(os.getpid())
    if before is None:
        pytest.skip("no /proc/<pid>/schedstat on this kernel (CONFIG_SCHED_INFO off)")
    main = Path(f"/proc/{os.getpid()}/schedstat")
    main_before = int(main.read_text().split()[0]) / 1e9

    burnt, done = threading.Event(), threading.Event()

    def burn() -> None:  # 0.2 s of this thread's own CPU, however long the host takes
        while time.thread_time() < 0.2:
            pass
        burnt.set()
        done.wait(10)  # alive while it is read: an ended thread takes its times with it
    t = threading.Thread(target=burn)
    t.start()
    try:
        assert burnt.wait(20)
        after = read(os.getpid())
    finally:
        done.set()
        t.join()
    assert after is not None and after.ran - before.ran >= 0.2
    assert int(main.read_text().split()[0]) / 1e9 - main_before < 0.2  # it slept meanwhile


def test_rs_looking_late_gives_one_period_from_when_it_looks(tmp_path: Path) -> None:
    # RS, starved too, runs its timer long after the hang was due: one more period from
    # then, not all the periods it missed in one go
    r, sched = rig(tmp_path)
    sched.mode = "waiting"
    assert r.x is not None
    due = r.next_due()
    r.clock.advance(due + 3 * PERIOD - r.now)  # RS's loop did not run meanwhile
    r.rs.on_due(r.x)
    assert r.state() is State.UP and len(r.events("starved")) == 1
    assert r.next_due() == pytest.approx(r.now + PERIOD)


class Dependent(Scheduler):
    """x asleep (blocked), while the process with pid ``starved_pid`` waits for a CPU."""

    starved_pid = -1
    at0 = 0.0

    def __call__(self, pid: int) -> Sched:
        self._account(self.r.now)
        if pid == self.starved_pid:
            return Sched(0.0, self.r.now - self.at0)
        return Sched(self.ran, self.waited)


@pytest.mark.parametrize("kernel_starved", [True, False])
def test_a_service_blocked_on_a_starved_kernel_is_given_time(
        tmp_path: Path, kernel_starved: bool) -> None:
    r = Rig(tmp_path, f"period {PERIOD:g}s; backoff off;")
    sched = Dependent(r)
    sched.at0 = r.now
    sched.starved_pid = os.getppid() if kernel_starved else -2  # RS's parent: the kernel
    r.rs.sched_of = sched
    r.rs.received_of = Delivered(r)
    r.start()
    t0 = r.now
    r.run_to(t0 + 2 * PERIOD + EPS)
    assert (r.state() is State.UP) == kernel_starved
    if kernel_starved:
        assert r.events("starved")[0]["periods"] == 1


@pytest.mark.parametrize(("wait", "peer_starved", "spared"), [
    ("sendrec-recv", True, True), ("send", True, True), ("sendrec-recv", False, False),
    ("recv", True, False)])
def test_a_service_blocked_on_a_starved_peer_is_given_time(
        tmp_path: Path, wait: str, peer_starved: bool, spared: bool) -> None:
    """A driver asleep in its SENDREC to a server that waits for a CPU (rtl8139's PULL to
    INET, while a driver of higher queue spins) is starved, not hung; asleep in RECEIVE, or
    blocked on a server that is not waiting for a CPU, it is hung at two periods."""
    r = Rig(tmp_path, f"period {PERIOD:g}s; backoff off;")
    sched = Dependent(r)
    sched.at0 = r.now
    r.rs.sched_of = sched
    r.rs.received_of = Delivered(r)
    r.start()
    r.rs.autostart(["dep"])
    peer = r.rs.services["dep"].instance
    assert peer is not None and r.x is not None and r.x.instance is not None
    r.rs.init_done(peer.endpoint)  # its last sign of life: the sample its wait counts from
    sched.starved_pid = peer.pid if peer_starved else -2
    x = r.x.instance
    r.kernel.procs.append({"endpoint": x.endpoint, "pid": x.pid, "label": "x", "wait": wait,
                           "peer": peer.endpoint})
    t0 = r.now
    r.run_to(t0 + 2 * PERIOD + EPS)
    assert (r.state() is State.UP) == spared
    if spared:
        assert r.events("starved")[0]["periods"] == 1
    else:
        assert r.events("starved") == [] and r.kills() == [signal.SIGKILL]
