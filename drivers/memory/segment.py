"""The RAM disk's region: a shared memory segment that outlives the driver's process.

Runs in the memory driver (drivers/memory/memory.py); the names, and bin/halt's
clean-up, are minikern/shm.py's.  The region is a POSIX shared
memory object (a file in ``params.SHM_DIR``, /dev/shm on Linux), so it lives
in RAM and stays when the driver is killed; the driver publishes its name,
size and generation in DS, and a restarted driver maps it again.

Layout (little endian)::

    0            header (HEADER bytes): magic, version, data size, generation, label,
                 and the journal's record: sequence, sector, length, crc32, committed
    HEADER       the journal: the data of the write in hand (BDEV_MAX_IO bytes)
    HEADER+J     the disk: ``size`` bytes

Why a journal: a SIGKILL can land in the middle of copying a write into the
disk.  A real disk writes a request's sectors or not; so does this one.  A
write goes to the journal first, then its record (crc32 of the data) is
written with ``committed`` set last (one aligned 4-byte store), then the data
go to the disk and ``committed`` is cleared.  Taking a segment back, a
committed record whose crc matches is written again (the request is new);
anything else was never committed (the request is old).

Names (minikern/shm.py): ``minikern-<uid>-<run dir tag>-<label>-<random>``; created with
O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600, opened again with O_NOFOLLOW and
checked (a regular file, ours, 0600, of the right size, the right header)
before it is trusted: anything else is refused and the driver starts empty.
"""
from __future__ import annotations

import mmap
import os
import secrets
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minikern.const import BDEV_MAX_IO, SECTOR_SIZE
from minikern.shm import is_ours, prefix, shm_dir

MAGIC = b"MKRAMSEG"
VERSION = 1
HEADER = 4096  # the header's page
JOURNAL = BDEV_MAX_IO  # one request's data
DATA = HEADER + JOURNAL  # offset of the disk in the segment
LABEL_MAX = 32  # bytes of the label kept in the header
# magic, version, data size, generation, label
_HEAD = struct.Struct(f"<8sIQQ{LABEL_MAX}s")
# sequence, sector, length, crc32 (the journal's record), then committed (written alone, last)
_RECORD = struct.Struct("<QQII")
RECORD_AT = 128  # the record's offset in the header
COMMIT_AT = RECORD_AT + _RECORD.size  # the 4-byte committed word (aligned)
_COMMIT = struct.Struct("<I")


class Refused(Exception):
    """A segment that cannot be taken back; the sentence says why."""


@dataclass
class Info:
    """What the driver publishes in DS (``<label>.segment``) and checks when it comes back."""

    name: str
    size: int
    generation: int


