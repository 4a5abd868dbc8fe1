"""The kernel's tables and frames are bounded, and a full one refuses instead of breaking:
the kernel-message queue, the process table, the grant table, the 256-byte header
(docs/PROTOCOL.md sections 1-3, 6, 8), and the operator key's mode."""
from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable

import pytest
import zmq

from minikern import params, sysconf
from minikern.proto import codec
from minikern.proto import Message
from minikern.const import NONE, NR_PROCS, SYSTEM, Call, Err, KCall
from minikern.kernel import ipc as kipc
from minikern.kernel.main import Kernel
from minikern.kernel.priv import Priv
from minikern.kernel.proc import ProcTable
from tests.conftest import TEST_CONF, SystemUnderTest, wait_for
from tests.kernel.agent import REQ_KCALL
from tests.kernel.test_death import spawn
from tests.kernel.test_wire import getinfo, raw_socket

pytestmark = pytest.mark.timeout(120)

HEADER_LIMIT = 256  # docs/PROTOCOL.md: "a header MUST NOT exceed 256 bytes"
KERNEL_QUEUE_LIMIT = 1024  # kernel messages kept for one process that is not receiving
TABLE_SLOTS = 256  # docs/PROTOCOL.md: "Slots 0..255 hold processes"


def test_the_kernel_message_queue_keeps_the_oldest_up_to_its_bound() -> None:
    """Messages from the kernel to a process that never receives are bounded; the excess
    (the newest) is dropped and counted, so the queue cannot grow the kernel."""
    k = Kernel.__new__(Kernel)  # only the counters: the queue logic runs without sockets
    k.counters = Counter()
    priv = Priv.from_wire(sysconf.parse(TEST_CONF.format(boot="echo")).services["client"].priv())
    assert priv is not None
    p = ProcTable().add(40, "sink", 1, priv, NONE)
    for i in range(KERNEL_QUEUE_LIMIT + 100):
        kipc.kernel_message(k, p, 1, {"i": i})
    assert len(p.kqueue) == KERNEL_QUEUE_LIMIT
    assert [codec.decode_body(b)[1]["i"] for b in p.kqueue] == list(range(KERNEL_QUEUE_LIMIT))  # type: ignore[index]
    assert k.counters["kqueue_overflow"] == 100


def hello_of_size(system: SystemUnderTest, size: int) -> bytes:
    """A valid operator HELLO padded (with send-mask labels) to exactly ``size`` bytes."""
    key = (system.run_dir / params.OPERATOR_KEY).read_bytes()
    base = system.conf.services["client"].priv()
    for count in range(12):
        for length in range(32):
            priv = dict(base, ipc=list(base["ipc"]) + ["p" * 31] * count + ["q" * length])
            frame = codec.encode_hello(key, os.getpid(), "padded", priv)
            if len(frame) == size:
                return frame
    raise AssertionError(f"no padding gives a {size}-byte HELLO")


def admitted(sock: zmq.Socket, frame: bytes) -> bool:  # type: ignore[type-arg]
    sock.send(frame)
    if not sock.poll(3000):
        return False
    reply = codec.decode_reply(sock.recv())
    return reply is not None and reply[0] == Err.OK


def test_a_header_of_256_bytes_is_taken_and_one_of_257_is_dropped(
        system: SystemUnderTest) -> None:
    at_limit, over = raw_socket(system), raw_socket(system)
    try:
        assert admitted(at_limit, hello_of_size(system, HEADER_LIMIT))
        before = system.info()["counters"].get("unadmitted", 0)
        assert not admitted(over, hello_of_size(system, HEADER_LIMIT + 1))
        assert system.info()["counters"].get("unadmitted", 0) == before + 1
    finally:
        at_limit.close()
        over.close()


