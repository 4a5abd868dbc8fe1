"""DS, the Data Store server: runs as its own process, label "ds", at the fixed slot DS.

The usual skeleton: ``sef.startup`` then ``sef.serve`` with one table of
``do_<request>`` handlers.  A handler turns a request into one call on the
pure ``Store`` (services/ds/store.py, which validates every field) and
answers with the same shape every time: the message type is the Err status
and the fields are the result.  The protocol, request by request, is in the
docstring of each handler and in minikern/ds.py, the client library.

Invariants:

* DS never blocks on a client.  Replies go out through sef.serve's REPLYRECV,
  whose send half is non-blocking; subscribers are told with NOTIFY, which
  never blocks either.  The one blocking call DS makes is GETINFO to the
  kernel, which answers at once.
* A caller is known by its label, learnt from the kernel's process table and
  cached per endpoint (minikern/identity.py).  A restarted component has a new
  endpoint and the same label, so a cache miss refreshes the table; an endpoint
  the kernel does not know is refused with ESRCH.
* Only the process at endpoint RS may publish label entries or PURGE.
* The store lives in this process's memory: a restarted DS starts empty and
  components publish again (MINIX's DS is likewise not restartable).
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from minikern import sef
from minikern.proto import Message
from minikern.const import RS, DsReq, Err
from minikern.identity import Identity
from services.ds.store import DsError, Store

Handler = Callable[[Message], "Message | None"]


class DataStore:
    def __init__(self) -> None:
        self.store = Store()

    def init(self, ctx: sef.Context) -> None:
        self.ctx = ctx
        self.labels = Identity(ctx.conn)
        if ctx.restarted:
            print("ds: restarted with an empty store", file=sys.stderr, flush=True)

    def table(self) -> dict[int, Handler]:
        return {DsReq.PUBLISH: self._guard(self.do_publish),
                DsReq.RETRIEVE: self._guard(self.do_retrieve),
                DsReq.DELETE: self._guard(self.do_delete),
                DsReq.SUBSCRIBE: self._guard(self.do_subscribe),
                DsReq.CHECK: self._guard(self.do_check),
                DsReq.PURGE: self._guard(self.do_purge),
                DsReq.LIST: self._guard(self.do_list)}

    def _guard(self, handler: Callable[[Message], Message]) -> Handler:
        """Turn a refusal into its reply, and count it."""
        def run(m: Message) -> Message:
            try:
                return handler(m)
            except DsError as e:
                self.store.count(f"refused_{e.code.name}")
                return Message(e.code, {"error": str(e)})
        return run

    def _caller(self, m: Message) -> str:
        label = self.labels.label_of(m.source)
        if label is None:
            raise DsError(Err.ESRCH, f"endpoint {m.source} has no label")
        return label

    def _operator(self, m: Message) -> bool:
        """True if the request asks to see private entries (``operator``: true) and may: the
        caller is the operator (admitted with the run directory's key); EPERM otherwise.
        Asked, not assumed, so an operator connection standing in for a component (a test)
        sees what the component would."""
        asked = m.get("operator", False)
        if type(asked) is not bool:
            raise DsError(Err.EINVAL, "operator must be true or false")
        who = self.labels.who(m.source) if asked else None
        if asked and (who is None or not who.operator):
            raise DsError(Err.EPERM, "operator tools only")
        return asked

    def _notify(self, labels: set[str]) -> None:
        """NOTIFY each subscriber at its current endpoint; a dead one is looked up again once."""
        for label in sorted(labels):
            ep = self.labels.endpoint_of(label)
            status = self.ctx.conn.notify(ep) if ep is not None else Err.EDEADSRCDST
            if status == Err.EDEADSRCDST:
                again = self.labels.endpoint_of(label, fresh=True)
                if again is not None and again != ep:
                    status = self.ctx.conn.notify(again)
            if status != Err.OK:  # not running now: it will CHECK when it comes back
                self.store.count("notify_failed")

    # -- requests: each docstring is the protocol ----------------------------------------

    def do_publish(self, m: Message) -> Message:
        """PUBLISH {key, type: u32|str|mem|label, value, flags: OVERWRITE|PRIVATE} -> OK {}.

        EEXIST without OVERWRITE, EPERM if another label owns the key or a non-RS
        caller publishes a label, E2BIG, ENOSPC, EINVAL."""
        owner = self._caller(m)
        notify = self.store.publish(owner, m.get("key"), m.get("type"), m.get("value"),
                                    m.get("flags", 0), from_rs=m.source == RS)
        self._notify(notify)
        return Message(Err.OK)

    def do_retrieve(self, m: Message) -> Message:
        """RETRIEVE {key, version: 0.., type?, operator?} -> OK {type, value, owner, version}.

        ESRCH if no such key (of that type) or version, EPERM if private to another
        (unless ``operator``, from the operator, asks to see every entry)."""
        version = m.get("version", 0)
        vtype, value, owner = self.store.retrieve(self._caller(m), m.get("key"), version,
                                                  m.get("type"), operator=self._operator(m))
        return Message(Err.OK, {"type": vtype, "value": value, "owner": owner,
                                "version": version})

    def do_delete(self, m: Message) -> Message:
        """DELETE {key} -> OK {}; ESRCH if absent, EPERM if another label owns it."""
        self._notify(self.store.delete(self._caller(m), m.get("key")))
        return Message(Err.OK)

    def do_subscribe(self, m: Message) -> Message:
        """SUBSCRIBE {regex, flags: OVERWRITE|INITIAL} -> OK {}; NOTIFY follows if queued.

        EEXIST if the label has a subscription and no OVERWRITE, ENOSPC, EINVAL
        (bad or nested-repetition regex), E2BIG."""
        self._notify(self.store.subscribe(self._caller(m), m.get("regex"), m.get("flags", 0)))
        return Message(Err.OK)

    def do_check(self, m: Message) -> Message:
        """CHECK {} -> OK {key, type, owner, deleted, dropped}; ESRCH when nothing is new."""
        got = self.store.check(self._caller(m))
        if got is None:
            raise DsError(Err.ESRCH, "nothing new")
        change, dropped = got
        return Message(Err.OK, {**change._asdict(), "dropped": dropped})

    def do_list(self, m: Message) -> Message:
        """LIST {regex?, after?, operator?} -> OK {entries: [{key, type, owner, private,
        versions, serial, size, value?}], more}: the entries the caller may see (private
        ones only its own; all with ``operator`` from the operator), by key, from the
        first after ``after``, at most 64; EINVAL, EPERM."""
        entries, more = self.store.list(self._caller(m), m.get("regex"), m.get("after", ""),
                                        operator=self._operator(m))
        return Message(Err.OK, {"entries": entries, "more": more})

    def do_purge(self, m: Message) -> Message:
        """PURGE {label} -> OK {entries, subscriptions}: RS forgets a label; EPERM for others."""
        if m.source != RS:
            raise DsError(Err.EPERM, "only RS purges")
        entries, subs, notify = self.store.purge(m.get("label"))
        self._notify(notify)
        return Message(Err.OK, {"entries": entries, "subscriptions": subs})


def main() -> None:
    ds = DataStore()
    ctx = sef.startup(ds.init)
    sef.serve(ctx, ds.table())
