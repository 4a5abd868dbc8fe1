"""RTL8139 register map: offsets, bits and reset values (imported by the board's NIC model).

The counterpart of MINIX's ``drivers/net/rtl8139/rtl8139.h``: one place for
the chip's numbers, named as in the datasheet (``9346CR`` becomes ``CR9346``,
the transmit status summary at 0x60 ``TSAD_SUMMARY``; receive-header bits are
prefixed ``RXHDR_`` so that ``MAR`` and ``BAR`` do not clash with the MAR
register and PCI BARs).  Values are from the devices sheet, section 1; the
"writable" masks are QEMU's.
"""
from __future__ import annotations

# PCI identity.
VENDOR_ID = 0x10EC
DEVICE_ID = 0x8139
CLASS_CODE = 0x020000
REVISION = 0x20
IO_WINDOW = 256
DEFAULT_IO_BASE = 0xC000
DEFAULT_IRQ = 11

# Register offsets from the I/O base, named as in the datasheet.
IDR0 = 0x00
MAR0 = 0x08
TSD0 = 0x10
TSAD0 = 0x20
RBSTART = 0x30
ERBCR = 0x34
ERSR = 0x36
CR = 0x37
CAPR = 0x38
CBR = 0x3A
IMR = 0x3C
ISR = 0x3E
TCR = 0x40
RCR = 0x44
TCTR = 0x48
MPC = 0x4C
CR9346 = 0x50        # "9346CR" in the datasheet
CONFIG0 = 0x51
CONFIG1 = 0x52
MSR = 0x58
REVID = 0x5E
TSAD_SUMMARY = 0x60  # "TSAD" (transmit status of all descriptors)
BMCR = 0x62
BMSR = 0x64
ANAR = 0x66
ANLPAR = 0x68
ANER = 0x6A
NUM_TX_DESC = 4

# CR bits.
CR_RST = 0x10
CR_RE = 0x08
CR_TE = 0x04
CR_BUFE = 0x01

# ISR / IMR bits.
ISR_ROK = 0x0001
ISR_RER = 0x0002
ISR_TOK = 0x0004
ISR_TER = 0x0008
ISR_RXOVW = 0x0010
ISR_PUN = 0x0020     # packet underrun / link change
ISR_FOVW = 0x0040
ISR_LENCHG = 0x2000
ISR_TIMEOUT = 0x4000
ISR_SERR = 0x8000
ISR_DEFINED = 0xE07F

# TSD bits.
TSD_CRS = 0x80000000
TSD_TABT = 0x40000000
TSD_OWC = 0x20000000
TSD_CDH = 0x10000000
TSD_NCC = 0x0F000000
TSD_TOK = 0x00008000
TSD_TUN = 0x00004000
TSD_OWN = 0x00002000
TSD_SIZE = 0x00001FFF
TSD_CLEARED_ON_WRITE = 0xFF00C000   # status bits a TSD write clears (QEMU)
TSD_KEPT_ON_WRITE = 0x00C00000      # reserved bits 23:22 the write does not change

# TCR bits.
TCR_CLRABT = 0x00000001
TCR_CRC = 0x00010000
TCR_LBK = 0x00060000                # 11 = loopback
TCR_IFG = 0x03000000
TCR_RESET = 0x74C00000
TCR_WRITABLE = 0x030F07F0           # QEMU: hardware version, CLRABT and reserved bits are fixed

# 9346CR, CONFIG, MSR, MII.
CR9346_EEM = 0xC0
CR9346_EEM_AUTOLOAD = 0x40
CR9346_EEM_CONFIG = 0xC0
CONFIG1_RESET = 0x0C
MSR_LINKB = 0x04                    # 1 = link down
MSR_BASE = 0xD0
BMCR_RESET = 0x1000
BMSR_LINK_UP = 0x782D
BMSR_LINK_DOWN = 0x7809
ANAR_RESET = 0x05E1
ANLPAR_RESET = 0x05E1
ANER_RESET = 0x0001
MPC_MASK = 0xFFFFFF
PCI_CLOCK_HZ = 33_000_000
DEFAULT_MAC = bytes.fromhex("525400123456")   # QEMU's default 52:54:00:12:34:56

# RCR (0x44) bits.
RCR_AAP = 0x01    # accept all physical (promiscuous)
RCR_APM = 0x02    # accept physical match
RCR_AM = 0x04     # accept multicast (through the MAR hash)
RCR_AB = 0x08     # accept broadcast
RCR_AR = 0x10     # accept runt (not modelled: runts never arrive)
RCR_AER = 0x20    # accept error packets (not modelled: no CRC errors on a host wire)
RCR_WRAP = 0x80
RCR_RBLEN_SHIFT = 11
RCR_RBLEN_MASK = 0x1800
RCR_WRITABLE = 0x0F03FFBF  # QEMU masks 0xF0FC0040 as unwritable

# Receive packet header (first dword of each ring record), names as in the datasheet.
RXHDR_ROK = 0x0001
RXHDR_FAE = 0x0002
RXHDR_CRC = 0x0004
RXHDR_LONG = 0x0008
RXHDR_RUNT = 0x0010
RXHDR_ISE = 0x0020
RXHDR_BAR = 0x2000   # broadcast address received
RXHDR_PAM = 0x4000   # physical address matched
RXHDR_MAR = 0x8000   # multicast address received
