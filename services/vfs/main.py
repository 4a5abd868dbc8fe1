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
requests that come meanwhile wait.  Every ``params.VFS_SWEEP`` it asks the
kernel which processes live (GETINFO) and closes the files of the dead.

Arguments (system.conf ``args``): --root DRIVER:MINOR (the block device of
the root file system), --fs LABEL (its file server), --readonly.
"""
from __future__ import annotations

import argparse
import sys

from minikern import ds, params, sef
from minikern.const import Err, VfsReq, err_name
from minikern.identity import Identity
from minikern.ipc import IpcError, KernelGone
from minikern.proto import Message
from services.vfs.server import Vfs


class VfsServer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.driver, _, minor = args.root.partition(":")
        self.minor = int(minor or 0)
        self.tries = 0

    def init(self, ctx: sef.Context) -> None:
        self.ctx, self.loop = ctx, ctx.loop
        self.identity = Identity(ctx.conn)
        self.vfs = Vfs(send=lambda dst, m, on_answer, timeout:
                       self.loop.request(dst, m, on_answer, timeout),
                       reply=self.loop.reply, find_label=self.find_label,
                       is_operator=self.is_operator)
        self.loop.call_later(0, self.mount_root)
        self.loop.call_later(params.VFS_SWEEP, self.sweep)

    def find_label(self, label: str) -> int | None:
        try:
            return ds.retrieve_label(self.ctx.conn, label)
        except KernelGone:
            raise
        except (IpcError, ValueError, TypeError):
            return None

    def is_operator(self, endpoint: int) -> bool:
        who = self.identity.who(endpoint)
        return who is not None and who.operator

    def mount_root(self) -> None:
        self.tries += 1
        self.vfs.mount_root(self.args.fs, self.driver, self.minor, self.args.readonly,
                            self.root_done)

    def root_done(self, status: int, why: str) -> None:
        if status == Err.OK:
            print(f"vfs: root file system mounted: {self.driver} minor {self.minor} "
                  f"by {self.args.fs} (try {self.tries})", flush=True)
            return
        self.vfs.guard.once(f"root mount {err_name(status)}",
                            f"cannot mount the root yet ({self.args.fs} on {self.driver} minor "
                            f"{self.minor}): {err_name(status)} {why}; trying again")
        self.loop.call_later(params.VFS_MOUNT_RETRY, self.mount_root)

    def sweep(self) -> None:
        if self.vfs.st.procs:
            alive = self.identity.live()
            self.vfs.sweep(None if alive is None else set(alive))
        self.loop.call_later(params.VFS_SWEEP, self.sweep)

    def table(self) -> dict[int, sef.Handler]:
        return {req: self.vfs.dispatch for req in VfsReq}

    def default(self, m: Message) -> Message | None:
        """A type VFS does not serve: EBADREQUEST, but a stray reply (type <= 0) is never
        answered (PROTOCOL.md section 15), only counted."""
        if m.type <= 0:
            self.vfs.guard.counts["stray reply"] += 1
            return None
        return self.vfs.dispatch(m)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vfs")
    ap.add_argument("--root", default="at_wini:0", help="DRIVER:MINOR of the root file system")
    ap.add_argument("--fs", default="mfs", help="the label of the root's file server")
    ap.add_argument("--readonly", action="store_true")
    return ap.parse_args(argv)


def main() -> None:
    server = VfsServer(parse_args(sys.argv[1:]))
    ctx = sef.startup(server.init)
    sef.serve(ctx, server.table(), default=server.default)
