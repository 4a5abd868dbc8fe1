"""mount: the system's file tree on a host directory, through FUSE.

    bin/mount DIR              mount the system's / on DIR; returns once it is served
    bin/mount -f DIR           the same in the foreground (Ctrl-C unmounts)
    bin/mount -u DIR           unmount DIR: the system writes everything back, the mount ends
    bin/mount                  list this system's mounts

The mount is a user process of the system (the `user` privileges of
system.conf, like bin/nc): each FUSE request is a call of userland/fs.py to
VFS, one at a time.  cp, tar, sha256sum, git and python then work on the
system's file system; errors reach them as the host's errnos.  Its record
(pid, mount point, log) is in the run directory's mounts/; bin/halt
unmounts every recorded mount before it stops the system.  If the system
dies, calls in flight fail with EIO and the mount goes away; if the mount
process dies, fusermount3 (libfuse's auto_unmount) removes the mount.
Needs /dev/fuse and fusermount3 (Debian: apt-get install fuse3).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading

from minikern import cli, mounts, params
from minikern.deadline import wait_for
from userland.fs import Files, FsError

FUSE_DEVICE = "/dev/fuse"
KERNEL_WATCH_S = 1.0  # how often an idle mount checks that the system still runs


def main(argv: list[str] | None = None) -> int:
    cmd = cli.Command("mount", __doc__, json="list the mounts as JSON", needs_system=False,
                      failures=(FsError, OSError))
    cmd.add_argument("dir", nargs="?", help="the host directory to mount on (or unmount)")
    cmd.add_argument("-u", "--unmount", action="store_true", help="unmount DIR")
    cmd.add_argument("-f", "--foreground", action="store_true",
                     help="serve in this process until unmounted")
    cmd.add_argument("--root", default="/", help="the system's directory to mount (default /)")
    args = cmd.parse_args(argv)
    if args.dir is None:
        return cmd.call(args, list_mounts)
    if args.unmount:
        return cmd.call(args, lambda a: unmount(cmd, a))
    if cli.kernel_pid(args.run_dir) is None:
        return cli.no_system("mount", args.run_dir)
    missing = unavailable()
    if missing:
        return cmd.fail(missing)
    if not os.path.isdir(args.dir):
        return cmd.fail(f"{args.dir} is not a directory")
    if mounts.is_fuse_mount(args.dir) or mounts.find(args.run_dir, args.dir) is not None:
        return cmd.fail(f"{args.dir} is mounted already")
    return cmd.call(args, serve if args.foreground else lambda a: start(cmd, a))


def unavailable() -> str | None:
    """Why FUSE cannot be used on this host, or None."""
    if not os.path.exists(FUSE_DEVICE):
        return f"no {FUSE_DEVICE} on this host (load the fuse module, or give the container it)"
    if shutil.which(mounts.FUSERMOUNT) is None:
        return f"no {mounts.FUSERMOUNT} on this host (Debian: apt-get install fuse3)"
    return None


def list_mounts(a: argparse.Namespace) -> int:
    found = mounts.recorded(a.run_dir)
    if a.json:
        print(json.dumps([m.__dict__ for m in found]))
    for m in [] if a.json else found:
        print(f"{m.dir}  (pid {m.pid}, log {m.log})")
    return cli.EXIT_OK


def unmount(cmd: cli.Command, a: argparse.Namespace) -> int:
    ok, why = mounts.unmount(a.run_dir, a.dir)
    return cli.EXIT_OK if ok else cmd.fail(why)


def start(cmd: cli.Command, a: argparse.Namespace) -> int:
    """Start the mount process (this command with -f, in its own session, output to its log)
    and return once it serves, or fail with what it said."""
    log = mounts.record_path(a.run_dir, a.dir).with_suffix(".log")
    log.parent.mkdir(mode=0o700, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(cli.REPO_ROOT / "bin" / "mount"), "--run-dir", str(a.run_dir),
             "--root", a.root, "-f", mounts.resolve(a.dir)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or _serving(a, proc.pid),
                 params.MOUNT_TIMEOUT, "the mount process", interval=0.02)
    except AssertionError:
        proc.kill()
        proc.wait()
        return cmd.fail(f"the mount process did not start serving in {params.MOUNT_TIMEOUT:g} s "
                        f"(its log: {log})")
    if proc.poll() is not None:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return cmd.fail(f"the mount process exited ({proc.returncode}): " + " / ".join(tail))
    print(f"mount: the system's {a.root} on {mounts.resolve(a.dir)} (pid {proc.pid})")
    return cli.EXIT_OK


def _serving(a: argparse.Namespace, pid: int) -> bool:
    m = mounts.find(a.run_dir, a.dir)
    return m is not None and m.pid == pid and mounts.is_fuse_mount(a.dir)


def serve(a: argparse.Namespace) -> int:
    """The mount process: connect as a user process, mount, serve until unmounted."""
    from userland.fusefs import MountFuse, SystemFs  # here: -u and the list need no libfuse

    logging.basicConfig(level=logging.WARNING, format="mount: %(message)s")
    point = mounts.resolve(a.dir)
    conn = cli.operator_connection(a.run_dir, "mount", privileges="user")
    stopping = threading.Event()
    lost_once = threading.Lock()

    def lost() -> None:
        """The system is gone: detach the mount (its process then ends), once."""
        if lost_once.acquire(blocking=False):
            print("mount: the system is gone; unmounting", file=sys.stderr, flush=True)
            threading.Thread(target=mounts.fusermount, args=(point, True), daemon=True).start()

    def watch() -> None:
        while not stopping.wait(KERNEL_WATCH_S):
            if not conn.kernel_alive():
                lost()
                return

    try:
        files = Files(conn)
        files.stat(a.root)  # refused now, in one line, rather than as EIO to every call
        ops = SystemFs(files, a.root, on_lost=lost,
                       on_ready=lambda: mounts.write_record(a.run_dir, point, _log_of(a, point)))
        threading.Thread(target=watch, name="kernel-watch", daemon=True).start()
        MountFuse(ops, point, foreground=True, nothreads=True, fsname="minikern",
                  subtype="minikern", max_read=params.FUSE_MAX_IO, auto_unmount=True)
    except RuntimeError as e:  # fuse_main failed: libfuse said why on stderr
        print(f"mount: FUSE could not mount {point} ({e})", file=sys.stderr)
        return cli.EXIT_FAILED
    finally:
        stopping.set()
        mounts.remove_record(a.run_dir, point, os.getpid())
        conn.close()
    return cli.EXIT_OK


def _log_of(a: argparse.Namespace, point: str) -> str:
    return str(mounts.record_path(a.run_dir, point).with_suffix(".log"))


if __name__ == "__main__":
    sys.exit(main())
