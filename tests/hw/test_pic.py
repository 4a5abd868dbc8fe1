"""8259A pair: initialisation, masking, priorities, EOI, cascade, spurious IRQs."""
from __future__ import annotations

import pytest

from hw.pic import PicPair
from tests.hw.conftest import Ports

MASTER_VECTOR = 0x50  # MINIX IRQ0_VECTOR
SLAVE_VECTOR = 0x70


def minix_init(ports: Ports, master_icw4: int = 0x05, slave_icw4: int = 0x01) -> None:
    """MINIX's intr_init: ICW1-ICW4 to both chips, then mask all but the cascade."""
    for cmd, data, vector, icw3, icw4 in ((0x20, 0x21, MASTER_VECTOR, 0x04, master_icw4),
                                           (0xA0, 0xA1, SLAVE_VECTOR, 0x02, slave_icw4)):
        ports.outb(cmd, 0x11)
        ports.outb(data, vector)
        ports.outb(data, icw3)
        ports.outb(data, icw4)
    ports.outb(0x21, 0xFB)
    ports.outb(0xA1, 0xFF)


def unmask(ports: Ports, irq: int) -> None:
    port = 0x21 if irq < 8 else 0xA1
    ports.outb(port, ports.inb(port) & ~(1 << (irq & 7)))


@pytest.fixture
def pic() -> PicPair:
    return PicPair()


@pytest.fixture
def ports(pic: PicPair) -> Ports:
    ports = Ports(pic)
    minix_init(ports)
    return ports


def test_icw1_clears_mask_and_init_sets_vectors(pic: PicPair) -> None:
    ports = Ports(pic)
    ports.outb(0x21, 0xAA)
    ports.outb(0x20, 0x11)
    assert ports.inb(0x21) == 0  # ICW1 resets IMR
    ports.outb(0x21, 0x57)  # ICW2: low three bits ignored
    ports.outb(0x21, 0x04)
    ports.outb(0x21, 0x05)
    assert pic.master.vector_base == 0x50
    ports.outb(0x21, 0xFB)  # now OCW1
    assert ports.inb(0x21) == 0xFB


def test_masked_request_waits_in_irr_until_unmasked(pic: PicPair, ports: Ports) -> None:
    pic.line(0).set_level(True)
    ports.outb(0x20, 0x0A)  # OCW3: read IRR
    assert ports.inb(0x20) == 0x01
    assert not pic.interrupt_output()
    assert pic.pending_irq() is None
    unmask(ports, 0)
    assert pic.interrupt_output()
    assert pic.inta() == MASTER_VECTOR
    ports.outb(0x20, 0x0B)  # OCW3: read ISR
    assert ports.inb(0x20) == 0x01
    ports.outb(0x20, 0x0A)
    assert ports.inb(0x20) == 0x00  # edge request moved to ISR


def test_in_service_blocks_lower_priority_until_eoi(pic: PicPair, ports: Ports) -> None:
    for irq in (0, 3, 4):
        unmask(ports, irq)
    pic.line(3).set_level(True)
    assert pic.pending_irq() == 3
    pic.line(4).set_level(True)
    assert pic.pending_irq() is None  # 4 is below 3, which is in service
    pic.line(0).set_level(True)
    assert pic.pending_irq() == 0  # 0 is above 3: it nests
    ports.outb(0x20, 0x20)  # non-specific EOI ends the highest in service: 0
    assert pic.pending_irq() is None
    ports.outb(0x20, 0x63)  # specific EOI for 3
    assert pic.pending_irq() == 4
    ports.outb(0x20, 0x0B)
    assert ports.inb(0x20) == 0x10


def test_inputs_are_edge_triggered(pic: PicPair, ports: Ports) -> None:
    unmask(ports, 1)
    line = pic.line(1)
    line.set_level(True)
    assert pic.pending_irq() == 1
    ports.outb(0x20, 0x20)
    line.set_level(True)  # still high: no new edge
    assert pic.pending_irq() is None
    line.set_level(False)
    line.set_level(True)
    assert pic.pending_irq() == 1


def test_icw1_requires_a_fresh_edge(pic: PicPair) -> None:
    ports = Ports(pic)
    pic.line(1).set_level(True)
    minix_init(ports)
    unmask(ports, 1)
    assert pic.pending_irq() is None
    pic.line(1).set_level(False)
    pic.line(1).set_level(True)
    assert pic.pending_irq() == 1


