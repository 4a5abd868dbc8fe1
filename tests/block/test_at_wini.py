"""at_wini on the board's ATA disk, by DMA and by PIO: what goes through it is what the image
file holds, a bad sector is EIO naming the sector, a silent drive is reset and retried."""
from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern import params
from minikern import rsctl as ctl
from minikern.const import CPF_WRITE, BdevReq, Err, RsReq
from minikern.proto import Message
from tests.block import client, rig
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import events

pytestmark = pytest.mark.timeout(180)
DISK = 16 << 20


@pytest.fixture(params=["dma", "pio"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    return rig.make_disk(tmp_path / "disk.img", DISK)


def boot(make_system: Callable[..., SystemUnderTest], disk: Path, mode: str) -> SystemUnderTest:
    s = rig.boot_disk(make_system, disk, pio=mode == "pio")
    shown = "DMA (bus master" if mode == "dma" else "sectors, PIO"
    assert shown in s.console(), s.console()
    return s


def test_what_is_written_is_in_the_image_and_what_the_image_holds_is_read(
        make_system: Callable[..., SystemUnderTest], disk: Path, mode: str) -> None:
    s = boot(make_system, disk, mode)
    pos, total, chunk, seed = (1 << 20) + 512, 300 * 1024 + 1536, 200 * 1024, 7
    r = rig.ask(s, client.REQ_RUN, label="at_wini", minor=0, pos=pos, bytes=total, seed=seed,
                chunk=chunk)
    assert r.type == Err.OK, r
    assert r["written_sha256"] == r["read_sha256"]
    rng = random.Random(seed)
    expected = b"".join(rng.randbytes(min(chunk, total - off)) for off in range(0, total, chunk))
    image = disk.read_bytes()
    assert image[pos:pos + total] == expected
    assert image[pos - 512:pos] == bytes(512) and image[pos + total:pos + total + 512] == bytes(512)
    # Written behind the driver's back, into the image file: the driver reads it as it is.
    fresh = os.urandom(40 * 1024)
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, fresh, 5 << 20)
    finally:
        os.close(fd)
    got = rig.ask(s, client.REQ_BDEV, label="at_wini", minor=0, op="read", pos=5 << 20,
                  count=len(fresh))
    assert got.type == Err.OK and got["data"] == fresh


def test_a_bad_sector_is_eio_naming_it_after_the_sectors_before_it(
        make_system: Callable[..., SystemUnderTest], disk: Path, mode: str) -> None:
    s = boot(make_system, disk, mode)
    before = os.urandom(4 * 512)
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, before, 96 * 512)
    finally:
        os.close(fd)
    with rig.board(s) as ctl:
        ctl.set("ata.bad_sectors", [100])
    assert rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 3})["status"] == Err.OK
    r = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": 96 * 512, "count": 8 * 512, "grant": "$0"},
                grants=[[0, 8 * 512, CPF_WRITE]], peek=[0, 4 * 512])
    assert r["status"] == Err.EIO
    assert (r["fields"]["sector"], r["fields"]["count"]) == (100, 4 * 512)
    assert r["memory"] == before  # the sectors before the bad one were delivered
    # Through bdev: retried BDEV_EIO_RETRIES times, then EIO with the sector.
    got = rig.ask(s, client.REQ_BDEV, label="at_wini", minor=0, op="read", pos=64 * 512,
                  count=64 * 512)
    assert got.type == Err.EIO and got["sector"] == 100, got
    assert got["retries"] == params.BDEV_EIO_RETRIES
    with rig.board(s) as ctl:
        ctl.set("ata.bad_sectors", [])
    got = rig.ask(s, client.REQ_BDEV, label="at_wini", minor=0, op="read", pos=96 * 512,
                  count=4 * 512)
    assert got.type == Err.OK and got["data"] == before
    assert not events(s, "crash", "at_wini")


