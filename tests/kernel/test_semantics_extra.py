"""Semantics the other kernel tests leave out: a dead notifier's pending bit, grants written
through and revoked, the ALL_SYS / USER send-mask groups, and SDEVIO's output direction.

Grant tests drive "puppet" agents (tests/kernel/agent.py): processes the kernel started,
so each has the memory segment a grant names, doing exactly the kernel calls a test asks.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from minikern import ipc
from minikern.proto import Message
from minikern.const import CPF_READ, CPF_WRITE, SYSTEM, Err, KCall, Kind, KMsg
from tests.conftest import TEST_CONF, SystemUnderTest, wait_for
from tests.hw.test_board import Machine, inp, machine_fixture, outp  # noqa: F401 (fixture)
from tests.kernel.agent import REQ_KCALL, REQ_NOTIFY, REQ_PEEK, REQ_POKE
from tests.kernel.test_caps import audit_has

pytestmark = pytest.mark.timeout(60)

CONF = TEST_CONF + """
service puppet {{ program tests.kernel.agent; ipc ALL;
                  system SETGRANT REVOKE SAFECOPYFROM SAFECOPYTO; }};
service allsys {{ system GETINFO; ipc ALL_SYS; }};
service touser {{ system GETINFO; ipc USER; }};
service both {{ system GETINFO; ipc ALL_SYS USER; }};
service silent {{ system GETINFO; ipc NONE; }};
"""

MakeSystem = Callable[..., SystemUnderTest]


class Puppet:
    """A kernel-started agent in "puppet" mode, driven by SENDREC from the test's manager."""

    def __init__(self, system: SystemUnderTest, mgr: ipc.Connection, label: str) -> None:
        self.mgr = mgr
        r = mgr.kcall(KCall.PRIVCTL, label=label, module="tests.kernel.agent", args=["puppet"],
                      priv=system.conf.services["puppet"].priv())
        self.endpoint, self.pid = r["endpoint"], r["pid"]
        wait_for(lambda: (system.proc(self.endpoint) or {}).get("ready"), what=f"{label} ready")

    def ask(self, req: int, **fields: Any) -> Message:
        return self.mgr.sendrec(self.endpoint, Message(req, fields))

    def kcall(self, call: KCall, **args: Any) -> tuple[int, dict[str, Any]]:
        r = self.ask(REQ_KCALL, call=int(call), args=args)
        return r.type, r.fields

    def grant(self, grantee: Puppet, offset: int, length: int, access: int) -> int:
        status, f = self.kcall(KCall.SETGRANT, grantee=grantee.endpoint, offset=offset,
                               length=length, access=access)
        assert status == Err.OK
        return int(f["grant"])

    def copy(self, call: KCall, granter: Puppet, gid: int, length: int) -> int:
        """SAFECOPYFROM / SAFECOPYTO between my offset 0 and the start of the grant."""
        return self.kcall(call, granter=granter.endpoint, grant=gid, goffset=0, offset=0,
                          length=length)[0]

    def poke(self, offset: int, data: bytes) -> None:
        assert self.ask(REQ_POKE, offset=offset, data=data).type == Err.OK

    def peek(self, offset: int, length: int) -> bytes:
        return bytes(self.ask(REQ_PEEK, offset=offset, length=length)["data"])


def kill(mgr: ipc.Connection, p: Puppet) -> None:
    """SIGKILL ``p`` and wait for the kernel's EXIT to its manager: by then it is cleared."""
    os.kill(p.pid, signal.SIGKILL)
    m = mgr.receive(SYSTEM)
    assert (m.type, m["endpoint"]) == (KMsg.EXIT, p.endpoint)


def assert_nothing_pending(system: SystemUnderTest, conn: ipc.Connection,
                           waker: ipc.Connection) -> None:
    """``conn``'s RECEIVE from ANY blocks; only ``waker``'s notification then ends it."""
    fut = system.background(conn.receive)
    wait_for(lambda: fut.done() or system.blocked(conn.endpoint, "recv"), what="receive")
    assert not fut.done(), f"delivered at once: {fut.result()}"
    assert waker.notify(conn.endpoint) == Err.OK
    m = fut.result(10)
    assert (m.kind, m.source) == (Kind.NOTIFY, waker.endpoint)


