"""The INET server's own logic against a scripted kernel and DS (no system booted).

The whole server (services/inet/main.py) runs in the test process on a fake
connection: its kernel answers GETINFO from a process table the test writes,
its DS answers CHECK and RETRIEVE from a dict.  What is checked: HELLO is
taken only from the component the kernel started as the driver; an
unforeseen exception fails one request, is counted and logged once; DS's
word on the driver is acted on and a broken DS never stops INET; sockets of
an owner that died are closed.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest

from minikern import params, sef
from minikern.proto import Message
from minikern.const import DS, DsReq, Err, KCall, NetReq, SockReq
from minikern.ipc import IpcError
from services.inet import main as inet_main
from services.inet.sockets import MAX_PER_OWNER, MAX_SOCKETS

pytestmark = pytest.mark.timeout(30)

DRIVER, IMPOSTOR, USER, OTHER = 40, 41, 100, 101
MAC = b"\x02\x00\x00\x00\x00\x0a"


class FakeConn:
    """What INET's connection reaches: the kernel (GETINFO, SETALARM, NOTIFY) and DS."""

    def __init__(self) -> None:
        self.procs: list[dict[str, Any]] = [
            {"endpoint": DRIVER, "label": "rtl8139", "operator": False},
            {"endpoint": IMPOSTOR, "label": "rtl8139", "operator": True},  # named itself
            {"endpoint": USER, "label": "nc", "operator": True},
        ]
        self.getinfo_error: int | None = None
        self.ds: dict[str, Any] = {}
        self.labels: dict[str, Any] = {}
        self.changes: deque[str] = deque()
        self.ds_error: int | None = None
        self.notified: list[int] = []

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]:
        if call == KCall.GETINFO:
            if self.getinfo_error is not None:
                raise IpcError(self.getinfo_error, call.name)
            return {"procs": self.procs}
        return {}

    def sendrec(self, dst: int, m: Message) -> Message:
        assert dst == DS
        if self.ds_error is not None:
            raise IpcError(self.ds_error, "sendrec")
        if m.type == DsReq.SUBSCRIBE:
            return Message(Err.OK)
        if m.type == DsReq.CHECK:
            if not self.changes:
                return Message(Err.ESRCH)
            return Message(Err.OK, {"key": self.changes.popleft(), "type": "str", "owner": "rs"})
        table = self.labels if m.get("type") == "label" else self.ds
        if m.type == DsReq.RETRIEVE and m["key"] in table:
            return Message(Err.OK, {"value": table[m["key"]]})
        return Message(Err.ESRCH)

    def notify(self, dst: int) -> int:
        self.notified.append(dst)
        return Err.OK

    def sendnb(self, dst: int, m: Message) -> int:
        return Err.OK


