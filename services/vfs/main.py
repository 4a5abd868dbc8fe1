"""VFS: the virtual file system server (runs in its own process, label vfs).

The skeleton every server has: SEF start-up, then receive; requests go
through one table (services/vfs/server.py) to ``do_<request>`` handlers
(files.py, paths.py, mounting.py).  VFS owns each user process's file
descriptors and working directory, the open files, the vnodes and the mount
table; the file servers (services/mfs) know only inodes.  VFS never blocks:
its requests to a file server go out with the loop's ``request`` (one at a
time per file server, services/vfs/fsconn.py) and a user's request is
answered when its chain of file-server requests is done, while every other
process is served (docs/PROTOCOL.md sections 20 and 21).

At start-up VFS mounts the root file system named by its arguments, trying
again every ``params.VFS_MOUNT_RETRY`` until the file server is in DS and
answers READSUPER (the file server itself waits for its block driver);
requests that come meanwhile wait.  VFS subscribes to DS's label entries
(keys without a dot, LABEL_KEYS): when RS publishes a new endpoint for a
mounted file server (it restarted it), DS's notification has VFS mount it
again at once and give back the references VFS holds; the request it lost
is EIO (what it had not written back is lost with it).  Every
``params.VFS_SWEEP`` while some process is known to VFS (or a mount's
recovery failed) it asks the kernel which processes live (GETINFO), closes
the files of the dead and looks at DS again; with nothing of the kind it
sleeps ``params.VFS_IDLE_SWEEP`` between looks, so an idle system's VFS
does not wake every second.

Then each ``--mount`` of its arguments (the RAM disk: ``/ram=mfs_ram:memory:0``),
in order, each tried again after ``params.VFS_MOUNT_RETRY``, doubling up to
``VFS_MOUNT_RETRY_CAP`` (a configuration whose file server never comes), until it works
(the directory is made if missing; services/vfs/mounting.py).

Arguments (system.conf ``args``): --root DRIVER:MINOR (the block device of
the root file system), --fs LABEL (its file server), --readonly, and
--mount PATH=FS:DRIVER:MINOR (any number: a file server's device mounted on
PATH at start-up, read-write).
"""
from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

from minikern import ds, params, sef
from minikern.const import DS, DsFlag, Err, KCall, VfsReq, err_name
from minikern.loop import Timer
from minikern.identity import Identity
from minikern.ipc import IpcError, KernelGone
from minikern.proto import Message
from services.vfs.server import Vfs

LABEL_KEYS = r"^[^.]+$"  # DS keys without a dot: RS's label entries (``<label>`` -> endpoint)
MAX_DS_CHANGES = 64  # changes taken per notification (the rest: the next one, or the sweep)


