"""The sending half of a TCP connection: the send buffer, SND.UNA/NXT, retransmission and congestion control.

Sequence space, left to right: our SYN at ISS; the bytes of ``buf`` from
``buf_seq`` (= ISS+1 until data is acknowledged); our FIN right after them
once the application closed.  SND.UNA <= SND.NXT <= SND.MAX, where SND.MAX is
the highest sequence ever sent; after a timeout SND.NXT goes back to SND.UNA
(go-back-N) and climbs again, ACKs beyond it pull it forward.

Timers (absolute deadlines on the injected clock, None when stopped):

* ``rto_deadline`` runs while anything is unacknowledged (RFC 6298 5.1-5.3).
  Its expiry backs the RTO off, collapses the congestion window to one
  segment, and resends from SND.UNA.
* ``persist_deadline`` runs while data waits behind a zero window and
  nothing is in flight; its expiry sends a one-byte probe beyond the window
  (RFC 9293 3.8.6.1) and doubles the interval.

Congestion control is NewReno (RFC 5681, RFC 6582): slow start, congestion
avoidance, fast retransmit on the third duplicate ACK, fast recovery with
partial-ACK retransmission.  Karn's rule: only a segment sent for the first
time is timed, and any retransmission cancels the measurement.
"""
from __future__ import annotations

from collections.abc import Callable

from services.inet.stack.tcp_rto import RTO_MAX, RtoEstimator
from services.inet.stack.tcp_segment import FIN, PSH, SYN
from services.inet.stack.tcp_seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt

TCP_SNDBUF = 128 * 1024       # bytes the application may queue
TCP_INITIAL_CWND = 10         # segments (RFC 6928)
TCP_MAX_CWND = 1 << 20        # bytes; the peer's 64 KB window binds long before
DUPACK_THRESHOLD = 3
TCP_MAX_RETRIES = 12          # consecutive timeouts of data before the connection is aborted
TCP_SYN_RETRIES = 6           # consecutive timeouts of a SYN before connect() fails

Payload = bytes | bytearray | memoryview
Emit = Callable[[int, int, Payload], None]      # (sequence number, flags, payload)


