"""The Reincarnation Server: starts every service, watches it, and replaces it when it fails.

RS is the first process of the boot image (fixed slot RS).  At startup it
reads the run directory's system.conf, adopts the boot-image servers the
kernel started with RS as their manager (ds, and hw, the board: *core*, a
death is fatal: without DS nobody finds anyone, without the board there is no
machine), and, once every one of them has reported its init done (the board
does once it is on the bus), starts the services named in its own ``args``
through PRIVCTL, which makes RS their manager.  Then it is a plain SEF server:

* kernel messages: EXIT (a process died: name the failure, apply the policy)
  and SHUTDOWN (SEF: kill running recovery scripts, exit);
* notifications: CLOCK is RS's tick (SETALARM to the next thing due: a
  heartbeat ping or deadline, a backoff restart, a resource check, a retry);
* requests (services/rs/requests.py): INIT_DONE and PING (the heartbeat's
  answer, whose reply hands over an injected fault) from components, STATUS
  from anyone, the rest only from operator tools.

Detection: an exit status or signal is told by the kernel at once; panic and
unhandled exceptions are named from SEF's crash record (run_dir/crash/<pid>.json);
a hang is no ping answer for HEARTBEAT_MISSES periods counted from the last
answer (as MINIX's do_period counts), so a hang is noticed within two periods
and a live component answers a ping within about one: SEF answers at the
next RECEIVE, and loops that can run long go back to it (the network
driver framework's PULL_SLICE); a resource hog
is RSS or CPU over the configured limit (psutil).  Recovery always starts a
fresh copy of the code from a clean template (minikern.kernel.spawn), with a
new endpoint and SEF init type "restart"; RS declares it up on its init-done.

RS never blocks on a service: pings and fault injections are NOTIFY (the
component fetches the fault with its PING), DS publications are SENDNB
(retried), replies go through SEF's REPLYRECV, and late replies to operator
tools (which wait in SENDREC) are SENDNB.
"""
from __future__ import annotations

import signal
import sys
import time
from collections.abc import Mapping

from minikern import params, sef, sysconf
from minikern.codec import Message
from minikern.const import CLOCK, RS, Err, KCall, KMsg
from services.rs import guardian, resources
from services.rs.journal import Journal, classify_exit
from services.rs.policy import Policy
from services.rs.publish import Publisher
from services.rs.scripts import Running, ScriptRunner
from services.rs.service import Event, Instance, State, Svc

SCRIPT_REASON = {"heartbeat": "no-heartbeat"}  # MINIX's name in a script's arguments


