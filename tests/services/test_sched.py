"""Priorities as MINIX has them (minikern/sched.py, system.conf ``priority``): the queues'
order, their host nice values, and RS placing every instance, a restarted one too."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from minikern import params, sched, sysconf
from minikern.cli import REPO_ROOT
from minikern.const import IDLE_Q, KERNEL_Q, USER_Q
from minikern.sysconf import ConfError
from services.rs.policy import Policy
from tests.conftest import SystemUnderTest, wait_for
from tests.services.test_sched_rt import rr_priority
from tests.services.rs_helpers import service, wait_event, wait_state

ROOT = os.geteuid() == 0
NOT_ROOT = "a raised priority (negative nice) needs CAP_SYS_NICE: run as root"


def test_queues_map_to_nice_in_minix_order() -> None:
    nices = [sched.nice_of(q) for q in range(KERNEL_Q, IDLE_Q + 1)]
    assert nices == sorted(nices) and len(set(nices)) == len(nices)  # a higher queue, less CPU
    assert sched.nice_of(USER_Q) == 0  # a user program runs at the host's default
    assert all(-20 <= n <= 19 for n in nices)
    assert [sched.queue_of(n) for n in nices] == list(range(KERNEL_Q, IDLE_Q + 1))


@pytest.mark.parametrize("bad", ["-1", "16", "x", "2.5", "0x1"])
def test_a_priority_outside_the_queues_is_refused_naming_the_service(bad: str) -> None:
    conf = sysconf.parse(f"service d {{ program drivers.hello; priority {bad}; }};")
    with pytest.raises(ConfError, match="service d: priority"):
        Policy.from_conf(conf.services["d"])


def test_the_shipped_configuration_orders_rs_drivers_servers_users() -> None:
    """etc/system.conf: RS first, then every driver (a program of drivers/), then every
    server (of services/), each above the user programs' queue, where the console's shell (a
    program of userland/) runs."""
    conf = sysconf.load(REPO_ROOT / "etc" / "system.conf")
    q = {label: Policy.from_conf(svc).priority for label, svc in conf.services.items()
         if svc.get("program")}
    drivers = {label for label, svc in conf.services.items()
               if (svc.get("program") or "").startswith("drivers.")}
    servers = {label for label, svc in conf.services.items()
               if (svc.get("program") or "").startswith("services.")} - {"rs"}
    users = {label for label, svc in conf.services.items()
             if (svc.get("program") or "").startswith("userland.")}
    assert drivers and servers and users
    assert q["rs"] == KERNEL_Q
    assert q["rs"] < min(q[d] for d in drivers)
    assert max(q[d] for d in drivers) < min(q[s] for s in servers)
    assert max(q[s] for s in servers) < USER_Q
    assert {q[u] for u in users} == {USER_Q}


def _child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_apply_lowers_a_priority_without_privilege() -> None:
    p = _child()
    try:
        assert sched.apply(p.pid, USER_Q + 3) is None
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == sched.nice_of(USER_Q + 3) > 0
        assert sched.current(p.pid) == USER_Q + 3
    finally:
        p.kill()
        p.wait()


def test_apply_raises_a_priority_as_root_and_says_why_not_otherwise() -> None:
    p = _child()
    try:
        said = sched.apply(p.pid, 1)
        if ROOT:
            assert said is None and sched.current(p.pid) == 1
        else:
            assert said is not None and "CAP_SYS_NICE" in said
            assert sched.current(p.pid) == USER_Q  # left where it was
    finally:
        p.kill()
        p.wait()
    assert sched.apply(p.pid, 1) is None  # gone: being replaced, no error


def test_a_system_queue_gets_a_short_slice_and_a_user_queue_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the weighted class's slice: all a system process has without root or the real-time
    # class, and what it keeps while demoted from it (tests/services/test_sched_rt.py)
    monkeypatch.setattr(params, "REALTIME", False)
    p = _child()
    try:
        sched.apply(p.pid, USER_Q)  # a user program's (this test's process may be a server's)
        default = sched.slice_us(p.pid)
        if default is None:
            pytest.skip("the host reports no time slice (/proc/PID/sched se.slice: EEVDF)")
        assert default != params.SYSTEM_SLICE_US
        sched.apply(p.pid, 1)  # root or not: the slice needs no privilege
        assert sched.slice_us(p.pid) == params.SYSTEM_SLICE_US
        sched.apply(p.pid, USER_Q + 3)
        assert sched.slice_us(p.pid) == default
    finally:
        p.kill()
        p.wait()


def thread_slices(pid: int) -> set[int | None]:
    """The time slices of every thread of ``pid`` (libzmq's I/O threads among them)."""
    return {sched.slice_us(tid) for tid in sched.threads(pid)}


CONF = """
boot rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service rs {{ program services.rs.main; args hello agent; priority 0;
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; priority 3; }};
service hello {{ program drivers.hello; ipc SYSTEM USER rs ds; priority 2; backoff off; }};
service agent {{ program tests.services.rs_agent; ipc ALL; period off; priority 10; }};
"""


@pytest.mark.timeout(90)
def test_rs_places_every_instance_in_its_queue(
        make_system: Callable[..., SystemUnderTest]) -> None:
    s = make_system("rs ds", CONF)
    for label in ("hello", "agent"):
        wait_state(s, label, "up")
    want = {"ds": 3, "hello": 2, "agent": 10}
    pids = {label: service(s, label)["pid"] for label in want}
    # below the user programs' queue every host allows it; above it only with CAP_SYS_NICE
    assert sched.current(pids["agent"]) == 10
    system = (s.system.kernel.pid, pids["hello"], pids["ds"])  # queues 0, 2, 3
    if sched.policy(s.system.kernel.pid) == "rr":  # root, and the host grants real-time
        # every thread of a system process (libzmq's I/O threads among them), in order
        prios = [{rr_priority(t) for t in sched.threads(pid)} for pid in system]
        assert [len(p) for p in prios] == [1, 1, 1] and None not in set.union(*prios), prios
        assert [p.pop() for p in prios] == [sched.rt_priority(q) for q in (KERNEL_Q, 2, 3)]
        assert {rr_priority(t) for t in sched.threads(pids["agent"])} == {None}
    elif sched.slice_us(s.system.kernel.pid) is not None:  # every thread of a system process
        for pid in system:
            assert thread_slices(pid) == {params.SYSTEM_SLICE_US}, pid
        assert params.SYSTEM_SLICE_US not in thread_slices(pids["agent"])
    if ROOT:
        assert {label: sched.current(pid) for label, pid in pids.items()} == want
        rs_pid = next(p["pid"] for p in s.info()["procs"] if p["label"] == "rs")
        assert sched.current(rs_pid) == 0
        assert sched.current(s.system.kernel.pid) == KERNEL_Q
    else:
        wait_for(lambda: "priorities not applied" in s.console(), 10, "RS's one line")
    # a new instance is placed too, not only the ones at boot
    old = pids["agent"]
    os.kill(old, signal.SIGKILL)
    wait_event(s, "restart", "agent")
    new = wait_state(s, "agent", "up")["pid"]
    assert new != old and sched.current(new) == 10
    if ROOT:
        os.kill(pids["hello"], signal.SIGKILL)
        wait_event(s, "restart", "hello")
        assert sched.current(wait_state(s, "hello", "up")["pid"]) == 2
    else:
        pytest.skip(NOT_ROOT + " (the queues below USER_Q were checked)")


def _templates(kernel_pid: int) -> list[int]:
    """The kernel's pooled templates: its children that run minikern.template and have not
    become a component yet (a component is named mk-LABEL, minikern/template.py)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                with open(f"/proc/{entry}/comm", "rb") as f:
                    named = f.read().startswith(b"mk-")
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if ppid == kernel_pid and b"minikern.template" in argv and not named:
                pids.append(int(entry))
    return pids


@pytest.mark.timeout(90)
def test_templates_import_below_every_service_then_take_their_components_queue(
        make_system: Callable[..., SystemUnderTest]) -> None:
    """A pooled template (a refill) imports in params.TEMPLATE_QUEUE (below every service,
    above the user programs), not in the kernel's queue; the component it becomes is in
    its own, and so are the boot's (their templates had their record waiting)."""
    if not ROOT:
        pytest.skip(NOT_ROOT + " (a template lowered without it could not be raised again)")
    assert KERNEL_Q < params.TEMPLATE_QUEUE < USER_Q
    s = make_system("rs ds", CONF)
    wait_state(s, "hello", "up")
    kernel = s.system.kernel.pid
    # the kernel puts each template there as it starts it
    wait_for(lambda: len(pool := _templates(kernel)) == params.TEMPLATE_POOL
             and {sched.current(pid) for pid in pool} == {params.TEMPLATE_QUEUE}, 20,
             "the template pool, in the templates' queue")
    assert sched.current(service(s, "ds")["pid"]) == 3
    old = service(s, "hello")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_event(s, "restart", "hello")
    assert sched.current(wait_state(s, "hello", "up")["pid"]) == 2  # from a template's queue
