"""VFS's tables: processes, open files, vnodes and mounts (runs in VFS; MINIX vfs/*.h).

* ``Proc``: per process, by endpoint: its descriptors (``fds``: fd -> Filp,
  3 <= fd < OPEN_MAX; 0 to 2 are the standard streams, which VFS does not
  hold) and its working directory (a Vnode, or None for the root).
* ``Filp``: an open-file description: the vnode, the open flags, the offset
  (for a directory, the file server's slot to continue from; ``dir_end``
  once it said there is no more).  One per OPEN (there is no fork or dup).
* ``Vnode``: one per (file server, inode) that something holds: a Filp, a
  working directory, a mount (its root, and the directory it covers).
  ``refs`` counts those holders; ``fs_refs`` the GETNODEs the file server
  counted for it, given back in one PUTNODE when ``refs`` falls to 0 and
  the vnode leaves the table.  A mount's root came with READSUPER, not a
  GETNODE: its ``fs_refs`` is 0 and UNMOUNT drops it.
* ``Mount``: a file server mounted on a directory (``covered``; None for
  the root file system).  A file server is mounted at most once.

Invariant: a Vnode is in ``Vnodes.table`` exactly while ``refs`` > 0.
"""
from __future__ import annotations

import stat as S
from dataclasses import dataclass, field

from minikern.const import O_ACCMODE, O_RDONLY, O_WRONLY, OPEN_MAX
from services.vfs.fsconn import FileServer

FIRST_FD = 3  # 0, 1, 2: the standard streams, not VFS's


@dataclass(eq=False)
class Vnode:
    fs: FileServer
    ino: int
    mode: int  # the inode's type and permission bits, as the file server last said
    refs: int = 0
    fs_refs: int = 0

    @property
    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)


@dataclass(eq=False)
class Filp:
    vnode: Vnode
    flags: int
    offset: int = 0
    dir_end: bool = False

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE != O_WRONLY

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE != O_RDONLY


@dataclass(eq=False)
class Proc:
    endpoint: int
    fds: dict[int, Filp] = field(default_factory=dict)
    cwd: Vnode | None = None
    dead: bool = False  # its descriptors were closed: a chain still running must not add one
    busy: int = 0  # its requests being served (chains running)

    def free_fd(self) -> int | None:
        return next((fd for fd in range(FIRST_FD, OPEN_MAX) if fd not in self.fds), None)


@dataclass(eq=False)
class Mount:
    fs: FileServer
    root: Vnode
    covered: Vnode | None
    driver: str
    minor: int
    readonly: bool


class Vnodes:
    def __init__(self) -> None:
        self.table: dict[tuple[int, int], Vnode] = {}

    def find(self, fs: FileServer, ino: int) -> Vnode | None:
        return self.table.get((fs.id, ino))

    def hold(self, fs: FileServer, ino: int, mode: int, getnode: bool) -> Vnode:
        """One more reference to (fs, ino); ``getnode``: the file server counted one too."""
        v = self.table.get((fs.id, ino))
        if v is None:
            v = self.table[(fs.id, ino)] = Vnode(fs, ino, mode)
        v.refs += 1
        v.fs_refs += 1 if getnode else 0
        return v

    def release(self, v: Vnode) -> None:
        """Drop one reference; the last one gives the file server back its count."""
        v.refs -= 1
        if v.refs > 0:
            return
        if self.table.get((v.fs.id, v.ino)) is v:
            del self.table[(v.fs.id, v.ino)]
        if v.fs_refs > 0:
            v.fs.putnode(v.ino, v.fs_refs)
            v.fs_refs = 0

    def of(self, fs: FileServer) -> list[Vnode]:
        return [v for v in self.table.values() if v.fs is fs]


class Mounts:
    def __init__(self) -> None:
        self.all: list[Mount] = []

    @property
    def root(self) -> Mount | None:
        return next((m for m in self.all if m.covered is None), None)

    def on(self, fs: FileServer, ino: int) -> Mount | None:
        """The mount whose covered directory is (fs, ino)."""
        return next((m for m in self.all if m.covered is not None and m.covered.fs is fs
                     and m.covered.ino == ino), None)

    def rooted_at(self, fs: FileServer, ino: int) -> Mount | None:
        """The mount whose root is (fs, ino)."""
        return next((m for m in self.all if m.fs is fs and m.root.ino == ino), None)

    def stop_at(self, fs: FileServer) -> list[int]:
        """The inodes of ``fs`` that something is mounted on (LOOKUP's ``stop_at``)."""
        return [m.covered.ino for m in self.all if m.covered is not None and m.covered.fs is fs]

    def by_label(self, label: str) -> Mount | None:
        return next((m for m in self.all if m.fs.label == label), None)

    def servers(self) -> list[FileServer]:
        return [m.fs for m in self.all]
