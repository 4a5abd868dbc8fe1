"""A TCP endpoint: the socket-like API the INET server calls, and segment arrival (RFC 9293 3.10).

A ``TcpSocket`` owns its state (changed only through ``tcp_state.transition``
via ``_enter``), a ``Sender`` and a ``Receiver``.  The ``TcpLayer``
(tcp_layer.py) owns the tables that find a socket for a segment.  Nothing
here blocks: calls return at once with what is possible now (``accept`` and
``recv`` return None when there is nothing yet), and ``SocketEvent``s tell the
server when to try again.  Misuse of the API raises ``OSError`` with an errno;
wire input never raises, it is dropped and counted in the layer's ``drops``.

Hardening from RFC 5961: an in-window SYN on a synchronized connection and
an RST whose sequence number is in the window but not exactly RCV.NXT draw a
challenge ACK instead of tearing the connection down.

Options: every SYN offers window scaling (RFC 7323) and SACK (RFC 2018); a
SYN+ACK offers each only if the peer's SYN did, and each is in force only when
both SYNs carried it.  Window fields on SYNs are never scaled.

Delayed ACKs (RFC 1122 4.2.3.2, RFC 5681 4.2): in-order data is acknowledged
once two full-sized segments' worth is unacknowledged, or DELACK_TIMEOUT after
the first, whichever comes first; data out of order, data that fills a hole,
a FIN and anything else owed an ACK (a SYN, a challenge) are acknowledged at
once.  Any segment sent carries the ACK and stops the timer.
"""
from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING

from services.inet.stack.events import SocketEvent
from services.inet.stack.ip import int_to_ip, ip_to_int
from services.inet.stack.tcp_recv import Receiver, wscale_for
from services.inet.stack.tcp_segment import (ACK, FIN, RST, SYN, TCP_DEFAULT_MSS, TCP_MAX_SACK_BLOCKS,
                                             Segment, sack_option, syn_options)
from services.inet.stack.tcp_send import Payload, Sender
from services.inet.stack.tcp_seq import seq_add, seq_gt, seq_le
from services.inet.stack.tcp_state import CAN_RECEIVE, CAN_SEND, SYNCHRONIZED, TcpEvent, TcpState, transition

if TYPE_CHECKING:
    from services.inet.stack.tcp_layer import TcpLayer

TCP_MSS = 1460                # ours: Ethernet MTU minus 40 bytes of IP and TCP headers
MSL = 2.0                     # seconds; short on purpose (RFC 793 says 2 min): TIME-WAIT lasts 2*MSL
FIN_WAIT_2_TIMEOUT = 60.0     # seconds an orphaned FIN_WAIT_2 waits for the peer's FIN (as Linux)
DEFAULT_BACKLOG = 8
# Why 100 ms: RFC 1122 and RFC 5681 allow up to 500 ms; below our and Linux's minimum RTO
# (200 ms) a lone segment's delayed ACK cannot make the peer's retransmission timer fire.
DELACK_TIMEOUT = 0.1          # seconds an ACK of in-order data may wait
DELACK_SEGMENTS = 2           # full-sized segments that are acknowledged at once

S = TcpState
E = TcpEvent


