"""Every kernel call validates its own arguments (docs/PROTOCOL.md sections 6 and 8): a
malformed one is answered EINVAL, an unknown process ESRCH, a port or line outside the
caller's privileges ECALLDENIED, and nothing is done."""
from __future__ import annotations

import signal
from typing import Any

import pytest

from minikern.const import Err, IrqOp, KCall
from minikern.ipc import Connection
from tests.conftest import SystemUnderTest

pytestmark = pytest.mark.timeout(60)


def status(conn: Connection, call: KCall, **args: Any) -> int:
    return conn.kcall_status(call, **args)[0]


def test_kill_takes_only_the_documented_signals(system: SystemUnderTest) -> None:
    c = system.connect("client")
    echo = system.endpoint_of("echo")
    for bad in (0, 65, -9, int(signal.SIGHUP), int(signal.SIGQUIT), int(signal.SIGUSR2), "9",
                None):
        assert status(c, KCall.KILL, endpoint=echo, signal=bad) == Err.EINVAL, bad
    assert system.proc(echo) is not None  # none of them reached it
    assert status(c, KCall.KILL, endpoint=echo + (1 << 15), signal=int(signal.SIGTERM)) == \
        Err.ESRCH  # a stale endpoint names no process
    assert status(c, KCall.KILL, endpoint=200, signal=int(signal.SIGTERM)) == Err.ESRCH
    assert status(c, KCall.KILL, endpoint=echo, signal=int(signal.SIGCONT)) == Err.OK


def test_setalarm_takes_a_non_negative_ms_and_tells_what_was_left(
        system: SystemUnderTest) -> None:
    c = system.connect("client")
    for bad in (-1, "100", 1.5, 1 << 31):
        assert status(c, KCall.SETALARM, ms=bad) == Err.EINVAL, bad
    assert c.kcall(KCall.SETALARM, ms=0)["left_ms"] == 0  # nothing was set
    assert c.kcall(KCall.SETALARM, ms=600_000)["left_ms"] == 0
    left = c.kcall(KCall.SETALARM, ms=0)["left_ms"]  # cancels, and says what was left
    assert 590_000 <= left <= 600_000
    assert c.kcall(KCall.SETALARM, ms=0)["left_ms"] == 0  # cancelled: nothing left


def test_port_io_arguments(system: SystemUnderTest) -> None:
    d = system.connect("driver")  # windows 0x1f0:8 and 0x3f6, no board in this system
    for bad in ({"port": 0x1F0, "size": 3}, {"port": 0x1F0, "size": 0},
                {"port": -1}, {"port": 1 << 16}, {"port": "0x1f0"}, {"port": None},
                {"port": 0x1F0, "value": "x"}):
        assert status(d, KCall.DEVIO, **bad) == Err.EINVAL, bad
    assert status(d, KCall.DEVIO, port=0x1F7, size=2) == Err.ECALLDENIED  # crosses the end
    assert status(d, KCall.DEVIO, port=0x1EF) == Err.ECALLDENIED
    assert status(d, KCall.DEVIO, port=0x1F0, size=4) == Err.ENODEV  # allowed: no board
    assert status(d, KCall.DEVIO, port=0x3F6) == Err.ENODEV
    for bad_ops in ([], None, [[0x1F0, 1]], [[0x1F0, 1, None], [0x1F0, 3, None]],
                    [[0x1F0, 1, "x"]], "ops"):
        assert status(d, KCall.VDEVIO, ops=bad_ops) == Err.EINVAL, bad_ops
    # one port outside the windows refuses the whole batch
    assert status(d, KCall.VDEVIO, ops=[[0x1F0, 1, None], [0x3F7, 1, None]]) == \
        Err.ECALLDENIED
    assert status(d, KCall.VDEVIO, ops=[[0x1F0, 1, None], [0x3F6, 1, 0]]) == Err.ENODEV


def test_irqctl_arguments(system: SystemUnderTest) -> None:
    d = system.connect("driver")  # holds line 14
    for bad in ({"op": int(IrqOp.ENABLE), "irq": 16}, {"op": int(IrqOp.ENABLE), "irq": -1},
                {"op": 9, "irq": 14}, {"op": int(IrqOp.ENABLE)}, {"irq": 14}):
        assert status(d, KCall.IRQCTL, **bad) == Err.EINVAL, bad
    assert status(d, KCall.IRQCTL, op=int(IrqOp.SETPOLICY), irq=15) == Err.ECALLDENIED
    assert status(d, KCall.IRQCTL, op=int(IrqOp.SETPOLICY), irq=0) == Err.ECALLDENIED


def test_privctl_arguments(system: SystemUnderTest) -> None:
    c = system.connect("client")
    priv = {"sys_proc": True, "traps": [], "ipc": [], "kcalls": [], "io": [], "irq": [],
            "mem": []}
    good = {"label": "x", "module": "tests.kernel.agent", "args": ["echo"], "priv": priv}
    before = len(system.info()["procs"])
    for change in ({"label": ""}, {"label": 7}, {"module": None}, {"args": "echo"},
                   {"args": [1]}, {"priv": None}, {"priv": {**priv, "irq": [16]}}):
        assert status(c, KCall.PRIVCTL, **{**good, **change}) == Err.EINVAL, change
    assert len(system.info()["procs"]) == before  # nothing was started


def test_privctl_into_a_slot_outside_the_table_is_refused(system: SystemUnderTest) -> None:
    c = system.connect("client")
    priv = {"sys_proc": True, "traps": [], "ipc": [], "kcalls": [], "io": [], "irq": [],
            "mem": []}
    before = len(system.info()["procs"])
    for slot in (256, 1 << 20):  # slots are 0..255 (PROTOCOL section 2)
        answer = system.background(lambda s: c.kcall_status(
            KCall.PRIVCTL, label="x", module="tests.kernel.agent", args=["echo"], priv=priv,
            slot=s), slot)
        assert answer.result(10)[0] != Err.OK, slot  # answered, and refused
    assert len(system.info()["procs"]) == before
