"""VFS's mount table operations: the root at start-up, MOUNT and UMOUNT (runs in VFS).

A file server is found by its label in DS and mounted with READSUPER (the
block driver's label and minor, read-only or not); its answer's ``root`` is
the mounted file system's root inode.  The root file system is mounted at
start-up from VFS's arguments (services/vfs/main.py retries until the file
server and its driver answer), then the ``--mount`` ones (the RAM disk at /ram:
its directory made if missing).  MOUNT and UMOUNT come from operator
processes only (EPERM otherwise): the kernel's GETINFO must list the caller
as admitted with the operator key and holding the operator's privileges
(SHUTDOWN); user programs have the key but ``service user``'s privileges.

MOUNT's directory must be a directory (ENOTDIR) that is neither the root
of a mount nor already covered (EBUSY), and the file server must not be
mounted already (EBUSY).  UMOUNT names a mount's root (EINVAL otherwise;
the root file system: EBUSY) and is refused EBUSY while anything but the
mount itself holds one of its vnodes (an open file, a working directory)
or something is mounted inside it.
"""
from __future__ import annotations

from collections.abc import Callable
from stat import S_IFDIR
from typing import Any

from minikern.const import NAME_MAX, Err, FsReq
from minikern.proto import Message
from services.vfs.fields import want_bool, want_int, want_str
from services.vfs.fsconn import FileServer
from services.vfs.lookup import checked_stat
from services.vfs.state import State
from services.vfs.tables import Mount, Proc, Vnode
from services.vfs.task import Call, Fail, Op, Reply

FindLabel = Callable[[str], "int | None"]  # a label's endpoint from DS (None: not published)
MakeServer = Callable[[str, int], FileServer]
IsOperator = Callable[[int], bool]


