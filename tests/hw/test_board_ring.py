"""The board's end of a ring (hw.board_ring) without a system: the test writes the driver's
slots straight into the shared memory, as a hostile driver could, and reads the answers."""
from __future__ import annotations

import random
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import pytest

from hw.board_ring import Offer, Ring
from minikern.const import Err
from minikern.proto import ring
from minikern.proto.ring import CHAIN, Op

pytestmark = pytest.mark.timeout(30)

WINDOW = (0x3F8, 8)  # the UART's ports: 0x3F8..0x3FF


class FakeMachine:
    """Ports as a dict; every access recorded, so a test sees what was performed."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}
        self.log: list[tuple[str, int, int, int]] = []

    def read(self, port: int, size: int, who: tuple[int, str]) -> int:
        self.log.append(("in", port, size, 0))
        return self.ports.get(port, 0xFF)

    def write(self, port: int, size: int, value: int, who: tuple[int, str]) -> None:
        self.log.append(("out", port, size, value))
        self.ports[port] = value


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, caller: int, label: str, call: str, target: int, error: str,
              **extra: Any) -> None:
        self.records.append({"caller": caller, "label": label, "call": call, "target": target,
                             "error": error, **extra})


class Rig:
    """A Ring, and the driver's side of it played by hand."""

    def __init__(self) -> None:
        self.machine, self.audit, self.counters = FakeMachine(), FakeAudit(), Counter[str]()
        self.dma_calls: list[tuple[str, int, int, bool]] = []
        self.ring = Ring(Offer(7, "tty", (WINDOW,), ((0x100000, 0x1000),)), cast(Any, self.machine),
                         cast(Any, self.audit), self.counters, self.dma, self.undma)
        self.ring.handed_over()
        self.words = self.ring.words
        self.seq = 1

    def dma(self, owner: Offer, device: str, base: int, length: int, write: bool) -> tuple[int, int]:
        self.dma_calls.append((device, base, length, write))
        return int(Err.OK), 0

    def undma(self, owner: Offer, device: str, base: int) -> tuple[int, int]:
        return int(Err.OK), 3

    def post(self, op: int, size: int, port: int, value: int = 0, seq: int | None = None) -> int:
        n = self.seq if seq is None else seq
        i = ring.request_word(n)
        self.words[i + 1] = value
        self.words[i] = ring.head(n, op, size, port)
        if seq is None:
            self.seq += 1
        return n

    def answer(self, n: int) -> tuple[int, int] | None:
        j = ring.answer_word(n)
        a = self.words[j]
        if a & ring.SEQ_MASK != n & ring.SEQ_MASK:
            return None
        return ring.status_of(a), int(self.words[j + 1])


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.ring.close()


def test_accesses_inside_the_window_are_performed_and_answered(rig: Rig) -> None:
    out = rig.post(Op.OUT, 1, 0x3FF, 0xA5)
    inb = rig.post(Op.IN, 1, 0x3FF)
    assert rig.ring.serve(64) == 2
    assert rig.answer(out) == (Err.OK, 0) and rig.answer(inb) == (Err.OK, 0xA5)
    assert rig.ring.serve(64) == 0  # nothing new: nothing served


def test_a_port_outside_the_window_is_refused_audited_and_never_performed(rig: Rig) -> None:
    a = rig.post(Op.OUT, 1, 0x2FF, 1)  # below the window
    b = rig.post(Op.IN, 2, 0x3FF)  # a word at 0x3FF reaches 0x400
    c = rig.post(Op.IN | CHAIN, 1, 0x3F9)  # a chain with one bad port: all refused
    rig.post(Op.OUT, 1, 0x400, 0x55)
    assert rig.ring.serve(64) == 3
    assert [rig.answer(n) for n in (a, b, c, c + 1)] == [(Err.ECALLDENIED, 0)] * 4
    assert rig.machine.log == []  # none performed, not even the chain's good read
    assert rig.counters["port_refused"] == 3
    assert [(r["call"], r["target"], r["error"], r["path"], r["label"]) for r in rig.audit.records] \
        == [("DEVIO", port, "ECALLDENIED", "channel", "tty") for port in (0x2FF, 0x3FF, 0x400)]


