"""The campaign's read-back of the disk's files ends, whatever a fault did to the disk.

A file call waits without a deadline: VFS parks it until the root file system is
mounted.  A fault that broke the superblock leaves VFS retrying that mount for ever, and
the trial's check hung so (the 10,000-fault run's trial 65).  ``rig.bounded`` stops the
system once the read-back has taken longer than its bound; the check then says why."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from experiment import rig, workload
from minikern import cli
from minikern.deadline import wait_for
from tests.conftest import SystemUnderTest, conf_entry
from tests.storage.conftest import CONF, needs_util_linux, make_image

pytestmark = [pytest.mark.timeout(120), needs_util_linux]

SUPERBLOCK = 1024  # bytes into the image (docs: spec/devices.md, the MINIX v3 layout)


@pytest.fixture
def broken_root(make_system: Callable[..., SystemUnderTest], tmp_path: Path) -> SystemUnderTest:
    """at_wini, MFS and VFS on a disk whose superblock is zeros: VFS up, the root never mounted."""
    disk = make_image(tmp_path / "disk.img")
    with disk.open("r+b") as f:
        f.seek(SUPERBLOCK)
        f.write(bytes(1024))
    conf = CONF.replace("{disk}", str(disk)).replace("{rs_args}", "at_wini mfs vfs") \
        + "".join(conf_entry(n) for n in ("at_wini", "mfs", "vfs", "user"))
    s = make_system("hw rs ds", conf)
    with cli.connected(s.run_dir, "waiter") as conn:
        wait_for(lambda: rig.vfs_published(conn), 60, "VFS in DS")
    wait_for(lambda: "cannot mount the root yet" in s.console(), 60, "VFS refusing the mount")
    return s


def test_a_read_back_that_cannot_end_is_stopped_and_said(broken_root: SystemUnderTest) -> None:
    s = broken_root
    with rig.bounded(s.system, 60.0):
        pass  # a block within its bound: nothing is stopped
    assert s.system.kernel.poll() is None
    with pytest.raises(rig.Stopped, match="not done within 2 s"), rig.bounded(s.system, 2.0):
        # each file's call fails at once after the kernel has gone: that is not its result
        workload.verify(s.run_dir, {"/exp/a": "0" * 64, "/exp/b": "0" * 64})
    wait_for(lambda: s.system.kernel.poll() is not None, 10, "the kernel stopped")
