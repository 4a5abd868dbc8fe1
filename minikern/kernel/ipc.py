"""Rendezvous IPC: SEND, RECEIVE, SENDREC, NOTIFY, SENDNB, REPLYRECV, CANCEL (MINIX proc.c).

A process's trap is answered with exactly one reply frame, sent when the trap
completes.  A blocked process therefore simply has not been answered yet;
unblocking it means sending that frame.  Message bodies are never decoded
here: the kernel moves them and stamps the source, which is why a sender
cannot forge one.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from minikern import params
from minikern.proto import codec
from minikern.const import ANY, CLOCK, HARDWARE, NR_PROCS, SYSTEM, Call, Err, Kind, Wait
from minikern.kernel import system
from minikern.kernel.proc import Proc

if TYPE_CHECKING:
    from minikern.kernel.main import Kernel

_SENDING = (Wait.SEND, Wait.SENDREC_SEND)
_KERNEL_ENDPOINTS = (SYSTEM, CLOCK, HARDWARE)


def now_ms() -> int:
    return int(time.monotonic() * 1000)


def trap(k: Kernel, caller: Proc, call: int, a: int, b: int, body: bytes | None) -> None:
    """Entry point for every IPC trap of an admitted process (``call`` validated by the codec)."""
    if call not in caller.priv.traps:
        return k.answer(caller, k.refuse(caller, Call(call), a, Err.ETRAPDENIED))
    if call == Call.RECEIVE:
        return receive(k, caller, a)
    status = check_send(k, caller, call, a)
    if call == Call.REPLYRECV:  # the reply half never blocks, and its failure is only reported
        dst = k.table.lookup(a) if status is None else None
        if dst is not None:
            status = send(k, caller, dst, body, nonblock=True, sendrec=False)
        return receive(k, caller, b, send_status=status or Err.OK)
    if status is not None:
        return k.answer(caller, status)
    if a == SYSTEM:
        return system.kernel_call(k, caller, body or b"")
    dst = k.table.lookup(a)
    if dst is None:
        return k.answer(caller, Err.EDEADSRCDST)
    if call == Call.NOTIFY:
        notify(k, caller.endpoint, dst)
        return k.answer(caller, Err.OK)
    status = send(k, caller, dst, body, nonblock=call == Call.SENDNB,
                  sendrec=call == Call.SENDREC)
    if status is not None:
        k.answer(caller, status)


def check_send(k: Kernel, caller: Proc, call: int, dst_e: int) -> Err | None:
    """MINIX's checks before any send: valid endpoint, live target, send mask."""
    if dst_e == ANY:
        return Err.EINVAL
    if dst_e == caller.endpoint and call in (Call.SEND, Call.SENDREC):
        return Err.ELOCKED  # a blocking send to oneself can never complete
    if dst_e in _KERNEL_ENDPOINTS:
        if call != Call.SENDREC or dst_e != SYSTEM or not caller.priv.ipc_kernel:
            return k.refuse(caller, Call(call), dst_e)
        return None
    dst = k.table.lookup(dst_e)
    if dst is None:
        return Err.EDEADSRCDST
    if not caller.priv.may_send_to(dst.label, dst.priv.sys_proc):
        return k.refuse(caller, Call(call), dst_e)
    return None


def send(k: Kernel, caller: Proc, dst: Proc, body: bytes | None, *, nonblock: bool,
         sendrec: bool) -> Err | None:
    """Deliver or block.  Returns the status to answer now, or None if the caller waits."""
    if dst.wait in (Wait.RECV, Wait.SENDREC_RECV) and dst.peer in (ANY, caller.endpoint):
        deliver(k, dst, caller.endpoint, Kind.MESSAGE, body)
        if sendrec:
            caller.wait, caller.peer = Wait.SENDREC_RECV, dst.endpoint
            return None
        return Err.OK
    if nonblock:
        return Err.ENOTREADY
    if deadlock(k, caller, dst.endpoint, sending=True):
        return Err.ELOCKED
    caller.wait = Wait.SENDREC_SEND if sendrec else Wait.SEND
    caller.peer, caller.msg = dst.endpoint, body
    dst.callers.append(caller)
    return None


