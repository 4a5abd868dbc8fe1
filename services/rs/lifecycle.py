"""RS's core: every service's lifecycle as one state machine whose transitions carry their effects.
Runs inside RS.

    DOWN / FAILED / RESTARTING --spawned--> STARTING   (a fresh copy runs; attach it)
    STARTING --init_done--> UP                 (publish up, log up or restart, answer tools)
    STARTING / UP --failed--> RESTARTING       (log the crash, publish restarting, kill it if
                                                alive, set the backoff)
    STARTING / UP / RESTARTING --giveup--> FAILED      (intensity limit: log, publish, answer)
    RESTARTING --exited--> RESTARTING          (the copy is gone: run the script or restart)
    DOWN --exited--> DOWN                      (an operator's stop is done: log, publish, answer)
    DOWN / FAILED / RESTARTING --op_start--> itself    (operator up or restart: start a copy)
    any --op_down--> DOWN                      (stop it, end its scripts, no restart)
    STARTING / UP --op_refresh--> RESTARTING   (SIGTERM; a fresh copy once it exited)
    RESTARTING --script_done--> DOWN           (the recovery script decided nothing)

``Lifecycle.fire`` is the only code that assigns ``Svc.state``.  The failure
of a core server (ds, the board) is no transition: the system shuts down.

The lifecycle runs on RS's loop (minikern/loop.py) and takes it, with the
kernel connection, as a parameter: tests drive it with a recording
connection and a loop on a ``FakeClock``.  Every service has one loop timer,
set by ``rearm`` to the time services/rs/service.py's ``next_due`` gives (the
one place that knows the heartbeat, init timeout, backoff, grace and resource
timers); when it rings ``on_due`` fires what is due and sets it again.  Each
transition rearms its service; what only puts a time later (a ping's answer)
does not, so a timer may ring early, finds nothing due and is set again, but
never rings late.  DS publications and late answers to operator tools are
sends that never block (the loop's ``asend`` and ``reply``); a recovery
script's end is a watched pidfd (services/rs/scripts.py).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from minikern import domain, params, programs, sched
from minikern.const import HW, ON_PEER, Err, KCall
from minikern.identity import Identity
from minikern.ipc import IpcError
from minikern.loop import Loop
from minikern.loop import Timer as Alarm
from minikern.proto import Message
from minikern.sysconf import SystemConf
from services.rs import resources, starvation
from services.rs.journal import Journal, classify_exit
from services.rs.policy import Policy
from services.rs.publish import Announcer, Publisher
from services.rs.scripts import Running, ScriptRunner
from services.rs.starvation import Sched
from services.rs.service import (BadTransition, Cause, Event, Instance, State, Svc, Timer,
                                 next_due)

Info = dict[str, Any]
SCRIPT_REASON = {"heartbeat": "no-heartbeat"}  # MINIX's name in a script's arguments


class Kernel(Protocol):
    """The kernel calls RS makes itself (its sends go through the loop; tests pass a fake)."""

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]: ...
    def kcall_status(self, call: KCall, **args: Any) -> tuple[int, dict[str, Any]]: ...
    def notify(self, dst: int) -> int: ...


Effect = Callable[["Lifecycle", Svc, State, Info], None]


class Step(NamedTuple):
    state: State
    effect: Effect


class Lifecycle:
    def __init__(self, conn: Kernel, conf: SystemConf, run_dir: Path, loop: Loop,
                 identity: Identity, journal: Journal | None = None,
                 scripts: ScriptRunner | None = None, ds: Announcer | None = None) -> None:
        self.conn, self.conf, self.run_dir, self.loop = conn, conf, run_dir, loop
        self.clock = loop.clock.now
        self.identity = identity
        self.journal = journal or Journal(run_dir)
        self.scripts = scripts or ScriptRunner(run_dir, loop)
        self.ds: Announcer = ds or Publisher(loop)
        self.services: dict[str, Svc] = {}
        self.by_endpoint: dict[int, Svc] = {}
        self.alarms: dict[str, Alarm] = {}  # label -> its one loop timer (rearm)
        self.shutting_down = False
        self.priority_refused = False  # the host refused a raised priority (said once)
        self.waiting: list[str] = []  # services to start once every core server is up
        self.sched_of: Callable[[int], Sched | None] = starvation.read  # tests script it
        self._relied: tuple[float, tuple[Sched | None, ...]] = (0.0, ())  # relied_now's

    # -- the machine ----------------------------------------------------------------

    def fire(self, svc: Svc, event: Event, **info: Any) -> None:
        """Move ``svc`` by ``event`` and carry out that transition's effect."""
        prev = svc.state
        step = transition(prev, event)
        svc.state = step.state
        if step.state is not prev or not svc.since:
            svc.since = time.time()
        step.effect(self, svc, prev, info)
        self.rearm(svc)

    def _spawned(self, svc: Svc, prev: State, info: Info) -> None:
        now = self.clock()
        started = float(info.get("started", now))
        svc.instance = Instance(endpoint=info["endpoint"], pid=info["pid"], started=started,
                                started_wall=time.time() - (now - started), last_pong=now)
        self.by_endpoint[info["endpoint"]] = svc
        self.prioritize(svc.label, info["pid"], svc.policy.priority)

    def prioritize(self, label: str, pid: int, queue: int) -> None:
        """Put a new instance in its scheduling queue; a refusal is said once per boot.  In
        a protection domain RS may not renice another uid: the template did, as root."""
        if domain.inside():
            return
        refused = sched.apply(pid, queue)
        if refused is not None and not self.priority_refused:
            self.priority_refused = True
            print(f"rs: priorities not applied ({label}: {refused}); every service runs at "
                  "the host's default, as user programs do", flush=True)

    def _announce_up(self, svc: Svc, prev: State, info: Info) -> None:
        now, inst = self.clock(), svc.instance
        assert inst is not None  # INIT_DONE is fired only for a live instance
        svc.tracker.on_up(now)
        self.alive(inst, now)
        inst.next_ping = now + (svc.policy.period or 0)
        inst.next_check = now + params.RESOURCE_CHECK
        self.ds.announce(svc.label, svc.policy.publish, "up", inst.endpoint)
        fields = {"endpoint": inst.endpoint, "pid": inst.pid, "incarnation": svc.incarnation}
        if svc.cause is not Cause.FRESH and svc.last_exit:
            downtime = (now - svc.failed_at) * 1000 if svc.failed_at is not None else None
            self.journal.write("restart", svc.label, old_pid=svc.last_exit.get("pid"),
                               new_pid=inst.pid, old_endpoint=svc.last_exit.get("endpoint"),
                               new_endpoint=inst.endpoint, incarnation=svc.incarnation,
                               cause=svc.cause.value,
                               downtime_ms=round(downtime, 2) if downtime is not None else None)
        else:
            self.journal.write("up", svc.label, **fields)
        svc.failed_at = None
        self.answer(svc, Err.OK, fields)

    def _recover(self, svc: Svc, prev: State, info: Info) -> None:
        delay = float(info.pop("delay"))
        if svc.policy.script:
            action = "script"
        else:
            action = "restart" if delay == 0 else "backoff"
            svc.restart_at = self.clock() + delay
        svc.cause = Cause.RECOVERY
        self.journal.write("crash", svc.label, action=action, delay_ms=round(delay * 1000),
                           **info)
        self.ds.announce(svc.label, svc.policy.publish, "restarting", None)
        self.end(svc)

    def _give_up(self, svc: Svc, prev: State, info: Info) -> None:
        info.pop("delay", None)
        svc.restart_at = None
        self.journal.write("crash", svc.label, action="giveup", **info)
        self.journal.write("giveup", svc.label, restarts=svc.policy.restarts,
                           window_s=svc.policy.window)
        self.answer(svc, Err.EIO, {"error": f"service failed: {info.get('reason')}"})
        self.ds.announce(svc.label, svc.policy.publish, "failed", None)
        self.end(svc)

    def _after_death(self, svc: Svc, prev: State, info: Info) -> None:
        svc.incarnation += 1
        if svc.policy.script and svc.cause is not Cause.REFRESH:
            self.run_script(svc)
        elif svc.restart_at is not None and svc.restart_at <= self.clock():
            self.spawn(svc)

    def _stopped(self, svc: Svc, prev: State, info: Info) -> None:
        self.journal.write("down", svc.label, pid=info["pid"], by="operator")
        self.ds.announce(svc.label, svc.policy.publish, "down", None)
        self.ds.purge(svc.label)  # MINIX: what a stopped service left in DS goes with it
        self.answer(svc, Err.OK, {"pid": info["pid"]})

    def _nothing(self, svc: Svc, prev: State, info: Info) -> None:
        pass

    def _operator_start(self, svc: Svc, prev: State, info: Info) -> None:
        if info["reset"]:
            svc.tracker.reset()  # a person revived it: its failures start again
        if info.get("fresh"):
            svc.incarnation, svc.last_exit = 0, {}  # up after down: a new service, as MINIX
        svc.cause = info["cause"]
        svc.waiters.append(info["waiter"])
        self.spawn(svc)

    def _stop(self, svc: Svc, prev: State, info: Info) -> None:
        svc.restart_at = None
        self.scripts.kill(svc.label, spare=info["script"])  # no other script may bring it back
        svc.waiters.append(info["waiter"])
        if svc.instance is None:
            if prev is not State.DOWN:
                self.journal.write("down", svc.label, pid=None, by=info["by"])
                self.ds.announce(svc.label, svc.policy.publish, "down", None)
                self.ds.purge(svc.label)
            self.answer(svc, Err.OK, {})
        elif not svc.instance.killed:
            self.end(svc, signal.SIGTERM)  # the reply waits for its exit (_stopped)

    def _refresh(self, svc: Svc, prev: State, info: Info) -> None:
        svc.failed_at = svc.restart_at = self.clock()  # not counted by the policy
        svc.cause = Cause.REFRESH
        svc.waiters.append(info["waiter"])
        self.end(svc, signal.SIGTERM)

    def _left_down(self, svc: Svc, prev: State, info: Info) -> None:
        svc.restart_at = None
        self.journal.write("down", svc.label, pid=None, by="script")
        self.ds.announce(svc.label, svc.policy.publish, "down", None)

    # -- acting on a service --------------------------------------------------------

    def lookup(self, endpoint: int) -> Svc | None:
        return self.by_endpoint.get(endpoint)

    def spawn(self, svc: Svc) -> bool:
        """Start a fresh copy of ``svc`` (it becomes STARTING), or retry later, loudly."""
        svc.restart_at = None
        status, r = self.conn.kcall_status(
            KCall.PRIVCTL, label=svc.label, module=svc.module, args=svc.args, priv=svc.priv,
            incarnation=svc.incarnation, priority=svc.policy.priority,
            **({} if svc.uid is None else {"uid": svc.uid}))
        if status != Err.OK:  # no free slot or no template
            self.answer(svc, status, {"error": "the kernel could not start it"})
            self.journal.write("crash", svc.label, reason="exit", action="backoff",
                               detail=f"PRIVCTL failed: {status}", pid=None)
            if svc.state is State.RESTARTING:
                svc.restart_at = self.clock() + params.BACKOFF_BASE
                self.rearm(svc)
            return False
        self.fire(svc, Event.SPAWNED, endpoint=r["endpoint"], pid=r["pid"])
        return True

    def end(self, svc: Svc, signo: int = signal.SIGKILL) -> None:
        """Kill the live copy (RS's decision: its exit is expected); SIGKILL follows a grace."""
        inst = svc.instance
        if inst is None or inst.killed:
            return
        inst.killed = True
        if signo != signal.SIGKILL:
            inst.kill_deadline = self.clock() + params.DOWN_GRACE
        self.conn.kcall_status(KCall.KILL, endpoint=inst.endpoint, signal=int(signo))

    def answer(self, svc: Svc, status: int, fields: Info) -> None:
        """The late reply to the operator requests waiting on ``svc``: a tool waiting in
        SENDREC takes it at once; one that asked with the loop's ``request`` gets it with
        its ``re``, queued if it is busy (docs/PROTOCOL.md, section 15)."""
        for waiter in svc.waiters:
            if isinstance(waiter, Message):
                self.loop.reply(waiter, Message(status, dict(fields)))
            else:
                waiter(Message(status, dict(fields)))  # a script's channel
        svc.waiters.clear()

    def fail(self, svc: Svc, info: Info) -> None:
        """A failure of ``svc`` (seen or decided): the policy says recover or give up."""
        now = self.clock()
        reason = str(info["reason"])
        svc.last_reason, svc.failed_at = reason, now
        svc.last_detail = str(info.get("detail", ""))
        if svc.instance is not None:
            info.setdefault("pid", svc.instance.pid)
            info.setdefault("endpoint", svc.instance.endpoint)
        info["incarnation"] = svc.incarnation
        if svc.core:
            self.journal.write("crash", svc.label, action="fatal", **info)
            self.end(svc)  # a hung core server would never take the SHUTDOWN
            self.fatal(f"core server {svc.label} failed ({reason})")
            return
        decision = svc.tracker.on_failure(now)
        self.fire(svc, Event.GIVEUP if decision.giveup else Event.FAILED,
                  delay=decision.delay, **info)

    def run_script(self, svc: Svc) -> None:
        script, last = svc.policy.script or "", svc.last_exit
        dependents = [s for s, e in self.conf.services.items()
                      if svc.label in e.keys.get("depends", [])]
        reason = svc.last_reason or "exit"
        r = self.scripts.start(script, svc.label, SCRIPT_REASON.get(reason, reason),
                               svc.incarnation, {
                                   "MINIKERN_OLD_PID": str(last.get("pid", "")),
                                   "MINIKERN_OLD_ENDPOINT": str(last.get("endpoint", "")),
                                   "MINIKERN_EXIT_STATUS": str(last.get("status", "")),
                                   "MINIKERN_SIGNAL": str(last.get("signal", "")),
                                   "MINIKERN_DETAIL": svc.last_detail,
                                   "MINIKERN_FAILURES": str(svc.tracker.failures),
                                   "MINIKERN_DEPENDENTS": " ".join(dependents)},
                               on_done=self.script_done)
        if isinstance(r, Running):
            self.journal.write("script", svc.label, phase="start", script=script, args=r.args,
                               pid=r.proc.pid)
        else:
            self.journal.write("script", svc.label, phase="error", script=script, error=r)
            self.fire(svc, Event.SCRIPT_DONE)

    def fatal(self, why: str) -> None:
        self.journal.write("fatal", "rs", detail=why)
        print(f"rs: FATAL: {why}; shutting the system down", file=sys.stderr, flush=True)
        self.shutting_down = True
        self.conn.kcall_status(KCall.SHUTDOWN, reason=why)

    # -- what the kernel and the clock tell ------------------------------------------

    def init_done(self, endpoint: int) -> None:
        svc = self.lookup(endpoint)
        if svc is not None and svc.instance is not None and svc.state is State.STARTING:
            self.fire(svc, Event.INIT_DONE)
            self.start_waiting()

    def start_waiting(self) -> None:
        """Start the services RS was asked to start, once every adopted core server is up (as
        MINIX's RS waits for the boot image's init): no driver runs before the board is on
        the bus (the board reports its init done only then), no service before DS."""
        if self.shutting_down or any(s.core and s.state is not State.UP
                                     for s in self.services.values()):
            return
        labels, self.waiting = self.waiting, []
        for label in labels:
            if label in self.conf.services and label not in self.services:
                self.spawn(self.make_service(label))

    def make_service(self, label: str, core: bool = False) -> Svc:
        entry = self.conf.services[label]
        module, args = programs.component(entry.get("program") or "", entry.keys.get("args", []))
        svc = Svc(label=label, module=module, args=args, priv=entry.priv(),
                  policy=Policy.from_conf(entry), core=core, uid=entry.uid())
        self.services[label] = svc
        return svc

    def exited(self, endpoint: int, status: int, signo: int) -> None:
        """The kernel's exit notice: an unexpected death is a failure, an expected one ends a
        recovery or a stop."""
        svc = self.by_endpoint.pop(endpoint, None)
        if svc is None or svc.instance is None or svc.instance.endpoint != endpoint:
            return
        inst, svc.instance = svc.instance, None
        svc.last_exit = {"pid": inst.pid, "endpoint": endpoint, "status": status,
                         "signal": signo}
        if self.shutting_down:
            return
        if svc.state in (State.STARTING, State.UP):
            info = classify_exit(self.run_dir, inst.pid, status, signo)
            self.fail(svc, {**info, "pid": inst.pid, "endpoint": endpoint})
            if self.shutting_down:
                return
        self.fire(svc, Event.EXITED, pid=inst.pid)

    def script_done(self, r: Running, status: int, output: str) -> None:
        """A recovery script ended (its pidfd rang): log it; if it left its service down
        (neither restart nor up), the service is DOWN."""
        self.journal.write("script", r.label, phase="done", script=r.script, status=status,
                           output=output)
        svc = self.services.get(r.label)
        if svc is not None and svc.state is State.RESTARTING and svc.instance is None \
                and not self.shutting_down:
            self.fire(svc, Event.SCRIPT_DONE)

    # -- timers ------------------------------------------------------------------------

    def rearm(self, svc: Svc) -> None:
        """Set ``svc``'s one loop timer to its next due time (none if nothing is due)."""
        due = next_due(svc)
        alarm = self.alarms.get(svc.label)
        if alarm is not None:
            if due is not None and alarm.when == due[0] and not alarm.cancelled:
                return
            alarm.cancel()
            del self.alarms[svc.label]
        if due is not None and not self.shutting_down:
            self.alarms[svc.label] = self.loop.call_at(due[0], lambda: self.on_due(svc))

    def on_due(self, svc: Svc) -> None:
        """``svc``'s timer rang: fire everything due for it by now, then set it again."""
        self.alarms.pop(svc.label, None)
        now = self.clock()
        for _ in Timer:  # each timer handled moves its own due time on
            due = next_due(svc)
            if due is None or due[0] > now or self.shutting_down:
                break
            self.on_timer(svc, due[1], now)
        self.rearm(svc)

    def alive(self, inst: Instance, now: float) -> None:
        """A sign of life (a ping's answer, init-done): the heartbeat counts from here."""
        inst.last_pong, inst.starved, inst.received, inst.deferred_until = now, 0, None, 0.0
        inst.sched = self.sched_of(inst.pid)
        inst.relied = self.relied_now(now)

    def relied_now(self, now: float) -> tuple[Sched | None, ...]:
        """The kernel's and the board's times, read at most every HEARTBEAT_RELIED_EVERY:
        every service's answer wants them, a dozen a period would read them a dozen times."""
        taken, sample = self._relied
        if now - taken >= params.HEARTBEAT_RELIED_EVERY or not sample:
            sample = tuple(self.sched_of(pid) for pid in self.relied_on())
            self._relied = (now, sample)
        return sample

    def relied_on(self) -> list[int]:
        """The processes every service waits on: the kernel (RS's parent) and the board."""
        board = self.by_endpoint.get(HW)
        pids = [os.getppid()]
        if board is not None and board.instance is not None:
            pids.append(board.instance.pid)
        return pids

    def starved(self, svc: Svc, inst: Instance, period: float) -> bool:
        """Whether ``svc``'s missed heartbeats are a host without a free CPU, not a hang
        (services/rs/starvation.py): then its deadline moves one period on from now (not
        from its last answer: RS, starved too, may look late), within bounds."""
        if inst.starved >= params.HEARTBEAT_STARVED_MAX:
            return False
        spent = starvation.starved(inst.sched, self.sched_of(inst.pid), period)
        relied = [starvation.starved(before, self.sched_of(pid), period)
                  for before, pid in zip(inst.relied, self.relied_on(), strict=False)]
        if spent is None and not any(relied):  # it slept: on a peer that starved?
            relied.append(self.peer_starved(inst, period))
            if not any(relied):  # no one it waits on starved
                return False
        received = None
        if spent is None:  # blocked on the kernel, the board or its peer, which waited
            spent = next(r for r in relied if r is not None)
        elif not starvation.hardly_ran(spent, period):  # busy: serving, or looping?
            received = self.received_of(inst.endpoint)
            # the first look gives it a period, the next one tells
            serving = received is not None and (inst.received is None or received > inst.received)
            inst.received = received
            if not serving:
                return False
        inst.starved += 1
        inst.deferred_until = self.clock() + period
        self.journal.write("starved", svc.label, pid=inst.pid, periods=inst.starved,
                           waited_ms=round(spent.waited * 1000), ran_ms=round(spent.ran * 1000),
                           received=received)
        return True

    def peer_starved(self, inst: Instance, period: float) -> Sched | None:
        """If ``inst`` is blocked sending to another service (GETINFO's wait and peer: a
        network driver in its SENDREC to INET, say) that waited a period for a CPU since its
        own last sign of life: how long that one ran and waited.  Drivers are queued above
        the servers, so a driver spinning elsewhere starves INET first, and the driver
        blocked on it next (the 10,000-fault campaign, three trials side by side)."""
        me = self.proc_info(inst.endpoint)
        if me is None or me.get("wait") not in ON_PEER or type(me.get("peer")) is not int:
            return None
        peer = self.by_endpoint.get(me["peer"])
        other = peer.instance if peer is not None else None
        if other is None or other is inst or other.endpoint != me["peer"]:
            return None
        return starvation.starved(other.sched, self.sched_of(other.pid), period)

    def received_of(self, endpoint: int) -> int | None:
        """The kernel's count of messages delivered to ``endpoint`` (GETINFO)."""
        got = (self.proc_info(endpoint) or {}).get("received")
        return got if type(got) is int else None

    def proc_info(self, endpoint: int) -> dict[str, Any] | None:
        """The kernel's GETINFO entry of ``endpoint`` (None: not there, or no answer)."""
        try:
            procs = self.conn.kcall(KCall.GETINFO).get("procs", [])
        except IpcError:
            return None
        return next((p for p in procs if type(p) is dict and p.get("endpoint") == endpoint),
                    None)

    def on_timer(self, svc: Svc, timer: Timer, now: float) -> None:
        inst, period = svc.instance, svc.policy.period or 0.0
        if timer is Timer.RESTART or inst is None:
            self.spawn(svc)
        elif timer is Timer.SIGKILL:
            inst.kill_deadline = None
            self.conn.kcall_status(KCall.KILL, endpoint=inst.endpoint, signal=signal.SIGKILL)
        elif timer is Timer.INIT_TIMEOUT:
            self.fail(svc, {"reason": "heartbeat",
                            "detail": f"no init-done within {params.INIT_TIMEOUT:g} s"})
        elif timer is Timer.HUNG:
            if self.starved(svc, inst, period):
                return
            self.fail(svc, {"reason": "heartbeat", "detail": "no answer to pings for "
                            f"{now - inst.last_pong:.3f} s (period {period:g} s)"})
        elif timer is Timer.PING:
            self.conn.notify(inst.endpoint)
            inst.next_ping = now + period
            if inst.ping_sent is None:  # the latency is that of the oldest unanswered ping
                inst.ping_sent = now
        elif timer is Timer.RESOURCES:
            inst.next_check = now + params.RESOURCE_CHECK
            detail = resources.over_limit(svc.policy, inst, now)
            if detail is not None:
                self.fail(svc, {"reason": "resource", "detail": detail})



