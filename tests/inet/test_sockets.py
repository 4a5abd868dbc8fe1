"""The sockets interface message by message, in real systems: UDP and TCP through userland/socket.py,
hostile and malformed requests, a HELLO from an impostor, owners that die.

INET has no loopback interface, so the traffic runs between two systems on
the UDP wire (tests/net/lab.py): A at SYSTEM_IP, B at SECOND_IP, booted once
for this module.  The test process connects to them as user programs do.
"""
from __future__ import annotations

import concurrent.futures
import json
import math
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from minikern import cli, ds
from minikern.proto import Message
from minikern.const import Err, NetReq, RsReq, SockReq
from minikern.deadline import wait_for
from minikern import rsctl as ctl
from tests.net import lab
from userland.socket import Socket, SocketError

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")
STEP = 15.0  # seconds one blocking call may take


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[lab.Node, lab.Node]]:
    with lab.udp_pair(tmp_path_factory.mktemp("pair")) as nodes:
        yield nodes


class Program:
    """A user program in ``node`` (the ``user`` privileges of etc/system.conf).

    Its calls run one at a time in a thread of its own, each with a deadline:
    a lost datagram fails the test instead of hanging it, and the connection
    is never used by two threads at once (ZeroMQ would abort the test process).
    A call still blocked after a failure ends when its system halts.
    """

    def __init__(self, node: lab.Node, label: str = "prog") -> None:
        self.conn = cli.operator_connection(node.run_dir, label, privileges="user")
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=label)
        self.inet = self.call(ds.retrieve_label, self.conn, "inet")

    def start(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        return self.thread.submit(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.start(fn, *args).result(STEP)

    def error(self, fn: Callable[..., object], *args: Any) -> int:
        """The Err code a library call fails with (AssertionError if it succeeds)."""
        def expect() -> int:
            with pytest.raises(SocketError) as e:
                fn(*args)
            return e.value.code
        return self.call(expect)

    def socket(self, kind: str = "tcp") -> Socket:
        return self.call(Socket, self.conn, kind, None, self.inet)

    def request(self, mtype: int, **fields: Any) -> int:
        """One raw message to INET; the status it is answered with."""
        return self.call(self.conn.sendrec, self.inet, Message(mtype, fields)).type

    def close(self) -> None:
        self.thread.submit(self.conn.close)  # after whatever call is still running
        self.thread.shutdown(wait=False)


@pytest.fixture
def programs() -> Iterator[Callable[..., Program]]:
    made: list[Program] = []

    def program(node: lab.Node, label: str = "prog") -> Program:
        made.append(Program(node, label))
        return made[-1]

    yield program
    for p in made:
        p.close()


def udp_round_trip(program: Callable[..., Program], a: lab.Node, b: lab.Node, port: int) -> None:
    """A datagram from A to B and the answer back: both INETs and both drivers work."""
    pa, pb = program(a, "udp-a"), program(b, "udp-b")
    sa, sb = pa.socket("udp"), pb.socket("udp")
    pa.call(sa.bind, port)
    pb.call(sb.bind, port + 1)
    got = pb.start(sb.recvfrom)
    assert pa.call(sa.sendto, b"ping", lab.SECOND_IP, port + 1) == 4
    assert got.result(STEP) == (b"ping", (lab.SYSTEM_IP, port))
    got = pa.start(sa.recvfrom)
    pb.call(sb.sendto, b"pong", lab.SYSTEM_IP, port)
    assert got.result(STEP) == (b"pong", (lab.SECOND_IP, port + 1))
    pa.call(sa.close)
    pb.call(sb.close)


def test_udp_datagrams_between_two_systems_with_and_without_connect(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, b = pair
    udp_round_trip(programs, a, b, 6000)
    pa, pb = programs(a, "udp-a"), programs(b, "udp-b")
    sa, stranger, sb = pa.socket("udp"), pa.socket("udp"), pb.socket("udp")
    pa.call(sa.bind, 6010)
    pa.call(stranger.bind, 6012)
    pb.call(sb.bind, 6011)
    pa.call(sa.connect, lab.SECOND_IP, 6011)
    pb.call(sb.connect, lab.SYSTEM_IP, 6010)
    got = pb.start(sb.recv)
    assert pa.call(sa.send, b"hello") == 5
    assert got.result(STEP) == b"hello"
    pa.call(stranger.sendto, b"stranger", lab.SECOND_IP, 6011)  # not sb's peer: dropped
    got = pa.start(sa.recv)
    pb.call(sb.send, b"world")
    assert got.result(STEP) == b"world"
    got = pb.start(sb.recv)
    pa.call(sa.send, b"friend")
    assert got.result(STEP) == b"friend"
    pa.call(sa.send, b"x" * 100)
    assert pb.call(sb.recv, 10) == b"x" * 10  # the rest of the datagram is gone
    pb.call(sb.sendto, b"elsewhere", lab.SYSTEM_IP, 6012)  # sendto: connected or not
    assert pa.call(stranger.recvfrom) == (b"elsewhere", (lab.SECOND_IP, 6011))


def test_udp_misuse_is_refused_with_a_clear_error(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, _ = pair
    p, other = programs(a), programs(a, "other")
    s = p.socket("udp")
    assert p.error(s.send, b"no peer") == Err.ENOTCONN
    assert p.error(s.recv) == Err.ENOTCONN
    assert p.error(s.sendto, bytes(2000), lab.SECOND_IP, 9) == Err.E2BIG
    assert p.error(s.listen) == Err.EINVAL
    assert p.error(s.accept) == Err.EINVAL
    assert p.error(s.connect, lab.SECOND_IP, 0) == Err.EINVAL
    assert p.error(Socket(p.conn, fd=999_999, inet=p.inet).send, b"x") == Err.EBADF
    assert other.error(Socket(other.conn, fd=s.fd, inet=p.inet).close) == Err.EBADF  # not its own


# Each: (request type, fields).  Every one must be answered with an error.
GARBAGE: list[tuple[int, dict[str, Any]]] = [
    (SockReq.SOCKET, {"type": 7}), (SockReq.SOCKET, {"type": ["tcp"]}),
    (SockReq.SOCKET, {"type": "sctp"}), (SockReq.SOCKET, {}),
    (SockReq.BIND, {"fd": "3", "port": 80}), (SockReq.BIND, {"fd": 2**64 - 1}),
    (SockReq.BIND, {"fd": -2**63}), (SockReq.BIND, {"fd": math.inf}), (SockReq.BIND, {"fd": None}),
    (SockReq.SEND, {"fd": [3]}), (SockReq.RECV, {"fd": {"fd": 3}}), (SockReq.CLOSE, {"fd": True}),
    (0x9FF, {}), (0x12345, {"fd": 3}), (-1, {}), (2**63 - 1, {}), (0, {}),
    (NetReq.PULL, {"rx": [b"\0" * 60], "done": 2**64 - 1, "free": -1}),
    (NetReq.PULL, {"rx": "frames"}), (NetReq.HELLO, {"label": "rtl8139", "mac": "02:00"}),
    (NetReq.HELLO, {"label": None, "mac": b"\0" * 6}),
]

# Each: (request type, fields but "fd", which is the test's own socket of ``kind``).
GARBAGE_ON_A_SOCKET: list[tuple[str, int, dict[str, Any]]] = [
    ("tcp", SockReq.BIND, {"port": 2**64 - 1}), ("tcp", SockReq.BIND, {"port": -1}),
    ("tcp", SockReq.BIND, {"port": 80.0}), ("tcp", SockReq.BIND, {"port": math.nan}),
    ("tcp", SockReq.LISTEN, {"backlog": math.inf}), ("tcp", SockReq.LISTEN, {"backlog": "8"}),
    ("tcp", SockReq.CONNECT, {"ip": "999.0.0.1", "port": 80}),
    ("tcp", SockReq.CONNECT, {"ip": b"\x0a\0\0\x03", "port": 80}),
    ("tcp", SockReq.CONNECT, {"ip": lab.SECOND_IP, "port": 65536}),
    ("tcp", SockReq.CONNECT, {"_started": True}),
    ("tcp", SockReq.SEND, {"data": "text"}), ("tcp", SockReq.SEND, {"data": bytes(40_000)}),
    ("tcp", SockReq.SEND, {"data": b"not connected"}),
    ("tcp", SockReq.RECV, {"count": 0}), ("tcp", SockReq.RECV, {"count": -math.inf}),
    ("tcp", SockReq.RECV, {"count": 2**64 - 1}),  # capped, then: not connected
    ("tcp", SockReq.ACCEPT, {}), ("tcp", SockReq.SENDTO, {"ip": lab.SECOND_IP, "port": 9}),
    ("udp", SockReq.SEND, {"data": b"no peer"}), ("udp", SockReq.RECV, {}),
    ("udp", SockReq.LISTEN, {"backlog": 1}), ("udp", SockReq.ACCEPT, {}),
    ("udp", SockReq.SENDTO, {"ip": lab.SECOND_IP, "port": 0, "data": b"x"}),
    ("udp", SockReq.SENDTO, {"ip": "10.0.0", "port": 9, "data": b"x"}),
    ("udp", SockReq.SENDTO, {"ip": lab.SECOND_IP, "port": 9, "data": [1, 2]}),
    ("udp", SockReq.SENDTO, {"ip": lab.SECOND_IP, "port": 9, "data": bytes(1473)}),
    ("udp", SockReq.RECVFROM, {"count": math.inf}), ("udp", SockReq.CONNECT, {"port": 9}),
]


def test_garbage_is_answered_with_errors_and_inet_keeps_serving(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, b = pair
    before = a.service("inet")
    p = programs(a, "fuzz")
    answers = [(t, f, p.request(t, **f)) for t, f in GARBAGE]
    socks = {kind: p.socket(kind) for kind in ("tcp", "udp")}
    answers += [(t, f, p.request(t, **f, fd=socks[kind].fd)) for kind, t, f in GARBAGE_ON_A_SOCKET]
    accepted = [(t, f) for t, f, status in answers if status == Err.OK]
    assert not accepted, accepted
    assert {status for t, f, status in answers if t in (0x9FF, 0x12345, -1, 2**63 - 1, 0)} == {
        Err.EBADREQUEST}
    after = a.service("inet")
    assert (after["pid"], after["incarnation"], after["state"]) == (
        before["pid"], before["incarnation"], "up")
    assert "inet: failed" not in a.console(), "an exception got past the checks"
    assert "inet: refused" in a.console()
    udp_round_trip(programs, a, b, 6100)  # and it still carries traffic


def test_a_user_program_claiming_to_be_the_driver_is_refused(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, b = pair
    driver = a.service(lab.DRIVER)
    gone_before = sum(e["kind"] == "driver-gone" for e in a.events())
    hello = {"label": lab.DRIVER, "mac": b"\x02\xee\xee\xee\xee\xee", "link": True}
    for label in ("prog", lab.DRIVER):  # an operator-admitted process may name itself rtl8139
        p = programs(a, label)
        assert p.request(NetReq.HELLO, **hello) == Err.EPERM
        assert p.request(NetReq.PULL, rx=[], done=0, free=8) == Err.EPERM
    assert "refused HELLO EPERM" in a.console()
    assert a.service(lab.DRIVER)["pid"] == driver["pid"]
    udp_round_trip(programs, a, b, 6200)  # the real driver still carries the traffic
    assert sum(e["kind"] == "driver-gone" for e in a.events()) == gone_before


def echod(node: lab.Node, *args: object) -> subprocess.Popen[bytes]:
    """bin/echod in ``node``, once it says it is serving."""
    proc = node.children.start("echod", [sys.executable, str(lab.REPO / "bin" / "echod"),
                                         "--run-dir", str(node.run_dir), *map(str, args)])
    assert proc.stdout is not None
    out = proc.stdout

    def serving() -> bool:
        if not select.select([out], [], [], 0.1)[0]:
            return False
        line = out.readline()
        assert line, f"echod exited:\n{node.children.stderr()}"
        return line.startswith(b"echod: serving")

    wait_for(serving, STEP, "echod serving")
    return proc


def test_echod_echoes_a_tcp_stream_and_its_sockets_are_released_when_it_dies(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, b = pair
    port = 7100
    server = echod(b, port)
    p = programs(a, "client")
    s = p.socket("tcp")
    p.call(s.connect, lab.SECOND_IP, port)
    message = b"hello, echod " * 1000
    p.call(s.sendall, message)
    echoed = b""
    while len(echoed) < len(message):
        echoed += p.call(s.recv)
    assert echoed == message
    p.call(s.close)
    assert server.poll() is None
    server.kill()  # blocked in INET: its sockets stay there until INET finds it dead
    server.wait(10)
    successor = programs(b, "successor")

    def port_free() -> bool:
        with Socket(successor.conn, "tcp", inet=successor.inet) as s:
            try:
                s.bind(port)
                return True
            except SocketError as e:
                if e.code != Err.EADDRINUSE:
                    raise
                return False

    wait_for(lambda: successor.call(port_free), 10, f"TCP port {port} released")
    assert "socket(s) of endpoint" in b.console()


def test_echod_echoes_a_datagram(pair: tuple[lab.Node, lab.Node],
                                 programs: Callable[..., Program]) -> None:
    a, b = pair
    server = echod(b, 7200, "--udp", "--once")
    p = programs(a, "client")
    s = p.socket("udp")
    p.call(s.bind, 7201)
    p.call(s.sendto, b"echo me", lab.SECOND_IP, 7200)
    assert p.call(s.recvfrom) == (b"echo me", (lab.SECOND_IP, 7200))
    assert server.wait(STEP) == 0


def test_a_new_driver_instance_is_announced_and_nudged(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, b = pair

    def announced() -> int:
        return sum(e["kind"] == "driver-up" and e.get("source") == "inet" for e in a.events())

    before, old = announced(), a.service(lab.DRIVER)
    ctl.request(a.run_dir, RsReq.REFRESH, label=lab.DRIVER)
    assert a.service(lab.DRIVER)["pid"] != old["pid"]
    wait_for(lambda: announced() > before, 10, "INET's driver-up")
    udp_round_trip(programs, a, b, 6300)


def test_back_to_back_datagrams_all_arrive_at_once(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    """Two datagrams in a row each arrive without a third to push them through: nothing may
    wait in the receive ring for a later interrupt (the driver acknowledges ISR before it
    reads CBR; the window this guards is narrow, so this only catches it by chance)."""
    a, b = pair
    pa, pb = programs(a, "b2b-a"), programs(b, "b2b-b")
    sa, sb = pa.socket("udp"), pb.socket("udp")
    pa.call(sa.bind, 6400)
    pb.call(sb.bind, 6401)
    for i in range(40):
        pa.call(sa.sendto, b"one %d" % i, lab.SECOND_IP, 6401)
        pa.call(sa.sendto, b"two %d" % i, lab.SECOND_IP, 6401)
        assert pb.call(sb.recvfrom)[0] == b"one %d" % i
        assert pb.call(sb.recvfrom)[0] == b"two %d" % i  # no later frame comes to fetch it


def test_ifconfig_shows_the_interface_as_inet_sees_it(
        pair: tuple[lab.Node, lab.Node], programs: Callable[..., Program]) -> None:
    a, b = pair
    udp_round_trip(programs, a, b, 6500)
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "ifconfig"), "--run-dir",
                        str(a.run_dir), "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["interface"], s["ip"], s["link"]) == (lab.DRIVER, lab.SYSTEM_IP, True)
    assert s["driver"] == a.service(lab.DRIVER)["endpoint"]
    assert s["inet"]["rx"] > 0 and s["inet"]["tx"] > 0 and s["driver_stats"]["rx"] > 0
    assert type(s["drops"]) is dict  # the stack's drops by reason (none expected here)
    r = subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "ifconfig"), "--run-dir",
                        str(a.run_dir)], capture_output=True, text=True, timeout=30)
    assert f"inet {lab.SYSTEM_IP}" in r.stdout and "link up" in r.stdout
