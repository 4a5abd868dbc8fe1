"""A booted storage stack for end-to-end tests: the board with a fresh MINIX v3 disk image
(util-linux's mkfs.minix -3), at_wini, MFS and VFS with their etc/system.conf entries.

    def test_x(storage: Storage) -> None:
        files = storage.files()              # a user process's file API (userland/fs.py)
        files.write_file("/a", b"data")
        files.sync()
        storage.halt()
        storage.assert_clean()               # fsck.minix -f on the image (never -a or -r)

``make_storage(size=..., extra_conf=..., rs_args=...)`` boots more than one,
or with other sizes or more services (``extra_conf`` in str.format form:
braces doubled, as ``tests.conftest.conf_entry`` gives them).  Every system is halted at the end of
the test (``SystemUnderTest.close``); ``halt`` may be called before, e.g. to
check the image.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minikern import ipc
from minikern.deadline import wait_for
from tests.conftest import SystemUnderTest, conf_entry
from userland.fs import Files, FsError

MKFS = shutil.which("mkfs.minix") or "/usr/sbin/mkfs.minix"
FSCK = shutil.which("fsck.minix") or "/usr/sbin/fsck.minix"
HAVE_UTIL_LINUX = Path(MKFS).exists() and Path(FSCK).exists()
needs_util_linux = pytest.mark.skipif(not HAVE_UTIL_LINUX,
                                      reason="util-linux mkfs.minix/fsck.minix missing")

DISK_SIZE = 16 * 1024 * 1024
MOUNT_DEADLINE = 60.0  # seconds for at_wini, MFS and VFS to come up and mount the root

CONF = """
boot hw rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service hw {{ program hw.board; args --nic none --hz 60 --serial socket --disk {disk};
             ipc SYSTEM rs; }};
service rs {{ program services.rs.main; args {rs_args};
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; period 2s; }};
"""


def make_image(path: Path, size: int = DISK_SIZE) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run([MKFS, "-3", str(path)], check=True, capture_output=True)
    return path


def fsck(path: Path) -> subprocess.CompletedProcess[str]:
    """fsck.minix -f: check only (-a or -r would corrupt a v3 image)."""
    return subprocess.run([FSCK, "-f", str(path)], capture_output=True, text=True)


class Storage:
    """A booted system with the storage stack, on its own fresh disk image."""

    def __init__(self, system: SystemUnderTest, disk: Path) -> None:
        self.s, self.disk = system, disk
        self.halted = False

    def connect(self, label: str = "tester", privileges: str = "user") -> ipc.Connection:
        """A process of the system with ``privileges`` (system.conf's ``user`` by default)."""
        return self.s.connect(label, privileges)

    def files(self, label: str = "tester", privileges: str = "user") -> Files:
        """The file API of a new process (its own connection: one per thread)."""
        return Files(self.connect(label, privileges))

    def wait_mounted(self, timeout: float = MOUNT_DEADLINE) -> None:
        """Until VFS is in DS and answers a STAT of the root (its requests wait for the mount)."""
        conn = self.connect("waiter")

        def mounted() -> bool:
            try:
                Files(conn).stat("/")
            except FsError:
                return False
            return True
        try:
            wait_for(mounted, timeout, "the root file system mounted")
        finally:
            conn.close()
            self.s.conns.remove(conn)

    def halt(self) -> None:
        """Shut the system down (MFS writes back at SHUTDOWN; sync first to be sure)."""
        if not self.halted:
            self.halted = True
            self.s.close()

    def fsck(self) -> subprocess.CompletedProcess[str]:
        if not self.halted:
            raise RuntimeError("fsck only a halted system's image")
        return fsck(self.disk)

    def assert_clean(self) -> None:
        got = self.fsck()
        assert got.returncode == 0, got.stdout + got.stderr

    def console(self) -> str:
        return self.s.console()


MakeStorage = Callable[..., Storage]


@pytest.fixture
def make_storage(make_system: Callable[..., SystemUnderTest],
                 tmp_path: Path) -> Iterator[MakeStorage]:
    if not HAVE_UTIL_LINUX:
        pytest.skip("util-linux mkfs.minix/fsck.minix missing")
    made = 0

    def make(size: int = DISK_SIZE, extra_conf: str = "", rs_args: str = "at_wini mfs vfs",
             labels: tuple[str, ...] = ("at_wini", "mfs", "vfs", "user")) -> Storage:
        nonlocal made
        made += 1
        disk = make_image(tmp_path / f"disk{made}.img", size)
        conf = CONF.replace("{disk}", str(disk)).replace("{rs_args}", rs_args) \
            + "".join(conf_entry(n) for n in labels) + extra_conf  # braces doubled: make_system formats
        st = Storage(make_system("hw rs ds", conf), disk)
        st.wait_mounted()
        return st
    yield make


@pytest.fixture
def storage(make_storage: MakeStorage) -> Storage:
    return make_storage()