class Server:
    def __init__(self, tmp_path: Path) -> None:
        self.conn = FakeConn()
        self.inet = inet_main.Inet(inet_main.parse_args([]))
        self.inet.init(sef.Context(conn=self.conn, label="inet", endpoint=5,  # type: ignore[arg-type]
                                   incarnation=0, run_dir=tmp_path, memory=None))
        self.table = self.inet.table()
        self.log = tmp_path / params.EVENT_LOG

    def call(self, source: int, req: int, **fields: Any) -> Message | None:
        return self.table[req](Message(req, fields, source=source))

    def status(self, source: int, req: int, **fields: Any) -> int:
        reply = self.call(source, req, **fields)
        assert reply is not None, "suspended"
        return reply.type

    def socket(self, source: int, kind: str) -> int:
        reply = self.call(source, SockReq.SOCKET, type=kind)
        assert reply is not None and reply.type == Err.OK
        return int(reply["fd"])

    def events(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


def test_hello_is_taken_only_from_the_component_the_kernel_started_as_the_driver(
        server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    hello = {"label": "rtl8139", "mac": MAC, "link": True}
    assert server.status(IMPOSTOR, NetReq.HELLO, **hello) == Err.EPERM  # operator-admitted
    assert server.status(USER, NetReq.HELLO, **hello) == Err.EPERM  # a user program lying
    assert server.status(12345, NetReq.HELLO, **hello) == Err.EPERM  # unknown to the kernel
    assert server.status(DRIVER, NetReq.HELLO, label="hello", mac=MAC) == Err.EPERM
    assert server.inet.netif.driver is None
    assert server.status(DRIVER, NetReq.HELLO, **hello) == Err.OK
    assert server.inet.netif.driver == DRIVER
    assert server.status(IMPOSTOR, NetReq.HELLO, **hello) == Err.EPERM
    assert server.status(IMPOSTOR, NetReq.PULL, rx=[], done=0, free=8) == Err.EPERM
    assert server.inet.netif.driver == DRIVER  # the real driver keeps the interface
    counts = server.inet.guard.counts
    assert counts["refused HELLO EPERM"] == 5 and counts["refused PULL EPERM"] == 1
    out = capsys.readouterr().out
    assert out.count("refused HELLO EPERM") == 1 and "kernel label 'rtl8139', operator True" in out
    # A caller the kernel was never asked about, when the kernel will not say: not vouched for.
    # (An endpoint already known stays known: it names one process's life, never its heir's.)
    server.conn.procs.append({"endpoint": DRIVER + 2, "label": "rtl8139", "operator": False})
    server.conn.getinfo_error = Err.ECALLDENIED
    assert server.status(DRIVER + 2, NetReq.HELLO, **hello) == Err.EPERM



def test_a_pull_carries_the_link_and_only_a_change_is_an_event(server: Server) -> None:
    """PROTOCOL.md 18.1: PULL's ``link`` is the driver's last reading; a change is one ``link``
    event, a repeat is none, anything but a bool is ignored, and only the driver is heard."""
    assert server.status(DRIVER, NetReq.HELLO, label="rtl8139", mac=MAC, link=True) == Err.OK
    pull = {"rx": [], "done": 0, "free": 4}
    assert server.status(DRIVER, NetReq.PULL, **pull, link=False) == Err.OK
    assert server.inet.netif.link is False
    assert server.status(DRIVER, NetReq.PULL, **pull, link=False) == Err.OK
    assert server.status(DRIVER, NetReq.PULL, **pull, link="up") == Err.OK  # not a bool
    assert server.status(DRIVER, NetReq.PULL, **pull) == Err.OK  # no word on the link
    assert server.status(IMPOSTOR, NetReq.PULL, **pull, link=True) == Err.EPERM
    assert server.inet.netif.link is False
    assert server.status(DRIVER, NetReq.PULL, **pull, link=True) == Err.OK
    states = [line for line in server.events().splitlines() if '"kind": "link"' in line]
    assert len(states) == 2 and '"down"' in states[0] and '"up"' in states[1]


def test_an_unforeseen_exception_fails_one_request_and_is_logged_once(
        server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    fd = server.socket(USER, "udp")

    class Broken:
        def bind(self, port: int) -> None:
            raise KeyError("a bug in the stack")

        def close(self) -> None:
            raise RuntimeError("and another")

    server.inet.sockets.socks[fd].obj = Broken()
    for _ in range(3):
        assert server.status(USER, SockReq.BIND, fd=fd, port=53) == Err.EINVAL
    assert server.status(USER, SockReq.CLOSE, fd=fd) == Err.OK  # gone from the table anyway
    assert fd not in server.inet.sockets.socks
    server.inet.netif.hello = None  # type: ignore[assignment,method-assign]  # TypeError if called
    assert server.status(DRIVER, NetReq.HELLO, label="rtl8139", mac=MAC) == Err.EINVAL
    counts = server.inet.guard.counts
    assert counts["failed BIND KeyError"] == 3 and counts["failed CLOSE RuntimeError"] == 1
    assert counts["failed HELLO TypeError"] == 1
    out = capsys.readouterr().out
    assert out.count("Traceback") == 3 and out.count("failed BIND KeyError") == 1


def test_malformed_socket_requests_are_refused(server: Server) -> None:
    tcp, udp = server.socket(USER, "tcp"), server.socket(USER, "udp")
    inf, huge = float("inf"), 2**64 - 1
    cases: list[tuple[int, SockReq, dict[str, Any], Err]] = [
        (USER, SockReq.SOCKET, {"type": ["tcp"]}, Err.EINVAL),
        (USER, SockReq.LISTEN, {"fd": tcp, "backlog": inf}, Err.EINVAL),  # was OverflowError
        (USER, SockReq.BIND, {"fd": tcp, "port": huge}, Err.EINVAL),
        (USER, SockReq.BIND, {"fd": tcp, "port": 80.0}, Err.EINVAL),
        (USER, SockReq.RECV, {"fd": tcp, "count": inf}, Err.EINVAL),
        (USER, SockReq.SEND, {"fd": udp, "data": b"x"}, Err.ENOTCONN),  # was AttributeError
        (USER, SockReq.RECV, {"fd": udp}, Err.ENOTCONN),
        (USER, SockReq.SENDTO, {"fd": udp, "ip": "10.0.0.3", "port": 9, "data": bytes(2000)},
         Err.E2BIG),
        (USER, SockReq.CONNECT, {"fd": tcp, "_started": True}, Err.EINVAL),  # INET's mark: ignored
        (USER, SockReq.CLOSE, {"fd": huge}, Err.EBADF),
        (USER, SockReq.CLOSE, {"fd": True}, Err.EBADF),
        (OTHER, SockReq.CLOSE, {"fd": tcp}, Err.EBADF),  # not its socket
    ]
    for source, req, fields, want in cases:
        assert server.status(source, req, **fields) == want, (req.name, fields)
    assert server.status(USER, SockReq.LISTEN, fd=tcp, backlog=2**40) == Err.EINVAL  # not bound
    assert server.status(USER, SockReq.BIND, fd=tcp, port=7) == Err.OK
    assert server.status(USER, SockReq.LISTEN, fd=tcp, backlog=2**40) == Err.OK  # clamped
    assert not [k for k in server.inet.guard.counts if k.startswith("failed")]


def test_one_owner_cannot_take_the_whole_table_and_dead_owners_make_room(server: Server) -> None:
    owners = [200, 201, 202, 203]
    assert len(owners) * MAX_PER_OWNER == MAX_SOCKETS
    server.conn.procs += [{"endpoint": e, "label": "user", "operator": True}
                          for e in [*owners, 204]]
    for e in owners:
        for _ in range(MAX_PER_OWNER):
            assert server.status(e, SockReq.SOCKET, type="udp") == Err.OK
    assert server.status(200, SockReq.SOCKET, type="udp") == Err.ENOSPC  # its share
    assert server.status(204, SockReq.SOCKET, type="udp") == Err.ENOSPC  # the table is full
    server.conn.procs = [p for p in server.conn.procs if p["endpoint"] != 203]
    assert server.status(204, SockReq.SOCKET, type="udp") == Err.OK  # 203's were swept


def test_the_sockets_of_an_owner_that_died_are_closed(server: Server) -> None:
    server.conn.procs.append({"endpoint": OTHER, "label": "echod", "operator": True})
    for owner in (USER, OTHER):
        fd = server.socket(owner, "udp")
        assert server.status(owner, SockReq.BIND, fd=fd, port=5000 + owner) == Err.OK
        pending = server.call(owner, SockReq.RECVFROM, fd=fd)
        assert pending is None  # suspended: nothing has arrived
    server.conn.procs = [p for p in server.conn.procs if p["endpoint"] != OTHER]
    server.inet.tick()  # the sweep is due at once
    assert {s.owner for s in server.inet.sockets.socks.values()} == {USER}
    assert 5000 + OTHER not in server.inet.stack.udp.ports
    assert 5000 + USER in server.inet.stack.udp.ports


def test_the_driver_state_in_ds_drops_or_nudges_the_driver(server: Server) -> None:
    key = "drv.net.rtl8139"
    assert server.status(DRIVER, NetReq.HELLO, label="rtl8139", mac=MAC) == Err.OK
    server.conn.ds[key] = "restarting"
    server.conn.changes.extend(["drv.net.other", key])
    server.inet.on_notify(Message(source=DS))
    assert server.inet.netif.driver is None and '"driver-gone"' in server.events()
    server.conn.ds[key], server.conn.labels["rtl8139"] = "up", 77
    server.conn.changes.append(key)
    server.inet.on_notify(Message(source=DS))
    assert server.conn.notified == [77] and '"endpoint": 77, "notify": "OK"' in server.events()
    del server.conn.labels["rtl8139"]  # no label entry: logged, nobody notified
    server.conn.changes.append(key)
    server.inet.on_notify(Message(source=DS))
    assert server.conn.notified == [77] and "no endpoint for rtl8139" in server.events()
    server.conn.labels["rtl8139"] = "garbage"
    server.conn.changes.append(key)
    server.inet.on_notify(Message(source=DS))
    assert server.conn.notified == [77]
    server.conn.ds_error = Err.EDEADSRCDST  # DS gone: INET carries on
    server.inet.on_notify(Message(source=DS))
    assert server.inet.guard.counts == {}


def test_setopt_turns_nagle_off_and_refuses_what_it_does_not_know(server: Server) -> None:
    tcp, udp = server.socket(USER, "tcp"), server.socket(USER, "udp")
    assert server.status(USER, SockReq.SETOPT, fd=tcp, nodelay=1) == Err.EINVAL  # not a bool
    assert server.status(USER, SockReq.SETOPT, fd=tcp, nodelay=True, cork=True) == Err.EINVAL
    assert server.status(USER, SockReq.SETOPT, fd=udp, nodelay=True) == Err.EINVAL
    assert server.status(OTHER, SockReq.SETOPT, fd=tcp, nodelay=True) == Err.EBADF
    assert server.status(USER, SockReq.SETOPT, fd=tcp, nodelay=True) == Err.OK
    assert server.inet.sockets.socks[tcp].obj.nodelay is True