class MountOps:
    def __init__(self, st: State, find_label: FindLabel, make_server: MakeServer,
                 is_operator: IsOperator) -> None:
        self.st = st
        self.find_label, self.make_server, self.is_operator = find_label, make_server, \
            is_operator

    def server(self, label: str) -> FileServer:
        if self.st.mounts.by_label(label) is not None:
            raise Fail(Err.EBUSY, f"{label} is mounted already")
        endpoint = self.find_label(label)
        if endpoint is None:
            raise Fail(Err.ENXIO, f"no file server {label!r} in DS")
        return self.make_server(label, endpoint)

    def readsuper(self, fs: FileServer, driver: str, minor: int, readonly: bool,
                  covered: Vnode | None) -> Op:
        """READSUPER, then the mount in the table (its root held by the mount)."""
        answer = yield Call(fs, FsReq.READSUPER, {"driver": driver, "minor": minor,
                                                  "readonly": readonly})
        stat = checked_stat(answer.get("root"))
        root = self.st.vnodes.hold(fs, stat["ino"], stat["mode"], getnode=False)
        self.st.mounts.all.append(Mount(fs, root, covered, driver, minor, readonly))
        return Message(Err.OK, {"root": stat})

    def mount_root(self, fs_label: str, driver: str, minor: int, readonly: bool) -> Reply:
        """The root file system (start-up): a chain whose reply says if it worked."""
        if self.st.mounts.root is not None:
            raise Fail(Err.EBUSY, "the root is mounted")
        return self._mount_root(self.server(fs_label), driver, minor, readonly)

    def _mount_root(self, fs: FileServer, driver: str, minor: int, readonly: bool) -> Op:
        try:
            return (yield from self.readsuper(fs, driver, minor, readonly, None))
        except Fail as e:
            if e.code != Err.EBUSY:
                raise
        # The file server has it mounted already: this VFS was restarted, and what the old
        # one held (references, open files) died with it.  Start again from a clean mount.
        yield Call(fs, FsReq.UNMOUNT, {})
        return (yield from self.readsuper(fs, driver, minor, readonly, None))

    def boot_mount(self, path: str, label: str, driver: str, minor: int) -> Reply:
        """A mount of VFS's arguments (``--mount``), made once the root is mounted: the
        directory is made first if it is missing (0755, root's), and a file server that
        has the device mounted already (this VFS restarted) is unmounted and mounted
        again from a clean state, as the root is."""
        if self.st.mounts.by_label(label) is not None:
            raise Fail(Err.EBUSY, f"{label} is mounted already")
        return self._boot_mount(path, label, driver, minor)

    def _boot_mount(self, path: str, label: str, driver: str, minor: int) -> Op:
        fs = self.server(label)  # first: no directory is made for a file server not there
        d, name = yield from self.st.resolver.parent(path, None)
        if name:
            try:
                yield Call(d.fs, FsReq.MKDIR, {"dir": d.ino, "name": name,
                                               "mode": S_IFDIR | 0o755, "uid": 0, "gid": 0})
            except Fail as e:
                if e.code != Err.EEXIST:
                    raise
        node = yield from self.st.resolver.resolve(path, None)
        if not node.is_dir:
            raise Fail(Err.ENOTDIR, f"{path} is not a directory")
        m = self.st.mounts
        if m.rooted_at(node.fs, node.ino) is not None or m.on(node.fs, node.ino) is not None:
            raise Fail(Err.EBUSY, f"{path} is a mount already")
        covered = yield from self.st.resolver.acquire(node)
        try:
            try:
                yield from self.readsuper(fs, driver, minor, False, covered)
            except Fail as e:
                if e.code != Err.EBUSY:
                    raise
                yield Call(fs, FsReq.UNMOUNT, {})  # the old VFS's mount: start clean
                yield from self.readsuper(fs, driver, minor, False, covered)
        except Fail:
            self.st.vnodes.release(covered)
            raise
        return Message(Err.OK)

    def recover(self, mount: Mount) -> Op:
        """Mount again on a restarted file server, and take again the references VFS holds
        (the caller made them void: ``fs_refs`` 0).  A vnode whose inode is gone keeps no
        reference; its holder gets the file server's errors."""
        fs = mount.fs
        try:
            answer = yield Call(fs, FsReq.READSUPER, {"driver": mount.driver, "minor": mount.minor,
                                                      "readonly": mount.readonly})
            if checked_stat(answer.get("root"))["ino"] != mount.root.ino:
                raise Fail(Err.EIO, "the restarted file server has another root")
        except Fail as e:
            if e.code != Err.EBUSY:  # EBUSY: it mounted by itself; the same file system
                raise
        lost = 0
        for v in self.st.vnodes.of(fs):
            if v.refs <= 0 or v is mount.root:
                continue  # let go of meanwhile, or held by the mount itself
            try:
                yield Call(fs, FsReq.GETNODE, {"ino": v.ino})
                v.fs_refs += 1
            except Fail:
                lost += 1
        return Message(Err.OK, {"lost": lost})

    def do_mount(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path, driver = want_str(f, "path"), want_str(f, "driver", NAME_MAX)
        minor, label = want_int(f, "minor", 0, 255), want_str(f, "fs", NAME_MAX)
        readonly = want_bool(f, "readonly")
        if not self.is_operator(proc.endpoint):
            raise Fail(Err.EPERM, "MOUNT from a process without the operator key")
        return self._mount(proc, path, driver, minor, label, readonly)

    def _mount(self, proc: Proc, path: str, driver: str, minor: int, label: str,
               readonly: bool) -> Op:
        node = yield from self.st.resolver.resolve(path, proc.cwd)
        if not node.is_dir:
            raise Fail(Err.ENOTDIR)
        m = self.st.mounts
        if m.rooted_at(node.fs, node.ino) is not None or m.on(node.fs, node.ino) is not None:
            raise Fail(Err.EBUSY)
        fs = self.server(label)
        covered = yield from self.st.resolver.acquire(node)
        try:
            yield from self.readsuper(fs, driver, minor, readonly, covered)
        except Fail:
            self.st.vnodes.release(covered)
            raise
        return Message(Err.OK)

    def do_umount(self, proc: Proc, f: dict[str, Any]) -> Reply:
        path = want_str(f, "path")
        if not self.is_operator(proc.endpoint):
            raise Fail(Err.EPERM, "UMOUNT from a process without the operator key")
        return self._umount(proc, path)

    def _umount(self, proc: Proc, path: str) -> Op:
        node = yield from self.st.resolver.resolve(path, proc.cwd)
        mount = self.st.mounts.rooted_at(node.fs, node.ino)
        if mount is None:
            raise Fail(Err.EINVAL, "not a mount's root")
        self.check_idle(mount)
        # Gone from the table first: no lookup crosses into it while UNMOUNT is in flight.
        self.st.mounts.all.remove(mount)
        try:
            yield Call(mount.fs, FsReq.UNMOUNT, {})
        except Fail:
            self.st.mounts.all.append(mount)
            raise
        self.st.vnodes.release(mount.root)  # READSUPER's root: no PUTNODE (fs_refs 0)
        if mount.covered is not None:
            self.st.vnodes.release(mount.covered)
        return Message(Err.OK)

    def check_idle(self, mount: Mount) -> None:
        if mount.covered is None:
            raise Fail(Err.EBUSY, "the root file system")
        held = self.st.vnodes.of(mount.fs)
        if any(v is not mount.root for v in held) or mount.root.refs > 1:
            raise Fail(Err.EBUSY, "files are open on it")
        if any(m.covered is not None and m.covered.fs is mount.fs for m in self.st.mounts.all):
            raise Fail(Err.EBUSY, "something is mounted inside it")
