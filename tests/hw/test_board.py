"""The board in a booted system: port I/O through the kernel and the fast path, IRQs, the PIT.

Each test boots a real system with hw in the boot image and plays drivers
with in-test endpoints holding the privileges of the services in BOARD_CONF.
"""
from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from minikern import devio
from minikern.boardctl import BoardCtl
from minikern import cli, ipc, params
from minikern.const import Err, IrqOp, KCall, Kind
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)

BOARD_CONF = """
boot {boot};
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service hw {{ program hw.board; ipc SYSTEM;
    args --nic udp:{nic_port}:{peer_port} --mac 52:54:00:12:34:56 --hz 100; }};
service pci {{ system DEVIO VDEVIO; ipc SYSTEM; io 0xcf8:8; }};
service tty {{ system DEVIO VDEVIO IRQCTL IOMAP; ipc SYSTEM; io 0x3f8:7; irq 4; }};
service timer {{ system IRQCTL; ipc SYSTEM; irq 0; }};
service com {{ system DEVIO IOMAP; ipc SYSTEM; io 0x3f8:8; }};
service disk {{ system DEVIO SDEVIO IRQCTL; ipc SYSTEM; io 0x1f0:8 0x3f6; irq 14; }};
service nic {{ system DEVIO IRQCTL IOMAP; ipc SYSTEM; io 0xc000:256 0xcf8:8; irq 11;
               mem 0x100000:0x10000; }};
"""
UART_IER, UART_IIR, UART_SCR = 0x3F9, 0x3FA, 0x3FF


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Machine:
    """A booted system with a board, and the UDP socket at the other end of the NIC's wire."""

    def __init__(self, system: SystemUnderTest, peer: socket.socket, nic_port: int) -> None:
        self.system, self.peer, self.nic_port = system, peer, nic_port

    def driver(self, service: str, label: str | None = None) -> ipc.Connection:
        return self.system.connect(label or service, service)

    def ctl(self) -> BoardCtl:
        return BoardCtl(self.system.run_dir)

    def stats(self) -> dict[str, Any]:
        with self.ctl() as c:
            return c.stats()

    def audit(self, call: str) -> list[dict[str, Any]]:
        return [r for r in map(json.loads, self.system.audit()) if r["call"] == call]