class Sender:
    def __init__(self, iss: int, mss: int, bufsize: int = TCP_SNDBUF) -> None:
        self.iss = iss
        self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.buf = bytearray()
        self.buf_seq = seq_add(iss, 1)
        self.bufsize = bufsize
        self.fin_queued = False
        self.mss = mss
        self.cwnd = TCP_INITIAL_CWND * mss
        self.ssthresh = TCP_MAX_CWND
        self.dupacks = 0
        self.recover: int | None = None
        self.rto = RtoEstimator()
        self.rtt_seq: int | None = None
        self.rtt_start = 0.0
        self.rto_deadline: float | None = None
        self.persist_deadline: float | None = None
        self.persist_interval = 0.0
        self.retries = 0
        self.timeouts = 0
        self.fast_retransmits = 0
        self.retransmitted_segments = 0
        self.probes = 0

    def set_mss(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = TCP_INITIAL_CWND * mss

    @property
    def syn_acked(self) -> bool:
        return seq_gt(self.snd_una, self.iss)

    @property
    def data_end(self) -> int:
        return seq_add(self.buf_seq, len(self.buf))

    @property
    def fin_acked(self) -> bool:
        return self.fin_queued and self.snd_una == seq_add(self.data_end, 1)

    @property
    def in_flight(self) -> int:
        return seq_diff(self.snd_nxt, self.snd_una)

    @property
    def free(self) -> int:
        return 0 if self.fin_queued else self.bufsize - len(self.buf)

    def write(self, data: Payload) -> int:
        n = min(len(data), self.free)
        self.buf += data[:n]
        return n

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.rto_deadline, self.persist_deadline) if d is not None]
        return min(deadlines, default=None)

    def output(self, now: float, emit: Emit) -> None:
        """Send whatever the windows allow: the SYN, new data, the FIN."""
        if not self.syn_acked:
            if self.snd_nxt == self.iss:
                self._transmit(now, emit, self.iss, SYN, b"")
            return
        while True:
            offset = seq_diff(self.snd_nxt, self.buf_seq)
            unsent = len(self.buf) - offset
            if unsent > 0:
                n = min(self.mss, unsent, min(self.snd_wnd, self.cwnd) - self.in_flight)
                if n <= 0 or (n < self.mss and n < unsent and self.in_flight > 0):
                    break                       # wait for a usable window (sender SWS avoidance)
                flags = PSH if n == unsent else 0
                if n == unsent and self.fin_queued:
                    flags |= FIN
                self._transmit(now, emit, self.snd_nxt, flags, self.buf[offset:offset + n])
            elif unsent == 0 and self.fin_queued:
                self._transmit(now, emit, self.snd_nxt, FIN, b"")
            else:
                break
        self._update_persist(now)

    def on_ack(self, seq: int, ack: int, window: int, pure_ack: bool, now: float, emit: Emit) -> int:
        """Process an ACK the caller checked is <= SND.MAX; returns the sequence space newly acked."""
        if seq_lt(ack, self.snd_una):
            return 0
        window_changed = False
        if seq_lt(self.snd_wl1, seq) or (self.snd_wl1 == seq and seq_le(self.snd_wl2, ack)):
            window_changed = window != self.snd_wnd
            self.snd_wnd, self.snd_wl1, self.snd_wl2 = window, seq, ack
        acked = seq_diff(ack, self.snd_una)
        if acked == 0:
            if pure_ack and not window_changed and self.snd_wnd > 0 and self.snd_max != self.snd_una:
                self._duplicate_ack(now, emit)
            return 0
        self._new_ack(ack, acked, now, emit)
        return acked

    def on_timer(self, now: float, emit: Emit) -> bool:
        """Run expired timers; False when the retransmission limit is reached and the connection must die."""
        if self.rto_deadline is not None and now >= self.rto_deadline:
            self.rto_deadline = None
            self.retries += 1
            if self.retries > (TCP_MAX_RETRIES if self.syn_acked else TCP_SYN_RETRIES):
                return False
            self.timeouts += 1
            self.ssthresh = max(seq_diff(self.snd_max, self.snd_una) // 2, 2 * self.mss)
            self.cwnd = self.mss
            self.recover = None
            self.dupacks = 0
            self.rto.backoff()
            self.rtt_seq = None
            self.snd_nxt = self.snd_una
            self.output(now, emit)
        if self.persist_deadline is not None and now >= self.persist_deadline:
            self._probe(now, emit)
        return True

    def _transmit(self, now: float, emit: Emit, seq: int, flags: int, payload: Payload) -> None:
        emit(seq, flags, payload)
        end = seq_add(seq, len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0))
        if seq == self.snd_nxt:
            self.snd_nxt = end
        if seq_lt(seq, self.snd_max):
            self.retransmitted_segments += 1
        if seq_gt(end, self.snd_max):
            if self.rtt_seq is None and seq == self.snd_max:
                self.rtt_seq, self.rtt_start = end, now
            self.snd_max = end
        if self.rto_deadline is None:
            self.rto_deadline = now + self.rto.rto

    def _retransmit_first(self, now: float, emit: Emit) -> None:
        """Resend the segment at SND.UNA without moving SND.NXT (fast retransmit, partial ACK)."""
        self.rtt_seq = None
        offset = seq_diff(self.snd_una, self.buf_seq)
        n = min(self.mss, len(self.buf) - offset)
        flags = 0
        if n == len(self.buf) - offset and self.fin_queued and seq_gt(self.snd_max, self.data_end):
            flags = FIN
        if n <= 0 and not flags:
            return
        self._transmit(now, emit, self.snd_una, flags, self.buf[offset:offset + max(n, 0)])

    def _duplicate_ack(self, now: float, emit: Emit) -> None:
        self.dupacks += 1
        if self.recover is not None:
            self.cwnd = min(TCP_MAX_CWND, self.cwnd + self.mss)      # each dup ACK: a segment has left
            return
        if self.dupacks == DUPACK_THRESHOLD:
            self.ssthresh = max(seq_diff(self.snd_max, self.snd_una) // 2, 2 * self.mss)
            self.cwnd = self.ssthresh + DUPACK_THRESHOLD * self.mss
            self.recover = self.snd_max
            self.fast_retransmits += 1
            self._retransmit_first(now, emit)

    def _new_ack(self, ack: int, acked: int, now: float, emit: Emit) -> None:
        data_acked = min(max(seq_diff(ack, self.buf_seq), 0), len(self.buf))
        if data_acked:
            del self.buf[:data_acked]
            self.buf_seq = seq_add(self.buf_seq, data_acked)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        if self.rtt_seq is not None and seq_ge(ack, self.rtt_seq):
            self.rto.sample(now - self.rtt_start)
            self.rtt_seq = None
        self.retries = 0
        self.dupacks = 0
        if self.recover is not None:
            if seq_ge(ack, self.recover):
                self.cwnd = self.ssthresh
                self.recover = None
            else:
                self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
                self._retransmit_first(now, emit)
        elif self.cwnd < self.ssthresh:
            self.cwnd = min(TCP_MAX_CWND, self.cwnd + min(acked, self.mss))
        else:
            self.cwnd = min(TCP_MAX_CWND, self.cwnd + max(1, self.mss * self.mss // self.cwnd))
        self.rto_deadline = None if self.snd_una == self.snd_max else now + self.rto.rto
        self.persist_deadline = None

    def _update_persist(self, now: float) -> None:
        waiting = len(self.buf) - seq_diff(self.snd_nxt, self.buf_seq) > 0
        if waiting and self.snd_wnd == 0 and self.in_flight == 0 and self.rto_deadline is None:
            if self.persist_deadline is None:
                self.persist_interval = self.rto.rto
                self.persist_deadline = now + self.persist_interval
        elif self.snd_wnd > 0:
            self.persist_deadline = None

    def _probe(self, now: float, emit: Emit) -> None:
        offset = seq_diff(self.snd_nxt, self.buf_seq)
        if self.snd_wnd != 0 or offset >= len(self.buf):
            self.persist_deadline = None
            return
        emit(self.snd_nxt, 0, self.buf[offset:offset + 1])
        if seq_gt(seq_add(self.snd_nxt, 1), self.snd_max):
            self.snd_max = seq_add(self.snd_nxt, 1)
        self.probes += 1
        self.persist_interval = min(RTO_MAX, self.persist_interval * 2)
        self.persist_deadline = now + self.persist_interval