# -- a dead notifier's pending notification ----------------------------------------------

def test_a_killed_notifiers_pending_notification_is_dropped(make_system: MakeSystem) -> None:
    system = make_system(boot="", conf=CONF)
    mgr, rcv, waker = (system.connect(x, "client") for x in ("mgr", "rcv", "waker"))
    doomed, alive = Puppet(system, mgr, "doomed"), Puppet(system, mgr, "alive")
    for p in (doomed, alive):  # rcv is not receiving: both stay pending, doomed's first
        assert p.ask(REQ_NOTIFY, dst=rcv.endpoint).type == Err.OK
    kill(mgr, doomed)
    m = rcv.receive()  # pending notifications come first, oldest first: doomed's is gone
    assert (m.kind, m.source) == (Kind.NOTIFY, alive.endpoint)
    assert_nothing_pending(system, rcv, waker)


def test_a_closed_endpoints_pending_notification_is_dropped(system: SystemUnderTest) -> None:
    rcv, gone, waker = (system.connect(x, "client") for x in ("rcv", "gone", "waker"))
    assert gone.notify(rcv.endpoint) == Err.OK
    gone.close()  # BYE: an operator tool's death
    wait_for(lambda: system.proc(gone.endpoint) is None, what="the closed endpoint gone")
    assert_nothing_pending(system, rcv, waker)


# -- grants -----------------------------------------------------------------------------

def test_safecopyto_writes_through_a_write_grant_and_only_for_its_grantee(
        make_system: MakeSystem) -> None:
    system = make_system(boot="", conf=CONF)
    mgr = system.connect("mgr", "client")
    owner, writer, intruder = (Puppet(system, mgr, x) for x in ("owner", "writer", "intruder"))
    writer.poke(0, b"written!")
    intruder.poke(0, b"intruder")
    gid = owner.grant(writer, offset=200, length=8, access=CPF_WRITE)
    assert writer.copy(KCall.SAFECOPYTO, owner, gid, 8) == Err.OK
    assert owner.peek(200, 8) == b"written!"
    assert intruder.copy(KCall.SAFECOPYTO, owner, gid, 8) == Err.EPERM  # not its grantee
    assert owner.peek(200, 8) == b"written!"
    assert audit_has(system, "intruder", "SAFECOPYTO", "EPERM")
    assert writer.copy(KCall.SAFECOPYFROM, owner, gid, 8) == Err.EPERM  # write-only: no reading


def test_safecopyto_into_a_read_only_grant_is_refused(make_system: MakeSystem) -> None:
    system = make_system(boot="", conf=CONF)
    mgr = system.connect("mgr", "client")
    owner, peer = Puppet(system, mgr, "owner"), Puppet(system, mgr, "peer")
    owner.poke(300, b"original")
    peer.poke(0, b"scribble")
    gid = owner.grant(peer, offset=300, length=8, access=CPF_READ)
    assert peer.copy(KCall.SAFECOPYTO, owner, gid, 8) == Err.EPERM
    assert owner.peek(300, 8) == b"original"
    assert audit_has(system, "peer", "SAFECOPYTO", "EPERM")
    assert peer.copy(KCall.SAFECOPYFROM, owner, gid, 8) == Err.OK  # what it does allow
    assert peer.peek(0, 8) == b"original"


def test_revoke_ends_a_grant_and_its_id_stays_dead(make_system: MakeSystem) -> None:
    system = make_system(boot="", conf=CONF)
    mgr = system.connect("mgr", "client")
    owner, reader = Puppet(system, mgr, "owner"), Puppet(system, mgr, "reader")
    owner.poke(0, b"first!")
    gid = owner.grant(reader, offset=0, length=6, access=CPF_READ)
    assert reader.copy(KCall.SAFECOPYFROM, owner, gid, 6) == Err.OK
    assert reader.peek(0, 6) == b"first!"
    assert owner.kcall(KCall.REVOKE, grant=gid)[0] == Err.OK
    reader.poke(0, bytes(6))
    assert reader.copy(KCall.SAFECOPYFROM, owner, gid, 6) == Err.EPERM
    assert reader.peek(0, 6) == bytes(6)  # nothing copied
    assert audit_has(system, "reader", "SAFECOPYFROM", "EPERM")
    assert owner.kcall(KCall.REVOKE, grant=gid)[0] == Err.EINVAL  # already gone
    again = owner.grant(reader, offset=0, length=6, access=CPF_READ)  # the same table entry
    assert again & 0xFFFFF == gid & 0xFFFFF and again != gid
    assert reader.copy(KCall.SAFECOPYFROM, owner, gid, 6) == Err.EPERM  # the old id: still dead
    assert reader.copy(KCall.SAFECOPYFROM, owner, again, 6) == Err.OK


