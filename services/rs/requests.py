"""RS's request handlers, one ``do_<request>`` each, and who may send them.  Runs inside RS.

The RS protocol (type RsReq.*, fields; the reply's type is an Err code):

    INIT_DONE  {}                    a component's SEF, after init    -> OK at once
    STATUS     {}                    anyone                            -> OK {services: [...]}
    UP         {label}               operator   start a DOWN/FAILED service; late reply
                                                OK {endpoint, pid, incarnation} once it
                                                is up (EBUSY if running, ESRCH if unknown)
    DOWN       {label}               operator   stop it, no restart; reply once it exited
    RESTART    {label}               operator   start a terminated service now (skipping a
                                                backoff wait; a script's way to restart);
                                                EBUSY while it runs (MINIX); late reply
    REFRESH    {label}               operator   kill it and start a fresh copy; late reply
    CRASH      {label, fault}        operator   fault injection: kill, segv, exit,
                                                exception, panic, hang -> OK once sent
    SHUTDOWN   {reason?}             operator   shut the whole system down

"Operator" means a caller whose GETINFO entry has ``operator`` set: a tool
admitted with the run directory's operator key (a person's shell or a
recovery script), never a component.  Others get EPERM.  A message whose
type is an Err code (a reply, e.g. DS answering a publication) is dropped
unanswered, so two servers can never bounce errors at each other.
"""
from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from minikern.proto import Message
from minikern.const import Err, KCall, RsReq
from services.rs.service import Event, State

if TYPE_CHECKING:
    from services.rs.main import ReincarnationServer
    from services.rs.service import Svc

Handler = Callable[[Message], "Message | None"]
FAULTS = ("kill", "segv", "exit", "exception", "panic", "hang")
OPERATOR_ONLY = {RsReq.UP, RsReq.DOWN, RsReq.RESTART, RsReq.REFRESH, RsReq.CRASH,
                 RsReq.SHUTDOWN}


def is_operator(rs: ReincarnationServer, endpoint: int) -> bool:
    procs = rs.conn.kcall(KCall.GETINFO)["procs"]
    return any(p["endpoint"] == endpoint and p["operator"] for p in procs)


def _service(rs: ReincarnationServer, m: Message) -> Svc | Message:
    label = m.get("label")
    svc = rs.services.get(label) if type(label) is str else None
    if svc is None:
        if type(label) is str and label in rs.conf.services and label != "rs":
            entry = rs.conf.services[label]
            if entry.get("program") and entry.get("user") != "yes":
                return rs.make_service(label)  # configured but never started: DOWN
        return Message(Err.ESRCH, {"error": f"no service {label!r}"})
    return svc


def do_init_done(rs: ReincarnationServer, m: Message) -> Message | None:
    svc = rs.lookup(m)
    if svc is not None:
        rs.on_init_done(svc)
    return Message(Err.OK)


def do_ping(rs: ReincarnationServer, m: Message) -> Message | None:
    """A service's heartbeat answer; the reply hands it any fault the operator injected."""
    svc = rs.lookup(m)
    inst = svc.instance if svc is not None else None
    if inst is None:
        return Message(Err.ESRCH)
    inst.last_pong = time.monotonic()
    fault, inst.pending_fault = inst.pending_fault, None
    return Message(Err.OK, {"fault": fault})


def do_status(rs: ReincarnationServer, m: Message) -> Message | None:
    now = time.monotonic()
    out: list[dict[str, Any]] = []
    for svc in rs.services.values():
        inst = svc.instance
        out.append({"label": svc.label, "state": svc.state.value, "core": svc.core,
                    "endpoint": inst.endpoint if inst else None,
                    "pid": inst.pid if inst else None,
                    "uptime": round(now - inst.started, 3) if inst else None,
                    "started": inst.started_wall if inst else None,
                    "incarnation": svc.incarnation, "failures": svc.tracker.failures,
                    "last_reason": svc.last_reason, "period": svc.policy.period,
                    "script": svc.policy.script, "publish": svc.policy.publish,
                    "restart_in": (round(max(0.0, svc.restart_at - now), 3)
                                   if svc.restart_at is not None else None)})
    return Message(Err.OK, {"services": out})


def do_up(rs: ReincarnationServer, m: Message) -> Message | None:
    svc = _service(rs, m)
    if isinstance(svc, Message):
        return svc
    if svc.instance is not None or svc.state in (State.UP, State.STARTING):
        return Message(Err.EBUSY, {"error": f"{svc.label} is {svc.state.value}"})
    svc.to(Event.OP_UP)
    svc.tracker.reset()
    svc.restart_cause = "up"
    svc.waiters.append(m.source)
    rs.spawn(svc)
    return None


