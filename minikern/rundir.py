"""The run directory's rules: who may own it, what may be in it, and which kernel is its own.

Runs in the operator's shell (bin/boot, bin/halt and every tool, through minikern/cli.py),
never in the system.  The run directory's default name is predictable (/tmp/minikern-<uid>),
so a boot must not trust what it finds there; a root boot into a directory another user
prepared would write through their symlinks.  The rules:

* The directory is created 0700 by the booting user, or taken as it is only when it is a
  real directory (lstat: not a symlink) owned by the booting user that neither group nor
  others may write.  Otherwise the boot is refused, before anything is written.
* Booted as root, the kernel shares it with the components (root, their group, 1710 with the
  sticky bit and an ACL entry for the board, shown as 1770: minikern/domain.py); such a
  directory is taken too, and entries a component
  of the last boot made (owned by a uid of the components' range) are left as they are.
* Nothing in it is followed: every entry, at every depth, must be the booting user's own,
  and no symbolic link nor a regular file with a second hard link (either could name a
  file elsewhere that a boot would then overwrite).  Boot opens what it writes relative
  to the directory's descriptor with O_NOFOLLOW, so a link planted after the check is
  refused too (ELOOP), never written through.
* The pid file is a claim, not a fact: its process is the kernel only if it is alive,
  owned by the directory's owner and runs ``python -m minikern.kernel RUN_DIR`` for this
  very directory (same device and inode).  bin/halt signals nothing else.
* Tools that only read it (bin/ps, bin/logs, ...) refuse a directory that is a symlink or
  owned by another user, so root's tools never read what another user prepared.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import psutil

from minikern import params

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
KERNEL_MODULE = "minikern.kernel"  # the kernel's command line: python -m minikern.kernel RUN_DIR


class RunDirError(RuntimeError):
    """The run directory breaks a rule: the message says which, in one line."""


def open_dir(run_dir: str | Path, create: bool = False) -> int:
    """A descriptor on ``run_dir`` once it keeps the rules (created 0700 first if ``create``
    and it is missing); RunDirError if it does not.  The caller closes the descriptor."""
    if create:
        try:
            os.makedirs(run_dir, mode=0o700)
        except FileExistsError:
            pass
    try:
        fd = os.open(run_dir, DIR_FLAGS)
    except OSError as e:
        if os.path.islink(run_dir):
            raise RunDirError(f"run directory {run_dir} is a symbolic link; refusing it") from None
        raise RunDirError(f"run directory {run_dir}: {e.strerror}") from None
    try:
        check_owner(run_dir, os.fstat(fd))
        if create:
            os.fchmod(fd, 0o700)  # private, whatever umask or an earlier boot left
            check_contents(run_dir, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_owner(run_dir: str | Path, st: os.stat_result) -> None:
    """The directory must be the caller's own and writable by nobody else."""
    if st.st_uid != os.geteuid():
        raise RunDirError(f"run directory {run_dir} is owned by uid {st.st_uid}, not by you "
                          f"(uid {os.geteuid()}); refusing it")
    shared = st.st_gid == params.COMPONENT_GID and st.st_mode & stat.S_ISVTX  # domain.prepare's
    if st.st_mode & stat.S_IWOTH or st.st_mode & stat.S_IWGRP and not shared:
        raise RunDirError(f"run directory {run_dir} is group- or world-writable "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}); refusing it")


def check_contents(run_dir: str | Path, fd: int) -> None:
    """Every entry inside, at any depth, is the caller's own, no symbolic link and no second
    name of a regular file (walked by descriptor, never following a link)."""
    me, device = os.geteuid(), os.fstat(fd).st_dev
    for top, dirs, files, top_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        for name in (*dirs, *files):
            st = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
            where = os.path.normpath(os.path.join(top, name))
            if st.st_dev != device:  # a mount point (bin/mount's): not the run directory's
                if name in dirs:
                    dirs.remove(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise RunDirError(f"{where} in run directory {run_dir} is a symbolic link; "
                                  "refusing to follow it")
            if st.st_uid != me and not _component(st.st_uid):
                raise RunDirError(f"{where} in run directory {run_dir} is owned by uid "
                                  f"{st.st_uid}, not by you; refusing it")
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                raise RunDirError(f"{where} in run directory {run_dir} has {st.st_nlink} hard "
                                  "links; refusing to write through a link")


def _component(uid: int) -> bool:
    """Whether ``uid`` is a component's (booted as root: minikern/domain.py): the entries a
    component made in the last boot (the board's sockets and disk, crash records)."""
    return params.DOMAIN_UID_FIRST <= uid <= params.DOMAIN_UID_LAST


def open_file(dir_fd: int, name: str, flags: int, mode: int = 0o600) -> int:
    """``name`` inside the directory of ``dir_fd``, opened without following a link; a file
    of the caller's own with one name (RunDirError otherwise: nothing was written)."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise RunDirError(f"{name} in the run directory is a symbolic link; "
                              "refusing to follow it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink > 1:
        os.close(fd)
        raise RunDirError(f"{name} in the run directory is not a file of your own with one "
                          "name; refusing it")
    return fd


def write_file(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name``'s contents with ``data`` (created 0600)."""
    fd = open_file(dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def read_file(run_dir: str | Path, name: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``name`` in ``run_dir``, neither of them followed if a link."""
    dir_fd = os.open(run_dir, DIR_FLAGS)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def check_reader(run_dir: str | Path) -> None:
    """For a tool that only reads ``run_dir``: refuse one that is a symlink or another user's
    (a missing one is the tool's to report)."""
    try:
        st = os.lstat(run_dir)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise RunDirError(f"run directory {run_dir} is a symbolic link; refusing it")
    if st.st_uid != os.geteuid():
        raise RunDirError(f"run directory {run_dir} is owned by uid {st.st_uid}, not by you "
                          f"(uid {os.geteuid()}); refusing it")


def kernel_pid(run_dir: str | Path) -> int | None:
    """The pid the pid file names if that process is this run directory's kernel; None if
    there is no pid file or its process is gone; RunDirError if it names another process."""
    try:
        st = os.stat(run_dir)
        pid = int(read_file(run_dir, params.KERNEL_PIDFILE, 32))
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            uid, argv, cwd = proc.uids().real, proc.cmdline(), proc.cwd()
            zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        raise RunDirError(f"the pid file names pid {pid}, which is not yours to examine: "
                          "not this run directory's kernel") from None
    if zombie:
        return None
    why = _not_the_kernel(st, uid, argv, cwd)
    if why:
        raise RunDirError(f"the pid file of {run_dir} names pid {pid}, which is not its "
                          f"kernel ({why}); nothing signalled")
    return pid


def _not_the_kernel(run_dir: os.stat_result, uid: int, argv: list[str], cwd: str) -> str:
    """Why a process (its real uid, command line, working directory) is not the kernel of
    the run directory ``run_dir`` (stat), or "" when it is."""
    if uid != run_dir.st_uid:
        return f"it runs as uid {uid}, the run directory is uid {run_dir.st_uid}'s"
    if len(argv) != 4 or argv[1:3] != ["-m", KERNEL_MODULE]:  # as bin/boot starts it
        return f"it runs {' '.join(argv)[:80]!r}"
    try:
        its = os.stat(os.path.join(cwd, argv[-1]))
    except OSError:
        its = None
    if its is None or (its.st_dev, its.st_ino) != (run_dir.st_dev, run_dir.st_ino):
        return f"it is the kernel of {argv[-1]}"
    return ""
