"""Images made by util-linux's mkfs.minix -3 and judged by its fsck.minix -f (never -a or -r)."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.mfs.device import FileDevice
from services.mfs.fs import FileSystem

MKFS = shutil.which("mkfs.minix") or "/usr/sbin/mkfs.minix"
FSCK = shutil.which("fsck.minix") or "/usr/sbin/fsck.minix"
HAVE_UTIL_LINUX = Path(MKFS).exists() and Path(FSCK).exists()
needs_util_linux = pytest.mark.skipif(not HAVE_UTIL_LINUX, reason="util-linux mkfs.minix/fsck.minix missing")


def make_image(path: Path, size: int, *extra: str) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run([MKFS, "-3", *extra, str(path)], check=True, capture_output=True)
    return path


def fsck(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """fsck.minix -f (check only): exit 0 means clean."""
    return subprocess.run([FSCK, "-f", *flags, str(path)], capture_output=True, text=True)


def assert_clean(path: Path) -> None:
    got = fsck(path)
    assert got.returncode == 0, got.stdout + got.stderr


@pytest.fixture
def image(tmp_path: Path) -> Callable[..., Path]:
    if not HAVE_UTIL_LINUX:
        pytest.skip("util-linux mkfs.minix/fsck.minix missing")

    def make(size: int = 8 * 1024 * 1024, *extra: str, name: str = "disk.img") -> Path:
        return make_image(tmp_path / name, size, *extra)
    return make


@pytest.fixture
def mounted(image: Callable[..., Path]) -> Iterator[tuple[FileSystem, Path]]:
    """A fresh 8 MiB file system; unmounted (and so written back) at the end if still mounted."""
    path = image()
    fs = FileSystem(FileDevice(path), log=lambda text: None)
    yield fs, path
    if fs.dev.fd >= 0:  # type: ignore[attr-defined]
        fs.unmount()
