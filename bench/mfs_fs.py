"""MFS in-process throughput: a sequential write then read through FileSystem on an image file.

    .venv/bin/python -m bench.mfs_fs [--mb 20] [--profile]

The file is written and read in FS_MAX_IO (32 KiB) requests, as VFS sends them; the
read comes after an unmount and a fresh mount, so it is from the disk (the host's page
cache aside).  Prints MB/s (10^6 bytes per second) and the device requests made.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import tempfile
import time
from pathlib import Path

from minikern.const import FS_MAX_IO
from services.mfs.device import FileDevice
from services.mfs.fs import FileSystem
from services.mfs.mkfs import mkfs


def run(mb: int, folder: Path) -> dict[str, float | int | bool]:
    path = folder / "bench.img"
    with path.open("wb") as f:
        f.truncate((mb + 16) * 1024 * 1024)
    mkfs(path)
    data = os.urandom(mb * 1000 * 1000)
    dev = FileDevice(path)
    fs = FileSystem(dev)
    ino = fs.create(1, "big", 0o644, 0, 0)["ino"]
    t0 = time.perf_counter()
    for pos in range(0, len(data), FS_MAX_IO):
        fs.write(ino, pos, data[pos:pos + FS_MAX_IO])
    fs.sync()
    write_s = time.perf_counter() - t0
    writes = dev.requests
    fs.unmount()
    dev = FileDevice(path)
    fs = FileSystem(dev)
    t0 = time.perf_counter()
    h = hashlib.sha256()
    for pos in range(0, len(data), FS_MAX_IO):
        h.update(fs.read(ino, pos, FS_MAX_IO))
    read_s = time.perf_counter() - t0
    fs.unmount()
    return {"bytes": len(data), "write_MBps": round(len(data) / write_s / 1e6, 1),
            "read_MBps": round(len(data) / read_s / 1e6, 1), "write_requests": writes,
            "read_requests": dev.requests, "sha256_ok": h.digest() == hashlib.sha256(data).digest()}


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench.mfs_fs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            prof = cProfile.Profile()
            result = prof.runcall(run, args.mb, Path(tmp))
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        else:
            result = run(args.mb, Path(tmp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
