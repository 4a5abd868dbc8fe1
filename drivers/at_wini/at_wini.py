"""at_wini: the driver of the ATA disk on the primary IDE channel (runs in its own process).

What it does, in MINIX at_wini.c's order: look for the PCI IDE controller
(class 01/01, the PIIX3 8086:7010) through configuration space; if it is a
bus master whose registers (BAR4) lie in this driver's port windows and
system.conf gives it a memory window, enable I/O and bus mastering and move
data by DMA, else by PIO.  Then IDENTIFY the master drive in polling mode
(nIEN set: no interrupt to chase), LBA28 only.  The block driver framework
(drivers/block/framework.py) does the rest: requests, grants, partitions.

Commands: ``command`` writes the whole task file in one vector, reading the
status first: if the drive was busy the writes were ignored, and the command
is retried after a reset.  PIO moves one sector per interrupt with one string
I/O (``ins``/``outs``, 32-bit), as MINIX does; DMA moves up to BDEV_MAX_IO
bytes per command through a PRD table and a data buffer in this driver's
memory window, which the controller ("ata") may reach through the IOMMU.

Errors (MINIX's policy): a command the drive ends with ERR and UNC (a bad
sector) fails at once, naming the sector; any other failure (an error, no
interrupt within ATA_TIMEOUT) resets the channel (SRST) and tries again, up
to ATA_MAX_ERRORS attempts.  The framework turns the last failure into EIO.
"""
from __future__ import annotations

import struct
import time

from drivers import pci
from drivers.at_wini import regs as R
from drivers.block import framework
from drivers.block.framework import DriveError, Geometry, WaitInterrupt
from minikern import params, sef
from minikern.const import SECTOR_SIZE
from minikern.devio import Channel, ChannelError, open_channel
from minikern.ipc import IpcError

PRD_TABLE = 0  # offset in the memory window: the PRD table (one 4 KiB page)
DMA_BUFFER = 0x10000  # offset of the data buffer: 64 KiB aligned, so no region crosses 64 KiB
DMA_SPAN = DMA_BUFFER + 2 * R.PRD_MAX  # the window's part the controller may reach
POLL_DEADLINE = 1.0  # seconds a polled wait (IDENTIFY, reset) may take


class Timeout(Exception):
    """No interrupt in time, or the drive was busy when a command was written."""


class Fault(Exception):
    """The drive ended a command with an error."""

    def __init__(self, status: int, error: int, sector: int) -> None:
        super().__init__(f"status {status:#04x} error {error:#04x} at sector {sector}")
        self.status, self.error, self.sector = status, error, sector


