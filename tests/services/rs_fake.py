"""RS's core without processes: a kernel connection that records what RS asks of it, and RS's
loop (minikern/loop.py) on a FakeClock, so its timing rules are tested exactly and instantly.

The test plays the kernel's part: it calls what a kernel message would (``exited``,
``init_done``, a request's handler) and lets fake time pass with ``Loop.advance_to``, which
runs RS's loop timers and queued-send retries at their exact due times."""
from __future__ import annotations

import select
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minikern import events, sysconf
from minikern.const import RS, Err, KCall, RsReq
from minikern.identity import Identity
from minikern.loop import FakeClock, Loop
from minikern.proto import Message
from services.rs.operations import Supervisor
from services.rs.scripts import ScriptRunner
from services.rs.service import State, Svc, next_due

OPERATOR = 500  # the endpoint of an operator tool in the fake kernel's table
COMPONENT = 501  # a component's endpoint: not an operator

CONF = """
service rs {{ program services.rs.main; system PRIVCTL KILL GETINFO SHUTDOWN; }};
service x {{ program drivers.hello; ipc ALL; {keys} }};
service dep {{ program drivers.hello; depends x; period off; }};
"""


@dataclass
class FakeKernel:
    """Records kernel calls, sends and notifications; PRIVCTL hands out endpoints and pids."""

    kcalls: list[tuple[KCall, dict[str, Any]]] = field(default_factory=list)
    sends: list[tuple[int, Message]] = field(default_factory=list)
    notifies: list[int] = field(default_factory=list)
    procs: list[dict[str, Any]] = field(default_factory=lambda: [
        {"endpoint": OPERATOR, "pid": 90, "label": "operator", "manager": -1, "operator": True,
         "uptime": 0},
        {"endpoint": COMPONENT, "pid": 91, "label": "comp", "manager": RS, "operator": False,
         "uptime": 0}])
    privctl_status: int = Err.OK
    next_endpoint: int = 10
    pid: int | None = None  # the pid every started copy gets (else a made-up one)
    busy: set[int] = field(default_factory=set)  # endpoints not receiving: SENDNB is ENOTREADY

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]:
        return self.kcall_status(call, **args)[1]

    def kcall_status(self, call: KCall, **args: Any) -> tuple[int, dict[str, Any]]:
        self.kcalls.append((call, args))
        if call is KCall.GETINFO:
            return Err.OK, {"procs": self.procs}
        if call is KCall.PRIVCTL:
            if self.privctl_status != Err.OK:
                return self.privctl_status, {}
            self.next_endpoint += 1
            pid = self.pid if self.pid is not None else 100_000 + self.next_endpoint
            return Err.OK, {"endpoint": self.next_endpoint, "pid": pid}
        return Err.OK, {}

    def sendnb(self, dst: int, m: Message) -> int:
        if dst in self.busy:
            return Err.ENOTREADY
        self.sends.append((dst, m))
        return Err.OK

    def notify(self, dst: int) -> int:
        self.notifies.append(dst)
        return Err.OK

    def calls(self, call: KCall) -> list[dict[str, Any]]:
        return [a for c, a in self.kcalls if c is call]

    def replies_to(self, endpoint: int) -> list[Message]:
        return [m for d, m in self.sends if d == endpoint]


class Rig:
    """One Supervisor on a Loop over a FakeKernel and a FakeClock; service ``x`` has ``keys``."""

    def __init__(self, tmp: Path, keys: str, scripts_dir: Path | None = None,
                 **loop_args: Any) -> None:
        self.tmp, self.clock, self.kernel = tmp, FakeClock(1000.0), FakeKernel()
        # The loop uses only its connection's sendnb outside turn(), which the test plays.
        self.loop = Loop(self.kernel, self.clock, **loop_args)  # type: ignore[arg-type]
        conf = sysconf.parse(CONF.format(keys=keys))
        scripts = ScriptRunner(tmp, self.loop, scripts_dir) if scripts_dir else None
        self.rs = Supervisor(self.kernel, conf, tmp, self.loop,
                             Identity(self.kernel), scripts=scripts)  # type: ignore[arg-type]
        # the pids are made up (or this test's own): RS's placements are recorded, never
        # applied to whatever host process has the pid (as root, a real-time class with a
        # bound whose SIGXCPU would kill this test's process: minikern/sched.py)
        self.placed: list[tuple[str, int, int]] = []
        self.rs.prioritize = lambda *how: self.placed.append(how)  # type: ignore[method-assign]

    @property
    def now(self) -> float:
        return self.clock.now()

    @property
    def x(self) -> Svc | None:
        return self.rs.services.get("x")

    def state(self) -> State:
        assert self.x is not None
        return self.x.state

    def start(self) -> None:
        """Boot-time start of x and its init-done."""
        self.rs.autostart(["x"])
        self.init_done()

    def init_done(self) -> None:
        assert self.x is not None and self.x.instance is not None
        self.rs.init_done(self.x.instance.endpoint)

    def request(self, req: RsReq, source: int = OPERATOR, **fields: Any) -> Message:
        """A request as RS receives it (``rid``: one sent with the loop's request)."""
        return Message(int(req), dict(fields), source=source)

    def run_to(self, t: float) -> None:
        """Let fake time pass up to ``t``: RS's loop runs each timer at its due time."""
        self.loop.advance_to(t)

    def next_due(self) -> float:
        """When x is next due (services/rs/service.py's next_due: the one place that says)."""
        assert self.x is not None
        due = next_due(self.x)
        assert due is not None, "nothing is due for x"
        return due[0]

    def serve_watched(self) -> int:
        """Run the callbacks of the descriptors RS's loop watches that are readable now (as a
        turn of the loop would); returns how many ran."""
        fds = [fd for fd in self.loop.watched if isinstance(fd, int)]
        ready = select.select(fds, [], [], 0)[0] if fds else []
        for fd in ready:
            fn = self.loop.watched.get(fd)
            if fn is not None:
                fn()
        return len(ready)

    def crash(self, signo: int = 9) -> None:
        """The kernel reports x's instance dead by a signal."""
        assert self.x is not None and self.x.instance is not None
        self.rs.exited(self.x.instance.endpoint, 0, signo)

    def spawns(self) -> int:
        return len(self.kernel.calls(KCall.PRIVCTL))

    def kills(self) -> list[int]:
        return [a["signal"] for a in self.kernel.calls(KCall.KILL)]

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in events.read_all(self.tmp) if event is None or r["kind"] == event]

    def published(self, key: str) -> list[Any]:
        return [m["value"] for _, m in self.kernel.sends if m.get("key") == key]