def test_cascade_irq9_arrives_through_irq2(pic: PicPair, ports: Ports) -> None:
    unmask(ports, 9)
    pic.line(9).set_level(True)
    ports.outb(0x20, 0x0A)
    assert ports.inb(0x20) == 0x04  # the master sees it on IR2
    assert pic.inta() == SLAVE_VECTOR + 1
    ports.outb(0x20, 0x0B)
    ports.outb(0xA0, 0x0B)
    assert (ports.inb(0x20), ports.inb(0xA0)) == (0x04, 0x02)
    pic.line(12).set_level(True)
    unmask(ports, 12)
    assert pic.pending_irq() is None  # both chips still have it in service
    ports.outb(0xA0, 0x20)
    assert pic.pending_irq() is None  # the master's IR2 is still in service
    ports.outb(0x20, 0x20)
    assert pic.pending_irq() == 12


def test_masked_slave_input_stays_off_the_master(pic: PicPair, ports: Ports) -> None:
    pic.line(14).set_level(True)
    ports.outb(0x20, 0x0A)
    assert ports.inb(0x20) == 0x00
    assert pic.pending_irq() is None


def test_spurious_irq7_when_nothing_pending(pic: PicPair, ports: Ports) -> None:
    assert pic.inta() == MASTER_VECTOR + 7
    assert pic.spurious == 1
    ports.outb(0x20, 0x0B)
    assert ports.inb(0x20) == 0x00  # a spurious IRQ 7 is not put in service


def test_spurious_irq15_is_swallowed_by_pending_irq(pic: PicPair, ports: Ports) -> None:
    unmask(ports, 10)
    pic.line(10).set_level(True)  # master latches IR2
    ports.outb(0xA1, 0xFF)  # then the request is masked on the slave
    assert pic.interrupt_output()
    assert pic.pending_irq() is None
    assert pic.spurious == 1
    ports.outb(0x20, 0x0B)
    assert ports.inb(0x20) == 0x00  # the board ended the master's cascade service


def test_spurious_irq15_vector(pic: PicPair, ports: Ports) -> None:
    unmask(ports, 10)
    pic.line(10).set_level(True)
    ports.outb(0xA1, 0xFF)
    assert pic.inta() == SLAVE_VECTOR + 7


def test_auto_eoi_leaves_isr_clear(pic: PicPair) -> None:
    ports = Ports(pic)
    minix_init(ports, master_icw4=0x07, slave_icw4=0x03)
    unmask(ports, 0)
    unmask(ports, 8)
    pic.line(8).set_level(True)
    pic.line(0).set_level(True)
    assert pic.pending_irq() == 0
    assert pic.pending_irq() == 8
    ports.outb(0x20, 0x0B)
    assert ports.inb(0x20) == 0x00


def test_poll_command_acknowledges(pic: PicPair, ports: Ports) -> None:
    unmask(ports, 5)
    pic.line(5).set_level(True)
    ports.outb(0x20, 0x0C)  # OCW3 poll
    assert ports.inb(0x20) == 0x85
    ports.outb(0x20, 0x0C)
    assert ports.inb(0x20) == 0x00


def test_rotation_makes_serviced_irq_lowest(pic: PicPair, ports: Ports) -> None:
    for irq in (1, 3):
        unmask(ports, irq)
    ports.outb(0x20, 0xC3)  # set priority: 3 lowest, 4 highest
    pic.line(1).set_level(True)
    pic.line(3).set_level(True)
    assert pic.pending_irq() == 1
    pic.line(1).set_level(False)
    pic.line(1).set_level(True)  # 1 and 3 both requesting again
    ports.outb(0x20, 0xA0)  # rotate on non-specific EOI: 1 becomes lowest
    assert pic.pending_irq() == 3


def test_cascade_input_is_not_a_device_line(pic: PicPair) -> None:
    with pytest.raises(ValueError):
        pic.line(2)
    assert pic.line(4) is pic.line(4)


def test_bad_access_width_is_ignored_and_counted(pic: PicPair, ports: Ports) -> None:
    pic.io_write(0x21, 2, 0x0000)
    assert ports.inb(0x21) == 0xFB
    assert pic.bad_accesses == 1


@pytest.mark.parametrize("icw1, words", [(0x13, [0x20, 0x01]),  # single chip: no ICW3
                                         (0x10, [0x20, 0x04])])  # no ICW4
def test_shorter_init_sequences(pic: PicPair, icw1: int, words: list[int]) -> None:
    ports = Ports(pic)
    ports.outb(0x20, icw1)
    for word in words:
        ports.outb(0x21, word)
    ports.outb(0x21, 0xF0)  # already OCW1
    assert ports.inb(0x21) == 0xF0
    assert pic.master.vector_base == 0x20
