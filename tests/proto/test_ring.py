"""The ring's slot encoding (minikern.proto.ring, docs/PROTOCOL.md section 10): fields, bounds,
and a decoder that refuses every out-of-range field and never raises."""
from __future__ import annotations

import random

import pytest

from minikern.const import Err
from minikern.proto import ring
from minikern.proto.ring import CHAIN, Op

pytestmark = pytest.mark.timeout(30)


def test_a_head_carries_its_fields_and_an_answer_its_signed_status() -> None:
    h = ring.head(0x1_0000_0005, Op.OUT, 2, 0xC010)  # the sequence number wraps at 32 bits
    assert h & ring.SEQ_MASK == 5 and ring.decode(h, 0xBEEF) == ring.Slot(Op.OUT, False, 2, 0xC010,
                                                                          0xBEEF)
    chained = ring.decode(ring.head(9, Op.IN | CHAIN, 4, 0x3F8), 0)
    assert chained is not None and chained.chain and chained.op == Op.IN
    for status in (Err.OK, Err.EINVAL, Err.ECALLDENIED, Err.EPERM):
        a = ring.answer(77, status)
        assert a & ring.SEQ_MASK == 77 and ring.status_of(a) == status


def test_slots_wrap_around_the_ring() -> None:
    assert ring.request_word(1) == ring.request_word(1 + ring.SLOTS) == ring.W_REQUESTS + 2
    assert ring.answer_word(ring.SLOTS - 1) == ring.W_ANSWERS + 2 * (ring.SLOTS - 1)
    assert ring.W_ANSWERS + 2 * ring.SLOTS == ring.DATA_OFFSET // 8
    assert ring.SIZE == ring.DATA_OFFSET + ring.DATA_BYTES
    assert ring.W_BOARD_SLEEPS * 8 // 64 != ring.W_DRIVER_WAITS * 8 // 64  # own cache lines


@pytest.mark.parametrize("head,value", [
    (ring.head(1, Op.IN, 3, 0x3F8), 0),  # size 3
    (ring.head(1, Op.IN, 2, 0xFFFF), 0),  # reaches past the last port
    (ring.head(1, Op.IN, 1, 0x3F8), 1),  # an IN carries no value
    (ring.head(1, Op.OUT, 1, 0x3F8), 0x100),  # a value wider than the access
    (ring.head(1, 0, 1, 0x3F8), 0),  # no op 0
    (ring.head(1, 7, 1, 0x3F8), 0),  # nor past UNDMA
    (ring.head(1, 0x7F, 1, 0x3F8), 0),
    (ring.head(1, Op.SIN, 2, 0x1F0), 0),  # no count
    (ring.head(1, Op.SIN, 4, 0x1F0), ring.DATA_BYTES // 4 + 1),  # more than the string area
    (ring.head(1, Op.SIN | CHAIN, 2, 0x1F0), 1),  # string I/O is never part of a chain
    (ring.head(1, Op.SOUT, 3, 0x1F0), 1),
    (ring.head(1, Op.DMA, 1, 0), 0x100000 | 1 << 32),  # device 0
    (ring.head(1, Op.DMA, 1, len(ring.DMA_DEVICES) + 1), 0x100000 | 1 << 32),
    (ring.head(1, Op.DMA, 2, 1), 0x100000 | 1 << 32),  # the write flag is 0 or 1
    (ring.head(1, Op.DMA, 1, 1), 0x100000),  # length 0
    (ring.head(1, Op.UNDMA, 1, 1), 0x100000),  # UNDMA has no size
    (ring.head(1, Op.UNDMA, 0, 1), 1 << 32),  # base past 4 GiB
])
def test_out_of_range_fields_are_refused(head: int, value: int) -> None:
    assert ring.decode(head, value) is None


def test_string_and_dma_slots_decode() -> None:
    assert ring.decode(ring.head(1, Op.SIN, 4, 0x1F0), ring.DATA_BYTES // 4) is not None
    dma = ring.decode(ring.head(1, Op.DMA, 1, ring.device_id("ata") or 0), 0x100000 | 0x2000 << 32)
    assert dma == ring.Slot(Op.DMA, False, 1, 2, 0x100000 | 0x2000 << 32)
    assert ring.device_id("uart") is None


def test_the_decoder_never_raises_on_garbage() -> None:
    rnd = random.Random(14)
    admitted = 0
    for _ in range(20000):
        head, value = rnd.getrandbits(64), rnd.choice([0, 1, rnd.getrandbits(64), rnd.getrandbits(8)])
        slot = ring.decode(head, value)
        if slot is not None:
            admitted += 1
            assert slot.op in set(Op) and (slot.op not in (Op.IN, Op.OUT) or slot.size in ring.SIZES)
    assert admitted < 20000


def test_a_ring_of_another_version_is_refused_by_the_driver() -> None:
    words = memoryview(bytearray(ring.SIZE)).cast("Q")
    assert not ring.header_ok(words)  # zeros: not a ring
    ring.write_header(words)
    assert ring.header_ok(words)
    words[ring.W_VERSION] = ring.VERSION + 1
    assert not ring.header_ok(words)
    assert not ring.header_ok(memoryview(bytearray(ring.SIZE - 8)).cast("Q"))  # too small
