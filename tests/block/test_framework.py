"""The block driver framework's refusals (docs/PROTOCOL.md section 19): every bad field is
answered, with the error the protocol names, and the driver lives on and keeps serving."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minikern import params
from minikern.const import BDEV_MAX_IO, BDEV_MAX_IOV, CPF_READ, CPF_WRITE, BdevReq, Err
from minikern.ipc import Connection
from minikern.proto import Message
from tests.block import client, rig
from tests.conftest import SystemUnderTest
from tests.services.rs_helpers import events

pytestmark = pytest.mark.timeout(120)
DISK = 8 << 20


@pytest.fixture
def disk_system(make_system: Callable[..., SystemUnderTest], tmp_path: Path) -> SystemUnderTest:
    return rig.boot_disk(make_system, rig.make_disk(tmp_path / "disk.img", DISK))


def call(conn: Connection, s: SystemUnderTest, req: int, **fields: Any) -> Message:
    return conn.sendrec(s.endpoint_of("at_wini"), Message(req, fields))


def test_bad_fields_are_refused_with_the_protocols_errors_and_the_driver_lives_on(
        disk_system: SystemUnderTest) -> None:
    s = disk_system
    pid = rig.at_wini_pid(s)
    conn = s.connect("tester", "operator")
    refusals: list[tuple[int, dict[str, Any], int]] = [
        (BdevReq.OPEN, {"minor": "0", "access": 1}, Err.EINVAL),
        (BdevReq.OPEN, {"minor": 0, "access": 7}, Err.EINVAL),
        (BdevReq.OPEN, {"minor": 0}, Err.EINVAL),
        (BdevReq.OPEN, {"minor": 5, "access": 1}, Err.ENXIO),
        (BdevReq.OPEN, {"minor": -1, "access": 1}, Err.ENXIO),
        (BdevReq.OPEN, {"minor": 1, "access": 1}, Err.ENXIO),  # no partition table
        (BdevReq.READ, {"minor": 0, "pos": 0, "count": 512, "grant": 1}, Err.ERESTART),
        (BdevReq.IOCTL, {"minor": 0, "request": "DIOCGETP"}, Err.ERESTART),
    ]
    for req, fields, expected in refusals:
        assert call(conn, s, req, **fields).type == expected, (req, fields)
    assert call(conn, s, BdevReq.OPEN, minor=0, access=CPF_READ).type == Err.OK
    after_open: list[tuple[int, dict[str, Any], int]] = [
        (BdevReq.READ, {"minor": 0, "pos": 0, "count": 100, "grant": 1}, Err.EINVAL),
        (BdevReq.READ, {"minor": 0, "pos": 3, "count": 512, "grant": 1}, Err.EINVAL),
        (BdevReq.READ, {"minor": 0, "pos": -512, "count": 512, "grant": 1}, Err.EINVAL),
        (BdevReq.READ, {"minor": 0, "pos": 0, "count": BDEV_MAX_IO + 512, "grant": 1},
         Err.EINVAL),
        (BdevReq.READ, {"minor": 0, "pos": 0, "count": 512, "grant": "g"}, Err.EINVAL),
        (BdevReq.READ, {"minor": 0, "pos": 0.5, "count": 512, "grant": 1}, Err.EINVAL),
        (BdevReq.WRITE, {"minor": 0, "pos": 0, "count": 512}, Err.EINVAL),
        (BdevReq.READ, {"minor": 0, "pos": 0, "count": 512, "grant": 12345}, Err.EPERM),
        (BdevReq.WRITE, {"minor": 0, "pos": 0, "count": 512, "grant": 12345}, Err.EPERM),
        (BdevReq.GATHER, {"minor": 0, "pos": 0, "iov": []}, Err.EINVAL),
        (BdevReq.GATHER, {"minor": 0, "pos": 0, "iov": [[1, 0]]}, Err.EINVAL),
        (BdevReq.GATHER, {"minor": 0, "pos": 0, "iov": [[1, 100]]}, Err.EINVAL),
        (BdevReq.GATHER, {"minor": 0, "pos": 0, "iov": [[1, 512]] * (BDEV_MAX_IOV + 1)},
         Err.EINVAL),
        (BdevReq.SCATTER, {"minor": 0, "pos": 0, "iov": [[1, BDEV_MAX_IO], [2, 512]]},
         Err.EINVAL),
        (BdevReq.SCATTER, {"minor": 0, "pos": 0, "iov": "x"}, Err.EINVAL),
        (BdevReq.SCATTER, {"minor": 0, "pos": 0, "iov": [[1, 512, 3]]}, Err.EINVAL),
        (BdevReq.IOCTL, {"minor": 0, "request": "DIOCSETP"}, Err.EINVAL),
        (BdevReq.IOCTL, {"minor": 0, "request": 1}, Err.EINVAL),
        (0xA7F, {"minor": 0}, Err.EBADREQUEST),
    ]
    for req, fields, expected in after_open:
        assert call(conn, s, req, **fields).type == expected, (req, fields)
    # Nothing moved for a refused grant, and a read at the end of the disk moves nothing.
    end = call(conn, s, BdevReq.READ, minor=0, pos=DISK, count=512, grant=12345)
    assert (end.type, end.get("count")) == (Err.OK, 0)
    geometry = call(conn, s, BdevReq.IOCTL, minor=0, request="DIOCGETP")
    assert geometry.type == Err.OK and geometry["size"] == DISK and geometry["base"] == 0
    assert geometry["cylinders"] * geometry["heads"] * geometry["sectors"] * 512 <= DISK
    assert call(conn, s, BdevReq.CLOSE, minor=0).type == Err.OK
    assert call(conn, s, BdevReq.IOCTL, minor=0, request="DIOCGETP").type == Err.ERESTART
    assert rig.at_wini_pid(s) == pid and not events(s, "crash", "at_wini")
    assert "refused (EINVAL)" in s.console()


def test_grants_are_checked_by_the_kernel_in_both_directions(disk_system: SystemUnderTest) -> None:
    """READ needs a grant the driver may write, WRITE one it may read: the wrong one is EPERM
    and nothing moves; the right one moves the bytes (GATHER and SCATTER over three grants)."""
    s = disk_system
    assert rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 3})["status"] == Err.OK
    data = bytes(range(256)) * 6  # 1536 bytes: three sectors
    wrong = rig.raw(s, BdevReq.WRITE, {"minor": 0, "pos": 4096, "count": 1536, "grant": "$0"},
                    grants=[[0, 1536, CPF_WRITE]], poke=[0, data])
    assert wrong["status"] == Err.EPERM
    r = rig.raw(s, BdevReq.SCATTER,
                {"minor": 0, "pos": 4096, "iov": [["$0", 512], ["$1", 1024]]},
                grants=[[0, 512, CPF_READ], [512, 1024, CPF_READ]], poke=[0, data])
    assert (r["status"], r["fields"]["count"]) == (Err.OK, 1536)
    wrong = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": 4096, "count": 1536, "grant": "$0"},
                    grants=[[8192, 1536, CPF_READ]], peek=[8192, 1536])
    assert wrong["status"] == Err.EPERM and wrong["memory"] == bytes(1536)
    short = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": 4096, "count": 1536, "grant": "$0"},
                    grants=[[8192, 1024, CPF_WRITE]], peek=[8192, 1536])
    assert short["status"] == Err.EPERM  # the grant is smaller than the count
    r = rig.raw(s, BdevReq.GATHER,
                {"minor": 0, "pos": 4096, "iov": [["$0", 1024], ["$1", 512]]},
                grants=[[8192, 1024, CPF_WRITE], [16384, 512, CPF_WRITE]], peek=[8192, 8192 + 512])
    assert (r["status"], r["fields"]["count"]) == (Err.OK, 1536)
    assert r["memory"][:1024] == data[:1024] and r["memory"][8192:] == data[1024:]
    assert rig.at_wini_pid(s) and not events(s, "crash", "at_wini")


def test_a_device_closed_for_good_gives_its_grant_back(disk_system: SystemUnderTest) -> None:
    """MFS makes a BlockDevice per mount try; a refused mount closes it.  Each device grants
    its buffer to the driver on its first transfer: unless the last close revokes it, VFS's
    retries of a root mount on a bad superblock fill the file server's grant table, and
    every later mount fails with SETGRANT's ENOSPC (the campaign's trial 65 hung so)."""
    s = disk_system
    for i in range(params.MAX_GRANTS + 8):
        got = rig.ask(s, client.REQ_BDEV, label="at_wini", minor=0, op="read", pos=i * 512,
                      count=512)
        assert got.type == Err.OK, f"read {i} on a new device: {got}"
        assert rig.ask(s, client.REQ_BDEV, label="at_wini", minor=0, op="close").type == Err.OK