_S, _E = State, Event
_TABLE: dict[tuple[State, Event], Step] = {
    (_S.DOWN, _E.SPAWNED): Step(_S.STARTING, Lifecycle._spawned),
    (_S.FAILED, _E.SPAWNED): Step(_S.STARTING, Lifecycle._spawned),
    (_S.RESTARTING, _E.SPAWNED): Step(_S.STARTING, Lifecycle._spawned),
    (_S.STARTING, _E.INIT_DONE): Step(_S.UP, Lifecycle._announce_up),
    (_S.STARTING, _E.FAILED): Step(_S.RESTARTING, Lifecycle._recover),
    (_S.UP, _E.FAILED): Step(_S.RESTARTING, Lifecycle._recover),
    (_S.STARTING, _E.GIVEUP): Step(_S.FAILED, Lifecycle._give_up),
    (_S.UP, _E.GIVEUP): Step(_S.FAILED, Lifecycle._give_up),
    (_S.RESTARTING, _E.GIVEUP): Step(_S.FAILED, Lifecycle._give_up),
    (_S.RESTARTING, _E.EXITED): Step(_S.RESTARTING, Lifecycle._after_death),
    (_S.DOWN, _E.EXITED): Step(_S.DOWN, Lifecycle._stopped),
    (_S.FAILED, _E.EXITED): Step(_S.FAILED, Lifecycle._nothing),
    (_S.DOWN, _E.OP_START): Step(_S.DOWN, Lifecycle._operator_start),
    (_S.FAILED, _E.OP_START): Step(_S.FAILED, Lifecycle._operator_start),
    (_S.RESTARTING, _E.OP_START): Step(_S.RESTARTING, Lifecycle._operator_start),
    (_S.STARTING, _E.OP_REFRESH): Step(_S.RESTARTING, Lifecycle._refresh),
    (_S.UP, _E.OP_REFRESH): Step(_S.RESTARTING, Lifecycle._refresh),
    (_S.RESTARTING, _E.SCRIPT_DONE): Step(_S.DOWN, Lifecycle._left_down),
}
for _state in State:  # an operator may stop a service in any state
    _TABLE[(_state, _E.OP_DOWN)] = Step(_S.DOWN, Lifecycle._stop)


def transition(state: State, event: Event) -> Step:
    """The next state and the effect, or BadTransition if ``event`` makes no sense in ``state``."""
    step = _TABLE.get((state, event))
    if step is None:
        raise BadTransition(f"{event.value} in state {state.value}")
    return step


def accepts(state: State, event: Event) -> bool:
    return (state, event) in _TABLE
