"""A FUSE mount of SystemFs over the in-memory FakeFiles, for the plumbing test.

    python -m tests.userland.fake_mount MOUNTPOINT STATS

Mounts as bin/mount does (same class, same options), writes STATS.ready once the kernel
has sent INIT, and on unmount writes STATS: the largest read and write FUSE delivered and
the SYNCs the unmount made.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from minikern import params
from tests.userland.fake_files import FakeFiles
from userland.fusefs import MountFuse, SystemFs


def main(point: str, stats: str) -> int:
    files = FakeFiles()
    ops = SystemFs(files, on_ready=lambda: Path(stats + ".ready").write_text("ready"))  # type: ignore[arg-type]
    try:
        MountFuse(ops, point, foreground=True, nothreads=True, fsname="minikern-fake",
                  max_read=params.FUSE_MAX_IO, auto_unmount=True)
    finally:
        Path(stats).write_text(json.dumps({"max_read": max(files.reads, default=0),
                                           "max_write": max(files.writes, default=0),
                                           "syncs": files.syncs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
