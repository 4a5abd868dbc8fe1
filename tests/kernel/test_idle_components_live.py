"""A component dies with the kernel, and only then: one that waits in RECEIVE longer than the
IPC library's periodic check that its kernel still lives (docs: minikern/ipc.py) keeps
living, and answers when a message finally comes."""
from __future__ import annotations

import time

import pytest

from minikern import ipc
from minikern.proto import Message
from tests.conftest import SystemUnderTest

pytestmark = pytest.mark.timeout(60)


def test_a_component_idle_across_several_kernel_checks_still_answers(
        system: SystemUnderTest) -> None:
    echo = system.endpoint_of("echo")
    c = system.connect("client")
    assert c.sendrec(echo, Message(1, {"n": 1})).fields == {"n": 1}
    first = system.proc(echo)
    assert first is not None
    pid = first["pid"]
    # Idle for three check periods: each one the component's library asks whether its
    # kernel lives; the kernel's table must hold it the whole time (a check over a span,
    # so this loop watches for the whole span rather than waiting for a condition).
    until = time.monotonic() + 3 * ipc.KERNEL_CHECK_S + 0.5
    while time.monotonic() < until:
        p = system.proc(echo)
        assert p is not None and p["pid"] == pid, "the idle component left"
        time.sleep(0.1)
    assert c.sendrec(echo, Message(1, {"n": 2})).fields == {"n": 2}
