"""The driver's end of the fast path: port I/O through its ring in shared memory (runs in a
driver process; the protocol is minikern.proto.fastpath and minikern.proto.ring).

A driver asks the kernel once, ``conn.kcall(KCall.IOMAP)`` (it must hold
port windows and the IOMAP call), and gets the board's socket path and a
one-time token; ``open_channel(conn)`` does both steps.  The attach answer
hands over a ring (request and answer slots, a string area), the ring's
doorbell and the driver's physical memory windows (``windows``: base -> mmap
of the shared segment), so buffers the NIC reads and writes by DMA need no
copying.  The ring reaches exactly the driver's port windows, checked by the
board on every access (hw.board_ring).

Every call writes its slots, rings the board's bell only if the board said
it sleeps, and waits for the answer: polling for up to SPIN (the board
answers in microseconds when it runs), then saying so in the ring and
blocking on the doorbell, so a driver that waits costs no CPU.  ``vec``
sends several accesses as one chain: one wait, and all of them are checked
before any is performed.  A refused access raises ``ChannelError`` with the
board's status (ECALLDENIED for a port outside the windows); an access the
ring cannot carry (a port past 0xFFFF, a size not 1, 2 or 4, a string over
the string area) is refused here with EINVAL.  A Channel is not thread-safe.
"""
from __future__ import annotations

import mmap
import os
import select
import socket
import time

from minikern import ipc
from minikern.const import Err, KCall, err_name
from minikern.proto import fastpath as fp
from minikern.proto import ring
from minikern.proto.ring import Op

MAX_FDS = 66  # the ring, its doorbell, and up to 64 memory windows
SPIN = 100e-6  # seconds to poll for the board's answer before blocking on the doorbell
RECHECK_MS = 1  # the first block is this short; then the bell is rung again (a lost one)
_SEQ, _MASK, _REQ, _ANS = ring.SEQ_MASK, ring.MASK, ring.W_REQUESTS, ring.W_ANSWERS
_IN, _OUT, _CHAIN = int(Op.IN) << 32, int(Op.OUT) << 32, ring.CHAIN << 32


class ChannelError(Exception):
    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: {err_name(code)}")
        self.code = code


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


