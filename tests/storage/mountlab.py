"""The storage lab: a whole system on a MINIX v3 disk image, mounted on the host by bin/mount.

Runs in the test (or bin/bench disk) process.  ``StorageNode`` boots
etc/system.conf on a disk image made here with ``mkfs.minix -3`` (util-linux),
waits for the disk stack (at_wini, mfs, vfs), mounts and unmounts it with
bin/mount as a person does, halts it with bin/halt's own code (which unmounts
first), reboots it on the same image, and checks the image with
``fsck.minix -f`` once it is halted (never -a or -r: on a v3 image they
corrupt it).  ``at_wini_killer`` is the "kill -9 the disk driver every
second" loop of tests/net/lab.py aimed at at_wini.
"""
from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from minikern import cli, hosttools, mounts, params
from minikern.boot import System
from minikern.boardctl import BoardCtl
from minikern.const import RsReq
from minikern.deadline import wait_for
from minikern import rsctl as ctl
from tests.net import lab
from userland.fs import Files, FsError
from userland.mount import unavailable as fuse_unavailable

REPO = cli.REPO_ROOT
DRIVER = "at_wini"
STACK = ("at_wini", "mfs", "vfs")  # what must be up before the file tree is there
DISK_MB = 64


def tool(name: str) -> str | None:
    """util-linux's tools live in sbin, often not on a user's PATH."""
    return hosttools.find(name)


def unavailable() -> str | None:
    """Why this host cannot run the lab (FUSE, mkfs.minix, fsck.minix), or None."""
    missing = fuse_unavailable()
    if missing is not None:
        return missing
    for name in ("mkfs.minix", "fsck.minix"):
        if tool(name) is None:
            return f"no {name} on this host (Debian: apt-get install util-linux)"
    return None


def make_image(path: Path, megabytes: int = DISK_MB) -> None:
    with open(path, "wb") as f:
        f.truncate(megabytes << 20)
    subprocess.run([str(tool("mkfs.minix")), "-3", str(path)], check=True,
                   capture_output=True, timeout=60)


def fsck(image: Path) -> tuple[bool, str]:
    """``fsck.minix -f`` (check only): clean, and what it said (a damaged directory's names
    come out as they are on the disk, not UTF-8: escaped, never an error of the check's own)."""
    r = subprocess.run([str(tool("fsck.minix")), "-f", str(image)], capture_output=True,
                       text=True, errors="backslashreplace", stdin=subprocess.DEVNULL,
                       timeout=300)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


class StorageNode:
    """One system on its own disk image; ``run_dir`` and ``service`` serve lab.Injector."""

    def __init__(self, work: Path, megabytes: int = DISK_MB) -> None:
        self.work = work
        self.run_dir = work / "system"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.image = self.run_dir / "disk.img"  # the board's default --disk
        make_image(self.image, megabytes)
        self.system: System | None = None
        self.points: list[Path] = []

    def boot(self) -> None:
        self.system = System(self.run_dir, REPO / "etc" / "system.conf")
        if not self.system.wait_ready():
            raise RuntimeError(f"the system did not come up:\n{self.console()}")
        for label in STACK:
            wait_for(functools.partial(self._up, label), 60, f"{label} up")

    def _up(self, label: str) -> bool:
        try:
            return bool(self.service(label)["state"] == "up")
        except AssertionError:  # not a service of RS: a boot process, up once ready
            return True

    def service(self, label: str) -> dict[str, Any]:
        for s in ctl.request(self.run_dir, RsReq.STATUS)["services"]:
            if s["label"] == label:
                return dict(s)
        raise AssertionError(f"RS does not know {label}")

    def console(self) -> str:
        try:
            return (self.run_dir / params.CONSOLE_LOG).read_text(errors="replace")
        except OSError:
            return ""

    def bin(self, name: str, *args: str, timeout: float = 120.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """bin/NAME against this system, as a person runs it."""
        r = subprocess.run([sys.executable, str(REPO / "bin" / name), "--run-dir",
                            str(self.run_dir), *args], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise AssertionError(f"bin/{name} {' '.join(args)} exited {r.returncode}: "
                                 f"{r.stderr.strip()}")
        return r

    def mount(self, point: Path) -> Path:
        point.mkdir(exist_ok=True)
        self.bin("mount", str(point))
        self.points.append(point)
        return point

    def unmount(self, point: Path) -> None:
        self.bin("mount", "-u", str(point))

    def refresh_mfs(self, timeout: float = 60.0) -> None:
        """Replace MFS with a fresh instance (its buffer cache empty), as ``bin/service
        refresh mfs``; return once VFS serves the root from the new one (a request VFS had
        in flight to the old one is EIO, PROTOCOL.md 21: those are retried here)."""
        self.bin("service", "refresh", "mfs")
        with cli.connected(self.run_dir, "refresh-waiter", privileges="user") as conn:
            files = Files(conn)

            def served() -> bool:
                try:
                    files.stat("/")
                except FsError:
                    return False
                return True
            wait_for(served, timeout, "VFS serving the root from the new MFS")

    def set_bad_sectors(self, sectors: list[int]) -> None:
        with BoardCtl(self.run_dir) as board:
            board.set("ata.bad_sectors", sectors)

    def halt(self) -> None:
        """As bin/halt: the mounts first, then the system."""
        if self.system is not None:
            self.system.halt()
            self.system = None

    def reboot(self) -> None:
        self.halt()
        self.boot()

    def fsck(self) -> tuple[bool, str]:
        assert self.system is None, "fsck only a halted system's image"
        return fsck(self.image)

    def close(self) -> None:
        """Halt, and make sure no mount of ours is left whatever happened."""
        try:
            self.halt()
        finally:
            for p in self.points:
                if mounts.is_fuse_mount(p):
                    mounts.fusermount(p, lazy=True)


@contextlib.contextmanager
def storage_node(work: Path, megabytes: int = DISK_MB) -> Iterator[StorageNode]:
    node = StorageNode(work, megabytes)
    try:
        node.boot()
        yield node
    finally:
        node.close()


@contextlib.contextmanager
def at_wini_killer(node: StorageNode, on: bool = True,
                   interval: float = lab.INTERVAL) -> Iterator[lab.Injector | None]:
    """SIGKILL at_wini every ``interval`` for the body (nothing when ``on`` is False)."""
    if not on:
        yield None
        return
    inj = lab.Injector(node, "sigkill", interval, label=DRIVER)  # type: ignore[arg-type]
    inj.start()
    try:
        yield inj
    finally:
        inj.stop()
