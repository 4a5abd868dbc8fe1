"""Protection domains: each component its own uid and gid when the system boots as root.

Runs in three places: the kernel (which gives a component its ids as it starts it, and
lays out the run directory once its sockets exist), bin/boot (which hands the board its
disk image before the boot) and the template (which drops to the ids, then becomes the
component: ``enter``).

Booted as root (and params.DOMAINS, the default), every component runs as

* its own uid, and a gid of the same number, from the block of params.DOMAIN_UID_BLOCK
  uids this system claimed at boot (``Allocator.claim``: no other running system holds
  it): system.conf's ``uid`` key (an index in the block), or one allocated per label the
  first time the label starts (the same one on every restart in that boot, like systemd's
  DynamicUser: no /etc/passwd entry is made or needed); no two labels share one;
* extra groups: COMPONENT_GID for every component (it may enter the run directory and
  reach the kernel's socket and the board's fast path), EVENT_LOG_GID for the event
  log's writers only (EVENT_WRITERS);
* no_new_privs (nothing it execs gains a privilege), not dumpable (no other uid, nor
  the same one, may ptrace it, read its /proc/PID/mem or open its descriptors through
  /proc/PID/fd), and no descriptor but its console and its memory segment;
* booted as root or not, a seccomp filter (minikern/seccomp.py) that answers EPERM to
  the system calls no component needs (ptrace, bpf, mount, unshare, ...).

The kernel itself stays root, and operator tools are whoever has the kernel's uid
(checked from the connection: docs/PROTOCOL.md section 3).  What a component may open
in the run directory (``prepare``; the board sets its own sockets' modes):

| entry                            | owner, group, mode           | who may open it            |
|----------------------------------|------------------------------|----------------------------|
| the run directory                | root, components, 1710 (+)   | components enter, never list |
| kernel.sock                      | root, components, 0660       | every component            |
| bus.sock                         | the board, 0600              | the board                  |
| board.sock (hw/board_fastpath)   | the board, components, 0660  | drivers                    |
| board.ctl, com1.sock, disk.img   | the board, 0600              | the board (and root)       |
| events.log (minikern/events.py)  | root, event log, 0620        | EVENT_WRITERS append (+)   |
| system.conf, boot.id             | root, 0644                   | RS, every event writer     |
| crash/, scripts/, swifi/, scratch/ | root, components, 1770     | each its own files (*)     |
| operator.key, kernel.pid, ...    | root, 0600                   | root alone                 |

(+) and an ACL entry giving the board's uid rwx (``give_board``): the board alone makes
names in the run directory (its sockets, disk image, printer output); no component
may plant a name another would open later.  Nor may a writer rotate events.log: the
kernel alone does (minikern/events.py).
(*) the sticky bit: a component never removes, renames or replaces another's file.

Without root none of this holds: every component runs as the booting user, who may
signal, trace and read all of them; only no_new_privs, non-dumpability (no ptrace or
/proc/PID/mem without CAP_SYS_PTRACE), the seccomp filter and the closed descriptors remain (README,
"What a compromised driver can do").
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import stat
import struct
import sys
from pathlib import Path

from minikern import params, seccomp

EVENT_WRITERS = frozenset({"hw", "rs", "inet"})  # the components that write events.log
PR_SET_DUMPABLE = 4
SHARED_DIRS = (params.CRASH_DIR, params.SCRIPT_DIR, params.SWIFI_DIR, params.SCRATCH_DIR)
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
PR_SET_NO_NEW_PRIVS = 38


REPO_ROOT = Path(__file__).resolve().parents[1]


def active(run_dir: Path) -> bool:
    """Whether a boot in ``run_dir`` gives components their own ids: run as root, not
    turned off, and the code and the run directory within another uid's reach."""
    return os.geteuid() == 0 and params.DOMAINS and not unreachable(run_dir)


def unreachable(run_dir: Path) -> str:
    """Why a component's uid could not run the code or reach the run directory ("" when it
    could): a directory on the way to the interpreter's library, the virtual environment,
    the repository or the run directory that others may not search (a Python installed in
    root's 0700 home, a run directory under pytest's 0700 temporary root, say)."""
    return code_unreachable() or _closed(Path(os.path.abspath(run_dir)).parent, False)


@functools.cache
def code_unreachable(opened: frozenset[Path] = frozenset()) -> str:
    """Why a component's uid could not run the code ("" when it could), taking the
    directories ``opened`` as open to others (as tools/open_root_home.sh opens /root)."""
    for top in (Path(sys.base_prefix), Path(sys.prefix), REPO_ROOT,
                Path(sys.executable).resolve().parent):
        if why := _closed(top, True, opened):
            return why
    return ""


