"""The Reincarnation Server: starts every service, watches it, and replaces it when it fails.

RS is the first process of the boot image (fixed slot RS).  At startup it
reads the run directory's system.conf, adopts the boot-image servers the
kernel started with RS as their manager (ds, and hw, the board: *core*, a
death is fatal: without DS nobody finds anyone, without the board there is no
machine), and starts the services named in its own ``args`` through PRIVCTL,
which makes RS their manager.  Then it is a plain SEF server:

* kernel messages: EXIT (a process died: name the failure, apply the policy)
  and SHUTDOWN (SEF: kill running recovery scripts, exit);
* notifications: CLOCK is RS's tick (SETALARM to the next thing due: a
  heartbeat ping or deadline, a backoff restart, a resource check, a retry);
* requests (services/rs/requests.py checks them): INIT_DONE and PING (the
  heartbeat's answer, whose reply hands over an injected fault) from
  components, STATUS from anyone, the rest only from operator tools.

This module is only RS's SEF glue: the kernel connection, the monotonic clock
and the alarm.  The work is the Supervisor's (services/rs/operations.py):
every service's lifecycle is one state machine (services/rs/lifecycle.py)
whose transitions carry their effects, and every timer comes from one
function (services/rs/service.py's next_due).

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
(retried), STATUS, PING and refusals are answered through SEF's REPLYRECV,
and the answers that wait on a service (up, down, restart, refresh) go to
the operator tool, which waits in SENDREC, by SENDNB.
"""
from __future__ import annotations

import sys
import time

from minikern import sef, sysconf
from minikern.proto import Message
from minikern.const import CLOCK, RS, KCall, KMsg
from services.rs import guardian, requests
from services.rs.lifecycle import Clock, Kernel
from services.rs.operations import Supervisor


class Alarm:
    """RS's one kernel alarm (SETALARM), set to the supervisor's next wakeup."""

    def __init__(self, conn: Kernel, clock: Clock) -> None:
        self.conn, self.clock = conn, clock
        self.due: float | None = None

    def set(self, due: float) -> None:
        if self.due is not None and self.due <= due + 0.0005:
            return  # the alarm already set rings in time
        ms = max(1, int((due - self.clock()) * 1000 + 0.999))  # never early
        self.conn.kcall_status(KCall.SETALARM, ms=ms)
        self.due = self.clock() + ms / 1000

    def rang(self) -> None:
        self.due = None


class ReincarnationServer:
    def __init__(self, ctx: sef.Context, autostart: list[str],
                 clock: Clock = time.monotonic) -> None:
        self.ctx = ctx
        conf = sysconf.load(ctx.run_dir / "system.conf")
        self.core = Supervisor(ctx.conn, conf, ctx.run_dir, clock)
        self.alarm = Alarm(ctx.conn, clock)
        self.core.adopt()
        self.core.autostart(autostart)
        self.guardian = guardian.start(ctx.run_dir)
        ctx.on_shutdown.append(self.on_shutdown)

    def schedule(self) -> None:
        self.alarm.set(self.core.next_wakeup())

    def on_notify(self, m: Message) -> None:
        if m.source == CLOCK:
            self.alarm.rang()
        self.core.tick()
        self.schedule()

    def on_kernel(self, m: Message) -> None:
        if m.type == KMsg.EXIT:
            self.core.exited(int(m.get("endpoint", 0)), int(m.get("status", 0)),
                             int(m.get("signal", 0)))
        self.core.tick()
        self.schedule()

    def on_shutdown(self) -> None:
        self.core.shutting_down = True
        self.core.scripts.kill()
        guardian.release(self.guardian)
        self.core.journal.close()


def main() -> None:
    ctx = sef.startup()
    if ctx.endpoint != RS:
        sef.panic(f"RS must run at the fixed endpoint {RS}, not {ctx.endpoint}")
    rs = ReincarnationServer(ctx, sys.argv[1:])
    rs.core.tick()
    rs.schedule()
    sef.serve(ctx, requests.table(rs.core, after=rs.schedule), on_notify=rs.on_notify,
              on_kernel=rs.on_kernel, default=requests.default(rs.core))


if __name__ == "__main__":
    main()
