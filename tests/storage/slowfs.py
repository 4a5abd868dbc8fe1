"""A file server for tests that holds its answers until told (runs as a component, label slowfs).

It has one empty directory, its root (inode 1).  LOOKUP and STAT of
anything but the root's stat are held (EDONTREPLY) until a RELEASE from an
operator tool, which answers every held request (ENOENT for a lookup) and
says how many it had; that plays a file server whose disk is slow, so a
test can see VFS serve everyone else meanwhile.
"""
from __future__ import annotations

import stat as S
import time
from typing import Any

from minikern import sef
from minikern.const import NAME_MAX, Err, FsReq
from minikern.identity import Identity
from minikern.proto import Message

RELEASE = 0xBFF  # test only: answer what is held; reply {held}
HELD = 0xBFE  # test only: reply {held}, how many wait


class SlowFs:
    def __init__(self) -> None:
        self.held: list[Message] = []

    def init(self, ctx: sef.Context) -> None:
        self.ctx, self.identity = ctx, Identity(ctx.conn)

    def root(self) -> dict[str, Any]:
        now = time.time()
        return {"ino": 1, "mode": S.S_IFDIR | 0o755, "nlinks": 2, "uid": 0, "gid": 0,
                "size": 128, "atime": now, "mtime": now, "ctime": now, "blocks": 0, "dev": 9}

    def handle(self, m: Message) -> Message | None:
        if m.type in (RELEASE, HELD):
            who = self.identity.who(m.source)
            if who is None or not who.operator:
                return Message(Err.EPERM)
            n = len(self.held)
            if m.type == RELEASE:
                held, self.held = self.held, []
                for h in held:
                    self.ctx.loop.reply(h, Message(Err.ENOENT))
            return Message(Err.OK, {"held": n})
        if m.type == FsReq.READSUPER:
            return Message(Err.OK, {"root": self.root(), "statvfs": {}})
        if m.type in (FsReq.STAT, FsReq.GETNODE) and m.get("ino") == 1:
            return Message(Err.OK, {"stat": self.root()})
        if m.type == FsReq.STATVFS:
            return Message(Err.OK, {"bsize": 1024, "blocks": 1, "bfree": 0, "files": 1,
                                    "ffree": 0, "namemax": NAME_MAX})
        if m.type in (FsReq.UNMOUNT, FsReq.PUTNODE, FsReq.SYNC):
            return Message(Err.OK)
        self.held.append(m)
        return None


def main() -> None:
    fs = SlowFs()
    ctx = sef.startup(fs.init)
    sef.serve(ctx, {}, default=fs.handle)