class Segment:
    """One mapped segment: the disk and its journal."""

    def __init__(self, name: str, fd: int, size: int, generation: int) -> None:
        self.name, self.size, self.generation = name, size, generation
        self.map = mmap.mmap(fd, DATA + size)
        os.close(fd)
        self.view = memoryview(self.map)
        self.seq = 0

    @property
    def info(self) -> Info:
        return Info(self.name, self.size, self.generation)

    @property
    def disk(self) -> memoryview:
        return self.view[DATA:DATA + self.size]

    # -- making and taking back ------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: Path, label: str, size: int, generation: int) -> Segment:
        """A new zeroed segment (the disk's contents are the caller's to fill)."""
        if size <= 0 or size % SECTOR_SIZE:
            raise ValueError(f"a RAM disk of {size} bytes is not a whole number of sectors")
        name = prefix(run_dir) + f"{label[:LABEL_MAX]}-{secrets.token_hex(8)}"
        path = shm_dir() / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.ftruncate(fd, DATA + size)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        seg = cls(name, fd, size, generation)
        _HEAD.pack_into(seg.map, 0, MAGIC, VERSION, size, generation, label.encode()[:LABEL_MAX])
        return seg

    @classmethod
    def take_back(cls, run_dir: Path, label: str, info: Info, size: int) -> Segment:
        """Map the segment ``info`` names again, after checking everything; Refused if not.
        A committed write in its journal is written again.  The generation is the segment's
        own (set when it was made), so no kill between two updates can leave DS and the
        header disagreeing about a segment that is fine."""
        if not is_ours(run_dir, info.name):
            raise Refused(f"the name {info.name!r} is not one of this run directory's segments")
        if info.size != size:
            raise Refused(f"its size {info.size} is not the configured {size}")
        try:
            # O_NONBLOCK: a FIFO planted under the name must not hang the open
            fd = os.open(shm_dir() / info.name,
                         os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise Refused(f"cannot open it: {e.strerror}") from None
        st = os.fstat(fd)
        why = None
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        elif st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o600:
            why = f"owner {st.st_uid} mode {stat.S_IMODE(st.st_mode):o}, not ours with 0600"
        elif st.st_size != DATA + size:
            why = f"{st.st_size} bytes, not {DATA + size}"
        if why is not None:
            os.close(fd)
            raise Refused(why)
        seg = cls(info.name, fd, size, info.generation)
        magic, version, dsize, gen, owner = _HEAD.unpack_from(seg.map, 0)
        if (magic, version, dsize) != (MAGIC, VERSION, size):
            why = "its header is not a RAM disk segment of this version and size"
        elif gen != info.generation:
            why = f"its generation {gen} is not the published {info.generation}"
        elif owner.rstrip(b"\0") != label.encode()[:LABEL_MAX]:
            why = f"it belongs to {owner.rstrip(bytes(1)).decode(errors='replace')!r}"
        if why is not None:
            seg.close()
            raise Refused(why)
        seg.replay()
        return seg

    def replay(self) -> bool:
        """Finish the write a kill interrupted, if it was committed (True if one was)."""
        if _COMMIT.unpack_from(self.map, COMMIT_AT)[0] != 1:
            return False
        seq, sector, length, crc = _RECORD.unpack_from(self.map, RECORD_AT)
        self.seq = seq
        journal = self.view[HEADER:HEADER + JOURNAL]
        ok: bool = (0 < length <= JOURNAL and length % SECTOR_SIZE == 0
              and sector * SECTOR_SIZE + length <= self.size
              and zlib.crc32(journal[:length]) == crc)
        if ok:
            at = sector * SECTOR_SIZE
            self.disk[at:at + length] = journal[:length]
        _COMMIT.pack_into(self.map, COMMIT_AT, 0)
        return ok

    # -- the driver's transfers ------------------------------------------------------------

    def read(self, sector: int, buf: memoryview) -> None:
        at = sector * SECTOR_SIZE
        buf[:] = self.disk[at:at + len(buf)]

    def write(self, sector: int, buf: memoryview) -> None:
        """All of ``buf`` or none of it, whenever the process is killed (the journal)."""
        for _ in self.write_steps(sector, buf):
            pass

    def write_steps(self, sector: int, buf: memoryview) -> Iterator[str]:
        """The write's stores in order, yielding after each (a kill may fall between any two,
        or inside the disk's copy: the two halves stand for a copy cut short)."""
        n, at = len(buf), sector * SECTOR_SIZE
        self.view[HEADER:HEADER + n] = buf
        yield "journal"
        self.seq += 1
        _RECORD.pack_into(self.map, RECORD_AT, self.seq, sector, n, zlib.crc32(buf))
        yield "record"
        _COMMIT.pack_into(self.map, COMMIT_AT, 1)
        yield "commit"
        half = n // 2 - n // 2 % SECTOR_SIZE
        self.disk[at:at + half] = buf[:half]
        yield "half the disk"
        self.disk[at + half:at + n] = buf[half:]
        yield "disk"
        _COMMIT.pack_into(self.map, COMMIT_AT, 0)
        yield "done"

    def close(self) -> None:
        self.view.release()
        self.map.close()

    def remove(self) -> None:
        (shm_dir() / self.name).unlink(missing_ok=True)