# -- the send-mask groups -----------------------------------------------------------------

@pytest.mark.parametrize(("mask", "to_system", "to_user"), [
    ("allsys", True, False), ("touser", False, True), ("both", True, True),
    ("silent", False, False)])
def test_send_mask_groups_split_system_and_user_processes(
        make_system: MakeSystem, mask: str, to_system: bool, to_user: bool) -> None:
    system = make_system(conf=CONF)  # echo in the boot image: a system process
    sender = system.connect("sender", mask)
    sys_target, user_target = system.connect("systarget", "client"), system.connect("utarget", "user")
    assert system.proc(sys_target.endpoint)["priv"]["sys_proc"]  # type: ignore[index]
    assert not system.proc(user_target.endpoint)["priv"]["sys_proc"]  # type: ignore[index]
    for target, allowed in ((sys_target, to_system), (user_target, to_user)):
        expected = Err.OK if allowed else Err.ECALLDENIED
        assert sender.notify(target.endpoint) == expected, target.label
        assert sender.sendnb(target.endpoint, Message(1)) == (
            Err.ENOTREADY if allowed else Err.ECALLDENIED), target.label
    if to_system:  # the notification really arrived
        m = sys_target.receive()
        assert (m.kind, m.source) == (Kind.NOTIFY, sender.endpoint)
        echo = system.endpoint_of("echo")
        assert sender.sendrec(echo, Message(1, {"v": 1})).fields == {"v": 1}
    else:
        assert audit_has(system, "sender", "NOTIFY", "ECALLDENIED")
    with pytest.raises(ipc.IpcError) as e:  # the kernel is its own group (SYSTEM), in neither:
        sender.kcall(KCall.GETINFO)  # a call in the sender's mask, refused by the send mask
    assert e.value.code == Err.ECALLDENIED
    assert audit_has(system, "sender", "SENDREC", "ECALLDENIED")


# -- SDEVIO output: rep outsw reaches the device ---------------------------------------

def ata_lba_command(disk: ipc.Connection, command: int, lba: int) -> None:
    for port, value in ((0x1F2, 1), (0x1F3, lba & 0xFF), (0x1F4, lba >> 8 & 0xFF),
                        (0x1F5, lba >> 16 & 0xFF), (0x1F6, 0xE0 | lba >> 24 & 0x0F),
                        (0x1F7, command)):
        outp(disk, port, value)


def test_sdevio_output_writes_a_sector(machine: Machine) -> None:
    disk = machine.driver("disk")
    lba, sector = 7, bytes((i * 37 + 11) & 0xFF for i in range(512))
    ata_lba_command(disk, 0x30, lba)  # WRITE SECTORS: the drive waits for 256 words
    assert inp(disk, 0x1F7) == 0x58  # DRQ
    status, _ = disk.kcall_status(KCall.SDEVIO, port=0x1F0, size=2, count=256, data=sector)
    assert status == Err.OK
    assert inp(disk, 0x1F7) == 0x50  # the whole block was taken: idle, no error
    with open(machine.system.run_dir / "disk.img", "rb") as image:
        image.seek(lba * 512)
        assert image.read(512) == sector
    ata_lba_command(disk, 0x20, lba)  # READ SECTORS: and back through rep insw
    assert inp(disk, 0x1F7) == 0x58
    words = disk.kcall(KCall.SDEVIO, port=0x1F0, size=2, count=256)["data"]
    assert words == sector
    status, _ = disk.kcall_status(KCall.SDEVIO, port=0x1F0, size=2, count=256, data=sector[:510])
    assert status == Err.EINVAL  # the data must be exactly count words