class Channel:
    def __init__(self, path: str, token: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.send(fp.encode(fp.Attach(token)))
            data, fds, _, _ = socket.recv_fds(sock, fp.MAX_REPLY, MAX_FDS)
        reply = fp.decode_reply(data)
        info = fp.decode_attached(reply) if reply is not None else None
        if info is None or len(fds) != fp.FIXED_FDS + len(info.mem) \
                or os.fstat(fds[0]).st_size < ring.SIZE:
            _close_fds(fds)
            status = reply[0] if reply is not None and reply[0] != Err.OK else Err.EIO
            raise ChannelError(status, "attach")
        self.mm = mmap.mmap(fds[0], ring.SIZE, mmap.MAP_SHARED)
        self.words = memoryview(self.mm).cast("Q")
        self.bell = socket.socket(fileno=fds[1])
        self.poller = select.poll()
        self.poller.register(self.bell, select.POLLIN)
        os.close(fds[0])
        self.windows: dict[int, mmap.mmap] = {}
        if not ring.header_ok(self.words):
            _close_fds(fds[2:])
            self.close()
            raise ChannelError(Err.EIO, "attach: not a ring of this version")
        self.endpoint: int = info.endpoint
        self.io: list[tuple[int, int]] = info.io
        for (base, length), fd in zip(info.mem, fds[2:], strict=True):
            self.windows[base] = mmap.mmap(fd, length, mmap.MAP_SHARED)
            os.close(fd)
        self.seq = 1  # the board expects 1 first
        self.spin = SPIN

    # -- slots -----------------------------------------------------------------------

    def _post(self, head: int, value: int) -> int:
        """Write one slot (value first, head last) and ring the bell if the board sleeps."""
        n, w = self.seq, self.words
        self.seq = n + 1
        i = _REQ + ((n & _MASK) << 1)
        w[i + 1] = value
        w[i] = (n & _SEQ) | head
        if w[ring.W_BOARD_SLEEPS]:
            self._kick()
        return n

    def _kick(self) -> None:
        try:
            self.bell.send(b"\1", socket.MSG_DONTWAIT)
        except BlockingIOError:  # full: the board has a wake-up waiting already
            pass
        except OSError as e:
            raise ChannelError(Err.EIO, "the board closed the ring") from e

    def _answer(self, n: int, what: str) -> int:
        """The value of request ``n``'s answer, after waiting for it; raises on a refusal."""
        w, j = self.words, _ANS + ((n & _MASK) << 1)
        a = w[j]
        if a & _SEQ != n & _SEQ:
            a = self._wait(j, n & _SEQ)
        if a >> 32:
            raise ChannelError(ring.status_of(a), what)
        return int(w[j + 1])

    def _wait(self, j: int, want: int) -> int:
        """Spin, then block on the doorbell, until answer word ``j`` carries ``want``."""
        w = self.words
        end = time.perf_counter() + self.spin
        while time.perf_counter() < end:
            a = w[j]
            if a & _SEQ == want:
                return int(a)
        w[ring.W_DRIVER_WAITS] = 1
        try:
            timeout = RECHECK_MS
            while True:
                a = w[j]
                if a & _SEQ == want:
                    return int(a)
                if not self.poller.poll(timeout):
                    # Nothing fences the words against the slots, so the board may have gone
                    # to sleep without seeing the request, and this side may have missed its
                    # bell: look again (above) and ring the board once more.
                    self._kick()
                    timeout = 1000
                    continue
                try:
                    if not self.bell.recv(4096, socket.MSG_DONTWAIT):
                        raise ChannelError(Err.EIO, "the board closed the ring")
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    raise ChannelError(Err.EIO, "the board closed the ring") from e
        finally:
            w[ring.W_DRIVER_WAITS] = 0

    def _io(self, op: int, port: int, size: int, value: int, what: str) -> int:
        if port >> 16 or size not in ring.SIZES:
            raise ChannelError(Err.EINVAL, what)
        return self._answer(self._post(op | size << 40 | port << 48, value), what)

    # -- port I/O ----------------------------------------------------------------------

    def inb(self, port: int) -> int:
        return self._io(_IN, port, 1, 0, "In")

    def inw(self, port: int) -> int:
        return self._io(_IN, port, 2, 0, "In")

    def inl(self, port: int) -> int:
        return self._io(_IN, port, 4, 0, "In")

    def outb(self, port: int, value: int) -> None:
        self._io(_OUT, port, 1, value & 0xFF, "Out")

    def outw(self, port: int, value: int) -> None:
        self._io(_OUT, port, 2, value & 0xFFFF, "Out")

    def outl(self, port: int, value: int) -> None:
        self._io(_OUT, port, 4, value & 0xFFFFFFFF, "Out")

    def vec(self, ops: list[tuple[int, int, int | None]]) -> list[int | None]:
        """Several accesses as one chain, one wait: (port, size, value or None to read).

        All are checked before any is performed; one refused refuses them all."""
        if not 0 < len(ops) <= ring.MAX_CHAIN:
            raise ChannelError(Err.EINVAL, "Vec")
        heads, values = [], []
        for port, size, value in ops:
            if port >> 16 or size not in ring.SIZES:
                raise ChannelError(Err.EINVAL, "Vec")
            op = _IN if value is None else _OUT
            heads.append(op | _CHAIN | size << 40 | port << 48)
            values.append(0 if value is None else value & ((1 << 8 * size) - 1))
        heads[-1] &= ~_CHAIN
        w, first = self.words, self.seq
        for k in range(len(ops) - 1, -1, -1):  # the first slot last: the board sees a whole chain
            n = first + k
            i = _REQ + ((n & _MASK) << 1)
            w[i + 1] = values[k]
            w[i] = (n & _SEQ) | heads[k]
        self.seq = first + len(ops)
        if w[ring.W_BOARD_SLEEPS]:
            self._kick()
        self._answer(first + len(ops) - 1, "Vec")  # the last answer comes last; a refusal is all
        answers = w[_ANS:_ANS + 2 * ring.SLOTS].tolist()  # one copy, read in order
        out: list[int | None] = []
        for k, (_, _, value) in enumerate(ops):
            if value is not None:
                out.append(None)
                continue
            n = first + k
            j = (n & _MASK) << 1
            if answers[j] != n & _SEQ:  # another seq, or a status: not this chain's answer
                raise ChannelError(Err.EIO, "Vec: an answer out of order")
            out.append(answers[j + 1])
        return out

    def ins(self, port: int, size: int, count: int) -> bytes:
        """rep ins: ``count`` reads of ``port``, little-endian bytes."""
        if not 0 < count * size <= ring.DATA_BYTES:
            raise ChannelError(Err.EINVAL, "Sin")
        self._io(int(Op.SIN) << 32, port, size, count, "Sin")
        return self.mm[ring.DATA_OFFSET:ring.DATA_OFFSET + count * size]

    def outs(self, port: int, size: int, data: bytes) -> None:
        """rep outs: ``data`` (a multiple of ``size`` bytes) written to ``port``."""
        if size not in ring.SIZES or not 0 < len(data) <= ring.DATA_BYTES or len(data) % size:
            raise ChannelError(Err.EINVAL, "Sout")
        self.mm[ring.DATA_OFFSET:ring.DATA_OFFSET + len(data)] = data
        self._io(int(Op.SOUT) << 32, port, size, len(data) // size, "Sout")

    def dma_grant(self, device: str, base: int, length: int, write: bool) -> None:
        """Let ``device`` DMA to [base, base+length) of my own memory (write: it may write it)."""
        dev = ring.device_id(device)
        if dev is None or base >> 32 or not 0 < length < 1 << 32:
            raise ChannelError(Err.EINVAL, "Dma")
        self._answer(self._post(int(Op.DMA) << 32 | int(write) << 40 | dev << 48,
                                base | length << 32), "Dma")

    def dma_revoke(self, device: str, base: int) -> int:
        dev = ring.device_id(device)
        if dev is None or base >> 32 or base < 0:
            raise ChannelError(Err.EINVAL, "Undma")
        return self._answer(self._post(int(Op.UNDMA) << 32 | dev << 48, base), "Undma")

    def memory(self, addr: int, length: int) -> memoryview:
        """A view of physical memory [addr, addr+length) inside one of my windows."""
        for base, m in self.windows.items():
            if base <= addr and addr + length <= base + len(m):
                return memoryview(m)[addr - base:addr - base + length]
        raise ChannelError(Err.EFAULT, f"{addr:#x} is not in my memory windows")

    def close(self) -> None:
        for m in self.windows.values():
            try:
                m.close()
            except BufferError:  # a memoryview is still alive; the mapping goes with it
                pass
        self.words.release()
        self.mm.close()
        self.bell.close()


def connect(path: str, token: str) -> Channel:
    return Channel(path, token)


def open_channel(conn: ipc.Connection) -> Channel:
    """IOMAP through the kernel, then attach to the board."""
    r = conn.kcall(KCall.IOMAP)
    return Channel(r["path"], r["token"])
