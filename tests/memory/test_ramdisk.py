"""The RAM disk in the file tree: VFS mounts mfs_ram on the memory driver at /ram at start-up
(its ``--mount``), again after VFS itself is restarted, and files there live through SIGKILLs
of the driver; the device dumped through the driver checks clean with fsck.minix -f."""
from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from minikern.deadline import wait_for
from services.vfs.main import BootMount, boot_mount
from tests.conftest import SystemUnderTest
from tests.memory import rig
from tests.memory.test_memory import kill_and_wait
from tests.services.rs_helpers import service
from tests.storage.conftest import make_image, needs_util_linux
from userland.fs import Files, FsError

Make = Callable[..., SystemUnderTest]
MOUNTED = "vfs: mounted memory minor 0 by mfs_ram on /ram"


def test_the_mount_argument_is_checked() -> None:
    assert boot_mount("/ram=mfs_ram:memory:0") == BootMount("/ram", "mfs_ram", "memory", 0)
    for bad in ("ram=mfs_ram:memory:0", "/=mfs_ram:memory:0", "/ram=mfs_ram:memory",
                "/ram=mfs_ram:memory:x", "/ram=:memory:0", "/ram=a:b:256", "/ram"):
        with pytest.raises(argparse.ArgumentTypeError):
            boot_mount(bad)


def read_or_none(files: Files, path: str) -> bytes | None:
    try:
        return files.read_file(path)
    except FsError:
        return None


@pytest.mark.timeout(240)
@needs_util_linux
def test_files_on_ram_survive_the_driver_and_vfs_restarts(make_system: Make,
                                                          tmp_path: Path) -> None:
    s = rig.boot_stack(make_system, make_image(tmp_path / "disk.img", 32 << 20))
    files = Files(s.connect("writer", "user"))
    ram, root = files.statvfs(rig.MOUNT), files.statvfs("/")
    assert ram.f_blocks < (16 << 20) // 1024 < root.f_blocks, "the 16 MiB RAM disk on /ram"
    blobs = {f"/ram/d/f{i}": os.urandom(50_000 * (i + 1)) for i in range(4)}
    files.mkdir("/ram/d")
    for path, data in blobs.items():
        files.write_file(path, data)
        files.sync()
        kill_and_wait(s)  # after each file: the next one goes to a restarted driver
    for path, data in blobs.items():
        assert files.read_file(path) == data
    assert s.console().count(MOUNTED) == 1

    os.kill(int(service(s, "vfs")["pid"]), signal.SIGKILL)  # VFS mounts /ram again
    files = Files(s.connect("reader", "user"))
    wait_for(lambda: all(read_or_none(files, p) == d for p, d in blobs.items()), 60,
             "the files on /ram through the restarted VFS")
    assert s.console().count(MOUNTED) == 2
    assert "/ram" not in files.listdir("/ram"), "the RAM disk's own root, not the disk's /ram"

    Files(s.connect("operator", "operator")).umount(rig.MOUNT)
    assert rig.mounted(files) is False, "unmounted: /ram is the root disk's directory again"
    clean, said = rig.fsck(rig_dump(s, tmp_path))
    assert clean, said


def rig_dump(s: SystemUnderTest, tmp_path: Path) -> Path:
    image = tmp_path / "ram.img"
    rig.dump(s, image)
    assert image.stat().st_size == 16 << 20
    return image


@pytest.mark.timeout(120)
@needs_util_linux
def test_a_new_ram_disk_is_formatted_minix_v3(make_system: Make, tmp_path: Path) -> None:
    s = rig.boot_driver(make_system, tmp_path, ram="4M")
    assert "formatted MINIX v3 by" in s.console()
    image = tmp_path / "fresh.img"
    rig.dump(s, image)
    assert image.stat().st_size == 4 << 20
    clean, said = rig.fsck(image)
    assert clean, said
