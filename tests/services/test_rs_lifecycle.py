"""RS's lifecycle on a fake clock and a recording kernel: heartbeat, backoff, intensity, stable
runs and operator requests, exact to the fake instant and with no processes or sleeps."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from minikern.proto import Message
from minikern.const import Err, RsReq
from services.rs import requests
from services.rs.lifecycle import transition
from services.rs.service import BadTransition, Event, State
from tests.conftest import wait_for
from tests.services.rs_fake import COMPONENT, OPERATOR, Rig

pytestmark = pytest.mark.timeout(10)
EPS = 1e-6


def test_a_hang_is_due_two_periods_after_the_last_answer(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period 1s; backoff off;")
    r.start()
    t0 = r.now
    ep = r.x.instance.endpoint if r.x and r.x.instance else -1
    r.run_to(t0 + 1.5)
    assert r.kernel.notifies == [ep]  # one ping per period
    r.rs.pong(ep)  # answered at t0 + 1.5: missed periods count from here
    r.run_to(t0 + 3.5 - EPS)
    assert r.state() is State.UP and r.kills() == []
    assert r.kernel.notifies == [ep] * 3  # pinged at t0 + 1, 2 and 3
    r.run_to(t0 + 3.5)
    assert r.state() is State.RESTARTING and r.kills() == [signal.SIGKILL]
    assert r.events("crash")[-1]["reason"] == "heartbeat"


def test_a_service_that_never_answers_is_hung_at_exactly_two_periods(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period 250ms; backoff off;")
    r.start()
    t0 = r.now
    r.run_to(t0 + 0.5 - EPS)
    assert r.state() is State.UP
    r.run_to(t0 + 0.5)
    assert r.state() is State.RESTARTING


def crash_loop(r: Rig, crashes: int, up_for: float = 0.5) -> list[float]:
    """Crash x ``up_for`` after each start; the delays RS waited before each restart."""
    delays = []
    for _ in range(crashes):
        r.run_to(r.now + up_for)
        crashed_at, spawns = r.now, r.spawns()
        r.crash()
        while r.spawns() == spawns:
            r.run_to(r.next_due())
        delays.append(round(r.now - crashed_at, 9))
        r.init_done()
    return delays


def test_backoff_doubles_from_the_base_to_the_30_second_cap(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff 1s; stable 10s; restarts off;")
    r.start()
    assert crash_loop(r, 8) == [0, 1, 2, 4, 8, 16, 30, 30]


def test_the_restart_happens_at_exactly_the_due_time(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff 1s; stable 10s; restarts off;")
    r.start()
    crash_loop(r, 3)  # the next failure waits 4 s
    r.run_to(r.now + 0.5)
    r.crash()
    t, spawns = r.now, r.spawns()
    assert r.rs.status()[0]["restart_in"] == 4
    r.run_to(t + 4 - EPS)
    assert r.spawns() == spawns and r.state() is State.RESTARTING
    r.run_to(t + 4)
    assert r.spawns() == spawns + 1 and r.state() is State.STARTING


def test_a_stable_run_restarts_at_once_again(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff 1s; stable 10s; restarts off;")
    r.start()
    assert crash_loop(r, 3) == [0, 1, 2]
    assert crash_loop(r, 1, up_for=10.0) == [0]  # up the stable time: counted afresh
    assert crash_loop(r, 1) == [1]


def test_intensity_gives_up_on_the_failure_after_n_inside_the_window(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff off; restarts 3 10s;")
    r.start()
    t0 = r.now
    crash_loop(r, 3, up_for=1.0)  # three restarts within 3 s
    r.run_to(t0 + 9.9)
    r.crash()
    assert r.state() is State.FAILED
    assert [e["action"] for e in r.events("crash")] == ["restart"] * 3 + ["giveup"]
    assert r.events("giveup") and r.published("rs.x")[-1] == "failed"
    r.run_to(r.now + 60)
    assert r.spawns() == 4  # never again by itself


def test_intensity_window_outside_restarts(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff off; restarts 3 10s;")
    r.start()
    t0 = r.now
    crash_loop(r, 3, up_for=1.0)  # failures at t0+1, +2, +3
    r.run_to(t0 + 11.1)  # the first has left the 10 s window
    r.crash()
    assert r.state() is State.STARTING and r.spawns() == 5


def test_operator_down_terms_then_kills_after_the_grace_and_never_restarts(
        tmp_path: Path) -> None:
    r = Rig(tmp_path, "period 1s;")
    r.start()
    x = r.x
    assert x is not None and x.instance is not None
    pid = x.instance.pid
    assert r.rs.down(x, r.request(RsReq.DOWN, label="x")) is None  # answered once it has exited
    t = r.now
    assert r.kills() == [signal.SIGTERM] and r.state() is State.DOWN
    r.run_to(t + 2 - EPS)
    assert r.kills() == [signal.SIGTERM]
    r.run_to(t + 2)  # MINIX's down: SIGKILL after the grace
    assert r.kills() == [signal.SIGTERM, signal.SIGKILL]
    r.crash()
    assert r.state() is State.DOWN and r.events("down")[-1]["by"] == "operator"
    reply = r.kernel.replies_to(OPERATOR)[-1]
    assert reply.type == Err.OK and reply["pid"] == pid
    assert r.published("rs.x")[-1] == "down"
    r.run_to(r.now + 60)
    assert r.spawns() == 1 and r.events("crash") == []


def test_down_during_a_backoff_wait_answers_at_once_and_cancels_the_restart(
        tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff 1s; restarts off;")
    r.start()
    crash_loop(r, 1)
    r.run_to(r.now + 0.5)
    r.crash()  # the restart waits 1 s
    x = r.x
    assert x is not None and r.state() is State.RESTARTING
    assert r.rs.down(x, r.request(RsReq.DOWN, label="x")) is None
    reply = r.kernel.replies_to(OPERATOR)
    assert len(reply) == 1 and reply[0].type == Err.OK
    assert r.state() is State.DOWN and r.events("down")[-1]["by"] == "operator"
    assert r.published("rs.x")[-1] == "down"
    spawns = r.spawns()
    r.run_to(r.now + 60)
    assert r.spawns() == spawns


def test_operator_up_restart_and_refresh(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff 1s; restarts 2 60s;")
    r.start()
    x = r.x
    assert x is not None
    busy = r.rs.up(x, r.request(RsReq.UP, label="x"))
    assert busy is not None and busy.type == Err.EBUSY
    assert r.rs.restart(x, r.request(RsReq.RESTART, label="x")) is not None  # running: EBUSY, use refresh
    assert r.rs.refresh(x, r.request(RsReq.REFRESH, label="x")) is None
    r.crash(signal.SIGTERM)
    assert r.state() is State.STARTING and r.spawns() == 2
    r.init_done()
    assert r.events("restart")[-1]["cause"] == "refresh" and x.tracker.failures == 0
    assert r.kernel.replies_to(OPERATOR)[-1].type == Err.OK
    crash_loop(r, 2)  # restarts at once, then waits 1 s
    r.crash()
    assert r.state() is State.FAILED
    assert r.rs.up(x, r.request(RsReq.UP, label="x")) is None and r.state() is State.STARTING
    r.init_done()
    assert crash_loop(r, 1) == [0]  # up forgot the failures
    r.run_to(r.now + 0.5)
    r.crash()  # waits 1 s
    assert r.rs.restart(x, r.request(RsReq.RESTART, label="x")) is None  # skips the wait
    assert r.state() is State.STARTING


def test_resources_are_checked_each_second_and_a_hog_fails(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff off; memory_limit 1K;")
    r.kernel.pid = os.getpid()  # a real process for psutil; RS's kills are only recorded
    r.start()
    t0 = r.now
    r.run_to(t0 + 1 - EPS)
    assert r.state() is State.UP
    r.run_to(t0 + 1)  # the first check, one second after it came up
    assert r.state() is State.RESTARTING and r.kills() == [signal.SIGKILL]
    crash = r.events("crash")[-1]
    assert crash["reason"] == "resource" and "memory" in crash["detail"]


def test_requests_check_the_caller_and_the_arguments(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off;")
    r.start()
    table = requests.table(r.rs)

    def ask(req: RsReq, source: int, **fields: object) -> Message | None:
        return table[int(req)](Message(int(req), dict(fields), source=source))

    for req in (RsReq.DOWN, RsReq.UP, RsReq.RESTART, RsReq.REFRESH, RsReq.CRASH,
                RsReq.SHUTDOWN):
        reply = ask(req, COMPONENT, label="x", fault="kill")
        assert reply is not None and reply.type == Err.EPERM
    assert r.kills() == [] and r.state() is State.UP
    for bad in (7, None, "nosuch", "rs"):
        reply = ask(RsReq.DOWN, OPERATOR, label=bad)
        assert reply is not None and reply.type == Err.ESRCH
    reply = ask(RsReq.CRASH, OPERATOR, label="x", fault=["kill"])
    assert reply is not None and reply.type == Err.EINVAL
    status = ask(RsReq.STATUS, COMPONENT)
    assert status is not None and {s["label"]: s["state"] for s in status["services"]} == {
        "x": "up"}


def test_a_failed_kernel_start_is_retried_later(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff off;")
    r.start()
    r.kernel.privctl_status = Err.ENOSPC  # no free slot
    r.crash()
    t = r.now
    assert r.state() is State.RESTARTING
    r.kernel.privctl_status = Err.OK
    r.run_to(t + 5)
    assert r.state() is State.STARTING


def test_scripts_decide_and_one_that_does_nothing_leaves_it_down(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "rs.note").write_text('echo "$@" > "$MINIKERN_RUN_DIR/args"\n')
    r = Rig(tmp_path, "period 1s; script rs.note;", scripts_dir=scripts)
    r.start()
    r.run_to(r.now + 2)  # hung
    r.crash()
    assert r.state() is State.RESTARTING and r.events("script")[-1]["phase"] == "start"

    def script_ended() -> bool:
        r.serve_watched()  # the script's pidfd, watched by RS's loop
        return r.state() is State.DOWN

    wait_for(script_ended, 5, "the script ends")
    assert (tmp_path / "args").read_text().split() == ["x", "no-heartbeat", "1"]
    assert r.spawns() == 1 and r.events("down")[-1]["by"] == "script"


def test_the_table_refuses_what_makes_no_sense() -> None:
    assert transition(State.DOWN, Event.SPAWNED).state is State.STARTING
    assert transition(State.STARTING, Event.INIT_DONE).state is State.UP
    for st in State:
        assert transition(st, Event.OP_DOWN).state is State.DOWN
    for st, ev in [(State.UP, Event.SPAWNED), (State.DOWN, Event.INIT_DONE),
                   (State.UP, Event.OP_START), (State.DOWN, Event.FAILED)]:
        with pytest.raises(BadTransition):
            transition(st, ev)


def test_every_instance_is_placed_in_its_queue_a_restarted_one_too(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff off; priority 2;")
    r.start()
    assert r.x is not None and r.x.instance is not None
    first = r.x.instance.pid
    r.crash()
    r.run_to(r.now)
    r.init_done()
    assert r.x.instance is not None and r.x.instance.pid != first
    assert r.placed == [("x", first, 2), ("x", r.x.instance.pid, 2)]
