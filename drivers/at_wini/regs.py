"""ATA task file and PIIX bus-master IDE registers, as named in the ATA and SFF-8038i documents.

Imported by the at_wini driver (drivers/at_wini/at_wini.py); the spec sheet
is ../shared/spec/devices.md sections 2 and 2.8.
"""
from __future__ import annotations

# Legacy (compatibility mode) primary channel.
BASE = 0x1F0
CTL = 0x3F6  # read: alternate status (does not acknowledge); write: device control
IRQ = 14

# Command block registers (BASE + offset).
DATA = BASE + 0
ERROR = FEATURES = BASE + 1
NSECTOR = BASE + 2
SECTOR = BASE + 3  # LBA 7:0
LCYL = BASE + 4  # LBA 15:8
HCYL = BASE + 5  # LBA 23:16
SELECT = BASE + 6  # device / head, LBA 27:24
STATUS = COMMAND = BASE + 7  # reading STATUS acknowledges the interrupt

# Status bits.
ST_BSY = 0x80
ST_DRDY = 0x40
ST_DF = 0x20
ST_DRQ = 0x08
ST_ERR = 0x01

# Error bits.
ER_BBK = 0x80
ER_UNC = 0x40  # uncorrectable data: a bad sector
ER_IDNF = 0x10
ER_ABRT = 0x04

# Device/head.
SEL_MASTER = 0xA0
SEL_LBA = 0x40

# Device control.
CTL_NIEN = 0x02  # the drive must not raise INTRQ
CTL_SRST = 0x04  # software reset of the channel

# Commands.
CMD_READ = 0x20
CMD_WRITE = 0x30
CMD_READ_DMA = 0xC8
CMD_WRITE_DMA = 0xCA
CMD_FLUSH_CACHE = 0xE7
CMD_IDENTIFY = 0xEC

# IDENTIFY words.
ID_CAPABILITIES = 49
ID_CAP_LBA = 0x0200
ID_CAP_DMA = 0x0100
ID_LBA_SECTORS = 60  # and 61
LBA28_LIMIT = 1 << 28

# PCI: the IDE controller (PIIX3) by class (configuration space: drivers/pci.py).
PCI_CLASS_IDE = 0x0101  # mass storage, IDE
PCI_PROGIF_BUSMASTER = 0x80

# Bus-master IDE registers, primary channel (BAR4 + offset).
BM_COMMAND = 0
BM_STATUS = 2
BM_PRD = 4
BM_CMD_START = 0x01
BM_CMD_TO_MEMORY = 0x08  # the controller writes memory: a disk read
BM_ST_ACTIVE = 0x01
BM_ST_ERROR = 0x02
BM_ST_INTR = 0x04
BM_ST_DRIVE0_DMA = 0x20
BM_SPAN = 16
PRD_EOT = 0x8000
PRD_MAX = 0x10000  # bytes one entry moves (a count of 0); a region may not cross 64 KiB
