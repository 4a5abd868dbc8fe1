"""memory: the memory driver (MINIX drivers/storage/memory), a RAM disk on the block framework.

Runs in its own process (label ``memory``).  It serves one RAM disk, /dev/ram,
as minor 0 of a block device (docs/PROTOCOL.md section 19): the same requests,
grants and errors as at_wini, from drivers/block/framework.py.  Its size is
system.conf's ``--ram SIZE`` (default ``params.RAM_SIZE``).

The point is what happens when it dies.  The disk is not in the process: it
is a shared memory segment (drivers/memory/segment.py) whose name, size and
generation the driver publishes in DS, PRIVATE, under ``<label>.segment``.
A restarted driver reads that entry and maps the same segment again (after
checking it: name, owner, mode, size, header), so the disk keeps its
contents across the restart, and MFS above it (minikern/bdev.py) just
reopens and resends what was in flight.  A segment that fails a check, or
an entry that is missing, is said in one log line and the driver starts
empty, with a new segment.  A new disk is formatted MINIX v3 (``--format
minix3``, the default): ``mkfs.minix -3`` on a temporary image in the run
directory, copied in; a host without mkfs.minix leaves it zeroed, and says so.

The segment goes when the system halts: SHUTDOWN from the kernel unlinks it
here, and bin/halt removes whatever segment of the run directory is left
(minikern/shm.py) once every process is gone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from drivers.block import framework
from drivers.block.framework import Geometry, WaitInterrupt
from drivers.memory.segment import Info, Refused, Segment
from minikern import ds, hosttools, params, sched, sef, shm
from minikern.const import SECTOR_SIZE, DsFlag
from minikern.ipc import IpcError, KernelGone

HEADS, SPT = 64, 32  # the geometry DIOCGETP reports (a RAM disk has none; MINIX's is made up too)
MKFS_TIMEOUT = 60.0  # seconds mkfs.minix may take on a new disk
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """'16M', '512K', '1G', '1048576': bytes, a whole number of sectors, at least 64 KiB."""
    number, unit = text.rstrip("KMGkmg"), text[len(text.rstrip("KMGkmg")):].upper()
    if not number.isdigit() or unit not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    size = int(number) * UNITS[unit]
    if size % SECTOR_SIZE or not 64 << 10 <= size <= 1 << 32:
        raise argparse.ArgumentTypeError(f"{text}: not whole sectors between 64K and 4G")
    return size


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="memory")
    ap.add_argument("--ram", type=parse_size, default=params.RAM_SIZE,
                    help="the RAM disk's size (16M, 512K, ...)")
    ap.add_argument("--format", choices=("minix3", "none"), default="minix3",
                    help="what a new (empty) RAM disk is given")
    return ap.parse_args(argv)


def mkfs_tool() -> str | None:
    return hosttools.find("mkfs.minix")


def segment_key(label: str) -> str:
    return f"{label}.segment"


class MemoryDriver:
    irq: int | None = None  # a RAM disk raises no interrupt: its transfers never wait

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seg: Segment | None = None

    @property
    def segment(self) -> Segment:
        if self.seg is None:
            raise RuntimeError("no segment")
        return self.seg

    def log(self, text: str) -> None:
        print(f"{self.label}: {text}", file=sys.stderr, flush=True)

    # -- start-up: take the disk back, or make one -----------------------------------------

    def init(self, ctx: sef.Context, wait_interrupt: WaitInterrupt) -> Geometry:
        self.ctx, self.label, size = ctx, ctx.label, self.args.ram
        published = self.published()
        if published is not None:
            try:
                self.seg = Segment.take_back(ctx.run_dir, self.label, published, size)
                self.log(f"took back RAM disk {published.name} ({size} bytes, generation "
                         f"{published.generation})")
            except Refused as why:
                self.log(f"segment {published.name} refused ({why}): starting empty")
                shm.remove_named(ctx.run_dir, published.name)
        elif ctx.restarted:
            self.log("no segment published in DS: starting empty")
        if self.seg is None:
            generation = published.generation + 1 if published is not None else 1
            self.seg = Segment.create(ctx.run_dir, self.label, size, generation)
            self.publish()  # before formatting: a kill while formatting leaks no segment
            self.format()
        else:
            self.publish()
        ctx.on_shutdown.append(self.shutdown)
        sectors = size // SECTOR_SIZE
        return Geometry(sectors, max(1, sectors // (HEADS * SPT)), HEADS, SPT)

    def published(self) -> Info | None:
        """The segment DS has under our label, if it is a well-formed entry."""
        try:
            value = ds.retrieve(self.ctx.conn, segment_key(self.label))
        except KernelGone:
            raise
        except IpcError:
            return None  # none (a fresh start, or DS itself restarted and lost it)
        try:
            entry = json.loads(value) if isinstance(value, str) else {}
            info = Info(str(entry["name"]), int(entry["size"]), int(entry["generation"]))
        except (ValueError, TypeError, KeyError):
            self.log(f"the DS entry {segment_key(self.label)} is malformed: starting empty")
            return None
        return info

    def publish(self) -> None:
        info = self.segment.info
        value = json.dumps({"name": info.name, "size": info.size, "generation": info.generation})
        try:
            ds.publish(self.ctx.conn, segment_key(self.label), value,
                       DsFlag.OVERWRITE | DsFlag.PRIVATE)
        except KernelGone:
            raise
        except IpcError as e:  # the disk works; only a restart will not find it
            self.log(f"cannot publish {segment_key(self.label)} in DS ({e}): a restart "
                     f"will start empty")

    def format(self) -> None:
        """A new disk: MINIX v3 by mkfs.minix -3 on an image of its size, copied in."""
        if self.args.format == "none":
            return
        tool = mkfs_tool()
        if tool is None:
            self.log("no mkfs.minix on this host: the RAM disk is left unformatted")
            return
        scratch = self.ctx.run_dir / params.SCRATCH_DIR  # booted as root, the kernel made it
        scratch.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ram-", suffix=".img", dir=scratch)
        try:
            os.ftruncate(fd, self.segment.size)
            done = subprocess.run(sched.weighted([tool, "-3", name]), capture_output=True, text=True,
                                  timeout=MKFS_TIMEOUT, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                self.log(f"{tool} -3 failed ({done.stderr.strip()}): the RAM disk is left "
                         f"unformatted")
                return
            self.copy_in(fd)
            self.log(f"new RAM disk of {self.segment.size} bytes, formatted MINIX v3 by {tool}")
        finally:
            os.close(fd)
            os.unlink(name)

    def copy_in(self, fd: int) -> None:
        """The image's data into the (zeroed) disk: only its data extents (mkfs writes a few
        blocks of a sparse file), so the segment's other pages are never touched."""
        disk, size, at = self.segment.disk, self.segment.size, 0
        while at < size:
            try:
                at = os.lseek(fd, at, os.SEEK_DATA)
                end = min(size, os.lseek(fd, at, os.SEEK_HOLE))
            except OSError:  # ENXIO: no data after ``at``
                return
            while at < end:
                got = os.pread(fd, min(1 << 20, end - at), at)
                if not got:
                    return
                disk[at:at + len(got)] = got
                at += len(got)

    def shutdown(self) -> None:
        """The system halts: the disk goes with it."""
        self.segment.remove()

    # -- the framework's callbacks ---------------------------------------------------------

    def transfer(self, sector: int, buf: memoryview, write: bool) -> None:
        if write:
            self.segment.write(sector, buf)
        else:
            self.segment.read(sector, buf)

    def flush(self) -> None:
        """Memory has no write cache: every write is in the segment when it is answered."""

    def interrupt(self) -> None:
        """Never called: no interrupt line."""


def main() -> None:
    framework.run(MemoryDriver(parse_args(sys.argv[1:])))
