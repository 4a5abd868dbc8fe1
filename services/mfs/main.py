"""MFS, the MINIX file system server: runs as its own process, label "mfs" (PROTOCOL.md 20).

The usual skeleton: ``sef.startup`` then ``sef.serve`` with one table of
``do_<request>`` handlers.  A handler checks every field (type and range:
EINVAL, counted), calls one method of ``FileSystem`` (services/mfs/fs.py)
and answers its fields; a ``FsError`` becomes its code and ``error``.

Invariants:

* Only the component ``vfs`` may send requests: the kernel says who the
  sender is (minikern/identity.py); anyone else gets EPERM, counted.
* Nothing a request carries kills the server: every handler runs under a
  last resort that answers an unforeseen exception with EIO and logs the
  first of its kind with its traceback.
* One file system is mounted at a time (READSUPER; UNMOUNT).  Its block
  device is minikern/bdev.BlockDevice on the driver VFS names, which
  survives the driver's restarts; tests hand in another device factory.
* Dirty blocks reach the disk on SYNC, UNMOUNT, SEF's shutdown, eviction,
  and from a timer on SEF's loop once the oldest is ``MFS_DIRTY_AGE`` old.
"""
from __future__ import annotations

import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from minikern import params, sef
from minikern.const import FS_MAX_IO, FsReq, Err, err_name
from minikern.identity import Identity
from minikern.ipc import IpcError, KernelGone
from minikern.loop import Timer
from minikern.proto import Message
from services.mfs.device import Device
from services.mfs.fs import UTIME_NOW, FileSystem
from services.mfs.layout import FsError

DeviceFactory = Callable[[str, int, bool], Device]
GETDENTS_MAX = 256
U32 = 0xFFFFFFFF


def bdev_factory(ctx: sef.Context) -> DeviceFactory:
    def make(driver: str, minor: int, readonly: bool) -> Device:
        from minikern.bdev import BlockDevice  # the caller's side of a block driver (branch blk)
        dev: Device = BlockDevice(ctx, driver, minor)
        return dev
    return make


def _log(text: str) -> None:
    print(f"mfs: {text}", file=sys.stderr, flush=True)


class Fields:
    """Typed access to a request's fields: a wrong type or range is EINVAL."""

    def __init__(self, m: Message) -> None:
        self.m = m

    def num(self, key: str, lo: int = 0, hi: int = U32) -> int:
        v = self.m.get(key)
        if type(v) is not int or not lo <= v <= hi:
            raise FsError(Err.EINVAL, f"field {key!r}: {v!r} is not an integer in {lo}..{hi}")
        return v

    def text(self, key: str) -> str:
        v = self.m.get(key)
        if type(v) is not str:
            raise FsError(Err.EINVAL, f"field {key!r} is not a string")
        return v

    def flag(self, key: str) -> bool:
        v = self.m.get(key, False)
        if type(v) is not bool:
            raise FsError(Err.EINVAL, f"field {key!r} is not a boolean")
        return v

    def when(self, key: str) -> float:
        v = self.m.get(key)
        if type(v) not in (int, float) or not (v == UTIME_NOW or 0 <= v <= U32):
            raise FsError(Err.EINVAL, f"field {key!r}: {v!r} is not a time")
        return float(v)

    def items(self, key: str, kind: type, most: int, default: list[Any] | None = None
             ) -> list[Any]:
        v = self.m.get(key, default)
        if type(v) is not list or len(v) > most or any(type(x) is not kind for x in v):
            raise FsError(Err.EINVAL, f"field {key!r} is not a list of {kind.__name__}")
        return v


