"""RECEIVE from oneself can never complete: it fails at once with ELOCKED (docs/PROTOCOL.md
section 4), whatever the generation of the caller's endpoint."""
from __future__ import annotations

import pytest

from minikern.const import Err
from minikern.ipc import IpcError
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)


def test_receive_from_oneself_at_a_reused_slot_is_elocked(system: SystemUnderTest) -> None:
    first = system.connect("c1", "client")
    slot = first.endpoint & 0x7FFF
    first.close()
    system.conns.remove(first)
    wait_for(lambda: system.proc(first.endpoint) is None, what="the first tool's slot freed")
    again = system.connect("c2", "client")
    assert again.endpoint & 0x7FFF == slot and again.endpoint >> 15 >= 1  # a new generation
    fut = system.background(again.receive, again.endpoint)
    with pytest.raises(IpcError) as e:
        fut.result(10)
    assert e.value.code == Err.ELOCKED
