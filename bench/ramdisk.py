"""bin/bench ramdisk: files on the RAM disk through VFS, the memory driver SIGKILLed during and after.

One system with the storage stack and the RAM disk (etc/system.conf's
memory driver and mfs_ram, mounted by VFS on /ram) and the block tests'
client (tests/memory/rig.py).  A user process writes --files files making
--bytes in all to /ram through VFS (userland/fs.py), each fsynced, while
the memory driver is SIGKILLed every --interval seconds; after the writes
it is killed --after more times with nothing running.  Then mfs_ram is
replaced (``bin/service refresh mfs_ram``) so no block comes from its cache,
and the files are read back through VFS, the driver still killed: every
block comes from the segment the driver's successive instances took back.
Last, /ram is unmounted (MFS writes everything back), the whole device is
read through the driver into a file and ``fsck.minix -f`` checks it (never
-a or -r: on a v3 image they corrupt it), and the system is halted (which
must leave no segment in /dev/shm: said on stderr if it does).

Last line with --json: bytes, sha256_ok (every file read back identical to
what was written), kills (SIGKILLs that replaced the driver), fsck_clean.
Targets: sha256_ok and fsck_clean true, kills at least --after + 1.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from minikern import cli
from minikern.const import O_CREAT, O_TRUNC, O_WRONLY
from minikern.deadline import wait_for
from tests.conftest import SystemUnderTest
from tests.memory import rig
from tests.net import lab
from tests.services.rs_helpers import service
from tests.storage.conftest import HAVE_UTIL_LINUX, make_image
from userland.fs import Files, FsError

DISK = 32 << 20  # the root file system's image (the RAM disk is etc/system.conf's --ram)
KILLS_DEADLINE = 120.0  # seconds for the kills after the writes to land
REFRESH_DEADLINE = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bytes", type=int, default=8_000_000,
                   help="bytes written in all (default %(default)s; the RAM disk holds 16 MiB)")
    p.add_argument("--files", type=int, default=8, help="files written (default %(default)s)")
    p.add_argument("--interval", type=float, default=0.5,
                   help="seconds between SIGKILLs of the memory driver (default %(default)s)")
    p.add_argument("--after", type=int, default=3,
                   help="kills after the writes, before the read (default %(default)s)")


class Node:
    """What lab.Injector needs of a system: its run directory and RS's view of a service."""

    def __init__(self, s: SystemUnderTest) -> None:
        self.s, self.run_dir = s, s.run_dir

    def service(self, label: str) -> dict[str, Any]:
        return service(self.s, label)


def _killer(s: SystemUnderTest, interval: float) -> lab.Injector:
    inj = lab.Injector(Node(s), "sigkill", interval, label=rig.LABEL)  # type: ignore[arg-type]
    inj.start()
    return inj


def _refresh_mfs_ram(s: SystemUnderTest, files: Files) -> None:
    subprocess.run([sys.executable, str(cli.REPO_ROOT / "bin" / "service"), "--run-dir",
                    str(s.run_dir), "refresh", "mfs_ram"], check=True, capture_output=True,
                   timeout=REFRESH_DEADLINE, stdin=subprocess.DEVNULL)

    def served() -> bool:
        try:
            files.listdir(rig.MOUNT)
        except FsError:
            return False  # the request the old instance had in flight is EIO: again
        return True
    wait_for(served, REFRESH_DEADLINE, "VFS serving /ram from the new mfs_ram")


def _exercise(s: SystemUnderTest, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    files = Files(s.connect("writer", "user"))
    sizes = [args.bytes // args.files + (i < args.bytes % args.files) for i in range(args.files)]
    digests, errors = {}, list[str]()
    inj = _killer(s, args.interval)
    try:
        for i, size in enumerate(sizes):
            data = os.urandom(size)
            path = f"{rig.MOUNT}/file{i}.bin"
            fd = files.open(path, O_WRONLY | O_CREAT | O_TRUNC)
            files.write(fd, data)
            files.fsync(fd)
            files.close(fd)
            digests[path] = hashlib.sha256(data).hexdigest()
        during = inj.count
        wait_for(lambda: inj.count >= during + args.after or inj.errors, KILLS_DEADLINE,
                 "the kills after the writes")
    finally:
        inj.stop()
    errors += inj.errors
    kills = inj.count
    _refresh_mfs_ram(s, files)
    inj = _killer(s, args.interval)
    try:
        same = all(hashlib.sha256(files.read_file(p)).hexdigest() == d
                   for p, d in digests.items())
    except FsError as e:  # a file system that lost its contents: the figure says so
        same = False
        errors.append(f"reading back: {e}")
    finally:
        inj.stop()
    errors += inj.errors
    kills += inj.count
    Files(s.connect("operator", "operator")).umount(rig.MOUNT)  # written back, then dumped
    image = work / "ram.img"
    rig.dump(s, image)
    clean, said = rig.fsck(image)
    if not clean:
        errors.append(f"fsck.minix -f: {said}")
    return {"bytes": sum(sizes), "sha256_ok": same, "kills": kills, "fsck_clean": clean,
            "errors": errors}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not HAVE_UTIL_LINUX:
        raise SystemExit("bench ramdisk: no mkfs.minix/fsck.minix on this host "
                         "(Debian: apt-get install util-linux)")
    if args.files < 1 or args.bytes < args.files:
        raise SystemExit("bench ramdisk: --files must be at least 1 and at most --bytes")
    work = Path(tempfile.mkdtemp(prefix="mk-bench-ramdisk-"))
    systems: list[SystemUnderTest] = []

    def make(boot: str, conf: str) -> SystemUnderTest:
        systems.append(SystemUnderTest(work / "run", conf.format(boot=boot)))
        return systems[-1]
    try:
        s = rig.boot_stack(make, make_image(work / "disk.img", DISK))
        r = _exercise(s, work, args)
    finally:
        for s in systems:
            s.close()
            left = rig.segments(s)
            if left:
                print(f"bench ramdisk: segments left after the halt: {left}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    for e in r.pop("errors"):
        print(f"bench ramdisk: {e}", file=sys.stderr)
    return {k: r[k] for k in ("bytes", "sha256_ok", "kills", "fsck_clean")}


def report(r: dict[str, Any]) -> str:
    met = r["sha256_ok"] and r["fsck_clean"] and r["kills"] > 0
    return (f"ramdisk: {r['bytes']} bytes in files on /ram (MFS on the memory driver's RAM "
            f"disk) through VFS, the driver SIGKILLed {r['kills']} times during the writes, "
            f"after them and during the read-back; contents "
            f"{'identical' if r['sha256_ok'] else 'DIFFERENT'}; fsck.minix -f of the device "
            f"{'clean' if r['fsck_clean'] else 'NOT CLEAN'} (targets: identical, clean, "
            f"kills > 0: {'met' if met else 'MISSED'})")
