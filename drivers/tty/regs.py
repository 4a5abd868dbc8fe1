"""16550A UART registers and bits, as named in the National Semiconductor PC16550D sheet.

Imported by the tty driver (drivers/tty/uart.py); the spec sheet is
../shared/spec/devices.md section 3.  Offsets are from the port's base.
"""
from __future__ import annotations

COM1_BASE = 0x3F8
COM1_IRQ = 4
CLOCK_BASE = 115200  # 1.8432 MHz / 16: divisor 1
FIFO_DEPTH = 16  # bytes the transmit FIFO takes after a THRE interrupt

RBR = THR = DLL = 0  # receive buffer / transmit holding / divisor latch low (DLAB)
IER = DLM = 1  # interrupt enable / divisor latch high (DLAB)
IIR = FCR = 2  # interrupt identification (read) / FIFO control (write)
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_ERBFI = 0x01  # received data available (and the character timeout)
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status

IIR_NO_INT = 0x01
IIR_ID_MASK = 0x0F
IIR_MSI = 0x00  # modem status changed: read MSR
IIR_THRI = 0x02  # THR empty: reading IIR acknowledges it
IIR_RDI = 0x04  # received data at the trigger level
IIR_RLSI = 0x06  # line status error: read LSR
IIR_CTI = 0x0C  # character timeout: data below the trigger level, idle four characters
IIR_FIFO_ENABLED = 0xC0

FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_TRIGGER_1 = 0x00
FCR_TRIGGER_4 = 0x40
FCR_TRIGGER_8 = 0x80
FCR_TRIGGER_14 = 0xC0

LCR_8BITS = 0x03  # word length 8
LCR_DLAB = 0x80

MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT2 = 0x08  # gates the IRQ on a PC board

LSR_DR = 0x01
LSR_OE = 0x02
LSR_PE = 0x04
LSR_FE = 0x08
LSR_BI = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40

MSR_CTS = 0x10