def test_a_full_process_table_refuses_and_frees_a_slot_on_exit(
        make_system: Callable[..., SystemUnderTest], monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator connections fill the table; the next HELLO is refused (counted, unanswered),
    a PRIVCTL fails, the kernel keeps serving, and a slot freed by BYE is taken again.  All
    are the test process's: its bound per process (MAX_CONNECTIONS_PER_PID) is lifted."""
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS_PER_PID", str(2 * TABLE_SLOTS))
    system = make_system()
    key = (system.run_dir / params.OPERATOR_KEY).read_bytes()
    priv = system.conf.services["client"].priv()
    socks: list[zmq.Socket] = []  # type: ignore[type-arg]
    try:
        for i in range(TABLE_SLOTS + 1):
            s = raw_socket(system)
            socks.append(s)
            if not admitted(s, codec.encode_hello(key, os.getpid(), f"fill{i}", priv)):
                break
        else:
            raise AssertionError(f"{TABLE_SLOTS + 1} processes were admitted")
        full, mgr = socks.pop(), socks[0]
        info = getinfo(mgr)  # through an admitted socket: a new connection has no slot
        assert len(info["procs"]) <= TABLE_SLOTS
        assert all(0 <= p["slot"] < TABLE_SLOTS for p in info["procs"])
        assert info["counters"]["hello_refused"] >= 1
        mgr.send_multipart([codec.encode_request(Call.SENDREC, SYSTEM),
                            codec.encode_body(KCall.PRIVCTL, {
                                "label": "one.more", "module": "tests.kernel.agent",
                                "args": ["idle"], "priv": priv})])
        assert mgr.poll(5000), "the kernel stopped answering"
        status = codec.decode_body(mgr.recv_multipart()[1])[0]  # type: ignore[index]
        assert status in (Err.ENOSPC, Err.EAGAIN)
        socks.pop().send(codec.encode_bye())
        # Frames from two connections have no order between them: wait until the BYE has
        # freed its slot before the refused connection asks again.
        wait_for(lambda: len(getinfo(mgr)["procs"]) < TABLE_SLOTS, 10, "the BYE to free a slot")
        assert admitted(full, codec.encode_hello(key, os.getpid(), "after", priv))
        socks.append(full)
    finally:
        for s in socks:
            s.send(codec.encode_bye())
            s.close()
    echo = system.endpoint_of("echo")
    assert system.connect("b", "client").sendrec(echo, Message(1, {"v": 1})).fields == {"v": 1}


def test_a_full_grant_table_refuses_with_enospc_and_a_revoke_frees_an_entry(
        system: SystemUnderTest) -> None:
    mgr = system.connect("mgr", "client")
    puppet, _ = spawn(system, mgr, "puppet")

    def setgrant() -> tuple[int, int]:
        r = mgr.sendrec(puppet, Message(REQ_KCALL, {"call": KCall.SETGRANT, "args": {
            "grantee": mgr.endpoint, "offset": 0, "length": 16, "access": 1}}))
        return r.type, r.fields.get("grant", 0)

    grants = []
    for _ in range(4 * NR_PROCS * 16):  # far past any table a process could hold
        status, gid = setgrant()
        if status != Err.OK:
            break
        grants.append(gid)
    assert status == Err.ENOSPC and grants
    assert len(set(grants)) == len(grants)
    assert setgrant()[0] == Err.ENOSPC  # still full
    r = mgr.sendrec(puppet, Message(REQ_KCALL, {"call": KCall.REVOKE,
                                                  "args": {"grant": grants[7]}}))
    assert r.type == Err.OK
    status, gid = setgrant()
    assert status == Err.OK and gid not in grants  # the entry is reused under a new id
    assert setgrant()[0] == Err.ENOSPC


def test_the_operator_key_is_readable_by_its_owner_only(system: SystemUnderTest) -> None:
    key = system.run_dir / params.OPERATOR_KEY
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # docs/PROTOCOL.md section 3
    run = system.run_dir.stat()
    if run.st_gid == params.COMPONENT_GID:  # booted as root, in domains: minikern/domain.py
        assert key.stat().st_uid == 0
        assert stat.S_IMODE(run.st_mode) == 0o1710 or (  # 1770: the board's ACL entry's mask
            stat.S_IMODE(run.st_mode) == 0o1770
            and os.getxattr(system.run_dir, "system.posix_acl_access"))
    else:
        assert stat.S_IMODE(run.st_mode) == 0o700  # section 1
