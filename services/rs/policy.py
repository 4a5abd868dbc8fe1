"""Recovery policy: pure, clock-injected decisions about a failed service.  Runs inside RS.

Nothing here reads a clock, sends a message or touches a process: every
function takes ``now`` (seconds, any monotonic origin), so the tests drive it
with a fake clock and get exact answers.

The rules, per service (system.conf keys, parsed by ``Policy.from_conf``):

* **backoff** (``backoff 1s;`` or ``backoff off;``): the first failure after a
  stable run restarts at once; the n-th consecutive failure after that waits
  ``min(base * 2**(n-1), cap)`` seconds (MINIX doubles per restart, capped at
  30 s).  ``off`` restarts at once every time.
* **stable** (``stable 10s;``): a failure of an instance that had been up at
  least this long starts the consecutive-failure count again from zero, so a
  service that crashes once a day is always restarted at once (the counter
  reset that systemd users ask for, systemd#43813).
* **intensity** (``restarts 10 60s;`` or ``restarts off;``): more than N
  restarts within T seconds gives up: the service is marked FAILED until an
  operator's ``bin/service up`` (Erlang/OTP's intensity/period, but the
  sliding window is cleared by that operator action, unlike systemd#10529).
* **script** (``script rs.single;``, or an absolute path to a script kept
  elsewhere, minikern/programs.py): RS runs recovery_scripts/<script> and
  does not restart by itself; the intensity limit still applies, so a script
  that restarts blindly cannot storm.
* **priority** (``priority 2;``): the scheduling queue every instance runs in,
  0 (highest) to 15, MINIX's; RS applies it to each new instance through the
  host's scheduler (minikern/sched.py).
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from minikern import params, sched
from minikern.sysconf import ConfError, Service, parse_duration

_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMG]i?B?|B)?", re.IGNORECASE)
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def backoff_delay(failures: int, base: float | None, cap: float = params.BACKOFF_CAP) -> float:
    """Delay before restarting after ``failures`` earlier consecutive failures (0: at once)."""
    if failures <= 0 or base is None or base <= 0:
        return 0.0
    return float(min(base * 2 ** (failures - 1), cap))


def parse_size(text: str) -> int:
    """'64M', '512KiB', '1G', '100000' (bytes)."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise ConfError(f"not a size: {text!r}")
    unit = (m.group(2) or "B").upper()[0]
    return int(float(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])


@dataclass(frozen=True)
class Policy:
    period: float | None = params.DEFAULT_PERIOD  # heartbeat period, None: no pings
    backoff: float | None = params.BACKOFF_BASE  # first delayed restart, None: never delay
    cap: float = params.BACKOFF_CAP
    stable: float = params.STABLE_TIME
    restarts: int | None = params.INTENSITY_RESTARTS  # intensity limit, None: none
    window: float = params.INTENSITY_WINDOW
    script: str | None = None
    memory_limit: int | None = None  # bytes of RSS
    cpu_limit: float | None = None  # percent of one CPU
    depends: tuple[str, ...] = ()
    publish: str = ""  # Data Store key of its state (up, restarting, down, failed)
    priority: int = params.DEFAULT_PRIORITY  # scheduling queue (minikern/sched.py)

    @classmethod
    def from_conf(cls, svc: Service) -> Policy:
        def dur(key: str, default: float | None) -> float | None:
            v = svc.get(key)
            if v is None:
                return default
            if v in ("off", "0", "no"):
                return None
            return parse_duration(v)

        restarts: int | None = params.INTENSITY_RESTARTS
        window = params.INTENSITY_WINDOW
        r = svc.keys.get("restarts")
        if r:
            if r[0] == "off":
                restarts = None
            else:
                try:
                    restarts = int(r[0])
                except ValueError:
                    raise ConfError(f"service {svc.label}: restarts wants N [T]") from None
                window = parse_duration(r[1]) if len(r) > 1 else window
        script = svc.get("script")
        if script is not None and not (_SCRIPT_NAME.fullmatch(script) or (
                script.startswith("/") and "\0" not in script)):
            raise ConfError(f"service {svc.label}: script must be a name in recovery_scripts/ "
                            "or an absolute path")
        cpu = svc.get("cpu_limit")
        mem = svc.get("memory_limit")
        try:
            cpu_limit = float(cpu.rstrip("%")) if cpu else None
        except ValueError:
            raise ConfError(f"service {svc.label}: cpu_limit wants a percentage") from None
        pri = svc.get("priority")
        try:
            priority = sched.parse(pri) if pri is not None else params.DEFAULT_PRIORITY
        except sched.PriorityError as e:
            raise ConfError(f"service {svc.label}: {e}") from None
        return cls(period=dur("period", params.DEFAULT_PERIOD),
                   backoff=dur("backoff", params.BACKOFF_BASE),
                   stable=dur("stable", params.STABLE_TIME) or 0.0,
                   restarts=restarts, window=window, script=script,
                   memory_limit=parse_size(mem) if mem else None, cpu_limit=cpu_limit,
                   depends=tuple(svc.keys.get("depends", [])),
                   publish=svc.get("publish") or f"rs.{svc.label}", priority=priority)


@dataclass(frozen=True)
class Decision:
    giveup: bool  # the intensity limit is exceeded: mark FAILED
    delay: float  # seconds to wait before restarting (0: at once)
    failures: int  # consecutive failures so far, this one included


@dataclass
class Tracker:
    """One service's failure history: what to do about its next failure."""

    policy: Policy
    failures: int = 0  # consecutive failures since the last stable run
    up_since: float | None = None
    history: deque[float] = field(default_factory=deque)  # times of recent failures

    def on_up(self, now: float) -> None:
        self.up_since = now

    def on_failure(self, now: float) -> Decision:
        p = self.policy
        if self.up_since is not None and now - self.up_since >= p.stable:
            self.failures = 0  # it had run stably: start counting again
        self.up_since = None
        while self.history and now - self.history[0] > p.window:
            self.history.popleft()
        if p.restarts is not None and len(self.history) >= p.restarts:
            self.failures += 1
            return Decision(giveup=True, delay=0.0, failures=self.failures)
        self.history.append(now)
        delay = backoff_delay(self.failures, p.backoff, p.cap)
        self.failures += 1
        return Decision(giveup=False, delay=delay, failures=self.failures)

    def in_window(self, now: float) -> int:
        """The failures the intensity limit counts at ``now`` (those of the last window)."""
        return sum(1 for t in self.history if now - t <= self.policy.window)

    def reset(self) -> None:
        """An operator revived the service: forget its failures."""
        self.failures, self.up_since = 0, None
        self.history.clear()
