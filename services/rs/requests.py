"""RS's request handlers, one ``do_<request>`` each, and who may send them.  Runs inside RS.

The RS protocol (type RsReq.*, fields; the reply's type is an Err code):

    INIT_DONE  {}                    a component's SEF, after init    -> OK at once
    STATUS     {}                    anyone                            -> OK {services: [...]}
    UP         {label, service?}     operator   start a DOWN/FAILED service; late reply
                                                OK {endpoint, pid, incarnation} once it
                                                is up (EBUSY if running, ESRCH if unknown);
                                                with ``service`` (its system.conf entry,
                                                services/rs/define.py) any program
    DOWN       {label}               operator   stop it, no restart; reply once it exited
    RESTART    {label}               operator   start a terminated service now (skipping a
                                                backoff wait; a script's way to restart);
                                                EBUSY while it runs (MINIX); late reply
    REFRESH    {label}               operator   kill it and start a fresh copy; late reply
    CRASH      {label, fault, spec?} operator   fault injection: kill, segv, exit,
                                                exception, panic, hang -> OK once sent;
                                                code, interface, resource with a spec
                                                (minikern/swifi.py checks it: EINVAL)
    SHUTDOWN   {reason?}             operator   shut the whole system down

"Operator" means a caller the kernel lists with ``operator`` set
(minikern/identity.py): a tool admitted with the run directory's operator
key (a person's shell or a recovery script), never a component.  Others get
EPERM.  A message whose type is an Err code (a reply, e.g. DS answering a
publication) is never answered, so two servers can never bounce errors at
each other; a refusal from DS is logged.  A late reply goes out through
RS's loop (``Loop.reply``): a request that carried ``rid`` gets it back as
``re`` (docs/PROTOCOL.md, section 15).

A handler only checks the request (who asks, the label, the arguments) and
calls the supervisor (services/rs/operations.py, on services/rs/lifecycle.py),
which owns every service's state.
"""
from __future__ import annotations

from collections.abc import Callable

from minikern import swifi
from minikern.const import DS, FAULTS, SWIFI_FAULTS, Err, RsReq
from minikern.proto import Message
from services.rs import define
from services.rs.operations import Supervisor
from services.rs.service import Svc

__all__ = ["table", "default"]

Handler = Callable[[Message], "Message | None"]
OPERATOR_ONLY = {RsReq.UP, RsReq.DOWN, RsReq.RESTART, RsReq.REFRESH, RsReq.CRASH,
                 RsReq.SHUTDOWN}


def _service(rs: Supervisor, m: Message) -> Svc | Message:
    label = m.get("label")
    svc = rs.service(label) if type(label) is str else None
    if svc is None:
        return Message(Err.ESRCH, {"error": f"no service {label!r}"})
    return svc


def do_init_done(rs: Supervisor, m: Message) -> Message | None:
    rs.init_done(m.source)
    return Message(Err.OK)


def do_ping(rs: Supervisor, m: Message) -> Message | None:
    return rs.pong(m.source)


def do_status(rs: Supervisor, m: Message) -> Message | None:
    return Message(Err.OK, {"services": rs.status()})


def do_up(rs: Supervisor, m: Message) -> Message | None:
    if m.get("service") is not None:  # bin/service up PROGRAM: a definition comes with it
        entry = define.entry(m.get("label"), m.get("service"))
        if isinstance(entry, str):
            return Message(Err.EINVAL, {"error": entry})
        svc: Svc | Message = rs.define(entry)
    else:
        svc = _service(rs, m)
    return svc if isinstance(svc, Message) else rs.up(svc, m)


def do_down(rs: Supervisor, m: Message) -> Message | None:
    svc = _service(rs, m)
    return svc if isinstance(svc, Message) else rs.down(svc, m)


def do_restart(rs: Supervisor, m: Message) -> Message | None:
    svc = _service(rs, m)
    return svc if isinstance(svc, Message) else rs.restart(svc, m)


def do_refresh(rs: Supervisor, m: Message) -> Message | None:
    svc = _service(rs, m)
    return svc if isinstance(svc, Message) else rs.refresh(svc, m)


def do_crash(rs: Supervisor, m: Message) -> Message | None:
    svc, fault, spec = _service(rs, m), m.get("fault"), m.get("spec")
    if isinstance(svc, Message):
        return svc
    if type(fault) is str and fault in SWIFI_FAULTS:
        error = swifi.check_spec(fault, spec)
        if error is not None:
            return Message(Err.EINVAL, {"error": error})
        return rs.crash(svc, fault, spec)
    if type(fault) is not str or fault not in FAULTS:
        return Message(Err.EINVAL, {"error": "fault must be one of "
                                    + ", ".join((*FAULTS, *SWIFI_FAULTS))})
    return rs.crash(svc, fault)


def do_shutdown(rs: Supervisor, m: Message) -> Message | None:
    reason = m.get("reason", "operator")
    return rs.shutdown(reason if type(reason) is str else "operator")


_HANDLERS: dict[RsReq, Callable[[Supervisor, Message], Message | None]] = {
    RsReq.INIT_DONE: do_init_done, RsReq.PING: do_ping, RsReq.STATUS: do_status, RsReq.UP: do_up,
    RsReq.DOWN: do_down, RsReq.RESTART: do_restart, RsReq.REFRESH: do_refresh,
    RsReq.CRASH: do_crash, RsReq.SHUTDOWN: do_shutdown,
}


def table(rs: Supervisor) -> dict[int, Handler]:
    """The dispatch table sef.serve uses, each entry checking who may ask."""
    def bind(req: RsReq, fn: Callable[[Supervisor, Message], Message | None]) -> Handler:
        def handle(m: Message) -> Message | None:
            if req in OPERATOR_ONLY and not rs.is_operator(m.source):
                print(f"rs: refused {req.name} from endpoint {m.source} (not an operator)",
                      flush=True)
                return Message(Err.EPERM, {"error": "operator tools only"})
            return fn(rs, m)
        return handle
    return {int(req): bind(req, fn) for req, fn in _HANDLERS.items()}


def default(rs: Supervisor) -> Handler:
    def handle(m: Message) -> Message | None:
        if m.type > 0:
            return Message(Err.EBADREQUEST)
        if m.source == DS and m.type != Err.OK:  # DS refused a publication: count, log
            error = m.get("error")
            rs.ds.refused(m.type, error if type(error) is str else "")
        return None  # a reply (DS answering a publication): never answer a reply
    return handle