def receive(k: Kernel, caller: Proc, src: int, send_status: int = 0) -> None:
    caller.send_status, caller.ready = send_status, True
    if src == caller.endpoint:
        return k.answer(caller, Err.ELOCKED, send_status=send_status)
    if src not in (ANY, *_KERNEL_ENDPOINTS) and k.table.lookup(src) is None:
        return k.answer(caller, Err.EDEADSRCDST, send_status=send_status)
    # 1. pending notifications (MINIX checks these first; never inside SENDREC)
    for nsrc in caller.notify_pending:
        if src in (ANY, nsrc):
            stamp = caller.notify_pending.pop(nsrc)
            aux = stamp
            if nsrc == HARDWARE:
                aux, caller.irq_pending = caller.irq_pending, 0
            return deliver(k, caller, nsrc, Kind.NOTIFY, None, aux)
    # 2. messages from the kernel itself
    if caller.kqueue and src in (ANY, SYSTEM):
        return deliver(k, caller, SYSTEM, Kind.KERNEL, caller.kqueue.popleft())
    # 3. blocked senders, oldest first
    for sender in caller.callers:
        if src in (ANY, sender.endpoint):
            caller.callers.remove(sender)
            body, sender.msg = sender.msg, None
            if sender.wait is Wait.SENDREC_SEND:
                sender.wait = Wait.SENDREC_RECV
            else:
                sender.wait = Wait.READY
                k.answer(sender, Err.OK)
            return deliver(k, caller, sender.endpoint, Kind.MESSAGE, body)
    if src != ANY and deadlock(k, caller, src, sending=False):
        return k.answer(caller, Err.ELOCKED, send_status=send_status)
    caller.wait, caller.peer = Wait.RECV, src


def cancel(k: Kernel, caller: Proc) -> None:
    """End the caller's own RECEIVE with EINTR; one that already completed ignores it."""
    if caller.wait is Wait.RECV:  # a SENDREC's reply half is never cut short
        caller.wait, caller.peer = Wait.READY, 0
        k.answer(caller, Err.EINTR, send_status=caller.send_status)
        caller.send_status = 0


def notify(k: Kernel, src: int, dst: Proc, irq_bits: int = 0) -> None:
    """Never blocks: deliver now if ``dst`` is receiving, else keep one pending bit per source."""
    dst.irq_pending |= irq_bits
    if dst.wait is Wait.RECV and dst.peer in (ANY, src):
        aux = now_ms()
        if src == HARDWARE:
            aux, dst.irq_pending = dst.irq_pending, 0
        return deliver(k, dst, src, Kind.NOTIFY, None, aux)
    if src not in dst.notify_pending:
        dst.notify_pending[src] = now_ms()


def kernel_message(k: Kernel, dst: Proc, mtype: int, fields: dict[str, object]) -> None:
    """Queue (or deliver) a message from SYSTEM; bounded, excess is dropped and counted."""
    body = codec.encode_body(mtype, fields)
    if dst.wait is Wait.RECV and dst.peer in (ANY, SYSTEM):
        return deliver(k, dst, SYSTEM, Kind.KERNEL, body)
    if len(dst.kqueue) >= params.MAX_KERNEL_QUEUE:
        k.count("kqueue_overflow")
        return
    dst.kqueue.append(body)


def deliver(k: Kernel, dst: Proc, src: int, kind: Kind, body: bytes | None, aux: int = 0) -> None:
    dst.wait, dst.peer = Wait.READY, 0
    dst.received += 1
    k.answer(dst, Err.OK, src, kind, aux, body, send_status=dst.send_status)
    dst.send_status = 0


def deadlock(k: Kernel, caller: Proc, peer: int, *, sending: bool) -> bool:
    """MINIX deadlock(): would blocking on ``peer`` close a cycle of blocked processes?

    The one allowed two-process cycle is a request/reply pair: one side
    sending, the other receiving.
    """
    group, e = 1, peer
    for _ in range(NR_PROCS):
        if e == ANY:
            return False
        xp = k.table.lookup(e)
        if xp is None:
            return False
        group += 1
        nxt = xp.blocked_on
        if nxt is None:
            return False
        if nxt == caller.endpoint:  # a cycle, unless it is a request/reply pair
            return not (group == 2 and (xp.wait in _SENDING) != sending)
        e = nxt
    return False


def clear_endpoint(k: Kernel, dead: Proc) -> None:
    """MINIX clear_ipc_refs: nobody may stay blocked on, or be reached by, a dead endpoint."""
    for p in k.table.live():
        if p is dead:
            continue
        p.notify_pending.pop(dead.endpoint, None)
        if dead in p.callers:
            p.callers.remove(dead)
        if p.wait is not Wait.READY and p.peer == dead.endpoint:
            if p.wait in _SENDING:
                dead.callers.remove(p)
                p.msg = None
            p.wait, p.peer = Wait.READY, 0
            k.answer(p, Err.EDEADSRCDST)
    dead.callers.clear()
