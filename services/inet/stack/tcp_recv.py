"""The receiving half of a TCP connection: RCV.NXT, the receive buffer, out-of-order segments, the window.

Invariants:

* ``buf`` holds in-order bytes not yet read by the application; it never
  exceeds ``bufsize`` because only data inside the free space is accepted.
* The advertised window is free buffer space, except that it is not widened
  by less than ``_sws_threshold`` bytes (receiver silly-window avoidance,
  RFC 9293 3.8.6.2.2); its right edge ``adv_edge`` never moves left.
* ``ooo`` holds segments that arrived ahead of RCV.NXT, keyed by sequence
  number, at most ``TCP_OOO_SEGMENTS`` of them and all inside the window;
  ``ooo_fin`` is where a FIN that arrived early sits.  Both are drained
  whenever RCV.NXT advances.  ``sack_blocks`` reports them (RFC 2018).
* With window scaling (RFC 7323) the window may exceed 64 KiB: ``wscale``
  is the shift this side announced in its SYN, set once both sides
  offered the option; without it the window stays under 64 KiB whatever
  the buffer.
"""
from __future__ import annotations

from services.inet.stack.tcp_sack import Block, receiver_blocks
from services.inet.stack.tcp_seq import seq_add, seq_diff, seq_ge, seq_le

# Why 56 KiB, window scaling or not: the receive path's narrowest buffer is the NIC's ring
# (rtl8139: 64 KiB, 43 full-sized records of 1,524 bytes).  A larger window lets a fast
# sender (Linux) overrun it, and each overrun resets the receiver and loses the whole ring:
# measured with 1 MiB, 62 resets and 17% of Linux's bytes sent twice in one 20 MB transfer;
# with 64 KiB (45 segments, more than the ring's 43), 18 resets.  56 KiB is 39 segments.
# The send side is where scaling pays (tcp_send.py: Linux's window, scaled, and a send
# buffer that grows with the path).
TCP_RCVBUF = 56 * 1024        # bytes
TCP_MAX_WINDOW = 65535        # the window field; more only with window scaling
TCP_OOO_SEGMENTS = 64         # out-of-order segments held before further ones are dropped


def wscale_for(bufsize: int) -> int:
    """The smallest shift (RFC 7323) that lets the window field cover ``bufsize``."""
    shift = 0
    while (TCP_MAX_WINDOW << shift) < bufsize and shift < 14:
        shift += 1
    return shift

Payload = bytes | bytearray | memoryview


class Receiver:
    def __init__(self, mss: int, bufsize: int = TCP_RCVBUF) -> None:
        self.bufsize = bufsize
        self.buf = bytearray()
        self.rcv_nxt = 0
        self.adv_edge = 0
        self.fin_received = False
        self.ooo: dict[int, bytes] = {}
        self.ooo_fin: int | None = None
        self.ooo_dropped = 0
        self.ooo_held = 0
        self.ooo_latest: int | None = None      # sequence number of the newest held segment
        self.wscale = 0
        self._sws_threshold = min(bufsize // 2, mss)

    def start(self, irs: int) -> None:
        """The peer's SYN arrived with sequence number ``irs``."""
        self.rcv_nxt = seq_add(irs, 1)
        self.adv_edge = self.rcv_nxt

    @property
    def free(self) -> int:
        return self.bufsize - len(self.buf)

    def window(self) -> int:
        """The window to advertise now; records its right edge."""
        edge = seq_add(self.rcv_nxt, self.free)
        if seq_diff(edge, self.adv_edge) >= self._sws_threshold or self.free == self.bufsize:
            self.adv_edge = edge
        return min(TCP_MAX_WINDOW << self.wscale, max(0, seq_diff(self.adv_edge, self.rcv_nxt)))

    def sack_blocks(self, most: int) -> list[Block]:
        """The SACK blocks for what is held out of order, the newest arrival's first."""
        if not self.ooo:
            return []
        return receiver_blocks({s: len(d) for s, d in self.ooo.items()}, self.ooo_latest, most)

    def window_update_due(self) -> bool:
        """True when reading opened the window enough that the peer should hear of it."""
        edge = seq_add(self.rcv_nxt, self.free)
        return seq_diff(edge, self.adv_edge) >= min(self.bufsize // 2, 2 * self._sws_threshold)

    def acceptable(self, seq: int, seg_len: int) -> bool:
        """Does the segment touch the window?  (A zero-length one at RCV.NXT does, even a zero window.)"""
        return seq_le(seq, seq_add(self.rcv_nxt, self.free)) and seq_ge(seq_add(seq, seg_len), self.rcv_nxt)

    def receive(self, seq: int, payload: Payload, fin: bool) -> tuple[int, bool]:
        """Take a segment's data and FIN; returns (bytes newly in order, whether the FIN is now consumed)."""
        skip = seq_diff(self.rcv_nxt, seq)
        if skip > 0:
            if skip > len(payload):
                return 0, False                        # all old, the FIN included
            payload = payload[skip:]
            seq = self.rcv_nxt
        room = self.free - seq_diff(seq, self.rcv_nxt)
        if len(payload) > room:
            payload = payload[:max(room, 0)]
            fin = False                                # the FIN lies beyond what we kept
        if seq != self.rcv_nxt:
            self._hold(seq, payload, fin)
            return 0, False
        before = len(self.buf)
        self.buf += payload
        self.rcv_nxt = seq_add(self.rcv_nxt, len(payload))
        if self.ooo:
            self._drain()
        if fin or (self.ooo_fin is not None and self.ooo_fin == self.rcv_nxt):
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self.fin_received = True
            self.ooo.clear()
            self.ooo_fin = None
            return len(self.buf) - before, True
        return len(self.buf) - before, False

    def read(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _hold(self, seq: int, payload: Payload, fin: bool) -> None:
        if fin:
            self.ooo_fin = seq_add(seq, len(payload))
        if not payload:
            return
        old = self.ooo.get(seq)
        if old is not None and len(old) >= len(payload):
            return
        if old is None and len(self.ooo) >= TCP_OOO_SEGMENTS:
            self.ooo_dropped += 1
            return
        self.ooo[seq] = bytes(payload)
        self.ooo_latest = seq
        self.ooo_held += 1

    def _drain(self) -> None:
        progress = True
        while progress and self.ooo:
            progress = False
            for seq in list(self.ooo):
                offset = seq_diff(self.rcv_nxt, seq)
                if offset < 0:
                    continue
                data = self.ooo.pop(seq)
                if offset < len(data):
                    self.buf += data[offset:]
                    self.rcv_nxt = seq_add(self.rcv_nxt, len(data) - offset)
                    progress = True
