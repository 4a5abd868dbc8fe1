"""DS as a real process in a booted system: labels, privacy across restarts, subscriptions, limits."""
from __future__ import annotations

import os
import signal
from typing import Any
from collections.abc import Callable

import pytest

from minikern import ds, ipc
from minikern.proto import Message
from minikern.const import DS, RS, SYSTEM, CharReq, DsFlag, DsReq, Err, KCall, Kind
from services.ds import store
from tests.conftest import TEST_CONF, SystemUnderTest, wait_for
from tests.services.ds_agent import FORWARD

pytestmark = pytest.mark.timeout(60)

DS_CONF = TEST_CONF + """
service ds {{ program services.ds; system GETINFO; ipc ALL; }};
service hello {{ program drivers.hello; system SETALARM; ipc ALL; }};
service dsagent {{ program tests.services.ds_agent; ipc ALL; }};
"""
OVER, PRIV, INIT = DsFlag.OVERWRITE, DsFlag.PRIVATE, DsFlag.INITIAL


@pytest.fixture
def system(make_system: Callable[..., SystemUnderTest]) -> SystemUnderTest:
    return make_system("ds", DS_CONF)


def spawn(system: SystemUnderTest, mgr: ipc.Connection, service: str, label: str,
          incarnation: int = 0, slot: int | None = None) -> tuple[int, int]:
    svc = system.conf.services[service]
    fields: dict[str, Any] = {"label": label, "module": svc.get("program"),
                              "args": svc.keys.get("args", []), "priv": svc.priv(),
                              "incarnation": incarnation}
    if slot is not None:
        fields["slot"] = slot
    r = mgr.kcall(KCall.PRIVCTL, **fields)
    wait_for(lambda: (system.proc(r["endpoint"]) or {}).get("ready"), what=f"{label} ready")
    return r["endpoint"], r["pid"]


def refused(code: Err, fn: Callable[..., Any], *args: Any) -> None:
    with pytest.raises(ipc.IpcError) as e:
        fn(*args)
    assert e.value.code == code, e.value


def raw(conn: ipc.Connection, req: int, **fields: Any) -> Message:
    return conn.sendrec(DS, Message(req, fields))


def notified(system: SystemUnderTest, conn: ipc.Connection) -> bool:
    m = system.background(conn.receive, DS).result(10)
    return bool(m.kind == Kind.NOTIFY and m.source == DS)


def drain(conn: ipc.Connection) -> list[tuple[str, str, str]]:
    out = []
    while (change := ds.check(conn)) is not None:
        out.append(change)
    return out


def test_ds_runs_at_its_fixed_slot(system: SystemUnderTest) -> None:
    assert system.endpoint_of("ds") == DS


def test_publish_retrieve_and_owner_only_changes(system: SystemUnderTest) -> None:
    a, b = system.connect("alpha", "client"), system.connect("beta", "client")
    ds.publish(a, "drv.net.rtl8139", 7)
    ds.publish(a, "alpha.name", "eth0")
    ds.publish(a, "alpha.mac", b"\x52\x54\x00")
    assert ds.retrieve(b, "drv.net.rtl8139") == 7
    assert ds.retrieve(b, "alpha.name") == "eth0"
    assert ds.retrieve(b, "alpha.mac") == b"\x52\x54\x00"
    reply = raw(b, DsReq.RETRIEVE, key="alpha.name")
    assert reply.fields == {"type": "str", "value": "eth0", "owner": "alpha", "version": 0}
    refused(Err.EPERM, ds.publish, b, "drv.net.rtl8139", 9, OVER)
    with pytest.raises(ipc.IpcError, match="drv.net.rtl8139 belongs to alpha"):
        ds.delete(b, "drv.net.rtl8139")  # a refusal says why
    refused(Err.EEXIST, ds.publish, a, "drv.net.rtl8139", 8)
    ds.publish(a, "drv.net.rtl8139", 8, OVER)
    assert (ds.retrieve(b, "drv.net.rtl8139"), ds.retrieve(b, "drv.net.rtl8139", 1)) == (8, 7)
    ds.delete(a, "drv.net.rtl8139")
    refused(Err.ESRCH, ds.retrieve, b, "drv.net.rtl8139")


