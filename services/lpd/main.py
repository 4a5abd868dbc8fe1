"""lpd, the printer spooler (runs in its own process; docs/PROTOCOL.md section 23).

The skeleton of every server: SEF start-up, then the loop with one table of
``do_<request>`` handlers (``LpReq``); the jobs are services/lpd/jobs.py's,
the printer driver's conversation services/lpd/pump.py's.  The driver is
found through DS as bdev and INET find theirs: the spooler subscribes to
RS's state entry ``rs.<printer>`` and, on ``up``, reads the label entry for
the new endpoint (DS's notification wakes it; it also looks every
LP_RETRY while it has no driver).  Jobs live in this process's memory: a
restarted spooler starts with an empty queue (what was printed stays on
paper).

Args: ``--printer LABEL`` (default ``printer``).
"""
from __future__ import annotations

import argparse
import sys

from minikern import ds, params, sef, successor
from minikern.const import DS, DsFlag, Err, LpReq
from minikern.ipc import IpcError
from minikern.proto import Message
from services.lpd.jobs import Jobs, Refused
from services.lpd.pump import Link, Pump, log


class Spooler:
    def __init__(self, printer: str) -> None:
        self.printer = printer
        self.jobs = Jobs()

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        self.pump = Pump(ctx.loop, self.jobs, log)
        try:
            ds.subscribe(ctx.conn, rf"rs\.{self.printer}", DsFlag.INITIAL | DsFlag.OVERWRITE)
        except IpcError as e:
            log(f"cannot subscribe to the printer's state in DS: {e}")
        ctx.loop.call_later(0, self.watch)

    def watch(self) -> None:
        """Every LP_RETRY while the spooler has no driver: ask DS (a notification may be lost)."""
        if self.pump.link == Link.DOWN:
            self.find_driver()
        self.ctx.loop.call_later(params.LP_RETRY, self.watch)

    def find_driver(self) -> None:
        """Ask DS where the printer driver runs (None while RS is replacing it)."""
        state, endpoint = successor.locate(self.ctx.conn, self.printer, f"rs.{self.printer}")
        self.pump.driver_at(endpoint if state == "up" else None)

    def on_notify(self, m: Message) -> None:
        if m.source != DS:
            return
        try:
            while ds.check(self.ctx.conn) is not None:
                pass
        except IpcError:
            return
        self.find_driver()

    # -- requests ----------------------------------------------------------------------

    def do_submit(self, m: Message) -> Message:
        try:
            job = self.jobs.submit(m.get("name"), m.get("size"), m.source)
        except Refused as e:
            return Message(e.status, {"error": str(e)})
        return Message(Err.OK, {"job": job.job})

    def do_data(self, m: Message) -> Message:
        try:
            job = self.jobs.append(m.get("job"), m.get("offset"), m.get("data"), m.source)
        except Refused as e:
            return Message(e.status, {"error": str(e)})
        self.pump.pump()
        return Message(Err.OK, {"received": job.received})

    def do_status(self, m: Message) -> Message:
        return Message(Err.OK, {"printer": self.pump.status(), **self.jobs.status()})

    def do_cancel(self, m: Message) -> Message:
        try:
            self.jobs.cancel(m.get("job"))
        except Refused as e:
            return Message(e.status, {"error": str(e)})
        return Message(Err.OK)


def main() -> None:
    parser = argparse.ArgumentParser(prog="lpd")
    parser.add_argument("--printer", default="printer")
    spooler = Spooler(parser.parse_args(sys.argv[1:]).printer)
    ctx = sef.startup(spooler.init)
    sef.serve(ctx, {LpReq.SUBMIT: spooler.do_submit, LpReq.DATA: spooler.do_data,
                    LpReq.STATUS: spooler.do_status, LpReq.CANCEL: spooler.do_cancel},
              on_notify=spooler.on_notify)
