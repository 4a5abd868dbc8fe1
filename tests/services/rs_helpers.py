"""Helpers for the RS tests: a system booted with RS, its service table, its events."""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

from minikern.events import read_all
from minikern.const import RsReq
from minikern import rsctl as ctl
from tests.conftest import SystemUnderTest, wait_for

RS_CONF = """
boot {boot};
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service user {{ user yes; ipc ALL; }};
service rs {{ program services.rs.main; args {start};
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; }};
service hello {{ program drivers.hello; ipc SYSTEM USER rs ds; {hello} }};
service agent {{ program tests.services.rs_agent; ipc ALL; {agent} }};
service hw {{ program hw.board; args --nic none --serial socket; ipc SYSTEM rs; period 200ms; }};
"""


def boot_rs(make_system: Callable[..., SystemUnderTest], hello: str = "period 1s;",
            agent: str = "period off;", start: str = "hello", ds: bool = False,
            board: bool = False) -> SystemUnderTest:
    conf = RS_CONF.replace("{hello}", hello.replace("{", "{{").replace("}", "}}"))
    conf = conf.replace("{agent}", agent).replace("{start}", start)
    s = make_system(("hw " if board else "") + ("rs ds" if ds else "rs"), conf)
    for label in start.split():
        wait_state(s, label, "up")
    return s


def status(s: SystemUnderTest) -> dict[str, dict[str, Any]]:
    return {x["label"]: x for x in ctl.request(s.run_dir, RsReq.STATUS)["services"]}


def service(s: SystemUnderTest, label: str) -> dict[str, Any]:
    return status(s)[label]


def wait_state(s: SystemUnderTest, label: str, state: str, timeout: float = 10.0
               ) -> dict[str, Any]:
    return wait_for(lambda: (lambda v: v if v["state"] == state else None)(service(s, label)),
                    timeout, f"{label} {state}")


def events(s: SystemUnderTest, event: str | None = None, label: str | None = None
           ) -> list[dict[str, Any]]:
    """The events of kind ``event`` about ``label`` (either may be None: all), in order."""
    return [e for e in read_all(s.run_dir) if (event is None or e["kind"] == event)
            and (label is None or e["label"] == label)]


def wait_event(s: SystemUnderTest, event: str, label: str, count: int = 1,
               timeout: float = 10.0) -> dict[str, Any]:
    """The ``count``-th event of that kind for ``label``."""
    def nth() -> dict[str, Any] | None:
        found = events(s, event, label)
        return found[count - 1] if len(found) >= count else None
    return wait_for(nth, timeout, f"{event} #{count} of {label}")