class TcpSocket:
    def __init__(self, layer: TcpLayer) -> None:
        self._layer = layer
        self.state = S.CLOSED
        self.local_port = 0
        self.remote_ip = 0
        self.remote_port = 0
        self.error = 0
        self.sender = Sender(0, TCP_DEFAULT_MSS)
        self.receiver = Receiver(TCP_MSS)
        self.parent: TcpSocket | None = None
        self.backlog = 0
        self.embryos: set[TcpSocket] = set()
        self.accept_queue: deque[TcpSocket] = deque()
        self.timer_deadline: float | None = None    # TIME_WAIT or FIN_WAIT_2 expiry
        self._ack_owed = False
        self._opened = False
        self.delack_deadline: float | None = None
        self._unacked_bytes = 0         # in-order data received since our last ACK
        self._rcv_mss = TCP_DEFAULT_MSS  # the largest segment seen: what "full-sized" means
        self.offer_wscale = True       # put the option in our SYN (a SYN+ACK: the peer's had it)
        self.offer_sack = True
        self.delayed_acks = 0           # ACKs that waited for a second segment or the timer
        self._nodelay = False           # kept here too: the Sender is replaced at open
        self.sacks_sent = 0             # segments sent with SACK blocks

    # ---- API ------------------------------------------------------------

    @property
    def local_address(self) -> tuple[str, int]:
        return int_to_ip(self._layer.local_ip), self.local_port

    @property
    def remote_address(self) -> tuple[str, int]:
        return int_to_ip(self.remote_ip), self.remote_port

    def bind(self, port: int) -> None:
        if self.state is not S.CLOSED or self.local_port or self._opened:
            raise OSError(errno.EINVAL, "socket already bound")
        self.local_port = self._layer.bind(self, port)

    def listen(self, backlog: int = DEFAULT_BACKLOG) -> None:
        if not self.local_port or self._opened:
            raise OSError(errno.EINVAL, "listen() needs a bound, unused socket")
        self.backlog = max(1, backlog)
        self._opened = True
        self._enter(E.PASSIVE_OPEN)
        self._layer.add_listener(self)

    def accept(self) -> TcpSocket | None:
        if self.state is not S.LISTEN:
            raise OSError(errno.EINVAL, "accept() on a socket that is not listening")
        return self.accept_queue.popleft() if self.accept_queue else None

    def connect(self, address: tuple[str, int]) -> None:
        if self._opened:
            raise OSError(errno.EISCONN, "socket already used")
        remote_ip, remote_port = ip_to_int(address[0]), address[1]
        if not 0 < remote_port < 65536:
            raise OSError(errno.EINVAL, f"bad port {remote_port}")
        self._opened = True
        self.remote_ip, self.remote_port = remote_ip, remote_port
        self.local_port = self._layer.connect_port(self)
        self.sender = Sender(self._layer.new_isn(), TCP_DEFAULT_MSS)
        self.sender.nodelay = self._nodelay
        self._enter(E.ACTIVE_OPEN)
        self._layer.add_connection(self)
        self.sender.output(self._layer.clock(), self._emit)

    @property
    def nodelay(self) -> bool:
        """TCP_NODELAY: True sends small segments at once (no Nagle)."""
        return self.sender.nodelay

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._nodelay = self.sender.nodelay = value

    def resume(self, now: float) -> None:
        """The interface took frames: send what waited for room."""
        if self.state in SYNCHRONIZED:
            self._output(now)

    def interface_back(self, now: float) -> None:
        """The interface's driver was replaced: probe for the ACKs lost meanwhile."""
        if self.state in SYNCHRONIZED:
            self.sender.interface_back(now, self._emit)

    def send(self, data: Payload) -> int:
        """Queue what fits in the send buffer; returns the number of bytes accepted (0 when full)."""
        if self.error:
            raise OSError(self.error, "connection failed")
        if self.state not in CAN_SEND or self.sender.fin_queued:
            raise OSError(errno.EPIPE if self._opened else errno.ENOTCONN, "cannot send now")
        n = self.sender.write(data)
        if n and self.state in SYNCHRONIZED:
            self._output(self._layer.clock())
        return n

    def recv(self, n: int) -> bytes | None:
        """Up to ``n`` bytes; b"" at end of stream; None when nothing has arrived yet."""
        if self.receiver.buf:
            data = self.receiver.read(n)
            if self.state in SYNCHRONIZED and self.receiver.window_update_due():
                self._send_ack()
            return data
        if self.error:
            raise OSError(self.error, "connection failed")
        if self.receiver.fin_received:
            return b""
        if not self._opened or self.state is S.LISTEN:
            raise OSError(errno.ENOTCONN, "socket not connected")
        return None

    def close(self) -> None:
        """Orderly release (FIN); an abort when unread data would be lost (RFC 2525 2.17)."""
        if self.state is S.LISTEN:
            for child in list(self.embryos) + list(self.accept_queue):
                child.abort()
            self.accept_queue.clear()
            self._enter(E.CLOSE)
        elif self.state is S.SYN_SENT:
            self._enter(E.CLOSE)
        elif self.state is S.SYN_RECEIVED or (self.receiver.buf and self.state in SYNCHRONIZED):
            self.abort()
        elif self.state in (S.ESTABLISHED, S.CLOSE_WAIT):
            self.sender.fin_queued = True
            self._enter(E.CLOSE)
            self._output(self._layer.clock())
        elif self.state is S.CLOSED:
            self._layer.release(self)

    def abort(self) -> None:
        """Send RST and forget the connection at once."""
        if self.state in SYNCHRONIZED or self.state is S.SYN_RECEIVED:
            self._layer.send_segment(self.remote_ip, self.local_port, self.remote_port,
                                     self.sender.snd_nxt, self.receiver.rcv_nxt, RST | ACK, 0)
        if self.state is not S.CLOSED:
            self._enter(E.ABORT)

    @property
    def readable(self) -> bool:
        if self.state is S.LISTEN:
            return bool(self.accept_queue)
        return bool(self.receiver.buf) or self.receiver.fin_received or bool(self.error)

    @property
    def writable(self) -> bool:
        return bool(self.error) or (self.state in (S.ESTABLISHED, S.CLOSE_WAIT) and self.sender.free > 0)

    @property
    def connected(self) -> bool:
        return self.state in SYNCHRONIZED

    def counters(self) -> dict[str, int]:
        """This connection's retransmission, SACK and ACK counters."""
        snd, rcv = self.sender, self.receiver
        return {"timeouts": snd.timeouts, "fast_retransmits": snd.fast_retransmits,
                "sack_recoveries": snd.sack_recoveries, "timeouts_held": snd.timeouts_held,
                "outage_probes": snd.outage_probes,
                "throttled": snd.throttled, "spurious_timeouts": snd.spurious_timeouts,
                "retransmitted_segments": snd.retransmitted_segments,
                "sack_blocks_rejected": snd.scoreboard.rejected, "ooo_segments_held": rcv.ooo_held,
                "ooo_segments_dropped": rcv.ooo_dropped, "delayed_acks": self.delayed_acks,
                "sacks_sent": self.sacks_sent}

    # ---- timers ---------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.sender.next_deadline(), self.timer_deadline,
                                 self.delack_deadline) if d is not None]
        return min(deadlines, default=None)

    def on_timer(self, now: float, held: bool = False) -> None:
        if self.timer_deadline is not None and now >= self.timer_deadline:
            self.timer_deadline = None
            self._enter(E.TIMEOUT)
            return
        if self.state in (S.CLOSED, S.LISTEN, S.TIME_WAIT):
            self.delack_deadline = None
            return
        if self.delack_deadline is not None and now >= self.delack_deadline:
            self.delayed_acks += 1
            self._send_ack()
        if not self.sender.on_timer(now, self._emit, held):
            self.error = errno.ETIMEDOUT
            self.abort()

    # ---- segment arrival ------------------------------------------------

    def accept_syn(self, listener: TcpSocket, remote_ip: int, seg: Segment, now: float) -> None:
        """Become the child of ``listener`` for the SYN ``seg`` and answer SYN+ACK."""
        self.parent, self._opened, self.state = listener, True, S.LISTEN
        self.local_port, self.remote_ip, self.remote_port = listener.local_port, remote_ip, seg.src_port
        self.sender = Sender(self._layer.new_isn(), min(TCP_MSS, seg.mss or TCP_DEFAULT_MSS))
        self.nodelay = listener._nodelay
        self.sender.snd_wnd, self.sender.snd_wl1 = seg.window, seg.seq
        self._negotiate(seg)
        self.receiver.start(seg.seq)
        self._enter(E.RCV_SYN)
        listener.embryos.add(self)
        self._layer.add_connection(self)
        self.sender.output(now, self._emit)

    def input(self, seg: Segment, now: float) -> None:
        if self.state is S.SYN_SENT:
            self._input_syn_sent(seg, now)
            return
        flags = seg.flags
        if not self.receiver.acceptable(seg.seq, seg.seg_len):
            self._layer.drops["tcp_out_of_window"] += 1
            if not flags & RST:
                self._send_ack()
            return
        if flags & RST:
            self._input_rst(seg)
            return
        if flags & SYN:
            if seg.seq != seq_add(self.receiver.rcv_nxt, -1):
                self._layer.drops["tcp_syn_in_window"] += 1
                self._send_ack()
                return
            if self.state is S.SYN_RECEIVED and not flags & ACK:
                self._emit(self.sender.iss, SYN, b"")       # the peer resent its SYN: our SYN+ACK was lost
                return
            # A resent SYN+ACK (our ACK was lost), or the peer's in a simultaneous open:
            # the SYN is old, so trim it off and process the rest.
            seg.flags = flags = flags & ~SYN
            seg.seq = self.receiver.rcv_nxt
            self._ack_owed = True
        if not flags & ACK:
            self._layer.drops["tcp_no_ack"] += 1
            return
        if self.state is S.SYN_RECEIVED:
            if not self._acks_our_syn(seg.ack):
                self._send_reset(seg.ack)
                return
            self._enter(E.RCV_ACK_OF_SYN)
        if self._input_ack(seg, now):
            self._input_data(seg, now)
        self._output(now)

    def _input_syn_sent(self, seg: Segment, now: float) -> None:
        flags = seg.flags
        ack_ok = bool(flags & ACK) and self._acks_our_syn(seg.ack)
        if flags & ACK and not ack_ok:
            if not flags & RST:
                self._send_reset(seg.ack)
            return
        if flags & RST:
            if ack_ok:
                self.error = errno.ECONNREFUSED
                self._enter(E.RCV_RST)
            return
        if not flags & SYN:
            return
        self.receiver.start(seg.seq)
        self.sender.set_mss(min(TCP_MSS, seg.mss or TCP_DEFAULT_MSS))
        self.sender.snd_wnd, self.sender.snd_wl1, self.sender.snd_wl2 = seg.window, seg.seq, self.sender.iss
        self._negotiate(seg)
        if ack_ok:
            self._enter(E.RCV_SYN_ACK)
            self.sender.on_ack(seg.seq, seg.ack, seg.window, False, now, self._emit)
            self._ack_owed = True
            self._output(now)
        else:
            self._enter(E.RCV_SYN)                          # simultaneous open
            self._emit(self.sender.iss, SYN, b"")

    def _negotiate(self, seg: Segment) -> None:
        """The peer's SYN: window scaling and SACK hold when both sides offer them."""
        self.offer_wscale = self.offer_wscale and seg.wscale is not None
        self.offer_sack = self.offer_sack and seg.sack_ok
        if self.offer_wscale and seg.wscale is not None:
            self.sender.snd_wscale = seg.wscale
            self.receiver.wscale = wscale_for(self.receiver.bufsize)
        self.sender.sack_ok = self.offer_sack

    def _input_rst(self, seg: Segment) -> None:
        if seg.seq != self.receiver.rcv_nxt:
            self._layer.drops["tcp_rst_challenged"] += 1
            self._send_ack()
            return
        if self.state in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT):
            self.error = errno.ECONNRESET
        self._enter(E.RCV_RST)

    def _input_ack(self, seg: Segment, now: float) -> bool:
        """Step five of segment arrival; False when the segment must be dropped."""
        sender = self.sender
        if seq_gt(seg.ack, sender.snd_max):
            self._layer.drops["tcp_ack_of_unsent"] += 1
            self._send_ack()
            return False
        fin_was_acked, free_before = sender.fin_acked, sender.free
        pure = not seg.payload and not seg.flags & FIN
        window = seg.window if seg.flags & SYN else seg.window << sender.snd_wscale
        sender.on_ack(seg.seq, seg.ack, window, pure, now, self._emit, seg.sack)
        if sender.free > free_before and self.state in CAN_SEND:
            self._layer.notify(self, SocketEvent.WRITABLE)
        if sender.fin_acked and not fin_was_acked:
            self._enter(E.RCV_ACK_OF_FIN)
            if self.state is S.CLOSED:
                return False
        return True

    def _input_data(self, seg: Segment, now: float) -> None:
        fin = bool(seg.flags & FIN)
        if not seg.payload and not fin:
            return
        if self.state not in CAN_RECEIVE:
            self._ack_owed = True
            if self.state is S.TIME_WAIT and fin:
                self.timer_deadline = now + 2 * MSL         # the peer resent its FIN: our ACK was lost
            return
        receiver = self.receiver
        in_order = seg.seq == receiver.rcv_nxt and not receiver.ooo
        delivered, fin_now = receiver.receive(seg.seq, seg.payload, fin)
        self._rcv_mss = max(self._rcv_mss, len(seg.payload))
        self._unacked_bytes += delivered
        if (not in_order or fin or delivered != len(seg.payload)
                or self._unacked_bytes >= DELACK_SEGMENTS * self._rcv_mss):
            self._ack_owed = True                           # out of order, a hole filled, a FIN
        elif self.delack_deadline is None:
            self.delack_deadline = now + DELACK_TIMEOUT
        if fin_now:
            self._enter(E.RCV_FIN)
        if delivered or fin_now:
            self._layer.notify(self, SocketEvent.READABLE)

    # ---- output ---------------------------------------------------------

    def _output(self, now: float) -> None:
        if self.state in SYNCHRONIZED or self.state is S.SYN_RECEIVED:
            self.sender.output(now, self._emit, self._layer.room)
        if self._ack_owed:
            self._send_ack()

    def _acks_our_syn(self, ack: int) -> bool:
        return seq_gt(ack, self.sender.iss) and seq_le(ack, self.sender.snd_max)

    def _send_reset(self, seq: int) -> None:
        self._layer.send_segment(self.remote_ip, self.local_port, self.remote_port, seq, 0, RST, 0)

    def _send_ack(self) -> None:
        self._emit(self.sender.snd_nxt, 0, b"")

    def _emit(self, seq: int, flags: int, payload: Payload) -> None:
        if self.state is not S.SYN_SENT:
            flags |= ACK
        receiver = self.receiver
        window = receiver.window()
        if flags & SYN:                                     # never scaled (RFC 7323 2.2)
            window = min(window, 0xFFFF)
            options = syn_options(TCP_MSS, wscale_for(receiver.bufsize) if self.offer_wscale else None,
                                  self.offer_sack)
        else:
            window >>= receiver.wscale
            options = b""
            if self.sender.sack_ok and receiver.ooo:
                options = sack_option(receiver.sack_blocks(TCP_MAX_SACK_BLOCKS))
                self.sacks_sent += 1
        self._layer.send_segment(self.remote_ip, self.local_port, self.remote_port, seq,
                                 receiver.rcv_nxt if flags & ACK else 0, flags,
                                 window, payload, options=options)
        self._ack_owed = False
        self.delack_deadline = None
        self._unacked_bytes = 0

    # ---- state ----------------------------------------------------------

    def _enter(self, event: TcpEvent) -> None:
        new = transition(self.state, event)
        if new is None:
            self._layer.drops["tcp_bad_transition"] += 1
            return
        old, self.state = self.state, new
        now = self._layer.clock()
        if new is S.TIME_WAIT:
            self.timer_deadline = now + 2 * MSL
        elif new is S.FIN_WAIT_2:
            self.timer_deadline = now + FIN_WAIT_2_TIMEOUT
        if new is S.ESTABLISHED and old is not S.ESTABLISHED:
            if self.parent is not None and self in self.parent.embryos:
                self.parent.embryos.discard(self)
                self.parent.accept_queue.append(self)
                self._layer.notify(self.parent, SocketEvent.READABLE)
            self._layer.notify(self, SocketEvent.WRITABLE)
        if new is S.CLOSED:
            self.sender.rto_deadline = self.sender.persist_deadline = self.timer_deadline = None
            self.delack_deadline = None
            if self.parent is not None:
                self.parent.embryos.discard(self)
                if self in self.parent.accept_queue:
                    self.parent.accept_queue.remove(self)
            self._layer.release(self)
            self._layer.notify(self, SocketEvent.CLOSED)
            if self.error:
                self._layer.notify(self, SocketEvent.READABLE)

    def __repr__(self) -> str:
        return (f"<TcpSocket {self.local_port} -> {int_to_ip(self.remote_ip)}:{self.remote_port} "
                f"{self.state.value}>")

