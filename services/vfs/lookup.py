"""Path lookup across mount points and symlinks (runs in VFS; MINIX vfs/path.c).

A path is cut into components (each at most NAME_MAX bytes: ENAMETOOLONG;
the whole at most PATH_MAX; "" is ENOENT) and walked from the root or the
process's working directory.  The walk sends LOOKUP batches: a run of
components up to the next "..", with ``stop_at`` the inodes of that file
server that something is mounted on.  The file server consumes what it can
and says how far it got (``done``) and what it reached (``stat``); then

* a symlink, with components left or the last one to be followed: RDLINK,
  and the walk goes on with the target spliced in (an absolute target from
  the root; a relative one from the directory the batch started in, with
  the components before the link kept: none is "..", by construction);
  more than SYMLOOP_MAX links in one lookup is ELOOP;
* a covered directory: the walk crosses into the mounted file server's
  root;
* ".." is walked alone: at the root of a mounted file system it first
  crosses back to the covered directory (a file server's root is its own
  ".."), at the root of everything it stays.

Nothing a file server answers is trusted: a malformed answer fails the
request with EIO.  Nodes met on the way are not referenced: the chain keeps
the file server to itself between its requests (services/vfs/fsconn.py),
and ``acquire`` turns a node into a held Vnode (GETNODE) when something
must keep it.
"""
from __future__ import annotations

import stat as S
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from minikern.const import NAME_MAX, PATH_MAX, SYMLOOP_MAX, Err, FsReq
from services.vfs.fsconn import FileServer
from services.vfs.tables import Mounts, Vnode, Vnodes
from services.vfs.task import Call, Fail

Walk = Generator[Call, dict[str, Any], "Node"]


@dataclass
class Node:
    """An inode met in a lookup: where it is, and its stat if known."""

    fs: FileServer
    ino: int
    stat: dict[str, Any] | None = None

    @property
    def mode(self) -> int:
        return int(self.stat["mode"]) if self.stat is not None else S.S_IFDIR

    @property
    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return self.stat is not None and S.S_ISLNK(self.mode)


STAT_INTS = ("ino", "mode", "nlinks", "uid", "gid", "size", "blocks", "dev")
STAT_TIMES = ("atime", "mtime", "ctime")


def checked_stat(s: object) -> dict[str, Any]:
    """A file server's stat map, every field checked (a bad one: EIO)."""
    if type(s) is not dict:
        raise Fail(Err.EIO, "malformed stat from the file server")
    out: dict[str, Any] = {}
    for key in STAT_INTS:
        v = s.get(key, 0)
        if type(v) is not int or v < 0:
            raise Fail(Err.EIO, f"malformed stat {key} from the file server")
        out[key] = v
    for key in STAT_TIMES:
        v = s.get(key, 0)
        if type(v) not in (int, float):
            raise Fail(Err.EIO, f"malformed stat {key} from the file server")
        out[key] = v
    if out["ino"] < 1:
        raise Fail(Err.EIO, "stat without an inode number")
    return out


def split(path: str) -> list[str]:
    """A path's components ("" and "." between slashes dropped); checks the bounds."""
    if path == "":
        raise Fail(Err.ENOENT)
    if "\0" in path:
        raise Fail(Err.EINVAL, "NUL in a path")
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise Fail(Err.ENAMETOOLONG)
    names = [n for n in path.split("/") if n not in ("", ".")]
    if any(len(n.encode("utf-8", "surrogateescape")) > NAME_MAX for n in names):
        raise Fail(Err.ENAMETOOLONG)
    return names


class Budget:
    """Symlinks followed so far in one lookup."""

    def __init__(self) -> None:
        self.links = 0

    def follow(self) -> None:
        self.links += 1
        if self.links > SYMLOOP_MAX:
            raise Fail(Err.ELOOP)