def test_garbage_slots_get_refusals_and_are_counted_never_a_crash(rig: Rig) -> None:
    rnd = random.Random(14)
    for _ in range(40):
        for _ in range(ring.SLOTS // 2):
            n = rig.seq
            rig.seq += 1
            i = ring.request_word(n)
            rig.words[i + 1] = rnd.choice([0, rnd.getrandbits(8), rnd.getrandbits(64)])
            rig.words[i] = (rnd.getrandbits(32) << 32) | (n & ring.SEQ_MASK)  # right seq, any op
        while rig.ring.serve(ring.SLOTS):
            pass
    rig.post(Op.OUT, 1, 0x3FF, 0)  # a last clean slot ends any chain the garbage left open
    while rig.ring.serve(ring.SLOTS):
        pass
    assert rig.ring.next == rig.seq  # everything written was answered
    answered = [rig.answer(n) for n in range(rig.seq - ring.SLOTS // 2, rig.seq)]
    assert all(a is not None and a[0] in (Err.OK, Err.EINVAL, Err.ECALLDENIED, Err.EPERM)
               for a in answered)
    assert rig.counters["malformed"] > 0
    assert all(p >= 0x3F8 and p + s <= 0x400 for _, p, s, _ in rig.machine.log)  # in the window
    refused = rig.counters["port_refused"]
    assert refused > 0 and len(rig.audit.records) == refused  # every refusal audited


def test_a_chain_is_served_only_when_whole(rig: Rig) -> None:
    first = rig.seq
    rig.post(Op.OUT | CHAIN, 1, 0x3FF, 9, seq=first)  # its second slot not written yet
    rig.seq += 2
    assert rig.ring.serve(64) == 0 and rig.machine.log == []
    rig.post(Op.IN, 1, 0x3FF, seq=first + 1)
    assert rig.ring.serve(64) == 1
    assert rig.answer(first) == (Err.OK, 0) and rig.answer(first + 1) == (Err.OK, 9)


def test_a_chain_as_long_as_the_ring_is_refused(rig: Rig) -> None:
    for _ in range(ring.SLOTS):
        rig.post(Op.IN | CHAIN, 1, 0x3F8)
    assert rig.ring.serve(64) == 1
    assert all(rig.answer(n) == (Err.EINVAL, 0) for n in range(1, ring.SLOTS + 1))
    assert rig.counters["malformed"] == 1 and rig.machine.log == []


def test_a_malformed_slot_in_a_chain_refuses_the_chain(rig: Rig) -> None:
    rig.post(Op.OUT | CHAIN, 1, 0x3FF, 1)
    rig.post(Op.SIN, 1, 0x3FF, 4)  # string I/O cannot be chained
    assert rig.ring.serve(64) == 1
    assert rig.answer(1) == rig.answer(2) == (Err.EINVAL, 0) and rig.machine.log == []


def test_only_the_expected_sequence_number_moves_the_board(rig: Rig) -> None:
    rig.post(Op.OUT, 1, 0x3FF, 1, seq=2)  # one ahead of what the board waits for
    rig.post(Op.OUT, 1, 0x3FF, 1, seq=1 + ring.SLOTS)  # a lap ahead, in the expected slot
    assert rig.ring.serve(64) == 0 and rig.ring.next == 1
    rig.post(Op.OUT, 1, 0x3FF, 2, seq=1)
    assert rig.ring.serve(64) == 2 and rig.ring.next == 3 and rig.machine.ports[0x3FF] == 1


def test_string_io_goes_through_the_data_area(rig: Rig) -> None:
    area = ring.DATA_OFFSET
    rig.ring.mm[area:area + 4] = b"\x01\x02\x03\x04"
    rig.post(Op.SOUT, 1, 0x3FF, 4)
    rig.post(Op.SIN, 1, 0x3FF, 3)
    rig.post(Op.SIN, 1, 0x3FE, 3)  # ... 0x3FE is in the window too
    rig.post(Op.SIN, 2, 0x3FF, 1)  # but a word at 0x3FF is not
    assert rig.ring.serve(64) == 4
    assert [rig.answer(n) for n in (1, 2, 3)] == [(Err.OK, 0)] * 3
    assert rig.answer(4) == (Err.ECALLDENIED, 0)
    assert [v for kind, _, _, v in rig.machine.log if kind == "out"] == [1, 2, 3, 4]
    assert rig.ring.mm[area:area + 3] == b"\xff" * 3  # the last SIN: 0x3FE reads as nothing


def test_dma_slots_reach_the_grant_callbacks(rig: Rig) -> None:
    a = rig.post(Op.DMA, 1, ring.device_id("ata") or 0, 0x100000 | 0x800 << 32)
    b = rig.post(Op.UNDMA, 0, ring.device_id("ata") or 0, 0x100000)
    assert rig.ring.serve(64) == 2
    assert rig.dma_calls == [("ata", 0x100000, 0x800, True)]
    assert rig.answer(a) == (Err.OK, 0) and rig.answer(b) == (Err.OK, 3)


def test_the_board_rings_the_driver_only_when_it_waits(rig: Rig) -> None:
    peer = socket.socket(fileno=ring_peer(rig))
    try:
        rig.post(Op.IN, 1, 0x3FF)
        rig.ring.serve(64)
        assert rig.counters["calls"] == 0
        rig.words[ring.W_DRIVER_WAITS] = 1
        rig.post(Op.IN, 1, 0x3FF)
        rig.ring.serve(64)
        assert rig.counters["calls"] == 1 and peer.recv(16) == b"\1"
        assert rig.ring.drain()  # nothing to drain, the driver's end still open
        peer.close()
        assert not rig.ring.drain()  # EOF: the driver is gone
    finally:
        peer.close()


def ring_peer(rig: Rig) -> int:
    """The driver's end of the bell: a fresh rig whose peer the test keeps."""
    rig.ring.close()
    r = Ring(Offer(7, "tty", (WINDOW,), ()), cast(Any, rig.machine), cast(Any, rig.audit),
             rig.counters, rig.dma, rig.undma)
    fd = r.peer.detach()
    r.handed_over()
    rig.ring, rig.words = r, r.words
    return fd


def test_every_field_of_a_single_access_is_checked(rig: Rig) -> None:
    bad = [rig.post(Op.IN, 1, 0x3FF, 7),  # an IN with a value
           rig.post(Op.OUT, 1, 0x3FF, 0x1FF),  # a value wider than a byte
           rig.post(Op.IN, 3, 0x3F8),  # size 3
           rig.post(0x7F, 1, 0x3F8)]  # no such op
    assert rig.ring.serve(64) == 4
    assert [rig.answer(n) for n in bad] == [(Err.EINVAL, 0)] * 4
    assert rig.counters["malformed"] == 4 and rig.machine.log == []
