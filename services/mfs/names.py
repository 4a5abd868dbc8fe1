"""The name space requests of PROTOCOL.md 20: LOOKUP, GETNODE, PUTNODE, CREATE, MKDIR, UNLINK,
RMDIR, RENAME, LINK, SLINK, RDLINK, GETDENTS.

Link counts are fsck.minix's rule (devices.md 6.6): a file has one link per
name; a directory has 2 (its name and its ".") plus one per subdirectory
(their "..").  An inode whose last name goes is freed at once unless VFS
holds references to it (GETNODE); then at the last PUTNODE.
"""
from __future__ import annotations

import stat

from minikern.const import NAME_MAX, Err
from services.mfs.core import Core, Stat, encode_name, operation
from services.mfs.cache import Kind
from services.mfs.inode import Inode
from services.mfs.layout import (BLOCK, DIRENT_SIZE, LINK_MAX, ROOT_INO, SYMLINK_MAX, FsError,
                                 pack_dirent)


class Names(Core):
    @operation(modifies=False)
    def root(self) -> Stat:
        return self._stat(self.inodes.get(ROOT_INO))

    @operation(modifies=False)
    def statvfs(self) -> dict[str, int]:
        return {"bsize": BLOCK, "blocks": self.sb.data_zones(), "bfree": self.zmap.free_count(),
                "files": self.sb.ninodes, "ffree": self.imap.free_count(), "namemax": NAME_MAX}

    @operation(modifies=False)
    def lookup(self, dir_ino: int, names: list[str], stop_at: frozenset[int] = frozenset()
               ) -> tuple[int, Stat]:
        ip = self.inodes.get(dir_ino)
        done = 0
        for name in names:
            raw = encode_name(name)
            if not ip.is_dir:
                raise FsError(Err.ENOTDIR, f"inode {ip.ino} is not a directory")
            self.dirs.check(ip)
            ip = self._child(ip, raw)
            done += 1
            if ip.is_symlink or ip.ino in stop_at:
                break
        return done, self._stat(ip)

    @operation(modifies=False)
    def getnode(self, ino: int) -> Stat:
        ip = self.inodes.get(ino)
        ip.refs += 1
        return self._stat(ip)

    @operation(modifies=False)
    def putnode(self, ino: int, count: int) -> None:
        ip = self.inodes.inodes.get(ino)
        if ip is None or ip.refs < count:
            raise FsError(Err.EINVAL, f"inode {ino} has {0 if ip is None else ip.refs} references")
        ip.refs -= count
        if not self.readonly:
            self._release(ip)

    @operation(modifies=True)
    def create(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> Stat:
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise FsError(Err.EINVAL, f"CREATE makes regular files, not mode {mode:#o}")
        dp, ip, raw = self._new_node(dir_ino, name, stat.S_IFREG | (mode & 0o7777), uid, gid)
        ip.nlinks = 1
        self.inodes.store(ip)
        self._enter(dp, raw, ip)
        return self._stat(ip)

    def _enter(self, dp: Inode, raw: bytes, ip: Inode) -> None:
        """Add the name of a new inode; on failure the inode goes again."""
        try:
            self.dirs.add(dp, raw, ip.ino)
        except FsError:
            ip.nlinks = 0
            self._release(ip)
            raise

    @operation(modifies=True)
    def mkdir(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> Stat:
        parent = self._live_dir(dir_ino)
        if parent.nlinks >= LINK_MAX:
            raise FsError(Err.EMLINK, f"directory {dir_ino} has {parent.nlinks} links")
        dp, ip, raw = self._new_node(dir_ino, name, stat.S_IFDIR | (mode & 0o7777), uid, gid)
        try:
            zone, _new = self.zones.bmap_alloc(ip, 0)
        except FsError:
            self._release(ip)
            raise
        buf = self.cache.get(zone, Kind.DIR)
        pack_dirent(buf.data, 0, ip.ino, b".")
        pack_dirent(buf.data, 1, dp.ino, b"..")
        self.cache.mark_dirty(buf)
        ip.size, ip.nlinks = 2 * DIRENT_SIZE, 2
        self.inodes.store(ip)
        self._enter(dp, raw, ip)
        dp.nlinks += 1
        self.inodes.store(dp)
        return self._stat(ip)

    @operation(modifies=True)
    def unlink(self, dir_ino: int, name: str) -> None:
        dp = self._dir(dir_ino)
        found = self.dirs.find(dp, encode_name(name))
        if found is None:
            raise FsError(Err.ENOENT, f"{name!r} not in directory {dir_ino}")
        ip = self.inodes.get(found[0])
        if ip.is_dir:
            raise FsError(Err.EPERM, f"{name!r} is a directory")
        self._unlink_from(dp, ip, (found[1], found[2]), is_dir=False)

    @operation(modifies=True)
    def rmdir(self, dir_ino: int, name: str) -> None:
        if name in (".", ".."):
            raise FsError(Err.EINVAL, f"cannot remove {name!r}")
        dp = self._dir(dir_ino)
        found = self.dirs.find(dp, encode_name(name))
        if found is None:
            raise FsError(Err.ENOENT, f"{name!r} not in directory {dir_ino}")
        ip = self._dir(found[0])
        if ip.ino == ROOT_INO:
            raise FsError(Err.EBUSY, "the root directory")
        if not self.dirs.is_empty(ip):
            raise FsError(Err.ENOTEMPTY, f"{name!r} is not empty")
        self._unlink_from(dp, ip, (found[1], found[2]), is_dir=True)

    @operation(modifies=True)
    def link(self, ino: int, dir_ino: int, name: str) -> None:
        ip = self.inodes.get(ino)
        if ip.is_dir:
            raise FsError(Err.EPERM, "hard links to directories are not allowed")
        if ip.nlinks >= LINK_MAX:
            raise FsError(Err.EMLINK, f"inode {ino} has {ip.nlinks} links")
        if ip.nlinks == 0:
            raise FsError(Err.ENOENT, f"inode {ino} was removed")
        raw = encode_name(name)
        dp = self._live_dir(dir_ino)
        if self.dirs.lookup(dp, raw) is not None:
            raise FsError(Err.EEXIST, f"{name!r} exists")
        self.dirs.add(dp, raw, ino)
        ip.nlinks += 1
        ip.touch(c=True)
        self.inodes.store(ip)

    @operation(modifies=True)
    def slink(self, dir_ino: int, name: str, target: str, uid: int, gid: int) -> Stat:
        data = target.encode("utf-8", "surrogateescape")
        if not data:
            raise FsError(Err.ENOENT, "empty symlink target")
        if len(data) >= SYMLINK_MAX:
            raise FsError(Err.ENAMETOOLONG, f"symlink target of {len(data)} bytes")
        dp, ip, raw = self._new_node(dir_ino, name, stat.S_IFLNK | 0o777, uid, gid)
        try:
            self._write(ip, 0, data)
        except FsError:
            self._release(ip)
            raise
        ip.nlinks = 1
        self.inodes.store(ip)
        self._enter(dp, raw, ip)
        return self._stat(ip)

    @operation(modifies=False)
    def rdlink(self, ino: int) -> str:
        ip = self.inodes.get(ino)
        if not ip.is_symlink:
            raise FsError(Err.EINVAL, f"inode {ino} is not a symlink")
        if ip.size >= SYMLINK_MAX:
            raise self.corrupt(f"symlink {ino} has size {ip.size}")
        return self._read(ip, 0, ip.size).decode("utf-8", "surrogateescape")


    @operation(modifies=False)
    def getdents(self, ino: int, pos: int, limit: int) -> tuple[list[tuple[str, int]], int]:
        entries, nxt = self.dirs.entries(self._dir(ino), pos, limit)
        return [(name.decode("utf-8", "replace"), i) for name, i in entries], nxt

    def _below(self, dp: Inode, ancestor: int) -> bool:
        """True if directory ``dp`` is ``ancestor`` or lies below it (walking "..")."""
        for _ in range(self.sb.ninodes):
            if dp.ino == ancestor:
                return True
            if dp.ino == ROOT_INO:
                return False
            parent = self.dirs.lookup(dp, b"..")
            if parent is None:
                raise self.corrupt(f"directory {dp.ino} has no '..'")
            dp = self._dir(parent)
        raise self.corrupt(f"directory {dp.ino}: '..' loops")

    @operation(modifies=True)
    def rename(self, odir: int, oname: str, ndir: int, nname: str) -> None:
        if oname in (".", "..") or nname in (".", ".."):
            raise FsError(Err.EINVAL, "cannot rename '.' or '..'")
        oraw, nraw = encode_name(oname), encode_name(nname)
        odp, ndp = self._dir(odir), self._live_dir(ndir)
        old = self.dirs.find(odp, oraw)
        if old is None:
            raise FsError(Err.ENOENT, f"{oname!r} not in directory {odir}")
        ip = self.inodes.get(old[0])
        moving_dir = ip.is_dir and odp.ino != ndp.ino
        if ip.is_dir and self._below(ndp, ip.ino):
            raise FsError(Err.EINVAL, "a directory cannot move below itself")
        new = self.dirs.find(ndp, nraw)
        target = None if new is None else self.inodes.get(new[0])
        if target is not None:
            if target.ino == ip.ino:
                return  # two names of one file: nothing to do (POSIX)
            if ip.is_dir and not target.is_dir:
                raise FsError(Err.ENOTDIR, f"{nname!r} is not a directory")
            if target.is_dir and not ip.is_dir:
                raise FsError(Err.EISDIR, f"{nname!r} is a directory")
            if target.is_dir:
                self.dirs.check(target)
                if not self.dirs.is_empty(target):
                    raise FsError(Err.ENOTEMPTY, f"{nname!r} is not empty")
        elif moving_dir and ndp.nlinks >= LINK_MAX:
            raise FsError(Err.EMLINK, f"directory {ndir} has {ndp.nlinks} links")
        # The new name first (it may need a new block: ENOSPC leaves everything as it was).
        if new is None:
            self.dirs.add(ndp, nraw, ip.ino)
            if moving_dir:
                ndp.nlinks += 1
        else:
            assert target is not None
            self.dirs.set(new[1], new[2], ip.ino)
            target.nlinks = 0 if target.is_dir else target.nlinks - 1
            if target.is_dir and not moving_dir:
                odp.nlinks -= 1  # the replaced directory's ".." pointed here too
            target.touch(c=True)
            self.inodes.store(target)
        if moving_dir:
            dotdot = self.dirs.find(ip, b"..")
            if dotdot is None:
                raise self.corrupt(f"directory {ip.ino} has no '..'")
            self.dirs.set(dotdot[1], dotdot[2], ndp.ino)
            odp.nlinks -= 1
        old = self.dirs.find(odp, oraw)  # again: adding may have moved nothing, but be exact
        if old is not None:
            self.dirs.set(old[1], old[2], 0)
        ip.touch(c=True)
        for changed in (odp, ndp):
            changed.touch(m=True, c=True)
            self.inodes.store(changed)
        self.inodes.store(ip)
        if target is not None:
            self._release(target)
