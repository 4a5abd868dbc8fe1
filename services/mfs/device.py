"""What MFS needs of a block device, and an image file that provides it (for tests and tools).

The interface is minikern/bdev.BlockDevice's (the caller's side of a block
driver, PROTOCOL.md 19): positions and counts in bytes, multiples of the
512-byte sector; ``read`` returns exactly ``count`` bytes or raises;
``geometry()["size"]`` is the device's size in bytes.  MFS never sends more
than ``BDEV_MAX_IO`` bytes in one call, so every call is one driver request.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from minikern.const import SECTOR_SIZE, Err
from services.mfs.layout import FsError


class Device(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...

    def read(self, pos: int, count: int) -> bytes: ...

    def write(self, pos: int, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def geometry(self) -> dict[str, int]: ...


class FileDevice:
    """A disk image file as a block device (pread/pwrite; flush is fsync)."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.fd = -1
        self.requests = 0  # reads and writes, for tests that check batching

    def open(self) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY if self.readonly else os.O_RDWR)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _check(self, pos: int, count: int) -> None:
        if self.fd < 0:
            raise FsError(Err.EIO, f"{self.path} is not open")
        if pos < 0 or count < 0 or pos % SECTOR_SIZE or count % SECTOR_SIZE:
            raise FsError(Err.EINVAL, f"pos {pos} count {count}: not whole sectors")
        if pos + count > self.geometry()["size"]:
            raise FsError(Err.EIO, f"pos {pos} count {count}: past the end of {self.path}")

    def read(self, pos: int, count: int) -> bytes:
        self._check(pos, count)
        self.requests += 1
        data = os.pread(self.fd, count, pos)
        if len(data) != count:
            raise FsError(Err.EIO, f"short read at {pos}: {len(data)} of {count}")
        return data

    def write(self, pos: int, data: bytes) -> None:
        self._check(pos, len(data))
        if self.readonly:
            raise FsError(Err.EROFS, f"{self.path} is open read-only")
        self.requests += 1
        if os.pwrite(self.fd, data, pos) != len(data):
            raise FsError(Err.EIO, f"short write at {pos}")

    def flush(self) -> None:
        if self.fd >= 0 and not self.readonly:
            os.fsync(self.fd)

    def geometry(self) -> dict[str, int]:
        size = os.fstat(self.fd).st_size if self.fd >= 0 else self.path.stat().st_size
        return {"size": size - size % SECTOR_SIZE}