def _closed(top: Path, listed: bool, opened: frozenset[Path] = frozenset()) -> str:
    """Why others may not reach ``top`` (and list it, if ``listed``), or ""; the
    directories in ``opened`` count as searchable."""
    for d in (top, *top.parents):
        if d in opened:
            continue
        try:
            mode = os.stat(d).st_mode
        except OSError as e:
            return f"{d}: {e.strerror}"
        if not mode & stat.S_IXOTH or listed and d == top and not mode & stat.S_IROTH:
            return f"{d} (mode {stat.S_IMODE(mode):04o}) is closed to other users"
    return ""


def inside() -> bool:
    """Whether this process is a component in its own domain (its uid one of the range)."""
    return params.DOMAIN_UID_FIRST <= os.getuid() <= params.DOMAIN_UID_LAST


class DomainError(RuntimeError):
    """No block of uids could be claimed: the message says why, in one line."""


class Allocator:
    """Ids per label, from one block of uids this system holds for the life of the boot.

    ``claim`` takes the first block no other running system holds: each block has a lock
    file in params.DOMAIN_LOCKS (root's own), and the kernel holds an flock on its block's
    until it exits, whichever way (the lock goes with the descriptor: a kernel that dies
    frees its block, with no file to clean up).  Two systems booted as root at the same time
    thus never give a component the uid of the other's: one could signal or trace the other."""

    def __init__(self, first: int = params.DOMAIN_UID_FIRST,
                 last: int = params.DOMAIN_UID_FIRST + params.DOMAIN_UID_BLOCK - 1,
                 lock: int | None = None) -> None:
        self.first, self.last, self.lock = first, last, lock
        self.uid_of: dict[str, int] = {}

    @classmethod
    def claim(cls, locks: str = params.DOMAIN_LOCKS) -> Allocator:
        """The first free block, locked (DomainError if the lock directory is not root's
        own, or every block is held)."""
        dir_fd = _lock_dir(locks)
        try:
            for first in range(params.DOMAIN_UID_FIRST,
                               params.DOMAIN_UID_LAST - params.DOMAIN_UID_BLOCK + 2,
                               params.DOMAIN_UID_BLOCK):
                fd = os.open(f"{first}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another running system's
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person to see
                return cls(first, first + params.DOMAIN_UID_BLOCK - 1, fd)
        finally:
            os.close(dir_fd)
        raise DomainError(f"every block of component uids in {locks} is held by a running "
                          "system; halt one first")

    def release(self) -> None:
        """Give the block back (the kernel's exit does it too)."""
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def ids(self, label: str, wanted: object = None) -> list[int] | None:
        """[uid, gid, extra groups...] for ``label``: the block's ``wanted``-th uid (system.conf's
        uid key, an index) if given, else the label's uid from an earlier start, else the lowest
        free one.  None when ``wanted`` is outside the block or another label's, or the block is
        used up."""
        uid = self.uid_of.get(label)
        if wanted is not None:
            if type(wanted) is not int or not 0 <= wanted <= self.last - self.first:
                return None
            if uid not in (None, self.first + wanted) or uid is None and self.first + wanted in \
                    self.uid_of.values():
                return None
            uid = self.first + wanted
        if uid is None:
            taken = set(self.uid_of.values())
            uid = next((u for u in range(self.first, self.last + 1) if u not in taken), None)
            if uid is None:
                return None
        self.uid_of[label] = uid
        return [uid, uid, params.COMPONENT_GID,
                *([params.EVENT_LOG_GID] if label in EVENT_WRITERS else [])]


def _lock_dir(locks: str) -> int:
    """A descriptor on the directory of block locks, made 0700 if missing; DomainError if it is
    not a real directory of root's (of this process's uid) that no one else may write."""
    try:
        os.makedirs(locks, mode=0o700, exist_ok=True)
        fd = os.open(locks, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise DomainError(f"uid block locks {locks}: {e.strerror}") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise DomainError(f"uid block locks {locks}: owned by uid {st.st_uid}, mode "
                          f"{stat.S_IMODE(st.st_mode):04o}; refusing it")
    return fd


def enter(ids: list[int] | None, keep: list[int]) -> None:
    """Become the component's domain: in the template, before any component code runs.
    Raises OSError if a step fails: the template then dies, and the kernel sees a process
    die before its HELLO (never a component running with more than it was given)."""
    if ids:
        uid, gid, *groups = ids
        os.umask(0o077)  # what it makes (the board's disk image) is its own alone
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid):
            raise OSError("setresuid did not take")
    libc = ctypes.CDLL(None, use_errno=True)
    for option in (PR_SET_NO_NEW_PRIVS, 1), (PR_SET_DUMPABLE, 0):  # after setuid: it resets this
        if libc.prctl(option[0], option[1], 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    seccomp.install()  # after no_new_privs, which it needs without CAP_SYS_ADMIN
    close_descriptors(keep)


def close_descriptors(keep: list[int]) -> None:
    """Close every descriptor but 0, 1, 2 and ``keep``."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:  # the listing's own descriptor, closed already
                pass


def prepare(run_dir: Path, kernel_socket: Path) -> None:
    """Lay out the run directory for the components (the table above); the kernel calls
    this once its socket is bound, before it starts anyone.  Nothing done without root.
    It also says, once, when the components will have no seccomp filter."""
    if why := seccomp.unsupported():
        print(f"kernel: components run without a seccomp filter: {why}", flush=True)
    if not active(run_dir):
        if os.geteuid() == 0 and params.DOMAINS:
            print(f"kernel: components run as root, not in domains: {unreachable(run_dir)}",
                  flush=True)
        return
    dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(dir_fd, 0, params.COMPONENT_GID)
        os.fchmod(dir_fd, 0o1710)  # components enter; they neither list nor make names here
        for name, group, mode in ((kernel_socket.name, params.COMPONENT_GID, 0o660),
                                  ("system.conf", 0, 0o644), (params.BOOT_ID, 0, 0o644)):
            try:
                if not stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    os.chown(name, 0, group, dir_fd=dir_fd, follow_symlinks=False)
                    os.chmod(name, mode, dir_fd=dir_fd)  # Linux has no lchmod: checked above
            except FileNotFoundError:
                pass
        for name in SHARED_DIRS:
            try:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                pass
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == 0:
                os.chown(name, 0, params.COMPONENT_GID, dir_fd=dir_fd, follow_symlinks=False)
                os.chmod(name, 0o1770, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _writer_acl(uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr form, as acl_to_xattr writes it) for the run
    directory: root rwx, ``uid`` rwx, the owning group (the components) search only."""
    entries = ((ACL_USER_OBJ, 7, ACL_UNDEFINED_ID), (ACL_USER, 7, uid),
               (ACL_GROUP_OBJ, 1, ACL_UNDEFINED_ID), (ACL_MASK, 7, ACL_UNDEFINED_ID),
               (ACL_OTHER, 0, ACL_UNDEFINED_ID))
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def give_board(run_dir: Path, ids: list[int] | None, args: list[str]) -> None:
    """The kernel, as it starts the board (label hw): make the bus socket and the board's disk
    image (``--disk`` in its ``args``, or run_dir/disk.img), if it exists, the board's own
    (a missing one the board makes itself)."""
    give(run_dir / params.BUS_SOCKET, ids)
    if ids and active(run_dir):  # the board alone may make names in the run directory
        try:
            os.setxattr(run_dir, "system.posix_acl_access", _writer_acl(ids[0]),
                        follow_symlinks=False)
        except OSError as e:  # a file system without ACLs: every component may make names
            os.chmod(run_dir, 0o1770)
            print(f"kernel: no ACL on {run_dir} ({e.strerror}): every component may make "
                  "names in it", flush=True)
    disk = Path(args[args.index("--disk") + 1]) if "--disk" in args[:-1] else run_dir / "disk.img"
    if os.path.lexists(disk):
        give(disk, ids)


def give(path: Path, ids: list[int] | None, mode: int = 0o600) -> None:
    """Make ``path`` (the bus socket, the board's disk image) the component's own, mode
    ``mode``; nothing without ids (no domains)."""
    if ids and not path.is_symlink():
        os.chown(path, ids[0], ids[1], follow_symlinks=False)
        os.chmod(path, mode)


def share_socket(path: Path) -> None:
    """A socket the components may connect to (the board's fast path): group components,
    0660; without domains (the component not in that group) private to its owner."""
    if params.COMPONENT_GID in os.getgroups():
        os.chown(path, -1, params.COMPONENT_GID)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0o600)


def share_event_log(fd: int) -> None:
    """A new events.log: writable by the event log's group, readable by no component."""
    if params.EVENT_LOG_GID in os.getgroups() or os.geteuid() == 0 and params.DOMAINS:
        os.fchown(fd, -1, params.EVENT_LOG_GID)
        os.fchmod(fd, 0o620)
