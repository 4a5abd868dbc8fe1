"""RS's core: the lifecycle plus what components and operators may ask of it.  Runs inside RS.

services/rs/requests.py checks a request (who asks, the label, the
arguments) and calls one of these; they answer what the state machine
allows (services/rs/lifecycle.py's table: an event it has no entry for is
EBUSY) and fire its events.  A reply that must wait for the service (up,
down, restart, refresh) is owed to the caller: the request is kept with the
service, the transition's effect answers it (``Lifecycle.answer``, through
the loop) and the method returns None.

Who the caller is comes from the kernel's process table through
minikern/identity.py (cached per endpoint, never answering for a dead
endpoint's successor).
"""
from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from minikern import programs
from minikern.const import RS, Err, KCall
from minikern.proto import Message, scriptchan
from minikern.sysconf import Service
from services.rs.lifecycle import Lifecycle
from services.rs.scripts import Running
from services.rs.service import BadTransition, Cause, Event, State, Svc, Waiter


def _busy(svc: Svc, why: str = "") -> Message:
    return Message(Err.EBUSY, {"error": why or f"{svc.label} is {svc.state.value}"})


class Supervisor(Lifecycle):
    """RS's core: the lifecycle and what may be asked of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts.on_request = self.script_request

    def script_request(self, script: Running, req: scriptchan.Request,
                       answer: Callable[[Message], None]) -> None:
        """A recovery script's request on its channel (services/rs/scripts.py), as bin/service
        would ask it; ``answer`` gets RS's reply, late as an operator's."""
        svc = self.service(req.label)
        if svc is None:
            return answer(Message(Err.ESRCH, {"error": f"no service {req.label!r}"}))
        if req.action == "down":
            reply = self.down(svc, answer, script)
        else:
            reply = SCRIPT_ACTIONS[req.action](self, svc, answer)
        if reply is not None:
            answer(reply)

    def service(self, label: str) -> Svc | None:
        """The service ``label`` (configured but never started: a DOWN entry), or None."""
        svc = self.services.get(label)
        if svc is None and label in self.conf.services and label != "rs":
            entry = self.conf.services[label]
            if entry.get("program") and entry.get("user") != "yes":
                svc = self.make_service(label)
        return svc

    def adopt(self) -> None:
        """Take over the boot-image servers the kernel started with RS as manager."""
        now = self.clock()
        adoptable = [x for x in self.conf.boot if x != "rs"]  # as minikern.boot
        live = self.identity.live()
        if live is None:
            self.fatal("the kernel did not list its processes (GETINFO)")
            return
        for p in live.values():
            if p.manager != RS or p.label not in adoptable or p.endpoint == RS:
                continue
            svc = self.make_service(p.label, core=True)
            self.fire(svc, Event.SPAWNED, endpoint=p.endpoint, pid=p.pid, started=now - p.uptime)
        for label in adoptable:  # not running: it died before RS could adopt it
            if label not in self.services:
                self.fail(self.make_service(label, core=True),
                          {"reason": "exit", "detail": "gone before RS adopted it"})

    def autostart(self, labels: list[str]) -> None:
        """Start the services named in RS's own args (system.conf's ``service rs``) once the
        core servers are up (Lifecycle.start_waiting)."""
        self.waiting = list(labels)
        self.start_waiting()

    def is_operator(self, endpoint: int) -> bool:
        """True if ``endpoint`` is a tool admitted with the operator key (never a component)."""
        who = self.identity.who(endpoint)
        return who is not None and who.operator

    def pid_of(self, endpoint: int) -> int | None:
        """The host pid behind ``endpoint`` (from the kernel's table), if it is alive."""
        who = self.identity.who(endpoint)
        return who.pid if who is not None else None

    def pong(self, endpoint: int) -> Message:
        """A heartbeat's answer; the reply hands over any fault the operator injected."""
        svc = self.lookup(endpoint)
        inst = svc.instance if svc is not None else None
        if inst is None:
            return Message(Err.ESRCH)
        self.alive(inst, self.clock())
        if inst.ping_sent is not None:
            inst.latency, inst.ping_sent = inst.last_pong - inst.ping_sent, None
        fault, inst.pending_fault = inst.pending_fault, None
        if fault is not None and inst.pending_spec is not None:
            spec, inst.pending_spec = inst.pending_spec, None
            return Message(Err.OK, {"fault": fault, "spec": spec})
        return Message(Err.OK, {"fault": fault})

    def status(self) -> list[dict[str, Any]]:
        """One map per service: its state and instance, its policy, its failures
        (docs/PROTOCOL.md, section 16, names every field)."""
        now, out = self.clock(), []
        for svc in self.services.values():
            inst, p = svc.instance, svc.policy
            program, args = svc.module, svc.args
            if program == programs.EXTERNAL and args:  # a file: show it, not its runner
                program, args = args[0], args[1:]
            out.append({"label": svc.label, "state": svc.state.value, "core": svc.core,
                        "since": svc.since or None, "program": program, "args": args,
                        "endpoint": inst.endpoint if inst else None,
                        "pid": inst.pid if inst else None,
                        "uptime": round(now - inst.started, 3) if inst else None,
                        "started": inst.started_wall if inst else None,
                        "incarnation": svc.incarnation, "failures": svc.tracker.failures,
                        "window_failures": svc.tracker.in_window(now),
                        "last_reason": svc.last_reason, "last_detail": svc.last_detail or None,
                        "period": p.period, "backoff": p.backoff, "backoff_cap": p.cap,
                        "stable": p.stable, "restarts": p.restarts, "window": p.window,
                        "script": p.script, "depends": list(p.depends), "publish": p.publish,
                        "heartbeat_ms": (round(inst.latency * 1000, 3)
                                         if inst and inst.latency is not None else None),
                        "restart_in": (round(max(0.0, svc.restart_at - now), 3)
                                       if svc.restart_at is not None else None)})
        return out

    def up(self, svc: Svc, request: Waiter) -> Message | None:
        """Start a stopped or failed service; its failure history starts again."""
        if svc.instance is not None:
            return _busy(svc)
        try:
            self.fire(svc, Event.OP_START, reset=True, cause=Cause.FRESH, waiter=request,
                      fresh=svc.state is State.DOWN)
        except BadTransition:
            return _busy(svc)
        return None

    def define(self, entry: Service) -> Svc | Message:
        """Take ``entry`` (an operator's ``service up PROGRAM``) as the definition of its label:
        a new service, or a new definition of one that is not running (EBUSY if it is; EPERM
        for a core server).  The service is DOWN until ``up`` starts it."""
        old, conf = self.services.get(entry.label), self.conf.services.get(entry.label)
        if entry.label in self.conf.boot or (old is not None and old.core):
            return Message(Err.EPERM, {"error": f"{entry.label} is a core server"})
        if conf is not None and conf.get("user") == "yes":
            return Message(Err.EPERM, {"error": f"{entry.label} names the privileges of "
                                                "operator tools or user programs"})
        if old is not None and (old.instance is not None or old.state is not State.DOWN
                                and old.state is not State.FAILED):
            return _busy(old, f"{entry.label} is {old.state.value}; service down it first")
        self.conf.services[entry.label] = entry
        svc = self.make_service(entry.label)
        if old is not None:
            svc.state, svc.since = old.state, old.since  # the definition changes, not its past
        return svc

    def restart(self, svc: Svc, request: Waiter) -> Message | None:
        """Start a terminated service now (skipping a backoff wait: a script's way to restart).
        A running one is EBUSY, as in MINIX."""
        if svc.instance is not None:
            return _busy(svc, f"{svc.label} is running; use refresh")
        cause = Cause.RECOVERY if svc.last_exit else Cause.FRESH
        try:
            self.fire(svc, Event.OP_START, reset=svc.state is State.FAILED, cause=cause,
                      waiter=request)
        except BadTransition:
            return _busy(svc)
        return None

    def refresh(self, svc: Svc, request: Waiter) -> Message | None:
        """Replace a live copy with a fresh one (not counted as a failure)."""
        if svc.instance is None:
            return self.restart(svc, request)
        if svc.core:
            return Message(Err.EPERM, {"error": f"{svc.label} is a core server"})
        try:
            self.fire(svc, Event.OP_REFRESH, waiter=request)
        except BadTransition:
            svc.waiters.append(request)  # already being replaced or stopped: answer when done
        return None

    def down(self, svc: Svc, request: Waiter, script: Running | None = None) -> Message | None:
        """Stop it, no restart; the reply comes once it has exited."""
        if svc.core:
            return Message(Err.EPERM, {"error": f"{svc.label} is a core server"})
        # rs.single takes its service down itself: that script is spared
        if script is None and isinstance(request, Message):
            script = self.scripts.of(self.pid_of(request.source))
        self.fire(svc, Event.OP_DOWN, waiter=request, script=script,
                  by="script" if script is not None else "operator")
        return None

    def crash(self, svc: Svc, fault: str, spec: dict[str, Any] | None = None) -> Message:
        """Inject ``fault`` (one of minikern.const.FAULTS, or of SWIFI_FAULTS with its
        checked ``spec``) into the running copy."""
        inst = svc.instance
        if inst is None:
            return Message(Err.ESRCH, {"error": f"{svc.label} is not running"})
        if fault in ("kill", "segv"):
            signo = signal.SIGKILL if fault == "kill" else signal.SIGSEGV
            status, _ = self.conn.kcall_status(KCall.KILL, endpoint=inst.endpoint,
                                               signal=int(signo))
            return Message(status, {"pid": inst.pid})
        # Delivered like a heartbeat: a NOTIFY is never lost (it waits as a pending bit even
        # while the component is busy), and the component's PING fetches the fault.
        inst.pending_fault, inst.pending_spec = fault, spec
        self.conn.notify(inst.endpoint)
        return Message(Err.OK, {"pid": inst.pid})

    def shutdown(self, reason: str) -> Message:
        self.journal.write("shutdown", "rs", by="operator", detail=reason)
        self.shutting_down = True
        self.conn.kcall_status(KCall.SHUTDOWN, reason=reason)
        return Message(Err.OK, {})


# What a recovery script may ask on its channel (scriptchan.ACTIONS; down spares the script).
SCRIPT_ACTIONS: dict[str, Callable[[Supervisor, Svc, Waiter], Message | None]] = {
    "up": Supervisor.up, "restart": Supervisor.restart, "refresh": Supervisor.refresh,
}
