"""SEF, the startup framework every component runs under (MINIX's libsys/sef).

Every server and driver has the same skeleton::

    def main() -> None:
        ctx = sef.startup(init)             # connect, init fresh or restart
        sef.serve(ctx, {REQ_X: do_x, ...}, on_notify=...)

``startup`` tells ``init`` whether this is a fresh start or a restart, with
the incarnation number, and then tells RS that initialization is done
(SENDREC RsReq.INIT_DONE; RS answers at once and only then declares the
service up and publishes its endpoint).  In a system without RS the call
fails at once with EDEADSRCDST and is ignored.  ``serve`` is the loop: receive; a notification is
handled apart and never answered (a heartbeat NOTIFY from RS SEF answers
itself, with a SENDREC RsReq.PING); a request goes through the table to ``do_<request>``, whose
returned Message is the reply (None means EDONTREPLY: answer later, with
``ctx.loop.reply``).  ``serve`` runs on the context's ``Loop`` (minikern/loop.py):
timers, watched descriptors and queued sends set on ``ctx.loop`` are served
between messages; with none of them a turn is one REPLYRECV, the fast path.
A SHUTDOWN from the kernel ends the process in order; ``panic(reason)``
records the reason and exits.

Fault injection (bin/crash): RS hands the fault over in its reply to the
component's PING (so only RS, which takes it only from operator tools, can
crash a component), and it does so however busy the component is: a
heartbeat NOTIFY waits as a pending bit and is delivered before any message
at the next RECEIVE.  The faults that must happen inside the component (exit,
exception, panic, hang) are done here, in the component's own loop; kill and
segv RS sends as signals.  The SWIFI faults of bin/experiment (code, interface,
resource: const.SWIFI_FAULTS) come the same way with a ``spec`` saying which
kind and where, and are armed by minikern/swifi.py in this process.
"""
from __future__ import annotations

import json
import mmap
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from minikern import ipc, params, swifi
from minikern.proto import Message
from minikern.const import ANY, RS, SWIFI_FAULTS, Err, Kind, KMsg, RsReq
from minikern.loop import Loop

Handler = Callable[[Message], "Message | None"]


@dataclass
class Context:
    conn: ipc.Connection
    label: str
    endpoint: int
    incarnation: int
    run_dir: Path
    memory: mmap.mmap | None
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
    shutting_down: bool = False  # SHUTDOWN came: the hooks run, nothing restarts any more
    _loop: Loop | None = None

    @property
    def loop(self) -> Loop:
        """The process's one event loop (made on first use, on the real clock)."""
        if self._loop is None:
            self._loop = Loop(self.conn)
        return self._loop

    @property
    def restarted(self) -> bool:
        return self.incarnation > 0

    @property
    def init_type(self) -> str:
        return "restart" if self.incarnation > 0 else "fresh"


_ctx: Context | None = None


def startup(init: Callable[[Context], None] | None = None) -> Context:
    global _ctx
    r = ipc.boot_record
    conn = ipc.Connection.from_boot()
    mem = mmap.mmap(ipc.boot_memfd, r["memory_size"]) if ipc.boot_memfd >= 0 else None
    _ctx = Context(conn=conn, label=r["label"], endpoint=conn.endpoint,
                   incarnation=r.get("incarnation", 0), run_dir=Path(r["run_dir"]), memory=mem)
    if init is not None:
        init(_ctx)
    if _ctx.endpoint != RS:
        try:
            conn.sendrec(RS, Message(RsReq.INIT_DONE))
        except ipc.KernelGone:
            raise
        except ipc.IpcError:
            pass  # no RS in this system (or not allowed to talk to it): nobody to tell
    return _ctx


def receive(ctx: Context, src: int = ANY) -> Message:
    """RECEIVE, answering what SEF answers by itself (pings, shutdown)."""
    while True:
        m = ctx.conn.receive(src)
        if not filtered(ctx, m):
            return m