@pytest.mark.timeout(240)
def test_a_drive_that_never_interrupts_is_reset_and_retried_then_eio_and_the_driver_lives(
        make_system: Callable[..., SystemUnderTest], disk: Path) -> None:
    """Each attempt waits ATA_TIMEOUT for the interrupt, answering RS's heartbeat meanwhile
    (the 1 s period is far shorter than the attempts), resets the channel and tries again."""
    s = boot(make_system, disk, "dma")
    pid, driver = rig.at_wini_pid(s), s.endpoint_of("at_wini")
    assert rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 3})["status"] == Err.OK
    other = s.connect("other", "operator")
    assert other.sendrec(driver, Message(BdevReq.OPEN, {"minor": 0, "access": 1})).type == Err.OK
    with rig.board(s) as ctl:
        ctl.set("ata.irq_disabled", True)
    read = s.background(functools.partial(
        rig.raw, s, BdevReq.READ, {"minor": 0, "pos": 0, "count": 4096, "grant": "$0"},
        grants=[[0, 4096, CPF_WRITE]]))
    client_ep = s.endpoint_of("bdevclient")

    def client_waits_for_driver() -> bool:
        return s.blocked(client_ep, "sendrec-recv") and s.proc(client_ep)["peer"] == driver

    wait_for(client_waits_for_driver, 10, "the client's READ taken by at_wini")
    # A request that comes while the driver waits for its drive is kept, and answered after
    # the one in hand: here a READ that fails as long (its bogus grant is never reached).
    later = s.background(lambda: other.sendrec(driver, Message(BdevReq.READ, {
        "minor": 0, "pos": 0, "count": 4096, "grant": 12345})))
    wait_for(lambda: s.blocked(other.endpoint, "sendrec-recv"), 10, "the second READ taken")
    r = read.result(timeout=3 * params.ATA_MAX_ERRORS * params.ATA_TIMEOUT)
    assert not later.done(), "the request that waited was answered first"
    assert later.result(timeout=3 * params.ATA_MAX_ERRORS * params.ATA_TIMEOUT).type == Err.EIO
    assert r["status"] == Err.EIO and "no interrupt" in r["fields"]["error"], r
    assert f"{params.ATA_MAX_ERRORS} attempts" in r["fields"]["error"]
    with rig.board(s) as ctl:
        ctl.set("ata.irq_disabled", False)
    r = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": 0, "count": 4096, "grant": "$0"},
                grants=[[0, 4096, CPF_WRITE]])
    assert (r["status"], r["fields"]["count"]) == (Err.OK, 4096)
    assert rig.at_wini_pid(s) == pid and not events(s, "crash", "at_wini")


def test_a_task_file_value_corrupted_on_its_way_is_caught_before_the_command(
        make_system: Callable[..., SystemUnderTest], disk: Path) -> None:
    """The fault campaign's register fault on the device/head write (0xE0 zeroed: the drive
    takes the address as cylinder/head/sector, and sector 6 of cylinder 0 is LBA 5) once
    sent a write one sector early (README, the 10,000-fault run).  at_wini reads its task
    file back before the command: the attempt fails, the drive is reset, the write is tried
    again, and every block lands where it was meant to."""
    s = boot(make_system, disk, "dma")
    record = s.run_dir / params.SWIFI_DIR / "t-select.json"
    written: dict[int, bytes] = {}

    def write(k: int) -> None:
        pos, data = (6 + 4 * k) * 512, bytes([k + 1]) * 1024
        r = rig.ask(s, client.REQ_BDEV, label="at_wini", minor=0, op="write", pos=pos, data=data)
        assert r.type == Err.OK, r
        written[pos] = data
    write(0)  # opened, its partition table read: from here on, the driver's calls are writes
    # an interface fault counts the driver's port-writing calls: a DMA write makes two, the
    # bus master's set-up, then the task file (its first write, ``pick`` 0: device/head)
    ctl.request(s.run_dir, RsReq.CRASH, label="at_wini", fault="interface",
                spec={"id": "t-select", "kind": "register", "nth": 2, "pick": 0,
                      "corrupt": "zero"})
    for k in range(1, 200):  # armed with the reply to at_wini's next heartbeat
        write(k)
        if record.exists():
            break
    assert "out 0x1f6" in record.read_text() and "0xe0 -> 0x0" in record.read_text()
    image = disk.read_bytes()
    for pos, data in written.items():
        assert image[pos:pos + len(data)] == data, pos
        assert image[pos - 512:pos] == bytes(512), pos  # nothing one sector early
