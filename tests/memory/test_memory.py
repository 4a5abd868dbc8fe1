"""The memory driver end to end (drivers/memory): the RAM disk as a block device (PROTOCOL.md
section 19) through grants, its contents across SIGKILLs of the driver (the segment taken
back from DS), a bad or missing segment refused with a log line and an empty start, and no
segment left in /dev/shm after the halt."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern import shm
from minikern.const import BdevReq, Err
from minikern.deadline import wait_for
from tests.block import client
from tests.conftest import SystemUnderTest
from tests.memory import rig
from tests.services.rs_helpers import service, wait_state

RAM = 4 << 20
Make = Callable[..., SystemUnderTest]


def kill_and_wait(s: SystemUnderTest) -> int:
    """SIGKILL the memory driver; the new instance's pid once RS has it up."""
    old = rig.pid(s)
    os.kill(old, signal.SIGKILL)

    def back() -> int:
        v = service(s, rig.LABEL)
        return int(v["pid"]) if v["state"] == "up" and v["pid"] not in (old, None) else 0
    return int(wait_for(back, 30, "memory back"))


def console_count(s: SystemUnderTest, text: str) -> int:
    return s.console().count(text)


@pytest.mark.timeout(120)
def test_reads_writes_geometry_and_bounds(make_system: Make, tmp_path: Path) -> None:
    s = rig.boot_driver(make_system, tmp_path, ram="4M")
    g = rig.bdev(s, "geometry")
    assert g.type == Err.OK and g["size"] == RAM and g["base"] == 0
    assert g["heads"] * g["sectors"] * g["cylinders"] * 512 == RAM

    data = os.urandom(32 * 1024)
    assert rig.bdev(s, "write", pos=512 * 7, data=data).type == Err.OK
    assert rig.bdev(s, "read", pos=512 * 7, count=len(data))["data"] == data
    assert rig.bdev(s, "flush").type == Err.OK
    run = s.ask("bdevclient", client.REQ_RUN, label=rig.LABEL, minor=0, pos=1 << 20,
                bytes=1 << 20, seed=7, chunk=300 * 1024)  # requests of BDEV_MAX_IO and less
    assert run.type == Err.OK and run["written_sha256"] == run["read_sha256"]

    tail = rig.bdev(s, "read", pos=RAM - 1024, count=4096)
    assert tail.type == Err.OK and len(tail["data"]) == 1024, "a read past the end is cut short"
    past = rig.bdev(s, "write", pos=RAM - 512, data=bytes(1024))
    assert past.type == Err.EIO, "a write that runs past the end of the device is an error"

    opened = rig.raw(s, BdevReq.OPEN, {"minor": 0, "access": 3})
    assert opened["status"] == Err.OK
    at_end = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": RAM, "count": 512, "grant": "$0"},
                     grants=[[0, 512, 2]])
    assert at_end["status"] == Err.OK and at_end["fields"]["count"] == 0
    for minor in (1, 4, 5, 255):
        bad = rig.raw(s, BdevReq.OPEN, {"minor": minor, "access": 1})
        assert bad["status"] == Err.ENXIO, f"minor {minor}: the RAM disk has minor 0 only"
    odd = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": 100, "count": 512, "grant": "$0"},
                  grants=[[0, 512, 2]])
    assert odd["status"] == Err.EINVAL
    ioctl = rig.raw(s, BdevReq.IOCTL, {"minor": 0, "request": "DIOCEJECT"})
    assert ioctl["status"] == Err.EINVAL
    assert service(s, rig.LABEL)["incarnation"] == 0, "no request took the driver down"


@pytest.mark.timeout(180)
def test_contents_survive_sigkills_of_the_driver(make_system: Make, tmp_path: Path) -> None:
    s = rig.boot_driver(make_system, tmp_path, ram="4M")
    entry = rig.segment_entry(s)
    assert entry["size"] == RAM and rig.segments(s) == [entry["name"]]
    pieces = {pos: os.urandom(32 * 1024) for pos in (0, 1 << 20, RAM - 32 * 1024)}
    for kill in range(3):
        for pos, data in pieces.items():
            pieces[pos] = os.urandom(len(data))
            assert rig.bdev(s, "write", pos=pos, data=pieces[pos]).type == Err.OK
        kill_and_wait(s)
        for pos, data in pieces.items():
            assert rig.bdev(s, "read", pos=pos, count=len(data))["data"] == data, \
                f"after kill {kill + 1}: the RAM disk lost what was written at {pos}"
    kill_and_wait(s)
    stale = rig.raw(s, BdevReq.READ, {"minor": 0, "pos": 0, "count": 512, "grant": "$0"},
                    grants=[[0, 512, 2]])
    assert stale["status"] == Err.ERESTART, "the new instance never saw this caller's OPEN"
    assert rig.bdev(s, "read", pos=0, count=512)["data"] == pieces[0][:512], "reopened"
    assert console_count(s, f"took back RAM disk {entry['name']}") == 4
    assert rig.segment_entry(s) == entry, "the same segment, name, size and generation"
    assert rig.segments(s) == [entry["name"]], "no other segment was made"


@pytest.mark.timeout(180)
def test_a_bad_or_missing_segment_is_refused_and_the_driver_starts_empty(
        make_system: Make, tmp_path: Path) -> None:
    s = rig.boot_driver(make_system, tmp_path, ram="4M", extra=" --format none")
    first = rig.segment_entry(s)
    assert rig.bdev(s, "write", pos=0, data=b"\xaa" * 4096).type == Err.OK
    shm_file = shm.shm_dir() / first["name"]
    os.chmod(shm_file, 0o644)  # not 0600: not trusted
    kill_and_wait(s)
    assert console_count(s, f"segment {first['name']} refused (owner") == 1
    assert console_count(s, "starting empty") == 1
    second = rig.segment_entry(s)
    assert second["name"] != first["name"] and second["generation"] == first["generation"] + 1
    assert rig.segments(s) == [second["name"]], "the refused segment is removed"
    assert rig.bdev(s, "read", pos=0, count=4096)["data"] == bytes(4096), "empty"

    assert rig.bdev(s, "write", pos=0, data=b"\xbb" * 4096).type == Err.OK
    os.unlink(shm.shm_dir() / second["name"])  # gone: nothing to take back
    kill_and_wait(s)
    assert console_count(s, f"segment {second['name']} refused (cannot open it") == 1
    assert console_count(s, "starting empty") == 2
    assert rig.bdev(s, "read", pos=0, count=4096)["data"] == bytes(4096)
    assert len(rig.segments(s)) == 1


@pytest.mark.timeout(120)
def test_the_segment_is_removed_at_halt(make_system: Make, tmp_path: Path) -> None:
    s = rig.boot_driver(make_system, tmp_path, ram="4M")
    name = rig.segment_entry(s)["name"]
    kill_and_wait(s)
    assert rig.segments(s) == [name]
    s.system.halt()
    assert not (shm.shm_dir() / name).exists() and rig.segments(s) == []


@pytest.mark.timeout(120)
def test_halt_removes_a_segment_the_driver_could_not(make_system: Make, tmp_path: Path) -> None:
    """A driver stopped (SIGSTOP) cannot unlink its segment at SHUTDOWN: halt kills it, and
    removes what is left of the run directory's segments itself."""
    s = rig.boot_driver(make_system, tmp_path, ram="4M")
    name = rig.segment_entry(s)["name"]
    wait_state(s, rig.LABEL, "up")
    os.kill(rig.pid(s), signal.SIGSTOP)
    s.system.halt()
    assert not (shm.shm_dir() / name).exists() and rig.segments(s) == []