def filtered(ctx: Context, m: Message) -> bool:
    """Handle SEF's own traffic; True if ``m`` was consumed."""
    if m.kind == Kind.NOTIFY and m.source == RS:  # a heartbeat: answer, and take any fault
        try:
            reply = ctx.conn.sendrec(RS, Message(RsReq.PING))
        except ipc.IpcError:
            return True
        if reply.type == Err.OK and reply.get("fault"):
            inject_fault(str(reply.get("fault")), reply.get("spec"))
        return True
    if m.kind == Kind.KERNEL and m.type == KMsg.SHUTDOWN:
        ctx.shutting_down = True
        for hook in ctx.on_shutdown:
            hook()
        sys.exit(0)
    return False


class InjectedFault(Exception):
    """The unhandled exception bin/crash asks for."""


def inject_fault(fault: str, spec: object = None) -> None:
    """Fail the way RS asked (only ever called for a message from RS)."""
    if fault in SWIFI_FAULTS:
        r = ipc.boot_record
        error = swifi.arm(fault, spec, Path(r["run_dir"]) if r.get("run_dir") else None,
                          str(r.get("label", "?")))
        if error is not None:  # RS checked it: this would be a bug in RS, never a crash here
            print(f"{r.get('label', '?')}: SWIFI fault refused: {error}", file=sys.stderr,
                  flush=True)
        return
    if fault == "exit":
        print(f"{ipc.boot_record.get('label', '?')}: exit 1 (injected)", file=sys.stderr,
              flush=True)
        os._exit(1)
    if fault == "exception":
        raise InjectedFault("fault injected by the operator (bin/crash)")
    if fault == "panic":
        panic("fault injected by the operator (bin/crash)")
    if fault == "hang":
        while True:  # an endless loop: no more pings are answered
            pass


def serve(ctx: Context, table: dict[int, Handler],
          on_notify: Callable[[Message], None] | None = None,
          on_kernel: Callable[[Message], None] | None = None,
          default: Handler | None = None) -> NoReturn:
    """The loop.  ``default`` handles types missing from ``table`` (else EBADREQUEST)."""
    def handle(m: Message) -> Message | None:
        if filtered(ctx, m):
            return None
        if m.kind == Kind.NOTIFY:
            if on_notify is not None:
                on_notify(m)
            return None
        if m.kind == Kind.KERNEL:
            if on_kernel is not None:
                on_kernel(m)
            return None
        handler = table.get(m.type, default)
        return handler(m) if handler is not None else Message(Err.EBADREQUEST)
    ctx.loop.run(handle)


def _crash_record(kind: str, **info: Any) -> None:
    """Leave the reason for RS to read: run_dir/crash/<pid>.json."""
    run_dir = ipc.boot_record.get("run_dir")
    if not run_dir:
        return
    d = Path(run_dir) / params.CRASH_DIR
    try:
        d.mkdir(exist_ok=True)
        rec = {"kind": kind, "label": ipc.boot_record.get("label"), "pid": os.getpid(),
               "ts": time.time(), **info}
        path = d / f"{os.getpid()}.json"
        path.write_text(json.dumps(rec))
        path.chmod(0o644)  # RS reads it, under its own uid when booted as root
    except OSError:
        pass


def panic(reason: str) -> NoReturn:
    print(f"{ipc.boot_record.get('label', '?')}: panic: {reason}", file=sys.stderr, flush=True)
    _crash_record("panic", reason=reason)
    os._exit(params.EXIT_PANIC)


def run_component(main: Callable[[], object]) -> None:
    """Run a component's main(); an unhandled exception is recorded with its traceback."""
    try:
        main()
    except SystemExit:
        raise
    except ipc.KernelGone:
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 (anything that escapes main is a crash)
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        _crash_record("exception", error=repr(e), traceback=tb)
        os._exit(params.EXIT_EXCEPTION)
    sys.exit(0)
