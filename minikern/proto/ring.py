"""The port I/O ring: one driver's requests and the board's answers, in shared memory.

Layout and slot encoding of the ring a driver attaches through the fast path
(minikern.proto.fastpath; docs/PROTOCOL.md section 10, "The driver's ring").
The board creates the ring (a sealed memfd) and owns its meaning; the driver
writes request slots and the two ``*_WAITS`` words are each one side's only
say.  Everything the board reads from the ring is driver input: ``decode``
checks every field and returns None for anything malformed, never raises.

Words are 64-bit, little-endian, naturally aligned (``memoryview.cast("Q")``:
one store per word).  A slot is two words, ``head`` then ``value``; its
writer stores ``value`` first and ``head`` last, and the reader reads
``head`` first: on x86-64 (TSO: stores become visible in order, loads are not
reordered with loads) a head that carries the expected sequence number means
the rest of the slot is there.  The board copies both words once and uses
only its copies, so a driver rewriting a slot under it changes nothing.

    request head   bits 0-31 seq, 32-38 op, 39 CHAIN, 40-47 size, 48-63 port
    request value  OUT: the value; SIN/SOUT: the count; DMA: base | length << 32;
                   UNDMA: base; IN: 0
    answer head    bits 0-31 seq, 32-63 status (a signed 32-bit minikern.const.Err)
    answer value   IN: the value read; UNDMA: grants revoked; else 0
"""
from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

VERSION = 1
MAGIC = 0x474E49524B4D  # "MKRING", little-endian, in word 0
SLOTS = 256  # request slots, and as many answer slots (a power of two)
MASK = SLOTS - 1
SEQ_MASK = 0xFFFFFFFF
DATA_BYTES = 64 * 1024  # the string I/O area: a SIN's result or a SOUT's data
MAX_CHAIN = SLOTS  # accesses in one chain (one VEC)

# word offsets (8 bytes each); each side's flag has a cache line of its own
W_MAGIC, W_VERSION, W_SLOTS, W_DATA = 0, 1, 2, 3
W_BOARD_SLEEPS = 8  # the board: 1 = I am about to block, ring my bell after a request
W_DRIVER_WAITS = 16  # the driver: 1 = I am about to block, ring my bell after an answer
W_REQUESTS = 512  # byte 4096
W_ANSWERS = W_REQUESTS + 2 * SLOTS
DATA_OFFSET = 8 * (W_ANSWERS + 2 * SLOTS)  # byte offset of the string area
SIZE = DATA_OFFSET + DATA_BYTES  # bytes of the ring's memfd

CHAIN = 0x80  # op flag: the next slot belongs to the same request
SIZES = (1, 2, 4)
DMA_DEVICES = ("rtl8139", "ata")  # a DMA slot's port field is 1 + the index of its device


class Op(IntEnum):
    IN = 1
    OUT = 2
    SIN = 3    # rep ins: count reads of port into the string area
    SOUT = 4   # rep outs: count writes of port from the string area
    DMA = 5    # let a device DMA into my memory; size is the write flag (0 or 1)
    UNDMA = 6


class Slot(NamedTuple):
    """One decoded request slot (the board's own copy)."""

    op: int
    chain: bool
    size: int
    port: int
    value: int


def head(seq: int, op: int, size: int, port: int) -> int:
    return (seq & SEQ_MASK) | op << 32 | size << 40 | port << 48


def answer(seq: int, status: int) -> int:
    return (seq & SEQ_MASK) | (status & 0xFFFFFFFF) << 32


def status_of(answer_head: int) -> int:
    s = answer_head >> 32
    return s - (1 << 32) if s >> 31 else s


def request_word(seq: int) -> int:
    return W_REQUESTS + ((seq & MASK) << 1)


def answer_word(seq: int) -> int:
    return W_ANSWERS + ((seq & MASK) << 1)


def decode(head_word: int, value: int) -> Slot | None:
    """The board's decoder of one slot; None unless every field is in range for its op."""
    op, chain = (head_word >> 32) & 0x7F, bool(head_word >> 39 & 1)
    size, port = (head_word >> 40) & 0xFF, head_word >> 48
    if op == Op.IN or op == Op.OUT:
        if size not in SIZES or port + size > 1 << 16:
            return None
        if value >> (8 * size) or (op == Op.IN and value):
            return None
    elif op == Op.SIN or op == Op.SOUT:
        if chain or size not in SIZES or port + size > 1 << 16 or not 0 < value * size <= DATA_BYTES:
            return None
    elif op == Op.DMA:
        if chain or size > 1 or not 0 < port <= len(DMA_DEVICES) or not value >> 32:
            return None
    elif op == Op.UNDMA:
        if chain or size or not 0 < port <= len(DMA_DEVICES) or value >> 32:
            return None
    else:
        return None
    return Slot(op, chain, size, port, value)


def device_id(name: str) -> int | None:
    return DMA_DEVICES.index(name) + 1 if name in DMA_DEVICES else None


def write_header(words: memoryview) -> None:
    words[W_MAGIC], words[W_VERSION], words[W_SLOTS], words[W_DATA] = (
        MAGIC, VERSION, SLOTS, DATA_BYTES)


def header_ok(words: memoryview) -> bool:
    """The driver's check of a ring it was handed: this layout, this version."""
    return (len(words) * 8 >= SIZE and words[W_MAGIC] == MAGIC and words[W_VERSION] == VERSION
            and words[W_SLOTS] == SLOTS and words[W_DATA] == DATA_BYTES)
