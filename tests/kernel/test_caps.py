"""Capabilities: every call is checked against the caller's privileges; denials are audited."""
from __future__ import annotations

import json

import pytest

from minikern.proto import Message
from minikern.const import HW, NONE, SYSTEM, CharReq, Err, KCall, Kind, KMsg
from minikern.ipc import IpcError
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.agent import REQ_COPY, REQ_GRANT
from tests.kernel.test_death import spawn

pytestmark = pytest.mark.timeout(60)


def audit_has(system: SystemUnderTest, label: str, call: str, error: str) -> bool:
    return any((r["label"], r["call"], r["error"]) == (label, call, error)
               for r in map(json.loads, system.audit()))


def counter(system: SystemUnderTest, name: str) -> int:
    return int(system.info()["counters"].get(name, 0))


def test_user_process_may_only_sendrec(system: SystemUnderTest) -> None:
    u, b = system.connect("u", "user"), system.connect("b", "client")
    assert u.send(b.endpoint, Message(1)) == Err.ETRAPDENIED
    assert u.notify(b.endpoint) == Err.ETRAPDENIED
    with pytest.raises(IpcError) as e:
        u.receive()
    assert e.value.code == Err.ETRAPDENIED
    assert audit_has(system, "u", "SEND", "ETRAPDENIED")
    assert audit_has(system, "u", "RECEIVE", "ETRAPDENIED")
    assert counter(system, "denied_ETRAPDENIED") == 3
    echo = system.endpoint_of("echo")
    assert u.sendrec(echo, Message(1, {"ok": 1})).fields == {"ok": 1}


def test_send_mask_is_enforced(system: SystemUnderTest) -> None:
    n, b = system.connect("n", "narrow"), system.connect("b", "client")
    assert n.send(b.endpoint, Message(1)) == Err.ECALLDENIED  # b is not in narrow's ipc list
    assert n.notify(b.endpoint) == Err.ECALLDENIED
    echo = system.endpoint_of("echo")
    assert n.sendrec(echo, Message(CharReq.READ, {"x": 1})).fields == {"x": 1}
    assert audit_has(system, "n", "SEND", "ECALLDENIED")
    assert audit_has(system, "n", "NOTIFY", "ECALLDENIED")


def test_kernel_endpoints_only_take_sendrec(system: SystemUnderTest) -> None:
    b = system.connect("b", "client")
    assert b.send(SYSTEM, Message(KCall.GETINFO)) == Err.ECALLDENIED
    assert b.notify(SYSTEM) == Err.ECALLDENIED


def test_kernel_call_mask_is_enforced(system: SystemUnderTest) -> None:
    n = system.connect("n", "narrow")
    with pytest.raises(IpcError) as e:
        n.kcall(KCall.PRIVCTL, label="x", module="tests.kernel.agent", args=["idle"],
                priv=system.conf.services["client"].priv())
    assert e.value.code == Err.ECALLDENIED
    with pytest.raises(IpcError):
        n.kcall(KCall.SHUTDOWN)
    assert audit_has(system, "n", "PRIVCTL", "ECALLDENIED")
    assert audit_has(system, "n", "SHUTDOWN", "ECALLDENIED")
    assert n.kcall(KCall.GETINFO)["procs"]  # what it holds still works


def fake_board(system: SystemUnderTest) -> None:
    mgr = system.connect("mgr", "client")
    spawn(system, mgr, "board", label="hw", slot=HW, wait=False)
    wait_for(lambda: "board attached to the bus" in system.console(), what="board on the bus")


def test_no_board_means_enodev(system: SystemUnderTest) -> None:
    drv = system.connect("drv", "driver")
    assert drv.kcall_status(KCall.DEVIO, port=0x1F7, size=1)[0] == Err.ENODEV


