"""The board's end of one driver's ring: port I/O read from shared memory, checked, performed.

Runs in the board process; hw.board_fastpath makes a ``Ring`` when a driver
attaches and decides when it is served.  The layout is minikern.proto.ring
(docs/PROTOCOL.md section 10).  The ring is a memfd the board creates and
seals (F_SEAL_SHRINK: a driver that could shrink it would make the board's
next read a SIGBUS); the doorbell is a stream socketpair, not an eventfd,
because a driver shares an eventfd's file description and could clear its
O_NONBLOCK, while ``MSG_DONTWAIT`` on the board's own end of a socket never
blocks, whatever the driver does.

Invariants:
- Every request is decoded from the board's own copy of the slot's two words
  (``ring.decode``: every field in range, else EINVAL, counted ``malformed``);
  no assert and no exception on anything in the ring.
- Every port of a request (every slot of a chain) is checked against the
  driver's I/O windows before anything is performed; one port outside them
  refuses the whole request with ECALLDENIED, audited (a ``denied`` event,
  call "DEVIO", path "channel") and counted ``port_refused``, never performed.
- The board's position in the ring (``next``) is its own: nothing the driver
  writes moves it but a slot that carries exactly the expected sequence number.
- An incomplete chain (its last slot not written yet) is left in place and
  served when complete; a chain longer than ``ring.MAX_CHAIN`` is refused.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hw.board_machine import Audit, Machine
from minikern.const import Err
from minikern.proto import ring
from minikern.proto.ring import Op

Windows = tuple[tuple[int, int], ...]
Dma = Callable[["Offer", str, int, int, bool], tuple[int, int]]  # owner, device, base, len, write
Undma = Callable[["Offer", str, int], tuple[int, int]]  # owner, device, base -> status, revoked

_IN, _OUT, _SEQ, _SIZES = int(Op.IN), int(Op.OUT), ring.SEQ_MASK, ring.SIZES
_REQ, _ANS, _MASK = ring.W_REQUESTS, ring.W_ANSWERS, ring.MASK
_OK, _DENIED, _EINVAL = int(Err.OK), int(Err.ECALLDENIED), int(Err.EINVAL)


@dataclass(frozen=True)
class Offer:
    """What IOMAP offered a driver, and what its ring reaches once attached."""

    endpoint: int
    label: str
    io: Windows
    mem: Windows


class Ring:
    """One attached driver's ring, its doorbell and its windows."""

    def __init__(self, owner: Offer, machine: Machine, audit: Audit, counters: Counter[str],
                 dma: Dma, undma: Undma) -> None:
        self.owner, self.machine, self.audit, self.counters = owner, machine, audit, counters
        self.dma, self.undma = dma, undma
        self.who = (owner.endpoint, owner.label)
        self.bounds = tuple((base, base + length) for base, length in owner.io)
        self.fd = os.memfd_create("mk-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, ring.SIZE)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        self.mm = mmap.mmap(self.fd, ring.SIZE)
        self.words = memoryview(self.mm).cast("Q")
        ring.write_header(self.words)
        self.sleep()  # until its first bell, the board is not looking at this ring
        self.bell, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.bell.setblocking(False)
        self.next = 1  # sequence number of the next request (0 is what a fresh ring holds)

    def handed_over(self) -> None:
        """The driver has its fds: the board keeps only its mapping and its end of the bell."""
        os.close(self.fd)
        self.fd = -1
        self.peer.close()

    # -- the doorbell and the flags ------------------------------------------------------

    def sleep(self) -> None:
        self.words[ring.W_BOARD_SLEEPS] = 1

    def wake(self) -> None:
        self.words[ring.W_BOARD_SLEEPS] = 0

    def drain(self) -> bool:
        """Empty the bell; False if the driver's end is gone (EOF or an error)."""
        try:
            return bool(self.bell.recv(4096, socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def call(self) -> None:
        """Ring the driver's bell if it said it would block; never blocks the board."""
        if self.words[ring.W_DRIVER_WAITS]:
            self.counters["calls"] += 1
            try:
                self.bell.send(b"\1", socket.MSG_DONTWAIT)
            except OSError:  # full: it has a wake-up already; gone: its EOF drops the ring
                pass

    # -- serving ---------------------------------------------------------------------

    def serve(self, limit: int) -> int:
        """Serve up to ``limit`` requests in order; return how many (0: nothing complete)."""
        w, m, who, bounds = self.words, self.machine, self.who, self.bounds
        n, served = self.next, 0
        while served < limit:
            i = _REQ + ((n & _MASK) << 1)
            head = w[i]
            if head & _SEQ != n & _SEQ:
                break
            value = w[i + 1]
            op, size, port = (head >> 32) & 0xFF, (head >> 40) & 0xFF, head >> 48
            j = _ANS + ((n & _MASK) << 1)
            if op == _IN and size in _SIZES and not value:  # single IN and OUT: the hot path
                end = port + size
                for lo, hi in bounds:  # noqa: SIM110 (a plain loop: this runs on every access)
                    if lo <= port and end <= hi:
                        w[j + 1] = m.read(port, size, who)
                        w[j] = n & _SEQ
                        break
                else:
                    w[j + 1] = 0
                    w[j] = (n & _SEQ) | self.refuse(port) << 32
                n += 1
            elif op == _OUT and size in _SIZES and not value >> (8 * size):
                end = port + size
                for lo, hi in bounds:  # noqa: SIM110
                    if lo <= port and end <= hi:
                        m.write(port, size, value, who)
                        w[j + 1] = 0
                        w[j] = n & _SEQ
                        break
                else:
                    w[j + 1] = 0
                    w[j] = (n & _SEQ) | self.refuse(port) << 32
                n += 1
            else:
                taken = self.other(n, head, value)
                if not taken:
                    break
                n += taken
            served += 1
        self.next = n
        if served:
            self.call()
        return served

    def other(self, n: int, head: int, value: int) -> int:
        """Serve the request whose first slot is ``n``: a chain, string I/O, DMA, or garbage.

        Returns the slots it took, 0 if the request is not complete yet."""
        if head >> 39 & 1:
            return self.chain(n, head, value)
        slot = ring.decode(head, value)
        if slot is None:
            self.counters["malformed"] += 1
            self.answer(n, _EINVAL, 0)
            return 1
        status, result = self.one(slot)
        self.answer(n, status, result)
        return 1

    def one(self, s: ring.Slot) -> tuple[int, int]:
        m, who = self.machine, self.who
        if s.op == Op.SIN or s.op == Op.SOUT:
            if not self.holds(s.port, s.size):
                return self.refuse(s.port), 0
            base, count, size = ring.DATA_OFFSET, s.value, s.size
            if s.op == Op.SIN:
                self.mm[base:base + count * size] = b"".join(
                    m.read(s.port, size, who).to_bytes(size, "little") for _ in range(count))
                return _OK, 0
            data = self.mm[base:base + count * size]  # the board's copy, read once
            for k in range(0, len(data), size):
                m.write(s.port, size, int.from_bytes(data[k:k + size], "little"), who)
            return _OK, 0
        device = ring.DMA_DEVICES[s.port - 1]
        if s.op == Op.DMA:
            return self.dma(self.owner, device, s.value & 0xFFFFFFFF, s.value >> 32,
                            bool(s.size))
        return self.undma(self.owner, device, s.value)  # decode admits no other op

    def chain(self, n: int, head: int, value: int) -> int:
        """A VEC: slots n.. up to the first without CHAIN, all checked before any is performed.

        Written out rather than through ``ring.decode`` (the same checks for IN and OUT):
        a driver's batches are most of its accesses."""
        w, bounds, k = self.words, self.bounds, n
        members: list[tuple[int, int, int, int]] = []
        while True:
            op, size, port = (head >> 32) & 0x7F, (head >> 40) & 0xFF, head >> 48
            if (size not in _SIZES or value >> (8 * size) or (op == _IN and value)
                    or (op != _IN and op != _OUT)):
                self.counters["malformed"] += 1
                return self.answer_all(n, k - n + 1, _EINVAL)  # up to the bad slot
            members.append((op, size, port, value))
            if not head >> 39 & 1:
                break
            if len(members) == ring.MAX_CHAIN:
                self.counters["malformed"] += 1
                return self.answer_all(n, len(members), _EINVAL)
            k += 1
            i = _REQ + ((k & _MASK) << 1)
            head = w[i]
            if head & _SEQ != k & _SEQ:
                return 0  # not all written yet
            value = w[i + 1]
        for _, size, port, _ in members:
            end = port + size
            for lo, hi in bounds:  # noqa: SIM110
                if lo <= port and end <= hi:
                    break
            else:
                self.refuse(port)
                return self.answer_all(n, len(members), _DENIED)
        read, write, who = self.machine.read, self.machine.write, self.who
        for op, size, port, value in members:
            j = _ANS + ((n & _MASK) << 1)
            if op == _IN:
                w[j + 1] = read(port, size, who)
            else:
                write(port, size, value, who)
                w[j + 1] = 0
            w[j] = n & _SEQ
            n += 1
        return len(members)

    def holds(self, port: int, size: int) -> bool:
        end = port + size
        return any(lo <= port and end <= hi for lo, hi in self.bounds)

    def refuse(self, port: int) -> int:
        self.counters["port_refused"] += 1
        self.audit.write(self.owner.endpoint, self.owner.label, "DEVIO", port, "ECALLDENIED",
                         path="channel")
        return _DENIED & 0xFFFFFFFF

    def answer(self, n: int, status: int, value: int) -> None:
        j = _ANS + ((n & _MASK) << 1)
        self.words[j + 1] = value
        self.words[j] = ring.answer(n, status)

    def answer_all(self, n: int, count: int, status: int) -> int:
        for x in range(count):
            self.answer(n + x, status, 0)
        return count

    def close(self) -> None:
        self.words.release()
        self.mm.close()
        self.bell.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.peer.close()
