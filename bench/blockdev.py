"""bin/bench blockdev: sequential throughput of a bdev client to at_wini, by DMA and by PIO.

Boots a system with a sparse disk image, at_wini (etc/system.conf's entry;
for PIO without the bus-master window, so the driver falls back on it) and
the block tests' client component (tests/block/client.py), which writes
--mb MB of random data through minikern/bdev.py in requests of BDEV_MAX_IO
(128 KiB), flushes, and reads it back, timing each half and comparing the
sha256 of what it wrote and read.  The figures include the client's own
work (making the data and hashing it, a few ms per MB).  PIO moves one sector
per interrupt, as MINIX does: it is measured on --pio-mb MB.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from minikern.const import BDEV_MAX_IO, Err
from tests.block import client, rig
from tests.conftest import SystemUnderTest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mb", type=int, default=32, help="MB moved by DMA (default 32)")
    p.add_argument("--pio-mb", type=int, default=2, help="MB moved by PIO (default 2)")


def measure(work: Path, mode: str, nbytes: int) -> dict[str, Any]:
    disk = rig.make_disk(work / f"{mode}.img", max(64 << 20, nbytes + (1 << 20)))
    systems: list[SystemUnderTest] = []

    def make(boot: str, conf: str) -> SystemUnderTest:
        systems.append(SystemUnderTest(work / f"run-{mode}", conf.format(boot=boot)))
        return systems[-1]

    try:
        s = rig.boot_disk(make, disk, pio=mode == "pio")
        r = rig.ask(s, client.REQ_RUN, label="at_wini", minor=0, pos=0, bytes=nbytes, seed=1,
                    chunk=1 << 20)
    finally:
        for s in systems:
            s.close()
    if r.type != Err.OK:
        raise RuntimeError(f"the {mode} run failed: {r.fields}")
    mb = nbytes / 1e6
    return {"mode": mode, "bytes": nbytes, "request_bytes": BDEV_MAX_IO,
            "sha256_ok": r["written_sha256"] == r["read_sha256"],
            "write_MBps": round(mb / r["write_seconds"], 2),
            "read_MBps": round(mb / r["read_seconds"], 2), "requests": r["requests"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mk-bd-"))
    try:
        return {"runs": [measure(work, "dma", args.mb << 20),
                         measure(work, "pio", args.pio_mb << 20)]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(result: dict[str, Any]) -> str:
    lines = ["bdev client -> at_wini, sequential, 128 KiB requests:"]
    for r in result["runs"]:
        lines.append(f"  {r['mode']:>3}: {r['bytes'] >> 20} MiB  write {r['write_MBps']:7.2f} MB/s"
                     f"  read {r['read_MBps']:7.2f} MB/s  sha256 "
                     f"{'ok' if r['sha256_ok'] else 'DIFFERENT'}")
    return "\n".join(lines)
