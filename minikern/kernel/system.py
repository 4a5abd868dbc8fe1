"""Kernel calls: requests sent with SENDREC to SYSTEM (MINIX kernel/system/do_*.c).

Each call is a ``do_<name>`` function in one dispatch table.  A call is
checked against the caller's kernel-call mask before its handler runs, and
every handler validates its own arguments.  A handler returns (status,
result) to answer at once, or None when the answer comes later (port I/O
put on the bus to the board, answered when the board's reply comes back).
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from minikern import params
from minikern.proto import bus, codec
from minikern.const import HW, SYSTEM, Err, IrqOp, KCall, Kind, Wait, err_name
from minikern.kernel import grant
from minikern.kernel.proc import Proc

if TYPE_CHECKING:
    from minikern.kernel.main import Kernel

Result = tuple[int, dict[str, Any]] | None
Args = dict[str, Any]

_ALLOWED_SIGNALS = {int(s) for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGINT,
                                      signal.SIGSTOP, signal.SIGCONT, signal.SIGABRT, signal.SIGUSR1)}


def int_arg(a: Args, key: str, lo: int = -(1 << 31), hi: int = (1 << 32)) -> int | None:
    v = a.get(key)
    return v if type(v) is int and lo <= v < hi else None


def do_privctl(k: Kernel, caller: Proc, a: Args) -> Result:
    return k.start(a, manager=caller.endpoint)


def do_kill(k: Kernel, caller: Proc, a: Args) -> Result:
    endpoint, signo = int_arg(a, "endpoint"), int_arg(a, "signal")
    if endpoint is None or signo not in _ALLOWED_SIGNALS:  # never a default: 0 is RS
        return Err.EINVAL, {}
    target = k.table.lookup(endpoint)
    if target is None:
        return Err.ESRCH, {}
    try:
        os.kill(target.pid, signo)
    except ProcessLookupError:
        return Err.ESRCH, {}
    return Err.OK, {}


def do_getinfo(k: Kernel, caller: Proc, a: Args) -> Result:
    now = time.monotonic()
    procs = [{"slot": p.slot, "endpoint": p.endpoint, "label": p.label, "pid": p.pid,
              "wait": p.wait.value, "peer": p.peer, "incarnation": p.incarnation,
              "uptime": round(now - p.started, 3), "manager": p.manager, "ready": p.ready,
              "operator": not p.child, "received": p.received,
              "priv": p.priv.summary()} for p in k.table.live()]
    return Err.OK, {"procs": procs, "counters": dict(k.counters), "kernel_pid": os.getpid(),
                    "ticks": int((now - k.started) * params.CLOCK_HZ), "alarm_heap": len(k.alarms)}


def do_setalarm(k: Kernel, caller: Proc, a: Args) -> Result:
    ms = int_arg(a, "ms", 0, 1 << 31)
    if ms is None:
        return Err.EINVAL, {}
    old = caller.alarm
    left = max(0, int((old - time.monotonic()) * 1000)) if old is not None else 0
    k.set_alarm(caller, time.monotonic() + ms / 1000 if ms else None)
    return Err.OK, {"left_ms": left}


def do_irqctl(k: Kernel, caller: Proc, a: Args) -> Result:
    op, irq = int_arg(a, "op"), int_arg(a, "irq", 0, 16)
    if irq is None or op not in IrqOp._value2member_map_:
        return Err.EINVAL, {}
    if irq not in caller.priv.irq:
        return k.refuse(caller, KCall.IRQCTL, irq), {}
    holders = k.irq_holders.setdefault(irq, set())
    if op == IrqOp.SETPOLICY:
        holders.add(caller.endpoint)
    elif op == IrqOp.RMPOLICY:
        holders.discard(caller.endpoint)
    k.bus.send(bus.IrqCtl(irq, op in (IrqOp.SETPOLICY, IrqOp.ENABLE)))
    return Err.OK, {}


def _forward_io(k: Kernel, caller: Proc, kind: bus.IoKind, ops: list[Any], extra: Args) -> Result:
    """Check every access, then every port against the caller's windows, then hand the batch
    to the board."""
    if not all(bus.decode_op(op) for op in ops):
        return Err.EINVAL, {}
    for port, size, _ in ops:
        if not caller.priv.holds_io(port, size):
            return k.refuse(caller, KCall.DEVIO, port), {}
    return _to_board(k, caller, bus.Io(caller.endpoint, kind, ops, extra))


def _to_board(k: Kernel, caller: Proc, msg: bus.FromKernel) -> Result:
    board = k.table.lookup(HW)
    if board is None or not k.bus.send(msg):
        return Err.ENODEV, {}
    caller.wait, caller.peer = Wait.KCALL, board.endpoint
    return None


def do_devio(k: Kernel, caller: Proc, a: Args) -> Result:
    return _forward_io(k, caller, bus.IoKind.DEVIO,
                       [[a.get("port"), a.get("size", 1), a.get("value")]], {})


def do_vdevio(k: Kernel, caller: Proc, a: Args) -> Result:
    ops = a.get("ops")
    if type(ops) is not list or not 0 < len(ops) <= bus.MAX_OPS:
        return Err.EINVAL, {}
    return _forward_io(k, caller, bus.IoKind.VDEVIO, ops, {})


def do_sdevio(k: Kernel, caller: Proc, a: Args) -> Result:
    count, data = int_arg(a, "count", 1, 65537), a.get("data")
    if count is None or (data is not None and type(data) is not bytes):
        return Err.EINVAL, {}
    return _forward_io(k, caller, bus.IoKind.SDEVIO, [[a.get("port"), a.get("size", 2), None]],
                       {"count": count, "data": data})


def do_iomap(k: Kernel, caller: Proc, a: Args) -> Result:
    if not caller.priv.io:
        return k.refuse(caller, KCall.IOMAP, 0), {}
    return _to_board(k, caller, bus.IoMap(caller.endpoint, caller.label, list(caller.priv.io),
                                          list(caller.priv.mem)))


def do_setgrant(k: Kernel, caller: Proc, a: Args) -> Result:
    grantee, off = int_arg(a, "grantee"), int_arg(a, "offset", 0)
    length, access = int_arg(a, "length", 1), int_arg(a, "access", 1, 4)
    if grantee is None or off is None or length is None or access is None:
        return Err.EINVAL, {}
    status, gid = grant.setgrant(caller, params.MAX_GRANTS, grantee, off, length, access)
    return status, {"grant": gid}


def do_revoke(k: Kernel, caller: Proc, a: Args) -> Result:
    return grant.revoke(caller, int_arg(a, "grant") or 0), {}


def _safecopy(k: Kernel, caller: Proc, a: Args, to_granter: bool) -> Result:
    granter = k.table.lookup(int_arg(a, "granter") or 0)
    gid, goff = int_arg(a, "grant"), int_arg(a, "goffset", 0)
    off, length = int_arg(a, "offset", 0), int_arg(a, "length", 0)
    if granter is None:
        return Err.EDEADSRCDST, {}
    if gid is None or goff is None or off is None or length is None:
        return Err.EINVAL, {}
    status = grant.safecopy(granter, gid, caller, goff, off, length, to_granter)
    if status == Err.EPERM:
        return k.refuse(caller, KCall.SAFECOPYTO if to_granter else KCall.SAFECOPYFROM,
                        granter.endpoint, status), {}
    return status, {}


def do_safecopyfrom(k: Kernel, caller: Proc, a: Args) -> Result:
    return _safecopy(k, caller, a, to_granter=False)


def do_safecopyto(k: Kernel, caller: Proc, a: Args) -> Result:
    return _safecopy(k, caller, a, to_granter=True)


def do_shutdown(k: Kernel, caller: Proc, a: Args) -> Result:
    k.log(f"shutdown requested by {caller.label} ({a.get('reason', 'no reason')})")
    k.request_shutdown()
    return Err.OK, {}


CALLS: dict[KCall, Callable[[Kernel, Proc, Args], Result]] = {
    KCall.PRIVCTL: do_privctl, KCall.KILL: do_kill, KCall.GETINFO: do_getinfo,
    KCall.SETALARM: do_setalarm, KCall.IRQCTL: do_irqctl, KCall.DEVIO: do_devio,
    KCall.VDEVIO: do_vdevio, KCall.SDEVIO: do_sdevio, KCall.IOMAP: do_iomap,
    KCall.SETGRANT: do_setgrant, KCall.REVOKE: do_revoke,
    KCall.SAFECOPYFROM: do_safecopyfrom, KCall.SAFECOPYTO: do_safecopyto,
    KCall.SHUTDOWN: do_shutdown,
}


def kernel_call(k: Kernel, caller: Proc, body: bytes) -> None:
    decoded = codec.decode_body(body)
    if decoded is None:
        k.count("malformed_kcall")
        return k.answer(caller, Err.EBADREQUEST)
    number, args = decoded
    handler = CALLS.get(number)  # type: ignore[call-overload]
    if handler is None:
        return k.answer(caller, Err.EBADCALL)
    if number not in caller.priv.kcalls:
        return k.answer(caller, k.refuse(caller, KCall(number), SYSTEM))
    result = handler(k, caller, args)
    if result is not None:
        status, fields = result
        if status < 0:
            k.count("kcall_" + err_name(status))
        k.answer(caller, Err.OK, SYSTEM, Kind.KERNEL, 0, codec.encode_body(status, fields))