def test_port_io_outside_the_windows_is_refused(make_system) -> None:  # type: ignore[no-untyped-def]
    system = make_system(boot="")
    fake_board(system)
    drv = system.connect("drv", "driver")
    status, fields = drv.kcall_status(KCall.DEVIO, port=0x1F7, size=1)
    assert status == Err.OK and fields["values"] == [0x1234 + 0x1F7]  # forwarded to the board
    status, fields = drv.kcall_status(KCall.VDEVIO, ops=[[0x1F2, 1, 5], [0x3F6, 1, None]])
    assert status == Err.OK and fields["values"] == [None, 0x1234 + 0x3F6]
    for port, size in ((0x1F8, 1), (0x1F6, 4), (0x80, 1), (0x3F7, 1)):
        status, _ = drv.kcall_status(KCall.DEVIO, port=port, size=size, value=0)
        assert status == Err.ECALLDENIED, hex(port)
    status, _ = drv.kcall_status(KCall.VDEVIO, ops=[[0x1F0, 2, None], [0x60, 1, None]])
    assert status == Err.ECALLDENIED  # one bad port refuses the whole batch
    assert audit_has(system, "drv", "DEVIO", "ECALLDENIED")


def test_irq_lines_outside_the_caps_are_refused_and_held_ones_notify(make_system) -> None:  # type: ignore[no-untyped-def]
    system = make_system(boot="")
    fake_board(system)
    drv = system.connect("drv", "driver")
    status, _ = drv.kcall_status(KCall.IRQCTL, op=1, irq=11)
    assert status == Err.ECALLDENIED
    assert drv.kcall_status(KCall.IRQCTL, op=1, irq=14)[0] == Err.OK  # the board then fires 14
    m = drv.receive()
    assert (m.kind, m.source, m.aux) == (Kind.NOTIFY, -1, 1 << 14)  # from HARDWARE, bitmap
    assert audit_has(system, "drv", "IRQCTL", "ECALLDENIED")


def test_grants_name_their_grantee(make_system) -> None:  # type: ignore[no-untyped-def]
    system = make_system(boot="")
    mgr = system.connect("mgr", "client")
    granter, _ = spawn(system, mgr, "grant", label="granter")
    copier, _ = spawn(system, mgr, "copier", label="copier")
    other, _ = spawn(system, mgr, "copier", label="other")
    gid = mgr.sendrec(granter, Message(REQ_GRANT, {"grantee": copier}))["grant"]
    r = mgr.sendrec(copier, Message(REQ_COPY, {"granter": granter, "grant": gid}))
    assert (r.type, r["data"]) == (Err.OK, b"secret")
    r = mgr.sendrec(other, Message(REQ_COPY, {"granter": granter, "grant": gid}))
    assert r.type == Err.EPERM and r["data"] == bytes(6)  # not named by the grant: nothing copied
    r = mgr.sendrec(copier, Message(REQ_COPY, {"granter": granter, "grant": gid + (1 << 20)}))
    assert r.type == Err.EPERM  # a wrong sequence number is a different grant
    assert audit_has(system, "other", "SAFECOPYFROM", "EPERM")


def test_privctl_children_report_to_their_manager(system: SystemUnderTest) -> None:
    mgr = system.connect("mgr", "client")
    ep, pid = spawn(system, mgr, "idle")
    assert system.proc(ep)["manager"] == mgr.endpoint  # type: ignore[index]
    assert system.proc(mgr.endpoint)["manager"] == NONE  # type: ignore[index]  # not RS (0)
    mgr.kcall(KCall.KILL, endpoint=ep, signal=9)
    m = mgr.receive(SYSTEM)
    assert (m.type, m["endpoint"], m["signal"]) == (KMsg.EXIT, ep, 9)


def test_alarm_notifies_from_clock(system: SystemUnderTest) -> None:
    c = system.connect("c", "client")
    c.kcall(KCall.SETALARM, ms=30)
    m = c.receive()
    assert (m.kind, m.source) == (Kind.NOTIFY, -3)
    c.kcall(KCall.SETALARM, ms=300)
    assert c.kcall(KCall.SETALARM, ms=0)["left_ms"] > 0  # cancelled, with time left
    # Let the cancelled alarm's time pass, measured by the kernel's own clock: a second
    # endpoint's alarm, due well after it, fires first.  Had the cancelled one fired, its
    # notification would be pending at c, and pending notifications come oldest first.
    d = system.connect("d", "client")
    d.kcall(KCall.SETALARM, ms=600)
    assert (d.receive().source, d.notify(c.endpoint)) == (-3, Err.OK)
    assert c.receive().source == d.endpoint  # the cancelled alarm never fired