class VfsServer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.driver, _, minor = args.root.partition(":")
        self.minor = int(minor or 0)
        self.tries = 0
        self.pending: list[BootMount] = list(args.mount)  # --mount ones not mounted yet
        self.mount_delay = params.VFS_MOUNT_RETRY  # doubles up to VFS_MOUNT_RETRY_CAP

    def init(self, ctx: sef.Context) -> None:
        self.ctx, self.loop = ctx, ctx.loop
        self.identity = Identity(ctx.conn)
        self.vfs = Vfs(send=lambda dst, m, on_answer, timeout:
                       self.loop.request(dst, m, on_answer, timeout),
                       reply=self.loop.reply, find_label=self.find_label,
                       is_operator=self.is_operator)
        self.loop.call_later(0, self.mount_root)
        self.sweep_timer: Timer = self.loop.call_later(params.VFS_SWEEP, self.sweep)
        try:
            ds.subscribe(ctx.conn, LABEL_KEYS, DsFlag.OVERWRITE)  # a restarted VFS: again
        except IpcError as e:  # the sweep still looks at DS, only later
            print(f"vfs: no DS subscription ({e}); file servers' restarts seen by the sweep",
                  flush=True)
        self.drain_ds()  # what changed while this VFS was not there

    def find_label(self, label: str) -> int | None:
        try:
            return ds.retrieve_label(self.ctx.conn, label)
        except KernelGone:
            raise
        except (IpcError, ValueError, TypeError):
            return None

    def is_operator(self, endpoint: int) -> bool:
        """Admitted with the operator key AND given the operator's privileges (system.conf's
        ``service operator`` holds SHUTDOWN): user programs come with the key too, but with
        ``service user``'s privileges, and may not mount."""
        who = self.identity.who(endpoint)
        kcalls = who.priv.get("kcalls") if who is not None else None
        return who is not None and who.operator and type(kcalls) is list \
            and KCall.SHUTDOWN.name in kcalls  # GETINFO names kernel calls

    def mount_root(self) -> None:
        self.tries += 1
        self.vfs.mount_root(self.args.fs, self.driver, self.minor, self.args.readonly,
                            self.root_done)

    def root_done(self, status: int, why: str) -> None:
        if status == Err.OK:
            print(f"vfs: root file system mounted: {self.driver} minor {self.minor} "
                  f"by {self.args.fs} (try {self.tries})", flush=True)
            self.next_mount()
            return
        self.vfs.guard.once(f"root mount {err_name(status)}",
                            f"cannot mount the root yet ({self.args.fs} on {self.driver} minor "
                            f"{self.minor}): {err_name(status)} {why}; trying again")
        self.loop.call_later(params.VFS_MOUNT_RETRY, self.mount_root)

    def next_mount(self) -> None:
        """Mount the first of the ``--mount`` arguments still to do (then the next)."""
        if not self.pending:
            return
        b = self.pending[0]

        def done(status: int, why: str) -> None:
            if status == Err.OK:
                print(f"vfs: mounted {b.driver} minor {b.minor} by {b.fs} on {b.path}",
                      flush=True)
                self.pending.pop(0)
                self.mount_delay = params.VFS_MOUNT_RETRY
                self.next_mount()
                return
            self.vfs.guard.once(f"mount {b.path} {err_name(status)}",
                                f"cannot mount {b.path} yet ({b.fs} on {b.driver} minor "
                                f"{b.minor}): {err_name(status)} {why}; trying again")
            self.loop.call_later(self.mount_delay, self.next_mount)
            self.mount_delay = min(2 * self.mount_delay, params.VFS_MOUNT_RETRY_CAP)
        self.vfs.boot_mount(b.path, b.fs, b.driver, b.minor, done)

    def sweep(self) -> None:
        """Now and then: the files of dead processes, and file servers RS restarted."""
        if self.vfs.ready:
            self.vfs.check_servers()
        if self.vfs.st.procs:
            alive = self.identity.live()
            self.vfs.sweep(None if alive is None else set(alive))
        self.sweep_timer = self.loop.call_later(self.sweep_period(), self.sweep)

    def sweep_period(self) -> float:
        """VFS_SWEEP while a process is known (it may die holding files) or a mount is not
        settled (a recovery failed or runs); else VFS_IDLE_SWEEP."""
        unsettled = any(m.fs.stale or m.fs.recovering is not None
                        for m in self.vfs.st.mounts.all)
        busy = bool(self.vfs.st.procs) or unsettled or not self.vfs.ready
        return params.VFS_SWEEP if busy else params.VFS_IDLE_SWEEP

    def sweep_sooner(self) -> None:
        """After a request: a process VFS now knows is looked after within VFS_SWEEP."""
        due = self.loop.clock.now() + params.VFS_SWEEP
        if self.vfs.st.procs and self.sweep_timer.when > due:
            self.sweep_timer.cancel()
            self.sweep_timer = self.loop.call_at(due, self.sweep)

    def on_notify(self, m: Message) -> None:
        """DS says a subscribed key changed: a label entry may name a restarted file server."""
        if m.source == DS:
            self.drain_ds()

    def drain_ds(self) -> None:
        changed = False
        for _ in range(MAX_DS_CHANGES):
            try:
                change = ds.check(self.ctx.conn)
            except KernelGone:
                raise
            except IpcError:
                break
            if change is None:
                break
            key, vtype, _ = change
            changed |= vtype == "label" and self.vfs.st.mounts.by_label(key) is not None
        if changed and self.vfs.ready:
            self.vfs.check_servers()

    def table(self) -> dict[int, sef.Handler]:
        return {req: self.dispatch for req in VfsReq}

    def dispatch(self, m: Message) -> Message | None:
        reply = self.vfs.dispatch(m)
        self.sweep_sooner()
        return reply

    def default(self, m: Message) -> Message | None:
        """A type VFS does not serve: EBADREQUEST, but a stray reply (type <= 0) is never
        answered (PROTOCOL.md section 15), only counted."""
        if m.type <= 0:
            self.vfs.guard.counts["stray reply"] += 1
            return None
        return self.dispatch(m)


class BootMount(NamedTuple):
    path: str
    fs: str
    driver: str
    minor: int


def boot_mount(text: str) -> BootMount:
    """PATH=FS:DRIVER:MINOR, e.g. /ram=mfs_ram:memory:0."""
    path, _, rest = text.partition("=")
    parts = rest.split(":")
    if (not path.startswith("/") or path.rstrip("/") == "" or len(parts) != 3
            or not all(parts) or not parts[2].isdigit() or int(parts[2]) > 255):
        raise argparse.ArgumentTypeError(f"not PATH=FS:DRIVER:MINOR: {text!r}")
    return BootMount(path, parts[0], parts[1], int(parts[2]))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vfs")
    ap.add_argument("--root", default="at_wini:0", help="DRIVER:MINOR of the root file system")
    ap.add_argument("--fs", default="mfs", help="the label of the root's file server")
    ap.add_argument("--readonly", action="store_true")
    ap.add_argument("--mount", type=boot_mount, action="append", default=[],
                    help="PATH=FS:DRIVER:MINOR mounted once the root is (e.g. the RAM disk)")
    return ap.parse_args(argv)


def main() -> None:
    server = VfsServer(parse_args(sys.argv[1:]))
    ctx = sef.startup(server.init)
    sef.serve(ctx, server.table(), on_notify=server.on_notify, default=server.default)
