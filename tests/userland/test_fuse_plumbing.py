"""The FUSE layer mounted for real (libfuse3, the kernel's FUSE) over an in-memory ``Files``:
the host's own calls and tools reach the right operations, errors come back as errnos,
requests of 128 KiB arrive, and neither an unmount nor a killed mount process leaves a
mount behind.  (The system itself under bin/mount: tests/storage/test_mount_clients.py.)"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minikern import cli, mounts
from minikern.deadline import wait_for
from userland.mount import unavailable

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]
MiB = 1 << 20


class FakeMount:
    def __init__(self, tmp: Path) -> None:
        self.point = tmp / "mnt"
        self.point.mkdir()
        self.stats = tmp / "stats.json"
        self.log = open(tmp / "mount.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.userland.fake_mount", str(self.point), str(self.stats)],
            cwd=cli.REPO_ROOT, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env={**os.environ, "PYTHONPATH": str(cli.REPO_ROOT)})
        wait_for(lambda: self.proc.poll() is not None or Path(str(self.stats) + ".ready").exists(),
                 20, "the fake mount to serve")
        assert self.proc.poll() is None, (tmp / "mount.log").read_text()

    def unmount(self) -> dict[str, Any]:
        ok, why = mounts.fusermount(self.point)
        assert ok, why
        assert self.proc.wait(20) == 0
        result: dict[str, Any] = json.loads(self.stats.read_text())
        return result

    def close(self) -> None:
        if mounts.is_fuse_mount(self.point):
            mounts.fusermount(self.point, lazy=True)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeMount]:
    m = FakeMount(tmp_path)
    try:
        yield m
    finally:
        m.close()


def test_host_calls_reach_the_operations(fake: FakeMount) -> None:
    p = fake.point
    (p / "d").mkdir()
    (p / "d" / "f").write_bytes(b"hello")
    assert (p / "d" / "f").read_bytes() == b"hello"
    with open(p / "d" / "f", "ab") as f:  # O_APPEND: the kernel gives the end as offset
        f.write(b" world")
    assert (p / "d" / "f").read_bytes() == b"hello world"
    os.symlink("f", p / "d" / "s")
    assert os.readlink(p / "d" / "s") == "f" and (p / "d" / "s").read_bytes() == b"hello world"
    os.link(p / "d" / "f", p / "d" / "g")
    assert os.stat(p / "d" / "f").st_nlink == 2
    os.rename(p / "d" / "g", p / "d" / "h")
    assert sorted(os.listdir(p / "d")) == ["f", "h", "s"]
    os.chmod(p / "d" / "f", 0o600)
    os.utime(p / "d" / "f", (1_000_000, 2_000_000))
    st = os.stat(p / "d" / "f")
    assert (st.st_mode & 0o777, st.st_atime, st.st_mtime) == (0o600, 1_000_000, 2_000_000)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    os.truncate(p / "d" / "f", 2)
    assert (p / "d" / "f").read_bytes() == b"he"
    with pytest.raises(OSError) as e:
        os.rmdir(p / "d")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileNotFoundError):
        os.stat(p / "nope")
    for name in ("f", "h", "s"):
        os.unlink(p / "d" / name)
    os.rmdir(p / "d")
    assert os.listdir(p) == []
    assert os.statvfs(p).f_namemax == 60
    assert mounts.is_fuse_mount(p) and fake.proc.poll() is None  # served all along


def test_cp_and_sha256sum_with_128_kib_requests(fake: FakeMount, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * MiB + 123))
    subprocess.run(["cp", str(src), str(fake.point / "copy")], check=True, timeout=30)
    out = subprocess.run(["sha256sum", str(fake.point / "copy")], check=True, timeout=30,
                         capture_output=True, text=True).stdout
    assert out.split()[0] == hashlib.sha256(src.read_bytes()).hexdigest()
    stats = fake.unmount()
    assert stats["max_write"] == 128 * 1024
    assert stats["max_read"] == 128 * 1024
    assert stats["syncs"] == 1  # the unmount had the system write back


def test_a_killed_mount_process_leaves_no_mount(fake: FakeMount) -> None:
    assert mounts.is_fuse_mount(fake.point)
    fake.proc.send_signal(signal.SIGKILL)
    fake.proc.wait(10)
    wait_for(lambda: not mounts.is_fuse_mount(fake.point), 10,
             "fusermount3 (auto_unmount) to remove the dead mount")