def do_down(rs: ReincarnationServer, m: Message) -> Message | None:
    svc = _service(rs, m)
    if isinstance(svc, Message):
        return svc
    if svc.core:
        return Message(Err.EPERM, {"error": f"{svc.label} is a core server"})
    svc.restart_at = None
    script = rs.scripts.of(rs.pid_of(m.source))  # rs.single takes its service down itself
    rs.scripts.kill(svc.label, spare=script)  # no other script may bring it back
    by = "script" if script is not None else "operator"
    was = svc.state
    svc.to(Event.OP_DOWN)
    if svc.instance is None:
        if was is not State.DOWN:
            rs.journal.write("down", svc.label, pid=None, by=by)
            rs.publish(svc, "down")
        return Message(Err.OK, {})
    if svc.instance.kill_reason is None:
        rs.kill(svc, "down", signal.SIGTERM)
    svc.waiters.append(m.source)
    return None


def do_restart(rs: ReincarnationServer, m: Message) -> Message | None:
    svc = _service(rs, m)
    if isinstance(svc, Message):
        return svc
    if svc.instance is not None:
        return Message(Err.EBUSY, {"error": f"{svc.label} is running; use refresh"})
    if svc.state is State.FAILED:
        svc.tracker.reset()  # a person revived it, as with up: its failures start again
    if svc.state is not State.RESTARTING:
        svc.to(Event.OP_UP)
    svc.restart_cause = "restart" if svc.last_exit else "up"
    svc.waiters.append(m.source)
    rs.spawn(svc)
    return None


def do_refresh(rs: ReincarnationServer, m: Message) -> Message | None:
    svc = _service(rs, m)
    if isinstance(svc, Message):
        return svc
    if svc.instance is None:
        return do_restart(rs, m)
    if svc.core:
        return Message(Err.EPERM, {"error": f"{svc.label} is a core server"})
    if svc.state in (State.STARTING, State.UP):
        svc.to(Event.FAILED)  # not counted by the policy: an operator asked for it
        svc.failed_at = svc.restart_at = time.monotonic()
        svc.restart_cause = "refresh"
        rs.kill(svc, "refresh", signal.SIGTERM)
    svc.waiters.append(m.source)
    return None


def do_crash(rs: ReincarnationServer, m: Message) -> Message | None:
    svc = _service(rs, m)
    if isinstance(svc, Message):
        return svc
    fault, inst = m.get("fault"), svc.instance
    if fault not in FAULTS:
        return Message(Err.EINVAL, {"error": f"fault must be one of {', '.join(FAULTS)}"})
    if inst is None:
        return Message(Err.ESRCH, {"error": f"{svc.label} is not running"})
    if fault in ("kill", "segv"):
        signo = signal.SIGKILL if fault == "kill" else signal.SIGSEGV
        status, _ = rs.conn.kcall_status(KCall.KILL, endpoint=inst.endpoint, signal=int(signo))
        return Message(status, {"pid": inst.pid})
    # Delivered like a heartbeat: a NOTIFY is never lost (it waits as a pending bit even
    # while the component is busy), and the component's PING fetches the fault.
    inst.pending_fault = fault
    rs.conn.notify(inst.endpoint)
    return Message(Err.OK, {"pid": inst.pid})


def do_shutdown(rs: ReincarnationServer, m: Message) -> Message | None:
    reason = str(m.get("reason", "operator"))
    rs.journal.write("shutdown", "rs", by="operator", detail=reason)
    rs.shutting_down = True
    rs.conn.kcall_status(KCall.SHUTDOWN, reason=reason)
    return Message(Err.OK, {})


_HANDLERS: dict[RsReq, Callable[[ReincarnationServer, Message], Message | None]] = {
    RsReq.INIT_DONE: do_init_done, RsReq.PING: do_ping, RsReq.STATUS: do_status, RsReq.UP: do_up,
    RsReq.DOWN: do_down, RsReq.RESTART: do_restart, RsReq.REFRESH: do_refresh,
    RsReq.CRASH: do_crash, RsReq.SHUTDOWN: do_shutdown,
}


def table(rs: ReincarnationServer) -> dict[int, Handler]:
    """The dispatch table sef.serve uses, each entry checking who may ask."""
    def bind(req: RsReq, fn: Callable[[ReincarnationServer, Message], Message | None]
             ) -> Handler:
        def handle(m: Message) -> Message | None:
            if req in OPERATOR_ONLY and not is_operator(rs, m.source):
                print(f"rs: refused {req.name} from endpoint {m.source} (not an operator)",
                      flush=True)
                return Message(Err.EPERM, {"error": "operator tools only"})
            reply = fn(rs, m)
            rs.schedule()
            return reply
        return handle
    return {int(req): bind(req, fn) for req, fn in _HANDLERS.items()}


def default(rs: ReincarnationServer) -> Handler:
    def handle(m: Message) -> Message | None:
        if m.type <= 0:
            return None  # a reply (DS answering a publication): never answer a reply
        return Message(Err.EBADREQUEST)
    return handle