@contextlib.contextmanager
def booted(make_system: Callable[..., SystemUnderTest], conf: str = "") -> Iterator[Machine]:
    """A system of the board alone, its NIC wired to a UDP socket of the test; ``conf`` is
    a BOARD_CONF-shaped configuration (BOARD_CONF itself by default)."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    nic_port = free_udp_port()
    conf = (conf or BOARD_CONF).replace("{nic_port}", str(nic_port)).replace(
        "{peer_port}", str(peer.getsockname()[1]))
    try:
        yield Machine(make_system(boot="hw", conf=conf), peer, nic_port)
    finally:
        peer.close()


@pytest.fixture(name="machine")
def machine_fixture(make_system: Callable[..., SystemUnderTest]) -> Iterator[Machine]:
    with booted(make_system) as m:
        yield m


def inp(conn: ipc.Connection, port: int, size: int = 1) -> int:
    return int(conn.kcall(KCall.DEVIO, port=port, size=size)["values"][0])


def outp(conn: ipc.Connection, port: int, value: int, size: int = 1) -> None:
    conn.kcall(KCall.DEVIO, port=port, size=size, value=value)


def pci_read(conn: ipc.Connection, dev: int, reg: int, fn: int = 0) -> int:
    address = 0x80000000 | dev << 11 | fn << 8 | reg
    values = conn.kcall(KCall.VDEVIO, ops=[[0xCF8, 4, address], [0xCFC, 4, None]])
    return int(values["values"][1])


def test_board_is_an_admitted_process(machine: Machine) -> None:
    procs = {p["label"]: p for p in machine.system.info()["procs"]}
    assert procs["hw"]["ready"] and procs["hw"]["slot"] == 2
    assert "board attached to the bus" in machine.system.console()


def test_pci_scan_finds_the_rtl8139_and_the_ide_controller(machine: Machine) -> None:
    pci = machine.driver("pci")
    found = {(dev, fn): pci_read(pci, dev, 0, fn) for dev in range(32) for fn in range(8)}
    nics = [dev for (dev, _), ids in found.items() if ids == 0x8139 << 16 | 0x10EC]
    assert len(nics) == 1
    assert found[(0, 0)] == 0x1237 << 16 | 0x8086  # the host bridge
    assert found[(1, 0)] == 0x7000 << 16 | 0x8086  # the PIIX3: ISA bridge, then IDE
    assert found[(1, 1)] == 0x7010 << 16 | 0x8086
    assert pci_read(pci, 1, 0x08, fn=1) >> 8 == 0x010180  # IDE, bus-master capable
    assert pci_read(pci, 1, 0x20, fn=1) == 0xC101  # BAR4: bus-master registers at 0xC100
    assert sum(ids != 0xFFFFFFFF for ids in found.values()) == 4  # nothing else answers
    assert pci_read(pci, nics[0], 0x10) == 0xC001  # BAR0: I/O space at 0xC000
    assert pci_read(pci, nics[0], 0x3C) & 0xFF == 11  # interrupt line


def test_ports_outside_the_windows_are_refused_and_never_performed(machine: Machine) -> None:
    com, tty = machine.driver("com"), machine.driver("tty")  # tty's window stops at 0x3FE
    outp(com, UART_SCR, 0x11)
    assert tty.kcall_status(KCall.DEVIO, port=UART_SCR, size=1, value=0x77)[0] == Err.ECALLDENIED
    ch = devio.open_channel(tty)
    try:
        with pytest.raises(devio.ChannelError) as e:
            ch.outb(UART_SCR, 0x66)
        assert e.value.code == Err.ECALLDENIED
        with pytest.raises(devio.ChannelError):
            ch.vec([(UART_IER, 1, None), (UART_SCR, 1, 0x55)])  # one bad port refuses the batch
        with pytest.raises(devio.ChannelError):
            ch.inw(0x3FE)  # a word at 0x3FE reaches 0x3FF
        assert ch.inb(0x3FD) & 0x60 == 0x60  # LSR: what it holds still works
    finally:
        ch.close()
    assert inp(com, UART_SCR) == 0x11  # none of the refused writes happened
    refusals = machine.audit("DEVIO")
    assert any(r["label"] == "tty" and r["source"] == "kernel" for r in refusals)  # the kernel's
    mine = [r for r in refusals if r["source"] == "hw"]
    assert len(mine) == 3 and all(r["label"] == "tty" and r["error"] == "ECALLDENIED" for r in mine)
    assert {r["target"] for r in mine} == {UART_SCR, 0x3FE}
    assert machine.stats()["fastpath"]["port_refused"] == 3


def test_fast_path_reaches_the_held_window(machine: Machine) -> None:
    com = machine.driver("com")
    ch = devio.open_channel(com)
    try:
        assert ch.endpoint == com.endpoint and ch.io == [(0x3F8, 8)] and ch.windows == {}
        ch.outb(UART_SCR, 0xA5)
        assert ch.inb(UART_SCR) == 0xA5
        assert inp(com, UART_SCR) == 0xA5  # the same register through the kernel
        assert ch.vec([(UART_SCR, 1, 0x3C), (UART_SCR, 1, None)]) == [None, 0x3C]
    finally:
        ch.close()


def test_a_token_is_single_use_and_bound_to_its_endpoint(machine: Machine) -> None:
    com = machine.driver("com")
    r = com.kcall(KCall.IOMAP)
    ch = devio.connect(r["path"], r["token"])
    ch.close()
    with pytest.raises(devio.ChannelError) as e:
        devio.connect(r["path"], r["token"])
    assert e.value.code == Err.EPERM
    with pytest.raises(devio.ChannelError):
        devio.connect(r["path"], "00" * 16)
    with pytest.raises(ipc.IpcError) as denied:
        machine.driver("pci").kcall(KCall.IOMAP)  # pci may not call IOMAP at all
    assert denied.value.code == Err.ECALLDENIED


def test_string_io_reads_the_identify_block(machine: Machine) -> None:
    disk = machine.driver("disk")
    outp(disk, 0x1F6, 0xA0)  # master
    outp(disk, 0x1F7, 0xEC)  # IDENTIFY DEVICE
    assert inp(disk, 0x1F7) & 0x08  # DRQ
    data = disk.kcall(KCall.SDEVIO, port=0x1F0, size=2, count=256)["data"]
    words = struct.unpack("<256H", data)
    image = Path(machine.system.run_dir / "disk.img").stat()
    assert words[60] | words[61] << 16 == image.st_size // 512 == 64 * 2048  # 64 MiB
    assert image.st_blocks * 512 < 4 << 20  # made sparse (mkfs.minix writes only its tables)
    assert inp(disk, 0x1F7) == 0x50  # the block is read: idle


def test_irq_notifies_the_holder_until_it_reenables(machine: Machine) -> None:
    tty = machine.driver("tty")
    tty.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=4)
    outp(tty, UART_IER, 0x02)  # ETBEI with THR empty: the THRE interrupt at once
    m = tty.receive()
    assert (m.kind, m.source, m.aux) == (Kind.NOTIFY, -1, 1 << 4)
    assert inp(tty, UART_IIR) & 0x0F == 0x02  # THRI; reading IIR clears it
    outp(tty, UART_IER, 0x00)
    outp(tty, UART_IER, 0x02)  # a second edge, while the line is masked at the board
    stats = machine.stats()
    assert stats["irq_sent"]["4"] == 1 and stats["pic"]["irr"] & 1 << 4
    assert stats["pic"]["imr"] & 1 << 4
    tty.kcall(KCall.IRQCTL, op=IrqOp.ENABLE, irq=4)
    m = tty.receive()
    assert (m.kind, m.source, m.aux) == (Kind.NOTIFY, -1, 1 << 4)
    assert machine.stats()["irq_sent"]["4"] == 2


def test_the_kernels_ticks_need_no_clock_interrupt(machine: Machine) -> None:
    """GETINFO's ticks count at CLOCK_HZ from the kernel's own clock: they advance while the
    board, with IRQ 0 masked as the firmware leaves it, sends no clock interrupt at all."""
    t0 = time.monotonic()
    first = machine.system.info()["ticks"]
    wait_for(lambda: machine.system.info()["ticks"] > first + 3, what="clock ticks")
    assert machine.system.info()["ticks"] - first <= (time.monotonic() - t0) * params.CLOCK_HZ + 1
    stats = machine.stats()
    assert stats["pic"]["imr"] & 1 and "0" not in stats["irq_sent"]


def test_the_clock_interrupt_runs_while_someone_holds_it(machine: Machine) -> None:
    """A driver that asks for IRQ 0 unmasks it: one HARDWARE notification per PIT period
    (the clock's line is not masked after each); when its last holder leaves, the kernel masks
    it again and the board goes back to sleep."""
    timer = machine.driver("timer")
    timer.kcall(KCall.IRQCTL, op=IrqOp.SETPOLICY, irq=0)
    for _ in range(3):
        m = timer.receive()
        assert (m.kind, m.source, m.aux) == (Kind.NOTIFY, -1, 1 << 0)
    assert not machine.stats()["pic"]["imr"] & 1
    timer.close()  # it leaves the system: the line has no holder now
    wait_for(lambda: machine.stats()["pic"]["imr"] & 1, what="IRQ 0 masked again")
    assert machine.stats()["irq_sent"]["0"] >= 3


def test_default_configuration_boots_with_the_board(tmp_path: Path) -> None:
    text = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    system = SystemUnderTest(tmp_path / "run", text)
    try:
        assert system.conf.boot[0] == "hw"
        procs = {p["label"]: p for p in system.info()["procs"]}
        assert "hw" in procs and procs["hw"]["ready"]
        assert (tmp_path / "run" / "board.sock").exists()
        assert (tmp_path / "run" / "board.ctl").stat().st_mode & 0o777 == 0o600
    finally:
        system.close()
