"""A component that uses a block device, for the block tests (started by RS, label bdevclient).

An operator connection has no memory segment to grant, so the tests drive
this component instead.  Its requests (answered with the status as type):

* RUN {label, minor, pos, bytes, seed, chunk}: through minikern/bdev.py, write
  ``bytes`` of seeded random data at ``pos`` in pieces of ``chunk``, flush,
  read them back; answer the sha256 of what was written and of what was read,
  the seconds of each half and the client's counters.
* BDEV {label, minor, op: read|write|geometry|flush|close, pos, count, data}:
  one call of the BlockDevice interface (``close`` also forgets the device: the
  next call makes a new one); a failure answers its code, and ``sector`` for a
  DeviceError.
* RAW {label, type, fields, grants: [[offset, length, access]], poke: [offset,
  bytes], peek: [offset, length]}: one request straight to the driver, with
  grants of this component's memory ("$i" in ``fields``, also inside ``iov``,
  becomes the i-th grant); answers the driver's status and fields and the
  peeked memory.
"""
from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from minikern import bdev, ds, sef
from minikern.const import Err, KCall
from minikern.ipc import IpcError
from minikern.proto import Message

REQ_RUN, REQ_BDEV, REQ_RAW = 1, 2, 3
RAW_AREA = 1 << 20  # RAW's memory starts here; BlockDevice's buffer is at 0


class Client:
    def __init__(self) -> None:
        self.devices: dict[tuple[str, int], bdev.BlockDevice] = {}

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx

    def device(self, m: Message) -> bdev.BlockDevice:
        key = (str(m.get("label", "at_wini")), int(m.get("minor", 0)))
        if key not in self.devices:
            dev = bdev.BlockDevice(self.ctx, key[0], key[1])
            dev.open()
            self.devices[key] = dev
        return self.devices[key]

    def do_run(self, m: Message) -> Message:
        try:
            dev = self.device(m)
            pos, total, chunk = int(m["pos"]), int(m["bytes"]), int(m.get("chunk", 1 << 20))
            rng, wrote, t0 = random.Random(int(m.get("seed", 1))), hashlib.sha256(), time.monotonic()
            for off in range(0, total, chunk):
                data = rng.randbytes(min(chunk, total - off))
                wrote.update(data)
                dev.write(pos + off, data)
            dev.flush()
            t1 = time.monotonic()
            got = hashlib.sha256()
            for off in range(0, total, chunk):
                got.update(dev.read(pos + off, min(chunk, total - off)))
            t2 = time.monotonic()
        except IpcError as e:
            return Message(e.code, {"error": str(e)})
        return Message(Err.OK, {"written_sha256": wrote.hexdigest(), "read_sha256": got.hexdigest(),
                                "write_seconds": t1 - t0, "read_seconds": t2 - t1,
                                **self.counters(dev)})

    @staticmethod
    def counters(dev: bdev.BlockDevice) -> dict[str, int]:
        return {"requests": dev.requests, "retries": dev.retries,
                "driver_restarts_seen": dev.driver_restarts_seen}

    def do_bdev(self, m: Message) -> Message:
        try:
            dev, op = self.device(m), m.get("op")
            if op == "read":
                return Message(Err.OK, {"data": dev.read(int(m["pos"]), int(m["count"])),
                                        **self.counters(dev)})
            if op == "write":
                dev.write(int(m["pos"]), bytes(m["data"]))
                return Message(Err.OK, self.counters(dev))
            if op == "geometry":
                return Message(Err.OK, dev.geometry())
            if op == "flush":
                dev.flush()
                return Message(Err.OK)
            if op == "close":  # the next call makes a new device, as MFS does per mount
                del self.devices[(dev.label, dev.minor)]
                dev.close()
                return Message(Err.OK)
        except bdev.DeviceError as e:
            return Message(e.code, {"sector": e.sector, "error": str(e), **self.counters(dev)})
        except IpcError as e:
            return Message(e.code, {"error": str(e)})
        return Message(Err.EINVAL)

    def do_raw(self, m: Message) -> Message:
        conn, mem = self.ctx.conn, self.ctx.memory
        assert mem is not None
        driver = ds.retrieve_label(conn, str(m["label"]))
        grants = [int(conn.kcall(KCall.SETGRANT, grantee=driver, offset=RAW_AREA + off,
                                 length=length, access=access)["grant"])
                  for off, length, access in m.get("grants", [])]
        if m.get("poke"):
            off, data = m["poke"]
            mem[RAW_AREA + off:RAW_AREA + off + len(data)] = data

        def sub(v: Any) -> Any:
            if type(v) is str and v.startswith("$"):
                return grants[int(v[1:])]
            if type(v) is list:
                return [sub(x) for x in v]
            return v

        fields = {k: sub(v) for k, v in dict(m["fields"]).items()}
        try:
            r = conn.sendrec(driver, Message(int(m["type"]), fields))
            status, out = r.type, r.fields
        except IpcError as e:
            status, out = e.code, {}
        for g in grants:
            conn.kcall_status(KCall.REVOKE, grant=g)
        peek = m.get("peek") or [0, 0]
        return Message(Err.OK, {"status": status, "fields": out,
                                "memory": bytes(mem[RAW_AREA + peek[0]:RAW_AREA + peek[0] + peek[1]])})


def main() -> None:
    c = Client()
    ctx = sef.startup(c.init)
    sef.serve(ctx, {REQ_RUN: c.do_run, REQ_BDEV: c.do_bdev, REQ_RAW: c.do_raw})