class Mfs:
    def __init__(self, devices: DeviceFactory | None = None,
                 is_vfs: Callable[[int], bool] | None = None) -> None:
        self.devices = devices
        self.is_vfs = is_vfs
        self.fs: FileSystem | None = None
        self.counts: Counter[str] = Counter()
        self.timer: Timer | None = None  # the write-back check, armed while anything is dirty

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        identity = Identity(ctx.conn)
        if self.is_vfs is None:
            self.is_vfs = lambda ep: (w := identity.who(ep)) is not None and w.is_component("vfs")
        if self.devices is None:
            self.devices = bdev_factory(ctx)
        ctx.on_shutdown.append(self.shutdown)

    def arm(self) -> None:
        """After a request: if anything is dirty, make sure the write-back timer runs.

        No timer while everything is clean, so an idle MFS waits in one plain RECEIVE
        (the loop's fast path)."""
        if self.timer is None and self.fs is not None and self.fs.dirty() \
                and hasattr(self, "ctx"):
            self.timer = self.ctx.loop.call_later(params.MFS_SYNC_CHECK, self.tick)

    def tick(self) -> None:
        """Write back once the oldest dirty block is old enough (MINIX's periodic sync)."""
        self.timer = None
        if self.fs is not None and self.fs.due(self.ctx.loop.clock.now()):
            try:
                self.fs.sync()
            except FsError as e:
                self.once(f"sync failed: {err_name(e.code)}", str(e))
        self.arm()

    def shutdown(self) -> None:
        """Write back and close the device.  bin/halt has VFS SYNC first, so usually
        nothing is dirty; then a driver already gone (its CLOSE unanswered) loses nothing
        and is not worth a line."""
        if self.fs is not None:
            dirty = self.fs.dirty()
            try:
                self.fs.unmount()
            except KernelGone:
                raise
            except Exception as e:  # noqa: BLE001 (the device may be gone already: say so, exit)
                if dirty:
                    _log(f"unmount at shutdown failed, unwritten blocks lost: {e}")
            self.fs = None

    def once(self, key: str, text: str) -> None:
        self.counts[key] += 1
        if self.counts[key] == 1:
            _log(f"{key}: {text}; repeats are only counted")

    # -- the table ------------------------------------------------------------------------

    def table(self) -> dict[int, sef.Handler]:
        handlers: dict[FsReq, Callable[[Fields], dict[str, Any]]] = {
            FsReq.READSUPER: self.do_readsuper, FsReq.UNMOUNT: self.do_unmount,
            FsReq.LOOKUP: self.do_lookup, FsReq.GETNODE: self.do_getnode,
            FsReq.PUTNODE: self.do_putnode, FsReq.CREATE: self.do_create,
            FsReq.MKDIR: self.do_mkdir, FsReq.UNLINK: self.do_unlink, FsReq.RMDIR: self.do_rmdir,
            FsReq.RENAME: self.do_rename, FsReq.LINK: self.do_link, FsReq.SLINK: self.do_slink,
            FsReq.RDLINK: self.do_rdlink, FsReq.READ: self.do_read, FsReq.WRITE: self.do_write,
            FsReq.GETDENTS: self.do_getdents, FsReq.STAT: self.do_stat,
            FsReq.CHMOD: self.do_chmod, FsReq.CHOWN: self.do_chown, FsReq.FTRUNC: self.do_ftrunc,
            FsReq.UTIME: self.do_utime, FsReq.SYNC: self.do_sync, FsReq.STATVFS: self.do_statvfs}
        return {req: self.guarded(req, h) for req, h in handlers.items()}

    def guarded(self, req: FsReq, handler: Callable[[Fields], dict[str, Any]]) -> sef.Handler:
        def run(m: Message) -> Message:
            try:
                if self.is_vfs is None or not self.is_vfs(m.source):
                    raise FsError(Err.EPERM, f"endpoint {m.source} is not the component vfs")
                fields = handler(Fields(m))
                self.arm()
                return Message(Err.OK, fields)
            except KernelGone:
                raise
            except FsError as e:
                key = f"refused {req.name} {err_name(e.code)}"
                if e.code in (Err.EINVAL, Err.EPERM):  # a caller's mistake: worth a line, once
                    self.once(key, str(e))
                else:
                    self.counts[key] += 1
                return Message(e.code, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 (this request fails, not MFS)
                self.once(f"failed {req.name} {type(e).__name__}",
                          "".join(traceback.format_exception(e)).rstrip())
                return Message(Err.EIO, {"error": f"{type(e).__name__}: {e}"})
        return run

    def mounted(self) -> FileSystem:
        if self.fs is None:
            raise FsError(Err.EINVAL, "no file system is mounted")
        return self.fs

    def ino(self, f: Fields, key: str = "ino") -> int:
        return f.num(key, 1, self.mounted().sb.ninodes)

    # -- requests: each docstring is the protocol -------------------------------------------

    def do_readsuper(self, f: Fields) -> dict[str, Any]:
        """READSUPER {driver, minor, readonly} -> {root: stat, statvfs}; EBUSY if mounted."""
        driver, minor, readonly = f.text("driver"), f.num("minor", 0, 255), f.flag("readonly")
        if self.fs is not None:
            raise FsError(Err.EBUSY, "a file system is already mounted")
        if self.devices is None:
            raise FsError(Err.EIO, "no block devices")
        try:
            try:
                dev = self.devices(driver, minor, readonly)
            except (ValueError, IpcError) as e:
                raise FsError(Err.EIO, f"no block device {driver} minor {minor}: {e}") from e
            fs = FileSystem(dev, readonly=readonly, minor=minor, log=_log,
                            clock=self.ctx.loop.clock.now if hasattr(self, "ctx") else time.monotonic)
        except FsError as e:
            _log(f"mount of {driver} minor {minor} refused: {e}")
            raise
        self.fs = fs
        _log(f"mounted {driver} minor {minor}{' read-only' if readonly else ''}: "
             f"{fs.sb.ninodes} inodes, {fs.sb.zones} zones")
        return {"root": fs.root(), "statvfs": fs.statvfs()}

    def do_unmount(self, f: Fields) -> dict[str, Any]:
        """UNMOUNT {} -> OK once everything is written back."""
        fs = self.mounted()
        self.fs = None
        fs.unmount()
        return {}

    def do_lookup(self, f: Fields) -> dict[str, Any]:
        """LOOKUP {dir, names: [str] (1..), stop_at: [int]} -> {done, stat}."""
        names = f.items("names", str, 4096)
        if not names:
            raise FsError(Err.EINVAL, "LOOKUP of no names")
        stop_at = frozenset(f.items("stop_at", int, 1024, []))
        done, st = self.mounted().lookup(self.ino(f, "dir"), names, stop_at)
        return {"done": done, "stat": st}

    def do_getnode(self, f: Fields) -> dict[str, Any]:
        """GETNODE {ino} -> {stat}; VFS now holds a reference."""
        return {"stat": self.mounted().getnode(self.ino(f))}

    def do_putnode(self, f: Fields) -> dict[str, Any]:
        """PUTNODE {ino, count >= 1} -> OK; an inode without links nor references is freed."""
        self.mounted().putnode(self.ino(f), f.num("count", 1))
        return {}

    def do_create(self, f: Fields) -> dict[str, Any]:
        """CREATE {dir, name, mode, uid, gid} -> {stat}; EEXIST."""
        return {"stat": self.mounted().create(self.ino(f, "dir"), f.text("name"),
                                              f.num("mode", 0, 0xFFFF), f.num("uid", 0, 0xFFFF),
                                              f.num("gid", 0, 0xFFFF))}

    def do_mkdir(self, f: Fields) -> dict[str, Any]:
        """MKDIR {dir, name, mode, uid, gid} -> {stat}."""
        return {"stat": self.mounted().mkdir(self.ino(f, "dir"), f.text("name"),
                                             f.num("mode", 0, 0xFFFF), f.num("uid", 0, 0xFFFF),
                                             f.num("gid", 0, 0xFFFF))}

    def do_unlink(self, f: Fields) -> dict[str, Any]:
        """UNLINK {dir, name} -> OK; EPERM for a directory."""
        self.mounted().unlink(self.ino(f, "dir"), f.text("name"))
        return {}

    def do_rmdir(self, f: Fields) -> dict[str, Any]:
        """RMDIR {dir, name} -> OK; ENOTEMPTY; EINVAL for "." or ".."."""
        self.mounted().rmdir(self.ino(f, "dir"), f.text("name"))
        return {}

    def do_rename(self, f: Fields) -> dict[str, Any]:
        """RENAME {odir, oname, ndir, nname} -> OK."""
        self.mounted().rename(self.ino(f, "odir"), f.text("oname"), self.ino(f, "ndir"),
                              f.text("nname"))
        return {}

    def do_link(self, f: Fields) -> dict[str, Any]:
        """LINK {ino, dir, name} -> OK; EPERM for a directory, EMLINK."""
        self.mounted().link(self.ino(f), self.ino(f, "dir"), f.text("name"))
        return {}

    def do_slink(self, f: Fields) -> dict[str, Any]:
        """SLINK {dir, name, target, uid, gid} -> {stat}."""
        return {"stat": self.mounted().slink(self.ino(f, "dir"), f.text("name"), f.text("target"),
                                             f.num("uid", 0, 0xFFFF), f.num("gid", 0, 0xFFFF))}

    def do_rdlink(self, f: Fields) -> dict[str, Any]:
        """RDLINK {ino} -> {target}."""
        return {"target": self.mounted().rdlink(self.ino(f))}

    def do_read(self, f: Fields) -> dict[str, Any]:
        """READ {ino, pos, count <= FS_MAX_IO} -> {data} (short at the end of the file)."""
        return {"data": self.mounted().read(self.ino(f), f.num("pos"),
                                            f.num("count", 0, FS_MAX_IO))}

    def do_write(self, f: Fields) -> dict[str, Any]:
        """WRITE {ino, pos, data <= FS_MAX_IO} -> {count, size}."""
        data = f.m.get("data")
        if type(data) is not bytes or len(data) > FS_MAX_IO:
            raise FsError(Err.EINVAL, f"field 'data' is not bytes of at most {FS_MAX_IO}")
        count, size = self.mounted().write(self.ino(f), f.num("pos"), data)
        return {"count": count, "size": size}

    def do_getdents(self, f: Fields) -> dict[str, Any]:
        """GETDENTS {ino, pos (slot), max <= 256} -> {entries: [[name, ino]], next (-1: end)}."""
        entries, nxt = self.mounted().getdents(self.ino(f), f.num("pos"),
                                               f.num("max", 1, GETDENTS_MAX))
        return {"entries": [[name, ino] for name, ino in entries], "next": nxt}

    def do_stat(self, f: Fields) -> dict[str, Any]:
        """STAT {ino} -> {stat}."""
        return {"stat": self.mounted().stat(self.ino(f))}

    def do_chmod(self, f: Fields) -> dict[str, Any]:
        """CHMOD {ino, mode} -> {stat}: the permission bits change, the type stays."""
        return {"stat": self.mounted().chmod(self.ino(f), f.num("mode", 0, 0xFFFF))}

    def do_chown(self, f: Fields) -> dict[str, Any]:
        """CHOWN {ino, uid, gid} -> {stat}."""
        return {"stat": self.mounted().chown(self.ino(f), f.num("uid", 0, 0xFFFF),
                                             f.num("gid", 0, 0xFFFF))}

    def do_ftrunc(self, f: Fields) -> dict[str, Any]:
        """FTRUNC {ino, size} -> {stat}; EFBIG past the largest file."""
        return {"stat": self.mounted().ftrunc(self.ino(f), f.num("size"))}

    def do_utime(self, f: Fields) -> dict[str, Any]:
        """UTIME {ino, atime, mtime} -> {stat}."""
        return {"stat": self.mounted().utime(self.ino(f), f.when("atime"), f.when("mtime"))}

    def do_sync(self, f: Fields) -> dict[str, Any]:
        """SYNC {} -> OK once every dirty block is on the device and flushed."""
        self.mounted().sync()
        return {}

    def do_statvfs(self, f: Fields) -> dict[str, Any]:
        """STATVFS {} -> {bsize, blocks, bfree, files, ffree, namemax}."""
        return self.mounted().statvfs()


def main() -> None:
    mfs = Mfs()
    ctx = sef.startup(mfs.init)
    sef.serve(ctx, mfs.table())
