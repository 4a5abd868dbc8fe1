"""SEF, the startup framework every component runs under (MINIX's libsys/sef).

Every server and driver has the same skeleton::

    def main() -> None:
        ctx = sef.startup(init)             # connect, init fresh or restart
        sef.serve(ctx, {REQ_X: do_x, ...}, on_notify=...)

``startup`` tells ``init`` whether this is a fresh start or a restart, with
the incarnation number.  ``serve`` is the loop: receive; a notification is
handled apart and never answered (heartbeat pings from RS are answered by
SEF itself); a request goes through the table to ``do_<request>``, whose
returned Message is the reply (None means EDONTREPLY: answer later).  Replies
use the REPLYRECV fast path.  A SHUTDOWN from the kernel ends the process in
order; ``panic(reason)`` records the reason and exits.
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

from minikern import ipc, params
from minikern.codec import Message
from minikern.const import ANY, RS, Err, Kind, KMsg

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
    return _ctx


def receive(ctx: Context, src: int = ANY) -> Message:
    """RECEIVE, answering what SEF answers by itself (pings, shutdown)."""
    while True:
        m = ctx.conn.receive(src)
        if not filtered(ctx, m):
            return m


def filtered(ctx: Context, m: Message) -> bool:
    """Handle SEF's own traffic; True if ``m`` was consumed."""
    if m.kind == Kind.NOTIFY and m.source == RS:
        ctx.conn.notify(RS)  # heartbeat answer
        return True
    if m.kind == Kind.KERNEL and m.type == KMsg.SHUTDOWN:
        for hook in ctx.on_shutdown:
            hook()
        sys.exit(0)
    return False


def serve(ctx: Context, table: dict[int, Handler],
          on_notify: Callable[[Message], None] | None = None,
          on_kernel: Callable[[Message], None] | None = None) -> NoReturn:
    m = receive(ctx)
    while True:
        if m.kind == Kind.NOTIFY:
            if on_notify is not None:
                on_notify(m)
            m = receive(ctx)
            continue
        if m.kind == Kind.KERNEL:
            if on_kernel is not None:
                on_kernel(m)
            m = receive(ctx)
            continue
        handler = table.get(m.type)
        reply = handler(m) if handler is not None else Message(Err.EBADREQUEST)
        if reply is None:
            m = receive(ctx)
            continue
        m = ctx.conn.reply_recv(m.source, reply)
        while filtered(ctx, m):
            m = ctx.conn.receive()


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
        (d / f"{os.getpid()}.json").write_text(json.dumps(rec))
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
