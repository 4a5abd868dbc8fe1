"""The Reincarnation Server: starts every service, watches it, and replaces it when it fails.

RS is the first process of the boot image (fixed slot RS).  At startup it
reads the run directory's system.conf, adopts the boot-image servers the
kernel started with RS as their manager (ds, and hw, the board: *core*, a
death is fatal: without DS nobody finds anyone, without the board there is no
machine), and starts the services named in its own ``args`` through PRIVCTL,
which makes RS their manager.  Then it is a plain SEF server on SEF's loop
(minikern/loop.py), as DS and INET are:

* kernel messages: EXIT (a process died: name the failure, apply the policy)
  and SHUTDOWN (SEF: kill running recovery scripts, exit);
* requests (services/rs/requests.py checks them): INIT_DONE and PING (the
  heartbeat's answer, whose reply hands over an injected fault) from
  components, STATUS from anyone, the rest only from operator tools;
* loop timers, one per service, at the time its next thing is due (a
  heartbeat ping or deadline, an init timeout, a backoff restart, a grace
  period's SIGKILL, a resource check), all from one function
  (services/rs/service.py's next_due); the pidfds of running recovery
  scripts; and the loop's queue of sends DS was not ready for.

This module is only RS's SEF glue: the kernel connection, the loop and the
kernel's process table (minikern/identity.py).  The work is the Supervisor's
(services/rs/operations.py): every service's lifecycle is one state machine
(services/rs/lifecycle.py) whose transitions carry their effects.

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
component fetches the fault with its PING), DS publications go through the
loop's asend (SENDNB, queued and retried while DS is busy, a give-up logged),
STATUS, PING and refusals are answered through SEF's REPLYRECV, and the
answers that wait on a service (up, down, restart, refresh) go to the
operator tool through the loop's ``reply`` (a SENDNB: a tool waits in SENDREC).
"""
from __future__ import annotations

import os
import sys

from minikern import params, sef, sysconf
from minikern.const import RS, KMsg
from minikern.identity import Identity
from minikern.proto import Message
from services.rs import guardian, requests
from services.rs.operations import Supervisor
from services.rs.policy import Policy


class ReincarnationServer:
    def __init__(self, ctx: sef.Context, autostart: list[str]) -> None:
        self.ctx = ctx
        # A publication DS was not ready for is retried as soon as RS's own sends always were:
        # the endpoint DS publishes is what a recovering client waits for.
        ctx.loop.retry_every = params.RS_RETRY
        conf = sysconf.load(ctx.run_dir / "system.conf")
        self.core = Supervisor(ctx.conn, conf, ctx.run_dir, ctx.loop, Identity(ctx.conn))
        if "rs" in conf.services:  # RS's own queue: no one else starts RS
            self.core.prioritize("rs", os.getpid(), Policy.from_conf(conf.services["rs"]).priority)
        self.core.adopt()
        self.core.autostart(autostart)
        self.guardian = guardian.start(ctx.run_dir)
        ctx.on_shutdown.append(self.on_shutdown)

    def on_kernel(self, m: Message) -> None:
        if m.type != KMsg.EXIT:
            return
        ep, status, signo = m.get("endpoint"), m.get("status", 0), m.get("signal", 0)
        if type(ep) is int and type(status) is int and type(signo) is int:
            self.core.exited(ep, status, signo)

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
    sef.serve(ctx, requests.table(rs.core), on_kernel=rs.on_kernel,
              default=requests.default(rs.core))


if __name__ == "__main__":
    main()
