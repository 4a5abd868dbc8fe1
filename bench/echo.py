"""echo: the benchmark's server; answers every request with its own fields (a system process)."""
from __future__ import annotations

from minikern import sef
from minikern.proto import Message
from minikern.const import Err, Kind


def main() -> None:
    ctx = sef.startup()
    conn = ctx.conn
    m = sef.receive(ctx)
    while True:  # the tightest server loop the library allows: REPLYRECV per request
        if m.kind != Kind.MESSAGE:
            m = sef.receive(ctx)
            continue
        m = conn.reply_recv(m.source, Message(Err.OK, m.fields))