def test_private_entry_belongs_to_the_label_not_the_endpoint(system: SystemUnderTest) -> None:
    keeper, other = system.connect("keeper", "client"), system.connect("other", "client")
    ds.publish(keeper, "keeper.state", b"checkpoint", PRIV)
    refused(Err.EPERM, ds.retrieve, other, "keeper.state")
    again = reconnect(system, keeper)
    assert ds.retrieve(again, "keeper.state") == b"checkpoint"
    ds.publish(again, "keeper.state", b"newer", PRIV | OVER)


def test_hello_restores_its_counter_after_sigkill(system: SystemUnderTest) -> None:
    mgr, user = system.connect("mgr", "client"), system.connect("reader", "client")
    hello, pid = spawn(system, mgr, "hello", "hello")
    assert ds.retrieve(user, "drv.chr.hello") == "up"
    for n in (1, 2, 3):
        assert user.sendrec(hello, Message(CharReq.OPEN)).fields["open_counter"] == n
    refused(Err.EPERM, ds.retrieve, user, "hello.open_counter")  # a private backup
    os.kill(pid, signal.SIGKILL)
    assert mgr.receive(SYSTEM).fields["endpoint"] == hello  # the kernel saw it die
    again, _ = spawn(system, mgr, "hello", "hello", incarnation=1)
    assert again != hello
    r = user.sendrec(again, Message(CharReq.READ)).fields
    assert (r["open_counter"], r["incarnation"]) == (3, 1)
    assert user.sendrec(again, Message(CharReq.OPEN)).fields["open_counter"] == 4


def test_notify_then_check_with_initial(system: SystemUnderTest) -> None:
    pub, watcher = system.connect("net", "client"), system.connect("inet", "client")
    ds.publish(pub, "drv.net.a", "up")
    ds.publish(pub, "drv.net.b", "up")
    ds.publish(pub, "drv.blk.c", "up")
    ds.subscribe(watcher, r"drv\.net\..*", INIT)
    assert notified(system, watcher)
    assert sorted(drain(watcher)) == [("drv.net.a", "str", "net"), ("drv.net.b", "str", "net")]
    ds.publish(pub, "drv.blk.d", "up")
    ds.publish(pub, "drv.net.e", 1)
    assert notified(system, watcher)
    assert drain(watcher) == [("drv.net.e", "u32", "net")]
    ds.delete(pub, "drv.net.e")
    assert notified(system, watcher)
    change = raw(watcher, DsReq.CHECK).fields
    assert (change["key"], change["deleted"], change["dropped"]) == ("drv.net.e", True, 0)
    assert raw(watcher, DsReq.CHECK).type == Err.ESRCH  # "nothing new"
    refused(Err.EEXIST, ds.subscribe, watcher, r"drv\..*")
    refused(Err.EINVAL, ds.subscribe, watcher, "(", OVER)
    refused(Err.EINVAL, ds.subscribe, watcher, "(a+)+$", OVER)


def test_restarted_subscriber_keeps_its_subscription(system: SystemUnderTest) -> None:
    pub = system.connect("net", "client")
    first = system.connect("vfs", "client")
    ds.subscribe(first, r"drv\.chr\..*")
    ds.publish(pub, "drv.chr.tty", "up")
    assert notified(system, first)  # DS now has vfs's first endpoint cached
    second = reconnect(system, first)
    ds.publish(pub, "drv.chr.lp", "up")
    assert notified(system, second)  # the cached endpoint was dead: DS looked vfs up again
    assert drain(second) == [("drv.chr.tty", "str", "net"), ("drv.chr.lp", "str", "net")]
    second.close()
    wait_for(lambda: system.proc(second.endpoint) is None, what="vfs gone")
    ds.publish(pub, "drv.chr.tty", "down", OVER)  # vfs is down: the change waits for it
    third = system.connect("vfs", "client")
    assert drain(third) == [("drv.chr.tty", "str", "net")]


def reconnect(system: SystemUnderTest, conn: ipc.Connection) -> ipc.Connection:
    """The same label at a new endpoint, once the old one is gone (a restart, as DS sees it)."""
    assert conn.label is not None
    conn.close()
    wait_for(lambda: system.proc(conn.endpoint) is None, what=f"{conn.label} gone")
    again = system.connect(conn.label, "client")
    assert again.endpoint != conn.endpoint
    return again


