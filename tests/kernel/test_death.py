"""Death: the kernel sees it at once, clears every IPC reference, and tells the manager."""
from __future__ import annotations

import json
import os
import signal

import pytest

from minikern import ipc, params
from minikern.proto import Message
from minikern.const import (
    SYSTEM,
    Err,
    KCall,
    Kind,
    KMsg,
    endpoint_generation,
    endpoint_slot,
)
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)


def spawn(system: SystemUnderTest, conn: ipc.Connection, mode: str, *args: str,
          label: str = "victim", slot: int | None = None, wait: bool = True) -> tuple[int, int]:
    fields = {"label": label, "module": "tests.kernel.agent", "args": [mode, *args],
              "priv": system.conf.services["agent"].priv()}
    if slot is not None:
        fields["slot"] = slot
    r = conn.kcall(KCall.PRIVCTL, **fields)
    if wait:
        wait_for(lambda: (system.proc(r["endpoint"]) or {}).get("ready"), what=f"{label} ready")
    return r["endpoint"], r["pid"]


def test_blocked_sender_and_receiver_get_edeadsrcdst(system: SystemUnderTest) -> None:
    mgr, a, b = (system.connect(x, "client") for x in ("mgr", "a", "b"))
    victim, pid = spawn(system, mgr, "idle")
    sending = system.background(a.send, victim, Message(1))
    receiving = system.background(b.receive, victim)
    wait_for(lambda: system.blocked(a.endpoint, "send") and system.blocked(b.endpoint, "recv"))
    os.kill(pid, signal.SIGKILL)
    assert sending.result(10) == Err.EDEADSRCDST
    with pytest.raises(ipc.IpcError) as e:
        receiving.result(10)
    assert e.value.code == Err.EDEADSRCDST


def test_manager_is_told_the_exit_signal(system: SystemUnderTest) -> None:
    mgr = system.connect("mgr", "client")
    victim, pid = spawn(system, mgr, "idle")
    os.kill(pid, signal.SIGKILL)
    m = mgr.receive(SYSTEM)
    assert (m.kind, m.type) == (Kind.KERNEL, KMsg.EXIT)
    assert m.fields["endpoint"] == victim and m.fields["pid"] == pid
    assert m.fields["signal"] == signal.SIGKILL and m.fields["status"] == 0
    assert "victim" in system.console() and "SIGKILL" in system.console()


def test_a_blocked_send_of_the_dead_is_dropped(system: SystemUnderTest) -> None:
    mgr, a = system.connect("mgr", "client"), system.connect("a", "client")
    victim, pid = spawn(system, mgr, "sender", str(a.endpoint), wait=False)
    wait_for(lambda: system.blocked(victim, "send"))
    os.kill(pid, signal.SIGKILL)
    mgr.receive(SYSTEM)  # the exit notice: the kernel has cleared the endpoint by now
    fut = system.background(a.receive)
    wait_for(lambda: system.blocked(a.endpoint, "recv"))  # the dead sender's message is gone
    mgr.sendnb(a.endpoint, Message(3))
    assert fut.result(10).source == mgr.endpoint


def test_stale_endpoint_never_reaches_the_new_occupant(system: SystemUnderTest) -> None:
    mgr, a = system.connect("mgr", "client"), system.connect("a", "client")
    old, pid = spawn(system, mgr, "echo", slot=40)
    assert a.sendrec(old, Message(1, {"v": 1})).fields == {"v": 1}
    os.kill(pid, signal.SIGKILL)
    mgr.receive(SYSTEM)
    new, _ = spawn(system, mgr, "echo", slot=40)
    assert endpoint_slot(new) == endpoint_slot(old) == 40
    assert endpoint_generation(new) == endpoint_generation(old) + 1
    assert a.send(old, Message(1)) == Err.EDEADSRCDST
    assert a.notify(old) == Err.EDEADSRCDST
    with pytest.raises(ipc.IpcError) as e:
        a.sendrec(old, Message(1))
    assert e.value.code == Err.EDEADSRCDST
    assert a.sendrec(new, Message(1, {"v": 2})).fields == {"v": 2}


def test_unhandled_exception_exits_with_status_and_record(system: SystemUnderTest) -> None:
    mgr = system.connect("mgr", "client")
    victim, pid = spawn(system, mgr, "no-such-mode", wait=False)  # the agent raises
    m = mgr.receive(SYSTEM)
    assert m.fields["pid"] == pid and m.fields["status"] == params.EXIT_EXCEPTION
    record = json.loads((system.run_dir / params.CRASH_DIR / f"{pid}.json").read_text())
    assert record["kind"] == "exception" and "unknown mode" in record["traceback"]


def test_a_components_stdout_and_stderr_reach_the_console(system: SystemUnderTest) -> None:
    """The kernel starts every component with its output on the console (console.log, as
    README's 'Where the logs are' says), so a crash's traceback is there to read."""
    mgr = system.connect("mgr", "client")
    endpoint, _ = spawn(system, mgr, "no-such-mode", label="broken", wait=False)
    wait_for(lambda: system.proc(endpoint) is None, what="the broken component's exit")
    wait_for(lambda: "unknown mode 'no-such-mode'" in system.console(),
             what="its traceback (stderr) on the console")
    assert "Traceback" in system.console()
