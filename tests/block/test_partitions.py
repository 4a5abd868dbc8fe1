"""Minor devices: MBR primary partitions as minors 1-4, transfers cut short at a minor's end,
a bad table refused (only minor 0, logged once), the table read again on OPEN of minor 0."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.block import partition
from minikern.const import BdevReq, Err
from tests.block import client, rig
from tests.conftest import SystemUnderTest

pytestmark = pytest.mark.timeout(120)
DISK_SECTORS = 16384  # 8 MiB
P1, P2 = (2048, 4096), (8192, 8192)  # (start, sectors)


@pytest.mark.parametrize("entries, minors, refused", [
    ([(0x81, *P1), (0x83, *P2)], {0, 1, 2}, False),
    ([(0x81, *P1), (0, 0, 0), (0x83, *P2)], {0, 1, 3}, False),
    ([(0x81, 2048, 0)], {0}, True),  # empty
    ([(0x81, 16000, 1000)], {0}, True),  # past the end of the disk
    ([(0x81, 0, 100)], {0}, True),  # over the table itself
    ([(0x81, *P1), (0x83, 16384, 1)], {0}, True),  # one bad entry refuses the table
])
def test_the_partition_table_is_parsed_and_checked(
        entries: list[tuple[int, int, int]], minors: set[int], refused: bool) -> None:
    found, why = partition.parse(partition.mbr(entries), DISK_SECTORS)
    assert set(found) == minors and (why is not None) == refused
    assert found[0] == partition.Minor(0, DISK_SECTORS)


def test_no_signature_is_no_table_and_nothing_to_report() -> None:
    sector = bytearray(partition.mbr([(0x81, *P1)]))
    sector[510] = 0
    assert partition.parse(bytes(sector), DISK_SECTORS) == ({0: partition.Minor(0, DISK_SECTORS)},
                                                             None)


def bdev(s: SystemUnderTest, minor: int, op: str, **fields: object) -> dict[str, object]:
    r = rig.ask(s, client.REQ_BDEV, label="at_wini", minor=minor, op=op, **fields)
    return {"status": r.type, **r.fields}


def test_partitions_are_minors_that_map_onto_the_disk_and_end_where_they_end(
        make_system: Callable[..., SystemUnderTest], tmp_path: Path) -> None:
    disk = rig.make_disk(tmp_path / "disk.img", DISK_SECTORS * 512,
                         partition.mbr([(0x81, *P1), (0x83, *P2)]))
    s = rig.boot_disk(make_system, disk)
    whole, first = bdev(s, 0, "geometry"), bdev(s, 1, "geometry")
    assert (first["status"], first["base"], first["size"]) == (Err.OK, P1[0] * 512, P1[1] * 512)
    assert (first["heads"], first["sectors"]) == (whole["heads"], whole["sectors"])
    assert bdev(s, 2, "geometry")["size"] == P2[1] * 512
    data = bytes(range(256)) * 8
    assert bdev(s, 1, "write", pos=1024, data=data)["status"] == Err.OK
    assert bdev(s, 2, "write", pos=0, data=data[::-1])["status"] == Err.OK
    image = disk.read_bytes()
    assert image[P1[0] * 512 + 1024:P1[0] * 512 + 1024 + len(data)] == data
    assert image[P2[0] * 512:P2[0] * 512 + len(data)] == data[::-1]
    assert bdev(s, 0, "read", pos=P1[0] * 512 + 1024, count=len(data))["data"] == data
    end = P1[1] * 512
    tail = bdev(s, 1, "read", pos=end - 1024, count=4096)
    assert tail["data"] == image[P1[0] * 512 + end - 1024:P1[0] * 512 + end]  # cut short
    assert bdev(s, 1, "read", pos=end, count=512)["data"] == b""
    assert bdev(s, 1, "write", pos=end - 512, data=bytes(1024))["status"] == Err.EIO
    assert disk.read_bytes()[P2[0] * 512:P2[0] * 512 + 512] == data[::-1][:512]  # untouched
    assert bdev(s, 3, "geometry")["status"] == Err.ENXIO
    # A new table is not read while partitions are open (this client has 1 and 2 open).
    assert bdev(s, 0, "write", pos=0, data=partition.mbr([(0x81, *P1), (0x83, *P2),
                                                          (0x83, 100, 50)]))["status"] == Err.OK
    assert rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 1})["status"] == Err.OK
    assert bdev(s, 3, "geometry")["status"] == Err.ENXIO


def test_a_bad_table_leaves_only_minor_0_and_is_logged_once(
        make_system: Callable[..., SystemUnderTest], tmp_path: Path) -> None:
    disk = rig.make_disk(tmp_path / "disk.img", DISK_SECTORS * 512,
                         partition.mbr([(0x81, *P1), (0x83, DISK_SECTORS - 10, 100)]))
    s = rig.boot_disk(make_system, disk)
    assert bdev(s, 1, "geometry")["status"] == Err.ENXIO
    assert bdev(s, 0, "geometry")["size"] == DISK_SECTORS * 512
    for _ in range(2):
        assert rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 1})["status"] == Err.OK
    assert s.console().count("partition table refused") == 1, s.console()
    # A good table written through minor 0 counts from the next OPEN of minor 0 (no
    # partition is open).
    assert bdev(s, 0, "write", pos=0, data=partition.mbr([(0x83, 100, 50)]))["status"] == Err.OK
    assert bdev(s, 1, "geometry")["status"] == Err.ENXIO
    assert rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 1})["status"] == Err.OK
    assert bdev(s, 1, "geometry")["size"] == 50 * 512
