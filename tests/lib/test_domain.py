"""minikern/domain.py's rules that need no root: the ids each label gets, what the startup
record may carry, and how a connection's peer credentials are read
(minikern/proto/peercred.py).  The host-level refusals, as root: tests/kernel/test_hostile_host.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from minikern import domain, params
from minikern.proto import peercred, startup

FIRST, LAST = params.DOMAIN_UID_FIRST, params.DOMAIN_UID_FIRST + params.DOMAIN_UID_BLOCK - 1
BLOCKS = (params.DOMAIN_UID_LAST - params.DOMAIN_UID_FIRST + 1) // params.DOMAIN_UID_BLOCK


def test_each_label_gets_its_own_uid_for_the_whole_boot() -> None:
    a = domain.Allocator()
    hw, rs, drv = a.ids("hw"), a.ids("rs"), a.ids("rtl8139")
    assert hw is not None and rs is not None and drv is not None
    assert [hw[0], rs[0], drv[0]] == [FIRST, FIRST + 1, FIRST + 2]
    assert all(ids[1] == ids[0] for ids in (hw, rs, drv))  # gid = uid
    assert a.ids("rtl8139") == drv  # a restart: the same ids
    assert params.COMPONENT_GID in drv and params.EVENT_LOG_GID not in drv
    assert params.EVENT_LOG_GID in hw and params.EVENT_LOG_GID in rs  # the event log's writers


def test_the_uid_key_is_an_index_in_the_block_honoured_for_one_label() -> None:
    a = domain.Allocator(FIRST + 64, LAST + 64)
    top = LAST - FIRST
    assert a.ids("mfs", top) == [LAST + 64, LAST + 64, params.COMPONENT_GID]
    assert a.ids("vfs", top) is None  # another label's
    assert a.ids("mfs", 0) is None  # mfs already has its uid
    for wanted in (-1, top + 1, 1000, FIRST, "1", True, 1.0):
        assert a.ids("x", wanted) is None, wanted
    assert a.ids("x") == [FIRST + 64, FIRST + 64, params.COMPONENT_GID]  # a refusal allocated nothing


def test_the_range_used_up_is_a_refusal() -> None:
    a = domain.Allocator()
    for n in range(LAST - FIRST + 1):
        assert a.ids(f"s{n}") is not None
    assert a.ids("one-more") is None


def test_each_system_claims_its_own_block_until_it_lets_go(tmp_path: Path) -> None:
    locks = str(tmp_path / "locks")
    held = [domain.Allocator.claim(locks) for _ in range(BLOCKS)]
    try:
        assert [a.first for a in held] == [FIRST + n * params.DOMAIN_UID_BLOCK for n in range(BLOCKS)]
        assert all(a.last - a.first + 1 == params.DOMAIN_UID_BLOCK for a in held)
        assert held[-1].last <= params.DOMAIN_UID_LAST
        assert held[0].ids("hw") != held[1].ids("hw")  # the same label, two systems: two uids
        with pytest.raises(domain.DomainError, match="held by a running system"):
            domain.Allocator.claim(locks)
        held[2].release()  # a halted (or dead) kernel's block is the next boot's
        again = domain.Allocator.claim(locks)
        assert again.first == FIRST + 2 * params.DOMAIN_UID_BLOCK
        held[2] = again
    finally:
        for a in held:
            a.release()


def test_a_lock_directory_not_the_callers_own_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(domain.DomainError):
        domain.Allocator.claim(str(tmp_path / "link"))
    real.chmod(0o777)
    with pytest.raises(domain.DomainError, match="refusing it"):
        domain.Allocator.claim(str(real))


RECORD: startup.StartupRecord = {
    "module": "drivers.hello", "args": [], "label": "hello", "endpoint": 9,
    "credential": b"k" * 32, "address": "ipc:///tmp/x/kernel.sock", "run_dir": "/tmp/x",
    "incarnation": 0, "memory_size": 1 << 20}


@pytest.mark.parametrize("ids, ok", [
    ([61002, 61002, 61000], True), ([61002, 61002], True), ([0, 61002], False),
    ([61002, 0, 61000], False), ([61002], False), ([61002] * 9, False), ([61002, "1"], False),
    ([61002, -1], False), ([61002, 1 << 31], False), ("61002", False)])
def test_the_startup_record_carries_a_domain_without_root_in_it(ids: object, ok: bool) -> None:
    rec = {**RECORD, "domain": ids}
    assert (startup.decode(startup.encode(rec)) is not None) == ok  # type: ignore[arg-type]


@pytest.mark.parametrize("address, cred", [
    ("localhost:0:0:1234", peercred.PeerCred(0, 0, 1234)),
    ("localhost:61002:61002:7", peercred.PeerCred(61002, 61002, 7)),
    ("", None), (None, None), ("localhost:0:0:0", None), ("127.0.0.1:5555", None),
    ("localhost:a:0:1", None), ("localhost:0:0:-1", None), ("x:1:2:3:4", peercred.PeerCred(2, 3, 4)),
    ("localhost:0:0:" + "9" * 11, None)])
def test_peer_credentials_are_read_from_libzmqs_address(address: str | None,
                                                        cred: peercred.PeerCred | None) -> None:
    assert peercred.parse(address) == cred


def test_a_connection_carries_the_credentials_of_the_process_behind_it(tmp_path: Path) -> None:
    import zmq

    from minikern.proto import routing
    ctx = zmq.Context()
    try:
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        router.bind(f"ipc://{tmp_path}/s")
        dealer.connect(f"ipc://{tmp_path}/s")
        dealer.send(b"hello")
        assert router.poll(5000)
        frames, named, cred = routing.receive(router, lambda ident: False)
        assert frames[1:] == [b"hello"] and not named
        assert cred == peercred.PeerCred(os.getuid(), os.getgid(), os.getpid())
        dealer.send(b"again")
        assert router.poll(5000)
        assert routing.receive(router, lambda ident: True)[2] is None  # admitted: not read
    finally:
        ctx.destroy(linger=0)


def test_an_unreachable_run_directory_turns_domains_off(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    assert "closed to other users" in domain.unreachable(closed / "run")
    assert not domain.active(closed / "run")


def test_a_directory_opened_for_the_components_is_not_a_reason(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    assert domain._closed(closed / "inner", True).startswith(f"{closed} (mode 0700)")
    assert domain._closed(closed / "inner", True, frozenset({closed, *closed.parents})) == ""
