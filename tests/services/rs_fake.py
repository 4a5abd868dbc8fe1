"""RS's core without processes: a kernel connection that records what RS asks of it and a fake
clock, so its timing rules are tested exactly and instantly."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minikern import events, sysconf
from minikern.proto import Message
from minikern.const import RS, Err, KCall
from services.rs.operations import Supervisor
from services.rs.scripts import ScriptRunner
from services.rs.service import State, Svc

OPERATOR = 500  # the endpoint of an operator tool in the fake kernel's table
COMPONENT = 501  # a component's endpoint: not an operator

CONF = """
service rs {{ program services.rs.main; system PRIVCTL KILL GETINFO SETALARM SHUTDOWN; }};
service x {{ program drivers.hello; ipc ALL; {keys} }};
service dep {{ program drivers.hello; depends x; period off; }};
"""


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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
    """One Supervisor over a FakeKernel and a FakeClock; service ``x`` has ``keys``."""

    def __init__(self, tmp: Path, keys: str, scripts_dir: Path | None = None) -> None:
        self.tmp, self.clock, self.kernel = tmp, FakeClock(), FakeKernel()
        conf = sysconf.parse(CONF.format(keys=keys))
        scripts = ScriptRunner(tmp, scripts_dir) if scripts_dir else None
        self.rs = Supervisor(self.kernel, conf, tmp, self.clock, scripts=scripts)

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

    def run_to(self, t: float) -> None:
        """Let fake time pass up to ``t`` as RS's alarm would: wake at each due time, tick."""
        for _ in range(100_000):
            due = self.rs.next_wakeup()
            if due > t:
                self.clock.now = t
                self.rs.tick()
                return
            self.clock.now = max(self.clock.now, due)
            self.rs.tick()
        raise AssertionError(f"RS is always due before {t}: a timer that never moves on")

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