class ReincarnationServer:
    def __init__(self, ctx: sef.Context, autostart: list[str]) -> None:
        self.ctx, self.conn = ctx, ctx.conn
        conf = sysconf.load(ctx.run_dir / "system.conf")
        self.conf = conf
        self.journal = Journal(ctx.run_dir)
        self.scripts = ScriptRunner(ctx.run_dir)
        self.publisher = Publisher(self.conn)
        self.services: dict[str, Svc] = {}
        self.by_endpoint: dict[int, Svc] = {}
        self.alarm_due: float | None = None
        self.next_resource_check = 0.0
        self.shutting_down = False
        self.autostart = autostart  # started once the core is up (start_services)
        self.adopt()
        self.start_services()
        self.guardian = guardian.start(ctx.run_dir)
        ctx.on_shutdown.append(self.on_shutdown)

    # -- the service table ------------------------------------------------------------

    def make_service(self, label: str, core: bool = False) -> Svc:
        entry = self.conf.services[label]
        svc = Svc(label=label, module=entry.get("program") or "", args=entry.keys.get("args", []),
                  priv=entry.priv(), policy=Policy.from_conf(entry), core=core)
        self.services[label] = svc
        return svc

    def adopt(self) -> None:
        """Take over the boot-image servers the kernel started with RS as manager."""
        now = time.monotonic()
        adoptable = [x for x in self.conf.boot if x != "rs"]  # as minikern.boot
        for p in self.conn.kcall(KCall.GETINFO)["procs"]:
            if p["manager"] != RS or p["label"] not in adoptable or p["endpoint"] == RS:
                continue
            svc = self.make_service(p["label"], core=True)
            svc.state = State.STARTING
            svc.restart_cause = "up"
            self.attach(svc, p["endpoint"], p["pid"], now - p["uptime"])
        for label in adoptable:  # not running: it died before RS could adopt it
            if label not in self.services:
                self.fail(self.make_service(label, core=True),
                          {"reason": "exit", "detail": "gone before RS adopted it"})

    def start_services(self) -> None:
        """Start the services named in RS's args, once every adopted core server is up (as
        MINIX's RS waits for the boot image's init): so no driver runs before the board is on
        the bus, and no service before DS is there to publish it."""
        if self.shutting_down or any(s.core and s.state is not State.UP
                                     for s in self.services.values()):
            return
        labels, self.autostart = self.autostart, []
        for label in labels:
            if label in self.conf.services and label not in self.services:
                svc = self.make_service(label)
                svc.restart_cause = "up"
                self.spawn(svc)

    def attach(self, svc: Svc, endpoint: int, pid: int, started: float) -> None:
        now = time.monotonic()
        svc.instance = Instance(endpoint=endpoint, pid=pid, started=started,
                                started_wall=time.time() - (now - started), last_pong=now)
        self.by_endpoint[endpoint] = svc

    def pid_of(self, endpoint: int) -> int | None:
        """The host pid behind ``endpoint`` (from the kernel's table), if it is alive."""
        procs = self.conn.kcall(KCall.GETINFO)["procs"]
        return next((int(p["pid"]) for p in procs if p["endpoint"] == endpoint), None)

    def lookup(self, m: Message) -> Svc | None:
        return self.by_endpoint.get(m.source)

    # -- starting and stopping ------------------------------------------------------

    def spawn(self, svc: Svc) -> bool:
        """Start a fresh copy of ``svc``; it becomes STARTING until its init-done."""
        svc.restart_at = None
        status, r = self.conn.kcall_status(
            KCall.PRIVCTL, label=svc.label, module=svc.module, args=svc.args, priv=svc.priv,
            incarnation=svc.incarnation)
        if status != Err.OK:  # no free slot or no template: try again later, loudly
            self.answer_waiters(svc, status, {"error": "the kernel could not start it"})
            self.journal.write("crash", svc.label, reason="exit", action="backoff",
                               detail=f"PRIVCTL failed: {status}", pid=None)
            if svc.state is State.RESTARTING:
                svc.restart_at = time.monotonic() + params.BACKOFF_BASE
            return False
        svc.to(Event.SPAWNED)
        self.attach(svc, r["endpoint"], r["pid"], time.monotonic())
        return True

    def kill(self, svc: Svc, reason: str, signo: int = signal.SIGKILL) -> None:
        inst = svc.instance
        if inst is None:
            return
        inst.kill_reason = reason
        if signo != signal.SIGKILL:
            inst.kill_deadline = time.monotonic() + params.DOWN_GRACE
        self.conn.kcall_status(KCall.KILL, endpoint=inst.endpoint, signal=int(signo))

    def answer_waiters(self, svc: Svc, status: int, fields: Mapping[str, object]) -> None:
        for e in svc.waiters:
            self.conn.sendnb(e, Message(status, dict(fields)))
        svc.waiters.clear()

    def publish(self, svc: Svc, state: str) -> None:
        """Tell DS where ``svc`` runs now (on up) and its state (services/rs/publish.py)."""
        if state == "up" and svc.instance is not None:
            self.publisher.publish(svc.label, "label", svc.instance.endpoint)
        self.publisher.publish(svc.policy.publish, "str", state)

    # -- events ---------------------------------------------------------------------

    def on_init_done(self, svc: Svc) -> None:
        now = time.monotonic()
        inst = svc.instance
        if inst is None or svc.state is not State.STARTING:
            return
        svc.to(Event.INIT_DONE)
        svc.tracker.on_up(now)
        inst.last_pong = now
        inst.next_ping = now + (svc.policy.period or 0)
        self.publish(svc, "up")
        info = {"endpoint": inst.endpoint, "pid": inst.pid, "incarnation": svc.incarnation}
        if svc.restart_cause in ("restart", "refresh") and svc.last_exit:
            downtime = (now - svc.failed_at) * 1000 if svc.failed_at is not None else None
            self.journal.write("restart", svc.label, old_pid=svc.last_exit.get("pid"),
                               new_pid=inst.pid, old_endpoint=svc.last_exit.get("endpoint"),
                               new_endpoint=inst.endpoint, incarnation=svc.incarnation,
                               cause=svc.restart_cause,
                               downtime_ms=round(downtime, 2) if downtime is not None else None)
        else:
            self.journal.write("up", svc.label, **info)
        svc.failed_at = None
        self.answer_waiters(svc, Err.OK, info)
        self.start_services()

    def on_exit(self, m: Message) -> None:
        svc = self.by_endpoint.pop(m.get("endpoint", 0), None)
        if svc is None or svc.instance is None or svc.instance.endpoint != m.get("endpoint"):
            return
        inst, svc.instance = svc.instance, None
        pid, status, signo = inst.pid, int(m.get("status", 0)), int(m.get("signal", 0))
        svc.last_exit = {"pid": pid, "endpoint": inst.endpoint, "status": status, "signal": signo}
        if self.shutting_down:
            return
        if svc.state is State.DOWN:
            self.journal.write("down", svc.label, pid=pid, by="operator")
            self.publish(svc, "down")
            self.answer_waiters(svc, Err.OK, {"pid": pid})
        elif svc.state is State.FAILED:
            pass
        elif inst.kill_reason is not None and svc.state is State.RESTARTING:
            self.after_death(svc)  # RS ended it (hang, resource, refresh): decided already
        else:
            info = classify_exit(self.ctx.run_dir, pid, status, signo)
            info["pid"], info["endpoint"] = pid, inst.endpoint
            self.fail(svc, info)
            self.after_death(svc)

    def fail(self, svc: Svc, info: dict[str, object]) -> None:
        """A failure of ``svc`` (seen or decided): log it and apply the policy."""
        now = time.monotonic()
        reason = str(info["reason"])
        svc.last_reason, svc.failed_at = reason, now
        svc.last_detail = str(info.get("detail", ""))
        inst = svc.instance
        if inst is not None:
            info.setdefault("pid", inst.pid)
            info.setdefault("endpoint", inst.endpoint)
        info["incarnation"] = svc.incarnation
        if svc.core:
            self.journal.write("crash", svc.label, action="fatal", **info)
            self.kill(svc, reason)  # a hung core server would never take the SHUTDOWN
            self.fatal(f"core server {svc.label} failed ({reason})")
            return
        decision = svc.tracker.on_failure(now)
        if decision.giveup:
            svc.to(Event.GIVEUP)
            self.journal.write("crash", svc.label, action="giveup", **info)
            self.journal.write("giveup", svc.label, restarts=svc.policy.restarts,
                               window_s=svc.policy.window)
            self.answer_waiters(svc, Err.EIO, {"error": "service failed: " + reason})
            self.publish(svc, "failed")
        else:
            svc.to(Event.FAILED)
            if svc.policy.script:
                action = "script"
            else:
                action = "restart" if decision.delay == 0 else "backoff"
                svc.restart_at = now + decision.delay
            svc.restart_cause = "restart"
            self.journal.write("crash", svc.label, action=action,
                               delay_ms=round(decision.delay * 1000), **info)
            self.publish(svc, "restarting")
        if inst is not None and inst.kill_reason is None:
            self.kill(svc, reason)

    def after_death(self, svc: Svc) -> None:
        """The failed instance is gone: restart now, later (tick), or hand over to the script."""
        svc.incarnation += 1
        if svc.policy.script and svc.restart_cause != "refresh":
            self.run_script(svc)
        elif svc.restart_at is not None and svc.restart_at <= time.monotonic():
            self.spawn(svc)

    def run_script(self, svc: Svc) -> None:
        script = svc.policy.script or ""
        last = svc.last_exit
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
                                   "MINIKERN_DEPENDENTS": " ".join(dependents)})
        if isinstance(r, Running):
            self.journal.write("script", svc.label, phase="start", script=script, args=r.args,
                               pid=r.proc.pid)
        else:
            self.journal.write("script", svc.label, phase="error", script=script, error=r)
            svc.to(Event.SCRIPT_DONE)

    def fatal(self, why: str) -> None:
        self.journal.write("fatal", "rs", detail=why)
        print(f"rs: FATAL: {why}; shutting the system down", file=sys.stderr, flush=True)
        self.shutting_down = True
        self.conn.kcall_status(KCall.SHUTDOWN, reason=why)

    # -- the tick -------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for r, status, output in self.scripts.finished():
            self.journal.write("script", r.label, phase="done", script=r.script, status=status,
                               output=output)
            svc = self.services.get(r.label)
            if svc is not None and svc.state is State.RESTARTING and svc.instance is None:
                svc.to(Event.SCRIPT_DONE)  # the script left it down
                self.journal.write("down", svc.label, pid=None, by="script")
        check_resources = now >= self.next_resource_check
        if check_resources:
            self.next_resource_check = now + params.RESOURCE_CHECK
        for svc in list(self.services.values()):
            self.tick_service(svc, now, check_resources)
        if self.publisher.pending:
            self.publisher.flush()

    def tick_service(self, svc: Svc, now: float, check_resources: bool) -> None:
        inst = svc.instance
        if inst is None:
            if (svc.state is State.RESTARTING and svc.restart_at is not None
                    and now >= svc.restart_at):
                self.spawn(svc)
            return
        if inst.kill_deadline is not None and now >= inst.kill_deadline:
            inst.kill_deadline = None
            self.conn.kcall_status(KCall.KILL, endpoint=inst.endpoint, signal=signal.SIGKILL)
        if inst.kill_reason is not None:
            return
        period = svc.policy.period
        if svc.state is State.STARTING and now - inst.started > params.INIT_TIMEOUT:
            self.fail(svc, {"reason": "heartbeat", "detail": "no init-done within "
                            f"{params.INIT_TIMEOUT:g} s"})
        elif svc.state is State.UP and period:
            if now - inst.last_pong > params.HEARTBEAT_MISSES * period:
                self.fail(svc, {"reason": "heartbeat", "detail": "no answer to pings for "
                                f"{now - inst.last_pong:.3f} s (period {period:g} s)"})
                return
            if now >= inst.next_ping:
                self.conn.notify(inst.endpoint)
                inst.next_ping = now + period
        if check_resources and svc.state is State.UP:
            self.check_resources(svc, inst, now)

    def check_resources(self, svc: Svc, inst: Instance, now: float) -> None:
        detail = resources.over_limit(svc.policy, inst, now)
        if detail is not None:
            self.fail(svc, {"reason": "resource", "detail": detail})

    def next_due(self) -> float:
        """The earliest time RS has something to do."""
        now = time.monotonic()
        due = now + params.RS_MAX_SLEEP
        if self.publisher.pending:
            due = now + params.RS_RETRY
        if self.scripts.running:
            due = min(due, now + 0.02)
        for svc in self.services.values():
            inst, period = svc.instance, svc.policy.period
            if inst is None:
                if svc.restart_at is not None:
                    due = min(due, svc.restart_at)
                continue
            if inst.kill_deadline is not None:
                due = min(due, inst.kill_deadline)
            if svc.state is State.STARTING:
                due = min(due, inst.started + params.INIT_TIMEOUT + 0.001)
            elif svc.state is State.UP and period and inst.kill_reason is None:
                due = min(due, inst.next_ping,
                          inst.last_pong + params.HEARTBEAT_MISSES * period + 0.001)
            if svc.policy.memory_limit is not None or svc.policy.cpu_limit is not None:
                due = min(due, self.next_resource_check)
        return due

    def schedule(self) -> None:
        due = self.next_due()
        if self.alarm_due is not None and self.alarm_due <= due + 0.0005:
            return
        ms = max(1, int((due - time.monotonic()) * 1000 + 0.999))
        self.conn.kcall_status(KCall.SETALARM, ms=ms)
        self.alarm_due = time.monotonic() + ms / 1000

    def on_notify(self, m: Message) -> None:
        if m.source == CLOCK:
            self.alarm_due = None
        self.tick()
        self.schedule()

    def on_kernel(self, m: Message) -> None:
        if m.type == KMsg.EXIT:
            self.on_exit(m)
        self.tick()
        self.schedule()

    def on_shutdown(self) -> None:
        self.shutting_down = True
        self.scripts.kill()
        guardian.release(self.guardian)
        self.journal.close()


def main() -> None:
    from services.rs import requests
    ctx = sef.startup()
    if ctx.endpoint != RS:
        sef.panic(f"RS must run at the fixed endpoint {RS}, not {ctx.endpoint}")
    rs = ReincarnationServer(ctx, sys.argv[1:])
    rs.tick()
    rs.schedule()
    sef.serve(ctx, requests.table(rs), on_notify=rs.on_notify, on_kernel=rs.on_kernel,
              default=requests.default(rs))


if __name__ == "__main__":
    main()