def test_limits_have_clear_errors(system: SystemUnderTest) -> None:
    a = system.connect("alpha", "client")
    ds.publish(a, "k" * store.MAX_KEY_LEN, 1)
    refused(Err.E2BIG, ds.publish, a, "k" * (store.MAX_KEY_LEN + 1), 1)
    ds.publish(a, "big", bytes(store.MAX_VALUE_SIZE))
    refused(Err.E2BIG, ds.publish, a, "bigger", bytes(store.MAX_VALUE_SIZE + 1))
    refused(Err.E2BIG, ds.publish, a, "bigger", "x" * (store.MAX_VALUE_SIZE + 1))
    refused(Err.EINVAL, ds.publish, a, "negative", -1)
    for i in range(store.MAX_KEYS - 2):
        ds.publish(a, f"fill.{i}", i)
    refused(Err.ENOSPC, ds.publish, a, "one.more", 1)
    ds.delete(a, "big")
    ds.publish(a, "one.more", 1)


@pytest.mark.parametrize("req, fields", [
    (DsReq.PUBLISH, {"key": 5, "type": "u32", "value": 1}),
    (DsReq.PUBLISH, {"key": "k", "type": "u32", "value": "one"}),
    (DsReq.PUBLISH, {"key": "k", "type": "u32", "value": True}),
    (DsReq.PUBLISH, {"key": "k", "type": "u32", "value": 1, "flags": "OVERWRITE"}),
    (DsReq.PUBLISH, {"key": "k", "type": ["u32"], "value": 1}),
    (DsReq.PUBLISH, {}),
    (DsReq.RETRIEVE, {"key": ["k"]}),
    (DsReq.RETRIEVE, {"key": "k", "version": "0"}),
    (DsReq.RETRIEVE, {"key": "k", "version": 1.5}),
    (DsReq.DELETE, {"key": None}),
    (DsReq.SUBSCRIBE, {"regex": {"a": 1}}),
    (DsReq.SUBSCRIBE, {"regex": "x", "flags": -1}),
])
def test_malformed_requests_get_einval_and_ds_keeps_serving(
        system: SystemUnderTest, req: DsReq, fields: dict[str, Any]) -> None:
    a = system.connect("alpha", "client")
    ds_pid = (system.proc(DS) or {}).get("pid")
    ds.publish(a, "k", 1)
    assert raw(a, req, **fields).type == Err.EINVAL
    assert raw(a, 0x6FF).type == Err.EBADREQUEST
    assert ds.retrieve(a, "k") == 1
    assert (system.proc(DS) or {}).get("pid") == ds_pid


def test_only_rs_publishes_labels_and_purges(system: SystemUnderTest) -> None:
    mgr, net, inet = (system.connect(x, "client") for x in ("mgr", "net", "inet"))
    refused(Err.EPERM, ds.publish_label, net, "net", net.endpoint)
    refused(Err.EPERM, ds.purge, net, "inet")
    rs, _ = spawn(system, mgr, "dsagent", "rs", slot=RS)
    assert rs == RS

    def as_rs(req: DsReq, **fields: Any) -> Message:
        return mgr.sendrec(rs, Message(FORWARD, {"req": int(req), "fields": fields}))

    r = as_rs(DsReq.PUBLISH, key="net", type="label", value=net.endpoint, flags=int(OVER))
    assert r.type == Err.OK
    assert ds.retrieve_label(inet, "net") == net.endpoint
    ds.subscribe(net, ".*")
    ds.subscribe(inet, r"drv\.net\..*")
    ds.publish(net, "drv.net.x", "up")
    ds.publish(net, "net.state", 5, PRIV)
    assert notified(system, inet)
    assert drain(inet) == [("drv.net.x", "str", "net")]
    r = as_rs(DsReq.PURGE, label="net")
    assert (r.type, r.fields) == (Err.OK, {"entries": 3, "subscriptions": 1})
    refused(Err.ESRCH, ds.retrieve_label, inet, "net")
    assert notified(system, inet)
    assert drain(inet) == [("drv.net.x", "str", "net")]  # learnt by CHECK: deleted
    assert ds.check(net) is None  # its subscription went too
