"""What SETGRANT and SAFECOPY check (docs/PROTOCOL.md section 6): the access bits, the range
inside the granter's segment, that the grant names the caller, the access bit of the copy's
direction, and the range of the copy on both sides; a grant id is (sequence << 20) | index,
so a reused table entry never honours an old id.

In-process on the kernel's own tables and memfd segments: every edge of every range is
tried, which through a booted system would take a kernel call each.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from minikern import params
from minikern.const import CPF_READ, CPF_WRITE, Err
from minikern.kernel.grant import Segment, revoke, safecopy, setgrant
from minikern.kernel.priv import Priv
from minikern.kernel.proc import Proc

pytestmark = pytest.mark.timeout(10)
SIZE = 4096
GRANTER, GRANTEE, OTHER = 10, 11, 12


def proc(endpoint: int) -> Proc:
    priv = Priv.from_wire({"sys_proc": True, "traps": [], "ipc": [], "kcalls": [], "io": [],
                           "irq": [], "mem": []})
    assert priv is not None
    p = Proc(slot=endpoint, endpoint=endpoint, label=f"p{endpoint}", pid=0, priv=priv,
             manager=0)
    p.memory = Segment(p.label, SIZE)
    return p


@pytest.fixture
def procs() -> Iterator[tuple[Proc, Proc, Proc]]:
    ps = proc(GRANTER), proc(GRANTEE), proc(OTHER)
    yield ps
    for p in ps:
        assert isinstance(p.memory, Segment)
        p.memory.close()


def mem(p: Proc) -> Segment:
    assert isinstance(p.memory, Segment)
    return p.memory


def grant(p: Proc, offset: int, length: int, access: int, grantee: int = GRANTEE) -> int:
    status, gid = setgrant(p, params.MAX_GRANTS, grantee, offset, length, access)
    assert status == Err.OK
    return gid


@pytest.mark.parametrize("access", [0, 4, 8, CPF_READ | 4, -1])
def test_setgrant_takes_only_the_read_and_write_bits(procs: tuple[Proc, ...],
                                                     access: int) -> None:
    assert setgrant(procs[0], params.MAX_GRANTS, GRANTEE, 0, 16, access)[0] != Err.OK
    assert procs[0].grants == {}


@pytest.mark.parametrize("offset, length", [(-1, 16), (0, 0), (0, -1), (SIZE - 15, 16),
                                            (SIZE, 1), (0, SIZE + 1)])
def test_setgrant_range_must_lie_inside_the_granters_segment(
        procs: tuple[Proc, ...], offset: int, length: int) -> None:
    assert setgrant(procs[0], params.MAX_GRANTS, GRANTEE, offset, length, CPF_READ)[0] != Err.OK
    assert procs[0].grants == {}


def test_setgrant_of_the_whole_segment_and_of_its_last_byte(procs: tuple[Proc, ...]) -> None:
    grant(procs[0], 0, SIZE, CPF_READ | CPF_WRITE)
    grant(procs[0], SIZE - 1, 1, CPF_WRITE)


def test_safecopyfrom_copies_the_granted_bytes(procs: tuple[Proc, Proc, Proc]) -> None:
    granter, grantee, _ = procs
    mem(granter).map[100:164] = bytes(range(64))
    gid = grant(granter, 100, 64, CPF_READ)
    assert safecopy(granter, gid, grantee, 8, 200, 16, to_granter=False) == Err.OK
    assert mem(grantee).map[200:216] == bytes(range(8, 24))
    assert mem(grantee).map[216:232] == bytes(16)  # nothing past the length


def test_safecopyto_writes_inside_the_granted_range(procs: tuple[Proc, Proc, Proc]) -> None:
    granter, grantee, _ = procs
    mem(grantee).map[0:8] = b"ABCDEFGH"
    gid = grant(granter, 1000, 32, CPF_WRITE)
    assert safecopy(granter, gid, grantee, 24, 0, 8, to_granter=True) == Err.OK
    assert mem(granter).map[1024:1032] == b"ABCDEFGH"
    assert mem(granter).map[1016:1024] == bytes(8) and mem(granter).map[1032:1040] == bytes(8)


@pytest.mark.parametrize("goffset, offset, length", [
    (0, 0, 65),            # longer than the grant
    (1, 0, 64),            # past the grant's end by one
    (64, 0, 1),
    (-1, 0, 8),            # before the grant
    (0, -1, 8),            # before the caller's segment
    (0, SIZE - 7, 8),      # past the caller's segment
    (0, 0, -1),
])
def test_safecopy_range_must_lie_inside_the_grant_and_the_callers_segment(
        procs: tuple[Proc, Proc, Proc], goffset: int, offset: int, length: int) -> None:
    granter, grantee, _ = procs
    mem(granter).map[0:SIZE] = b"\xaa" * SIZE
    gid = grant(granter, 128, 64, CPF_READ | CPF_WRITE)
    for to_granter in (False, True):
        assert safecopy(granter, gid, grantee, goffset, offset, length, to_granter) != Err.OK
    assert mem(grantee).map[0:SIZE] == bytes(SIZE)
    assert mem(granter).map[0:SIZE] == b"\xaa" * SIZE


def test_safecopy_to_the_edges_of_the_grant_and_the_segment(
        procs: tuple[Proc, Proc, Proc]) -> None:
    granter, grantee, _ = procs
    gid = grant(granter, 128, 64, CPF_READ)
    assert safecopy(granter, gid, grantee, 0, SIZE - 64, 64, to_granter=False) == Err.OK
    assert safecopy(granter, gid, grantee, 63, 0, 1, to_granter=False) == Err.OK


def test_safecopy_needs_the_access_bit_of_its_direction(procs: tuple[Proc, Proc, Proc]) -> None:
    granter, grantee, _ = procs
    read = grant(granter, 0, 64, CPF_READ)
    write = grant(granter, 64, 64, CPF_WRITE)
    assert safecopy(granter, read, grantee, 0, 0, 8, to_granter=True) == Err.EPERM
    assert safecopy(granter, write, grantee, 0, 0, 8, to_granter=False) == Err.EPERM
    assert safecopy(granter, read, grantee, 0, 0, 8, to_granter=False) == Err.OK
    assert safecopy(granter, write, grantee, 0, 0, 8, to_granter=True) == Err.OK


def test_only_the_named_grantee_may_copy(procs: tuple[Proc, Proc, Proc]) -> None:
    granter, _, other = procs
    gid = grant(granter, 0, 64, CPF_READ | CPF_WRITE)
    for to_granter in (False, True):
        assert safecopy(granter, gid, other, 0, 0, 8, to_granter) == Err.EPERM


def test_a_reused_entry_never_honours_an_old_id(procs: tuple[Proc, Proc, Proc]) -> None:
    granter, grantee, _ = procs
    old = grant(granter, 0, 64, CPF_READ)
    assert revoke(granter, old) == Err.OK
    new = grant(granter, 0, 64, CPF_READ)
    index_bits = (1 << 20) - 1
    assert new & index_bits == old & index_bits  # the same entry...
    assert new >> 20 == (old >> 20) + 1  # ... the next sequence number
    assert safecopy(granter, old, grantee, 0, 0, 8, to_granter=False) == Err.EPERM
    assert revoke(granter, old) != Err.OK
    assert safecopy(granter, new, grantee, 0, 0, 8, to_granter=False) == Err.OK


def test_grants_at_once_take_distinct_entries(procs: tuple[Proc, Proc, Proc]) -> None:
    granter, grantee, _ = procs
    ids = [grant(granter, 16 * i, 16, CPF_READ) for i in range(3)]
    assert len({gid & ((1 << 20) - 1) for gid in ids}) == 3
    assert revoke(granter, ids[1]) == Err.OK
    assert safecopy(granter, ids[0], grantee, 0, 0, 16, to_granter=False) == Err.OK
    assert safecopy(granter, ids[2], grantee, 0, 0, 16, to_granter=False) == Err.OK
    assert safecopy(granter, ids[1], grantee, 0, 0, 16, to_granter=False) == Err.EPERM