class AtWini:
    def __init__(self) -> None:
        self.irq = R.IRQ
        self.ch: Channel | None = None
        self.bmide: int | None = None  # bus-master registers, when DMA is in use
        self.counters = {"commands": 0, "resets": 0, "timeouts": 0, "errors": 0}

    @property
    def chan(self) -> Channel:
        if self.ch is None:
            raise RuntimeError("no channel to the board")
        return self.ch

    # -- probe -------------------------------------------------------------------------

    def init(self, ctx: sef.Context, wait_interrupt: WaitInterrupt) -> Geometry:
        self.wait = wait_interrupt
        self.label = ctx.label
        try:
            self.ch = open_channel(ctx.conn)
        except (IpcError, ChannelError) as e:
            sef.panic(f"cannot reach the hardware: {e}")
        bmide = self.find_controller()
        words = self.identify()
        if not words[R.ID_CAPABILITIES] & R.ID_CAP_LBA:
            sef.panic("the drive does not do LBA")
        sectors = min(words[R.ID_LBA_SECTORS] | words[R.ID_LBA_SECTORS + 1] << 16,
                      R.LBA28_LIMIT - 1)
        if bmide is not None and words[R.ID_CAPABILITIES] & R.ID_CAP_DMA:
            self.setup_dma(bmide)
        mode = f"DMA (bus master at {self.bmide:#x})" if self.bmide is not None else "PIO"
        print(f"{self.label}: {sectors} sectors, {mode}", flush=True)
        return Geometry(sectors, words[1], max(1, words[3]), max(1, words[6]))

    def find_controller(self) -> int | None:
        """The IDE controller's bus-master base if DMA can be used, else None (PIO)."""
        for dev in range(32):
            if pci.read(self.chan, dev, pci.ID, 0) & 0xFFFF == 0xFFFF:
                continue
            functions = 8 if pci.read(self.chan, dev, pci.HEADER, 0) >> 16 & 0x80 else 1
            for fn in range(functions):
                cls = pci.read(self.chan, dev, pci.CLASS, fn)
                if cls >> 16 == R.PCI_CLASS_IDE:
                    return self.enable_controller(dev, fn, cls >> 8 & 0xFF)
        return None

    def enable_controller(self, dev: int, fn: int, progif: int) -> int | None:
        bar4 = pci.read(self.chan, dev, pci.BAR4, fn)
        base = bar4 & 0xFFFC
        if not progif & R.PCI_PROGIF_BUSMASTER or not bar4 & 1 or not base:
            return None
        if not any(b <= base and base + R.BM_SPAN <= b + n for b, n in self.chan.io):
            print(f"{self.label}: bus master at {base:#x} is outside my port windows: PIO",
                  flush=True)
            return None
        if not self.chan.windows:
            return None
        cmd = pci.read(self.chan, dev, pci.COMMAND, fn) & 0xFFFF
        pci.write(self.chan, dev, pci.COMMAND, cmd | pci.CMD_IO | pci.CMD_MASTER, fn)
        return base

    def setup_dma(self, bmide: int) -> None:
        window = min(self.chan.windows)
        if len(self.chan.windows[window]) < DMA_SPAN:
            return
        self.chan.dma_grant("ata", window, DMA_SPAN, True)
        self.prd_addr, self.buf_addr = window + PRD_TABLE, window + DMA_BUFFER
        self.prd = self.chan.memory(self.prd_addr, 8 * 2)
        self.dma_buf = self.chan.memory(self.buf_addr, 2 * R.PRD_MAX)
        self.bmide = bmide
        self.chan.vec([(bmide + R.BM_COMMAND, 1, 0),
                       (bmide + R.BM_STATUS, 1, R.BM_ST_DRIVE0_DMA | R.BM_ST_ERROR | R.BM_ST_INTR)])

    def poll(self, ready: int, port: int = R.CTL) -> int:
        """Poll a status register until BSY clears and a bit of ``ready`` (or ERR) is set."""
        end = time.monotonic() + POLL_DEADLINE
        while True:
            status = self.chan.inb(port)
            if not status & R.ST_BSY and status & (ready | R.ST_ERR):
                return status
            if time.monotonic() > end:
                return status
            time.sleep(0.001)

    def identify(self) -> list[int]:
        """Reset the channel first: a driver killed in mid-command leaves the drive in its
        data phase, where it ignores commands (and DRQ would pass for IDENTIFY's)."""
        ch = self.chan
        ch.vec([(R.SELECT, 1, R.SEL_MASTER), (R.CTL, 1, R.CTL_SRST | R.CTL_NIEN),
                (R.CTL, 1, R.CTL_NIEN)])
        status = self.poll(R.ST_DRDY)
        if status in (0, 0xFF) or status & R.ST_BSY:
            sef.panic(f"no drive on the primary channel (status {status:#04x})")
        ch.outb(R.COMMAND, R.CMD_IDENTIFY)
        status = self.poll(R.ST_DRQ)
        if status & (R.ST_ERR | R.ST_BSY) or not status & R.ST_DRQ:
            sef.panic(f"IDENTIFY failed (status {status:#04x}): not an ATA disk")
        words = list(struct.unpack("<256H", ch.ins(R.DATA, 2, 256)))
        ch.inb(R.STATUS)  # acknowledge, then let the drive interrupt again
        ch.outb(R.CTL, 0)
        if words[0] & 0x8000:
            sef.panic("the drive is not an ATA disk (ATAPI?)")
        return words

    # -- commands ----------------------------------------------------------------------

    def command(self, cmd: int, sector: int, count: int,
                extra: list[tuple[int, int, int | None]] | None = None) -> None:
        """Write the task file (MINIX com_out) and read it back, then the command and
        ``extra``.  The read-back is not MINIX's: a value that did not arrive as written (a
        corrupted register value, a write gone to the wrong port; the fault campaign's
        interface faults) would send the command to a sector the driver did not mean, which
        the board cannot refuse (the ports are the driver's own).  Found before the command,
        it is a failed attempt: the drive is reset and the transfer tried again."""
        taskfile = [(R.SELECT, R.SEL_MASTER | R.SEL_LBA | sector >> 24 & 0x0F),
                    (R.NSECTOR, count & 0xFF), (R.SECTOR, sector & 0xFF),
                    (R.LCYL, sector >> 8 & 0xFF), (R.HCYL, sector >> 16 & 0xFF)]
        ops: list[tuple[int, int, int | None]] = [
            (R.STATUS, 1, None), (taskfile[0][0], 1, taskfile[0][1]), (R.CTL, 1, 0),
            (R.FEATURES, 1, 0), *((port, 1, value) for port, value in taskfile[1:]),
            *((port, 1, None) for port, _ in taskfile)]
        self.counters["commands"] += 1
        got = self.chan.vec(ops)
        status = got[0] or 0
        if status & (R.ST_BSY | R.ST_DRQ):
            raise Timeout(f"drive busy (status {status:#04x}) when a command was written")
        back = got[-len(taskfile):]
        if back != [value for _, value in taskfile]:
            self.counters["taskfile_wrong"] += 1
            raise Timeout("the task file read back " + " ".join(f"{v:#04x}" for v in back if
                          v is not None) + ", not as written: command not issued")
        self.chan.vec([(R.COMMAND, 1, cmd), *(extra or [])])

    def interrupt_or_timeout(self) -> None:
        if not self.wait(params.ATA_TIMEOUT):
            self.counters["timeouts"] += 1
            raise Timeout(f"no interrupt within {params.ATA_TIMEOUT:g} s")

    def fault(self, sector: int) -> Fault:
        status, error = self.chan.vec([(R.STATUS, 1, None), (R.ERROR, 1, None)])
        return Fault(status or 0, error or 0, sector)

    def transfer(self, sector: int, buf: memoryview, write: bool) -> None:
        count = len(buf) // SECTOR_SIZE
        if sector + count > R.LBA28_LIMIT:
            raise DriveError("beyond LBA28", sector, 0)
        why, failed = "", None  # type: tuple[str, int | None]
        for _ in range(params.ATA_MAX_ERRORS):
            try:
                if self.bmide is not None:
                    self.dma(sector, buf, count, write)
                else:
                    self.pio(sector, buf, count, write)
                return
            except Timeout as e:
                why, failed = str(e), None
            except Fault as e:
                self.counters["errors"] += 1
                done = (e.sector - sector) * SECTOR_SIZE
                if e.error & R.ER_UNC:  # a bad sector: trying again will not help
                    raise DriveError(f"bad sector {e.sector} ({e})", e.sector, done) from None
                why, failed = str(e), e.sector
            except ChannelError as e:
                why, failed = f"board: {e}", None
            self.reset()
        raise DriveError(f"{params.ATA_MAX_ERRORS} attempts failed, the last: {why}", failed,
                         0 if failed is None else (failed - sector) * SECTOR_SIZE)

    def pio(self, sector: int, buf: memoryview, count: int, write: bool) -> None:
        ch = self.chan
        self.command(R.CMD_WRITE if write else R.CMD_READ, sector, count)
        if write:  # the first block is asked for without an interrupt
            status = self.poll(R.ST_DRQ, R.STATUS)
        for i in range(count):
            piece = buf[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE]
            if write:
                if status & (R.ST_ERR | R.ST_DF) or not status & R.ST_DRQ:
                    raise self.fault(sector + i)
                ch.outs(R.DATA, 4, bytes(piece))
                self.interrupt_or_timeout()
                status = ch.inb(R.STATUS)
                if status & (R.ST_ERR | R.ST_DF):
                    raise self.fault(sector + i)
                continue
            self.interrupt_or_timeout()
            status = ch.inb(R.STATUS)
            while status & R.ST_BSY:  # an interrupt from before this sector: wait for ours
                self.interrupt_or_timeout()
                status = ch.inb(R.STATUS)
            if status & (R.ST_ERR | R.ST_DF) or not status & R.ST_DRQ:
                raise self.fault(sector + i)
            piece[:] = ch.ins(R.DATA, 4, SECTOR_SIZE // 4)

    def dma(self, sector: int, buf: memoryview, count: int, write: bool) -> None:
        ch, bm, nbytes = self.chan, self.bmide or 0, count * SECTOR_SIZE
        if write:
            self.dma_buf[:nbytes] = buf
        entries = (nbytes + R.PRD_MAX - 1) // R.PRD_MAX
        for i in range(entries):
            size = min(R.PRD_MAX, nbytes - i * R.PRD_MAX)
            struct.pack_into("<IHH", self.prd, 8 * i, self.buf_addr + i * R.PRD_MAX,
                             size & 0xFFFF, R.PRD_EOT if i == entries - 1 else 0)
        direction = 0 if write else R.BM_CMD_TO_MEMORY
        ch.vec([(bm + R.BM_COMMAND, 1, 0), (bm + R.BM_PRD, 4, self.prd_addr),
                (bm + R.BM_STATUS, 1, R.BM_ST_DRIVE0_DMA | R.BM_ST_ERROR | R.BM_ST_INTR),
                (bm + R.BM_COMMAND, 1, direction)])
        self.command(R.CMD_WRITE_DMA if write else R.CMD_READ_DMA, sector, count,
                     [(bm + R.BM_COMMAND, 1, direction | R.BM_CMD_START)])
        while True:
            self.interrupt_or_timeout()
            bms, alt = ch.vec([(bm + R.BM_STATUS, 1, None), (R.CTL, 1, None)])
            running = (bms or 0) & R.BM_ST_ACTIVE and not (bms or 0) & R.BM_ST_INTR
            if not running and not (alt or 0) & R.ST_BSY:
                break  # else an interrupt from before this command: wait for ours
        status, error, lba0, lba1, lba2, sel, *_ = ch.vec([
            (R.STATUS, 1, None), (R.ERROR, 1, None), (R.SECTOR, 1, None), (R.LCYL, 1, None),
            (R.HCYL, 1, None), (R.SELECT, 1, None), (bm + R.BM_COMMAND, 1, 0),
            (bm + R.BM_STATUS, 1, R.BM_ST_DRIVE0_DMA | R.BM_ST_ERROR | R.BM_ST_INTR)])
        if (status or 0) & (R.ST_ERR | R.ST_DF) or (bms or 0) & R.BM_ST_ERROR:
            at = ((sel or 0) & 0x0F) << 24 | (lba2 or 0) << 16 | (lba1 or 0) << 8 | (lba0 or 0)
            at = min(max(at, sector), sector + count - 1)
            if not write:  # the sectors before the failing one have reached memory
                done = (at - sector) * SECTOR_SIZE
                buf[:done] = self.dma_buf[:done]
            raise Fault(status or 0, error or 0, at)
        if not write:
            buf[:] = self.dma_buf[:nbytes]

    def flush(self) -> None:
        for _ in range(params.ATA_MAX_ERRORS):
            try:
                self.command(R.CMD_FLUSH_CACHE, 0, 0)
                self.interrupt_or_timeout()
                status = self.chan.inb(R.STATUS)
                if not status & (R.ST_ERR | R.ST_DF):
                    return
            except (Timeout, ChannelError):
                pass
            self.reset()
        raise DriveError("FLUSH CACHE failed")

    def reset(self) -> None:
        """SRST with interrupts off (the reset's own interrupt is not wanted), MINIX w_reset."""
        self.counters["resets"] += 1
        ch = self.chan
        ch.vec([(R.CTL, 1, R.CTL_SRST | R.CTL_NIEN), (R.CTL, 1, R.CTL_NIEN)])
        self.poll(R.ST_DRDY)
        ch.inb(R.STATUS)
        ops: list[tuple[int, int, int | None]] = [(R.CTL, 1, 0)]
        if self.bmide is not None:
            ops += [(self.bmide + R.BM_COMMAND, 1, 0),
                    (self.bmide + R.BM_STATUS, 1, R.BM_ST_DRIVE0_DMA | R.BM_ST_ERROR | R.BM_ST_INTR)]
        ch.vec(ops)

    def interrupt(self) -> None:
        self.chan.inb(R.STATUS)


def main() -> None:
    framework.run(AtWini())
