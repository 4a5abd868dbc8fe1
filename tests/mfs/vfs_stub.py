"""A stand-in for VFS in the MFS system tests (started by RS with the label ``vfs``).

MFS answers only the component ``vfs``, and an operator connection is not
one, so the tests drive this component.  Its requests (the status is the type):

* FS {type, fields}: one FsReq to MFS (SENDREC); answers {type, fields} of MFS's reply.
* COPY {dir, name, bytes, seed}: create ``name``, write ``bytes`` of seeded random data
  in FS_MAX_IO WRITEs, SYNC, then read it back in FS_MAX_IO READs; answers the sha256
  of both and the seconds of each half.
"""
from __future__ import annotations

import hashlib
import random
import time

from minikern import sef
from minikern.const import FS_MAX_IO, Err, FsReq
from minikern.identity import Identity
from minikern.proto import Message

REQ_FS, REQ_COPY = 1, 2


class Stub:
    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        self.identity = Identity(ctx.conn)

    def fs(self, req: int, **fields: object) -> Message:
        mfs = self.identity.endpoint_of("mfs", fresh=True)
        if mfs is None:
            return Message(Err.ESRCH)
        return self.ctx.conn.sendrec(mfs, Message(req, dict(fields)))

    def do_fs(self, m: Message) -> Message:
        r = self.fs(int(m["type"]), **dict(m["fields"]))
        return Message(Err.OK, {"type": r.type, "fields": r.fields})

    def do_copy(self, m: Message) -> Message:
        size = int(m["bytes"])
        data = random.Random(int(m["seed"])).randbytes(size)
        r = self.fs(FsReq.CREATE, dir=int(m["dir"]), name=str(m["name"]), mode=0o644, uid=0, gid=0)
        if r.type != Err.OK:
            return Message(r.type, {"step": "create", **r.fields})
        ino = r["stat"]["ino"]
        t0 = time.perf_counter()
        for pos in range(0, size, FS_MAX_IO):
            r = self.fs(FsReq.WRITE, ino=ino, pos=pos, data=data[pos:pos + FS_MAX_IO])
            if r.type != Err.OK:
                return Message(r.type, {"step": f"write at {pos}", **r.fields})
        r = self.fs(FsReq.SYNC)
        if r.type != Err.OK:
            return Message(r.type, {"step": "sync", **r.fields})
        t1 = time.perf_counter()
        back = hashlib.sha256()
        for pos in range(0, size, FS_MAX_IO):
            r = self.fs(FsReq.READ, ino=ino, pos=pos, count=FS_MAX_IO)
            if r.type != Err.OK:
                return Message(r.type, {"step": f"read at {pos}", **r.fields})
            back.update(r["data"])
        t2 = time.perf_counter()
        return Message(Err.OK, {"ino": ino, "written": hashlib.sha256(data).hexdigest(),
                                "read": back.hexdigest(), "write_s": t1 - t0, "read_s": t2 - t1})


def main() -> None:
    stub = Stub()
    ctx = sef.startup(stub.init)
    sef.serve(ctx, {REQ_FS: stub.do_fs, REQ_COPY: stub.do_copy})
