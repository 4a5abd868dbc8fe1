"""The RTL8139's receive path: accept filter and receive ring (runs in the board process).

Split out of ``hw.rtl8139`` to keep each file readable; the RCR and packet
header bits are in ``hw.rtl8139_regs``.  Nothing here touches registers, DMA
or the IRQ: the filter classifies a destination address, and the ring decides
where a frame's record goes, producing the (ring offset, bytes) pieces the
device then writes by DMA.

Ring protocol (devices sheet 1.5, QEMU "C mode"):

* a frame shorter than 60 bytes is zero-padded to 60;
* room check ``avail = (size + read - write) mod size``; avail == 0 means the
  ring is empty.  **Decision**: the frame is refused when
  ``align4(len + 8) >= avail`` (current QEMU), not ``len + 8 >= avail`` as the
  sheet writes it: the device rounds its write pointer up to a dword, so with
  the sheet's test a frame of 61 bytes into exactly 72 free bytes would move
  the write pointer onto the read pointer and the full ring would read as
  empty.  A record longer than the whole ring is refused as well.
* the record is ``header (4, LE) | frame | CRC32 of frame (4, LE)``, the
  header's length field counting the frame plus its CRC; the record wraps to
  ring offset 0 when RCR.WRAP = 0, and spills past the end when WRAP = 1 and
  the ring is smaller than 64 KiB;
* the new write pointer is ``align4(ptr) mod size``.
"""
from __future__ import annotations

import zlib

from hw.rtl8139_regs import (
    RCR_AAP,
    RCR_AB,
    RCR_AM,
    RCR_APM,
    RCR_RBLEN_MASK,
    RCR_RBLEN_SHIFT,
    RXHDR_BAR,
    RXHDR_MAR,
    RXHDR_PAM,
    RXHDR_ROK,
)

ETH_ZLEN = 60                 # minimum frame without CRC; shorter frames are padded
ETH_ALEN = 6
RING_BASE_SIZE = 8192         # RBLEN = 00
RING_NO_SPILL_SIZE = 65536    # WRAP is ignored for the 64 KiB ring
RECORD_OVERHEAD = 8           # header + CRC
BROADCAST = b"\xff" * ETH_ALEN
_ETHER_CRC_POLY = 0x04C11DB7


def align4(value: int) -> int:
    return (value + 3) & ~3


def ether_crc(data: bytes) -> int:
    """Ethernet CRC32 in its MSB-first form (QEMU net_crc32, Linux ether_crc).

    The MAR hash index is the top 6 bits of this value over the destination
    address; it equals bit-reversed ``~zlib.crc32``.
    """
    crc = 0xFFFFFFFF
    for byte in data:
        for _ in range(8):
            carry = (crc >> 31) ^ (byte & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            byte >>= 1
            if carry:
                crc ^= _ETHER_CRC_POLY
    return crc


def mar_hash_index(dest: bytes) -> int:
    """Which of the 64 MAR bits (byte index >> 3, bit index & 7) guards multicast ``dest``."""
    return ether_crc(dest[:ETH_ALEN]) >> 26


def classify(dest: bytes, rcr: int, station: bytes, mar: bytes) -> int | None:
    """Header status bits for a frame to ``dest``, or None if RCR/MAR reject it.

    QEMU's rules: AAP takes everything; otherwise broadcast needs AB,
    multicast needs AM and its MAR hash bit, unicast needs APM and an exact
    IDR match.  **Decision**: in promiscuous mode the BAR/MAR/PAM bits are
    still set by what the address is (QEMU leaves them clear).
    """
    if dest == BROADCAST:
        kind = RXHDR_BAR
        accepted = bool(rcr & RCR_AB)
    elif dest[0] & 1:
        kind = RXHDR_MAR
        index = mar_hash_index(dest)
        accepted = bool(rcr & RCR_AM) and bool(mar[index >> 3] & (1 << (index & 7)))
    elif dest == station:
        kind = RXHDR_PAM
        accepted = bool(rcr & RCR_APM)
    else:
        kind = 0
        accepted = False
    if accepted or rcr & RCR_AAP:
        return kind
    return None


class RxRing:
    """The device's side of the receive ring: its size and both pointers, as ring offsets."""

    def __init__(self) -> None:
        self.size = RING_BASE_SIZE
        self.read_ptr = 0
        self.write_ptr = 0

    def reset(self, rcr: int) -> None:
        """Writing RCR (or a chip reset) sizes the ring from RBLEN and empties it."""
        self.size = RING_BASE_SIZE << ((rcr & RCR_RBLEN_MASK) >> RCR_RBLEN_SHIFT)
        self.read_ptr = 0
        self.write_ptr = 0

    @property
    def empty(self) -> bool:
        return self.read_ptr == self.write_ptr

    def set_capr(self, capr: int) -> None:
        """The driver's CAPR write: its read pointer, stored off by 16."""
        self.read_ptr = (capr + 16) % self.size

    @property
    def capr(self) -> int:
        return (self.read_ptr - 16) & 0xFFFF

    def fits(self, frame_len: int) -> bool:
        """Whether a record for a (padded) frame of ``frame_len`` bytes has room."""
        need = align4(frame_len + RECORD_OVERHEAD)
        if need >= self.size:
            return False
        avail = (self.size + self.read_ptr - self.write_ptr) % self.size
        return avail == 0 or need < avail

    def place(self, frame: bytes, status: int, wrap: bool) -> tuple[list[tuple[int, bytes]], int]:
        """Lay out the record for ``frame``: ring-offset pieces to write and the next write pointer.

        ``frame`` is already padded; ``wrap`` is RCR.WRAP.  The caller writes the
        pieces and only then commits the pointer, so a refused DMA leaves the ring
        as it was.
        """
        header = (status | RXHDR_ROK | ((len(frame) + 4) << 16)).to_bytes(4, "little")
        record = header + frame + zlib.crc32(frame).to_bytes(4, "little")
        start = self.write_ptr
        end = start + len(record)
        spill = wrap and self.size < RING_NO_SPILL_SIZE
        if end <= self.size or spill:
            pieces = [(start, record)]
        else:
            first = self.size - start
            pieces = [(start, record[:first]), (0, record[first:])]
            end -= self.size
        return pieces, align4(end) % self.size
