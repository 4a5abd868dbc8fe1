"""A privilege structure arrives as a plain map (docs/PROTOCOL.md section 7) and is validated
completely before the kernel acts on it; a window (base, length) holds exactly its ports.

In-process: the structure is pure data, so every rule is checked without booting a system.
"""
from __future__ import annotations

from typing import Any

import pytest

from minikern.const import Call, KCall
from minikern.kernel.priv import Priv

pytestmark = pytest.mark.timeout(10)


def wire(**changes: Any) -> dict[str, Any]:
    w: dict[str, Any] = {"sys_proc": True, "traps": [int(Call.SENDREC), int(Call.RECEIVE)],
                         "ipc": ["rs", "ALL_SYS"], "kcalls": [int(KCall.GETINFO)],
                         "io": [[0x3F8, 8]], "irq": [4], "mem": [[0xA0000, 0x20000]]}
    w.update(changes)
    return w


def test_a_well_formed_structure_is_taken_as_it_says() -> None:
    p = Priv.from_wire(wire())
    assert p is not None
    assert p.sys_proc is True
    assert p.traps == {Call.SENDREC, Call.RECEIVE} and p.kcalls == {KCall.GETINFO}
    assert p.io == ((0x3F8, 8),) and p.irq == {4} and p.mem == ((0xA0000, 0x20000),)
    assert p.ipc_labels == {"rs"}  # group names are not labels
    assert (p.ipc_all, p.ipc_sys, p.ipc_user, p.ipc_kernel) == (False, True, False, False)


@pytest.mark.parametrize("ipc, groups", [
    (["ALL"], (True, False, False, True)),  # ALL includes the kernel's endpoints
    (["SYSTEM"], (False, False, False, True)),
    (["USER"], (False, False, True, False)),
    (["ALL_SYS"], (False, True, False, False)),
    (["NONE"], (False, False, False, False)),
])
def test_send_mask_groups(ipc: list[str], groups: tuple[bool, ...]) -> None:
    p = Priv.from_wire(wire(ipc=ipc))
    assert p is not None
    assert (p.ipc_all, p.ipc_sys, p.ipc_user, p.ipc_kernel) == groups
    assert p.ipc_labels == frozenset()


@pytest.mark.parametrize("changes", [
    {"sys_proc": 1},                        # not a bool
    {"traps": [999]},                       # no such trap
    {"traps": "SENDREC"},
    {"kcalls": [999]},                      # no such kernel call
    {"kcalls": {"GETINFO": 1}},
    {"ipc": ["rs", 7]},                     # labels are strings
    {"ipc": "ALL"},
    {"irq": [16]},                          # a PC has IRQ lines 0..15
    {"irq": [-1]},
    {"irq": ["4"]},
    {"irq": 4},
    {"io": [[0x3F8]]},                      # a window is [base, length]
    {"io": [[0x3F8, 8, 1]]},
    {"io": [(0x3F8, 8)]},
    {"io": [[0x3F8, "8"]]},
    {"io": [["0x3F8", 8]]},
    {"io": [[-1, 8]]},
    {"io": [[0x3F8, 0]]},                   # an empty window
    {"io": [[0xFFFF, 2]]},                  # past the 16-bit port space
    {"io": [[0x3F8, 8]] * 65},              # MINIX's s_io_tab holds 64
    {"io": {"base": 0x3F8}},
    {"mem": [[0xFFFFFFFF, 2]]},             # past the 32-bit physical space
    {"mem": [[0xA0000, -1]]},
])
def test_a_malformed_field_refuses_the_whole_structure(changes: dict[str, Any]) -> None:
    assert Priv.from_wire(wire(**changes)) is None


@pytest.mark.parametrize("key", ["sys_proc", "traps", "ipc", "kcalls", "io", "irq", "mem"])
def test_a_missing_field_refuses_the_whole_structure(key: str) -> None:
    w = wire()
    del w[key]
    assert Priv.from_wire(w) is None


@pytest.mark.parametrize("w", [None, [], "priv", 1])
def test_a_structure_that_is_not_a_map_is_refused(w: object) -> None:
    assert Priv.from_wire(w) is None


def test_the_edges_of_the_spaces_are_inside() -> None:
    p = Priv.from_wire(wire(io=[[0, 1], [0xFFFF, 1]] + [[0x3F8, 8]] * 62, irq=[0, 15],
                            mem=[[0xFFFFFFFF, 1]]))
    assert p is not None and p.irq == {0, 15} and len(p.io) == 64


def test_a_window_holds_exactly_its_ports() -> None:
    p = Priv.from_wire(wire(io=[[0x3F8, 8], [0x1F0, 8]]))
    assert p is not None
    assert p.holds_io(0x3F8, 1) and p.holds_io(0x3FF, 1) and p.holds_io(0x3FC, 4)
    assert p.holds_io(0x1F0, 2) and p.holds_io(0x1F7, 1)
    assert not p.holds_io(0x3F7, 1)   # one below
    assert not p.holds_io(0x400, 1)   # one past
    assert not p.holds_io(0x3FE, 4)   # starts inside, ends outside
    assert not p.holds_io(0x3F6, 4)   # starts outside, ends inside
    assert not p.holds_io(0x2F8, 1)


def test_who_may_be_sent_to() -> None:
    labels = Priv.from_wire(wire(ipc=["rs"]))
    sys_only = Priv.from_wire(wire(ipc=["ALL_SYS"]))
    user_only = Priv.from_wire(wire(ipc=["USER"]))
    everyone = Priv.from_wire(wire(ipc=["ALL"]))
    assert labels and sys_only and user_only and everyone
    assert labels.may_send_to("rs", True) and labels.may_send_to("rs", False)
    assert not labels.may_send_to("ds", True) and not labels.may_send_to("sh", False)
    assert sys_only.may_send_to("ds", True) and not sys_only.may_send_to("sh", False)
    assert user_only.may_send_to("sh", False) and not user_only.may_send_to("ds", True)
    assert everyone.may_send_to("ds", True) and everyone.may_send_to("sh", False)
