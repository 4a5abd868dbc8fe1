"""Identity (minikern/identity.py): who an endpoint is, from the kernel, never a dead one's heir."""
from __future__ import annotations

import pytest

from minikern.const import endpoint_slot
from minikern import identity
from minikern.identity import Identity
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)


def test_a_reused_slot_never_answers_with_the_old_label(system: SystemUnderTest) -> None:
    ident = Identity(system.connect("observer", "client"))
    old = system.connect("old", "client")
    old_ep = old.endpoint
    who = ident.who(old_ep)
    assert who is not None and (who.label, who.operator) == ("old", True)
    old.close()
    wait_for(lambda: system.proc(old_ep) is None, what="old endpoint gone")
    new = system.connect("new", "client")  # the lowest free slot: the one just freed
    assert endpoint_slot(new.endpoint) == endpoint_slot(old_ep) and new.endpoint != old_ep
    who = ident.who(new.endpoint)
    assert who is not None and who.label == "new"
    assert ident.who(old_ep) is None  # and the dead endpoint is not answered for either


def test_one_getinfo_per_miss_none_per_hit_and_the_dead_are_dropped(
        system: SystemUnderTest) -> None:
    ident = Identity(system.connect("observer", "client"))
    a, b = system.connect("a", "client"), system.connect("b", "client")
    assert ident.label_of(a.endpoint) == "a"
    assert ident.refreshes == 1
    assert ident.label_of(b.endpoint) == "b"  # listed by the same GETINFO: a hit
    assert ident.label_of(a.endpoint) == "a"
    assert ident.refreshes == 1
    assert ident.who(12345) is None  # unknown: exactly one GETINFO, then no answer
    assert ident.refreshes == 2
    b_ep = b.endpoint
    b.close()
    wait_for(lambda: system.proc(b_ep) is None)
    assert ident.who(54321) is None  # any refresh drops what the kernel no longer lists
    assert b_ep not in ident.by_endpoint
    assert ident.endpoint_of("a") == a.endpoint


def test_a_row_s_received_count_is_checked() -> None:
    """GETINFO's ``received``: a count, or 0 when the row holds anything else."""
    base = {"endpoint": 9, "label": "hello", "operator": False}
    for given, kept in ((7, 7), (0, 0), (-1, 0), ("7", 0), (True, 0), (1.5, 0), (None, 0)):
        who = identity._parse({**base, "received": given})
        assert who is not None and who.received == kept, given
    who = identity._parse(base)  # a kernel that does not count yet
    assert who is not None and who.received == 0