class Resolver:
    def __init__(self, mounts: Mounts, vnodes: Vnodes) -> None:
        self.mounts, self.vnodes = mounts, vnodes

    def root(self) -> Node:
        m = self.mounts.root
        if m is None:
            raise Fail(Err.ENOENT, "no root file system")
        return Node(m.fs, m.root.ino)

    def start(self, path: str, cwd: Vnode | None) -> Node:
        if path.startswith("/") or cwd is None:
            return self.root()
        return Node(cwd.fs, cwd.ino)

    def resolve(self, path: str, cwd: Vnode | None, follow: bool = True) -> Walk:
        """The node ``path`` names; ``follow``: a final symlink is followed (and always
        with a trailing "/", which also requires a directory)."""
        names = split(path)
        follow = follow or path.endswith("/")
        node = yield from self.walk(self.start(path, cwd), names, follow, Budget())
        if path.endswith("/") and not node.is_dir:
            raise Fail(Err.ENOTDIR)
        return node

    def parent(self, path: str, cwd: Vnode | None) -> Generator[Call, dict[str, Any],
                                                                 tuple[Node, str]]:
        """The directory that holds ``path``'s last component, and that component
        ("" when there is none to act on: "/", ".", a path ending in "..")."""
        names = split(path)
        last = names.pop() if names and names[-1] != ".." else ""
        node = yield from self.walk(self.start(path, cwd), names, True, Budget())
        if not node.is_dir:
            raise Fail(Err.ENOTDIR)
        return node, last

    def walk(self, node: Node, names: list[str], follow: bool, budget: Budget) -> Walk:
        names = list(names)
        while names:
            if names[0] == "..":
                names.pop(0)
                node = yield from self.dotdot(node)
                continue
            cut = names.index("..") if ".." in names else len(names)
            batch, after = names[:cut], names[cut:]
            answer = yield Call(node.fs, FsReq.LOOKUP, {
                "dir": node.ino, "names": batch, "stop_at": self.mounts.stop_at(node.fs)})
            done, stat = answer.get("done"), checked_stat(answer.get("stat"))
            if type(done) is not int or not 1 <= done <= len(batch):
                raise Fail(Err.EIO, "malformed LOOKUP answer")
            rest = batch[done:] + after
            if S.S_ISLNK(stat["mode"]) and (rest or follow):
                budget.follow()
                target = yield from self.readlink(Node(node.fs, stat["ino"], stat))
                tnames = split(target)
                if target.startswith("/"):
                    node, names = self.root(), tnames + rest
                else:
                    names = batch[:done - 1] + tnames + rest
                continue
            covered = self.mounts.on(node.fs, stat["ino"])
            if covered is not None:
                node = Node(covered.fs, covered.root.ino)
            elif done < len(batch):
                raise Fail(Err.EIO, "LOOKUP stopped early for no reason")
            else:
                node = Node(node.fs, stat["ino"], stat)
            names = rest
        return node

    def dotdot(self, node: Node) -> Walk:
        root = self.root()
        if node.fs is root.fs and node.ino == root.ino:
            return node
        m = self.mounts.rooted_at(node.fs, node.ino)
        if m is not None and m.covered is not None:
            node = Node(m.covered.fs, m.covered.ino)
        answer = yield Call(node.fs, FsReq.LOOKUP, {
            "dir": node.ino, "names": [".."], "stop_at": self.mounts.stop_at(node.fs)})
        stat = checked_stat(answer.get("stat"))
        return Node(node.fs, stat["ino"], stat)

    def entry(self, d: Node, name: str) -> Generator[Call, dict[str, Any], Node | None]:
        """``name`` in the directory ``d`` (not followed, not crossed), or None if absent."""
        try:
            answer = yield Call(d.fs, FsReq.LOOKUP, {
                "dir": d.ino, "names": [name], "stop_at": self.mounts.stop_at(d.fs)})
        except Fail as e:
            if e.code == Err.ENOENT:
                return None
            raise
        stat = checked_stat(answer.get("stat"))
        return Node(d.fs, stat["ino"], stat)

    def readlink(self, node: Node) -> Generator[Call, dict[str, Any], str]:
        answer = yield Call(node.fs, FsReq.RDLINK, {"ino": node.ino})
        target = answer.get("target")
        if type(target) is not str:
            raise Fail(Err.EIO, "malformed RDLINK answer")
        return target

    def fresh_stat(self, node: Node) -> Generator[Call, dict[str, Any], dict[str, Any]]:
        answer = yield Call(node.fs, FsReq.STAT, {"ino": node.ino})
        return checked_stat(answer.get("stat"))

    def with_stat(self, node: Node) -> Generator[Call, dict[str, Any], dict[str, Any]]:
        """The node's stat: as the lookup saw it, or asked for (a mount's root)."""
        if node.stat is None:
            node.stat = yield from self.fresh_stat(node)
        return node.stat

    def acquire(self, node: Node) -> Generator[Call, dict[str, Any], Vnode]:
        """A held Vnode for ``node`` (GETNODE unless the table already has it)."""
        v = self.vnodes.find(node.fs, node.ino)
        if v is not None:
            return self.vnodes.hold(node.fs, node.ino, v.mode, getnode=False)
        answer = yield Call(node.fs, FsReq.GETNODE, {"ino": node.ino})
        stat = checked_stat(answer.get("stat"))
        if stat["ino"] != node.ino:
            node.fs.putnode(node.ino, 1)
            raise Fail(Err.EIO, "GETNODE answered for another inode")
        node.stat = stat
        return self.vnodes.hold(node.fs, node.ino, stat["mode"], getnode=True)
