"""RS detects each kind of failure, names it in the log, and replaces the component fast."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from minikern import params
from minikern.proto import Message
from minikern.const import RS, CharReq, Err, RsReq
from minikern import rsctl as ctl
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, events, service, wait_event, wait_state

pytestmark = pytest.mark.timeout(60)
Make = Callable[..., SystemUnderTest]


def read(s: SystemUnderTest, endpoint: int) -> Message:
    return s.connect("reader", "operator").sendrec(endpoint, Message(CharReq.READ))


def test_rs_starts_its_services_and_reports_them(make_system: Make) -> None:
    s = boot_rs(make_system)
    hello = service(s, "hello")
    assert hello["state"] == "up" and hello["incarnation"] == 0
    assert read(s, hello["endpoint"]).fields["data"] == "Hello, World!"
    up = wait_event(s, "up", "hello")
    assert up["pid"] == hello["pid"] and up["endpoint"] == hello["endpoint"]
    proc = s.proc(hello["endpoint"])
    assert proc is not None and proc["manager"] == RS  # RS owns its life cycle


@pytest.mark.parametrize("sig,name", [(signal.SIGKILL, "SIGKILL"), (signal.SIGSEGV, "SIGSEGV")])
def test_death_by_signal_is_restarted_with_new_pid_and_endpoint(make_system: Make, sig: int,
                                                                name: str) -> None:
    s = boot_rs(make_system)
    old = service(s, "hello")
    os.kill(old["pid"], sig)
    crash = wait_event(s, "crash", "hello")
    assert crash["reason"] == "signal" and crash["signal"] == name
    assert crash["pid"] == old["pid"] and crash["action"] == "restart"
    r = wait_event(s, "restart", "hello")
    assert r["old_pid"] == old["pid"] and r["old_endpoint"] == old["endpoint"]
    assert r["new_pid"] != old["pid"] and r["new_endpoint"] != old["endpoint"]
    assert 0 <= r["downtime_ms"] < 2000
    new = wait_state(s, "hello", "up")
    assert new["incarnation"] == 1 and new["endpoint"] == r["new_endpoint"]
    m = read(s, new["endpoint"])
    assert m.fields["incarnation"] == 1  # SEF init type "restart" with its incarnation


@pytest.mark.parametrize("fault,reason", [("exit", "exit"), ("panic", "panic"),
                                          ("exception", "exception"), ("kill", "signal"),
                                          ("segv", "signal")])
def test_injected_faults_are_named(make_system: Make, fault: str, reason: str) -> None:
    s = boot_rs(make_system)
    pid = service(s, "hello")["pid"]
    ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault=fault)
    crash = wait_event(s, "crash", "hello")
    assert crash["reason"] == reason and crash["pid"] == pid
    if fault == "exit":
        assert crash["status"] == 1
    if fault == "panic":
        assert crash["status"] == params.EXIT_PANIC and "bin/crash" in crash["detail"]
    if fault == "exception":
        assert "InjectedFault" in crash["traceback"] and "Traceback" in crash["traceback"]
    wait_event(s, "restart", "hello")


def test_hang_is_detected_within_two_periods(make_system: Make) -> None:
    s = boot_rs(make_system, hello="period 200ms; backoff off;")
    old = service(s, "hello")
    ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault="hang")
    crash = wait_event(s, "crash", "hello")
    assert crash["reason"] == "heartbeat" and crash["pid"] == old["pid"]
    r = wait_event(s, "restart", "hello")
    assert r["old_pid"] == old["pid"]
    assert crash["ts"] - events(s, "up", "hello")[0]["ts"] >= 0.4  # not before 2 periods


def test_a_process_that_answers_pings_is_left_alone(make_system: Make) -> None:
    # 250 ms, not less: a component stalled two periods by a loaded machine is rightly taken
    # for hung, and this test is about a live one.
    s = boot_rs(make_system, hello="period 250ms;")
    pid = service(s, "hello")["pid"]
    deadline_events = wait_for(lambda: len(events(s)) >= 1)
    assert deadline_events
    wait_for(lambda: service(s, "hello")["uptime"] > 1.5, what="1.5 s of pings (six periods)")
    assert service(s, "hello")["pid"] == pid and not events(s, "crash")


def test_resource_hog_is_killed_and_intensity_limit_gives_up(make_system: Make) -> None:
    s = boot_rs(make_system, hello="memory_limit 1M; backoff off; restarts 1 60s;")
    first = wait_event(s, "crash", "hello")
    assert first["reason"] == "resource" and "memory" in first["detail"]
    wait_event(s, "crash", "hello", count=2)
    give = wait_event(s, "giveup", "hello")
    assert give["restarts"] == 1
    wait_state(s, "hello", "failed")
    assert events(s, "crash", "hello")[1]["action"] == "giveup"


def test_cpu_hog_is_killed_for_resource(make_system: Make) -> None:
    # 20%, not more: on a machine loaded past its cores a spinning loop gets only its share
    # (a load of 8 on 2 cores leaves it about 25%), and an idle driver uses next to none.
    s = boot_rs(make_system, hello="period off; cpu_limit 20%; backoff off;")
    pid = service(s, "hello")["pid"]
    ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault="hang")  # spins one CPU
    crash = wait_event(s, "crash", "hello")
    assert crash["reason"] == "resource" and "CPU" in crash["detail"] and crash["pid"] == pid
    assert wait_event(s, "restart", "hello")["old_pid"] == pid


def test_operator_down_is_not_a_failure_and_up_revives(make_system: Make) -> None:
    s = boot_rs(make_system)
    pid = service(s, "hello")["pid"]
    ctl.request(s.run_dir, RsReq.DOWN, label="hello")  # returns once it has exited
    assert service(s, "hello")["state"] == "down"
    down = events(s, "down", "hello")
    assert down[-1]["pid"] == pid and down[-1]["by"] == "operator"
    assert not events(s, "crash") and not events(s, "restart")
    r = ctl.request(s.run_dir, RsReq.UP, label="hello")
    assert r["pid"] != pid and service(s, "hello")["state"] == "up"


def test_refresh_replaces_a_live_service(make_system: Make) -> None:
    s = boot_rs(make_system)
    old = service(s, "hello")
    r = ctl.request(s.run_dir, RsReq.REFRESH, label="hello")
    assert r["pid"] != old["pid"]
    ev = wait_event(s, "restart", "hello")
    assert ev["cause"] == "refresh" and ev["old_pid"] == old["pid"]
    assert not events(s, "crash")
    with pytest.raises(ctl.RsError) as e:  # restart is for terminated services (MINIX)
        ctl.request(s.run_dir, RsReq.RESTART, label="hello")
    assert e.value.code == Err.EBUSY


def test_components_may_not_command_rs_nor_crash_each_other(make_system: Make) -> None:
    s = boot_rs(make_system, hello="ipc ALL;", start="hello agent")  # hello may answer agent
    agent, hello = service(s, "agent"), service(s, "hello")
    c = s.connect("t", "operator")
    for req, fields in [(RsReq.CRASH, {"label": "hello", "fault": "kill"}),
                        (RsReq.DOWN, {"label": "hello"}), (RsReq.SHUTDOWN, {})]:
        m = c.sendrec(agent["endpoint"], Message(1, {"dst": RS, "type": int(req),
                                                     "fields": fields}))
        assert m.type == Err.OK and m.fields["type"] == Err.EPERM
    m = c.sendrec(agent["endpoint"], Message(1, {"dst": hello["endpoint"],
                                                 "type": int(RsReq.CRASH),
                                                 "fields": {"fault": "exit"}}))
    assert m.fields["type"] == Err.EBADREQUEST  # SEF honours CRASH only from RS
    assert service(s, "hello")["pid"] == hello["pid"] and not events(s, "crash")


def test_unknown_service_and_bad_fault(make_system: Make) -> None:
    s = boot_rs(make_system)
    with pytest.raises(ctl.RsError) as e:
        ctl.request(s.run_dir, RsReq.UP, label="nosuch")
    assert e.value.code == Err.ESRCH
    with pytest.raises(ctl.RsError) as e:
        ctl.request(s.run_dir, RsReq.CRASH, label="hello", fault="meteor")
    assert e.value.code == Err.EINVAL


def test_death_of_ds_is_fatal_and_shuts_down(make_system: Make) -> None:
    s = boot_rs(make_system, ds=True)
    ds_pid = service(s, "ds")["pid"]
    os.kill(ds_pid, signal.SIGKILL)
    wait_for(lambda: s.system.kernel.poll() is not None, what="the system to shut down")
    assert events(s, "fatal")
    assert s.system.kernel.returncode == 0


@pytest.mark.parametrize("fault", ["sigkill", "hang"])
def test_the_board_is_watched_and_its_failure_is_fatal(make_system: Make, fault: str) -> None:
    """The board answers RS's heartbeat like any component; there is no machine without it,
    so its death (or a hang, noticed by the heartbeat) shuts the system down, logged."""
    s = boot_rs(make_system, board=True)
    hw = wait_state(s, "hw", "up")
    wait_for(lambda: service(s, "hw")["uptime"] > 1.0, what="1 s of 200 ms pings")
    assert service(s, "hw")["pid"] == hw["pid"] and not events(s, "crash")
    if fault == "sigkill":
        os.kill(hw["pid"], signal.SIGKILL)
    else:
        ctl.request(s.run_dir, RsReq.CRASH, label="hw", fault="hang")
    wait_for(lambda: s.system.kernel.poll() is not None, what="the system to shut down")
    crash = events(s, "crash", "hw")[0]
    assert crash["action"] == "fatal" and crash["pid"] == hw["pid"]
    assert crash["reason"] == ("signal" if fault == "sigkill" else "heartbeat")
    assert "hw" in events(s, "fatal")[0]["detail"]
    assert s.system.kernel.returncode == 0


def test_death_of_rs_is_fatal_and_shuts_down(make_system: Make) -> None:
    s = boot_rs(make_system)
    rs_pid = next(p["pid"] for p in s.info()["procs"] if p["label"] == "rs")
    os.kill(rs_pid, signal.SIGKILL)
    wait_for(lambda: s.system.kernel.poll() is not None, what="the system to shut down")
    assert any(e["label"] == "rs" for e in events(s, "fatal"))
