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

With SACK (RFC 2018, negotiated: ``sack_ok``) loss recovery follows RFC 6675
in its simple form: recovery starts at the third duplicate ACK or once more
than DUPACK_THRESHOLD - 1 segments' worth is SACKed above SND.UNA; cwnd
drops to ssthresh, and while the estimate of what is in the network
(``pipe``: sent beyond the highest SACKed byte, plus holes already resent)
leaves room, every hole below the highest SACKed byte is resent once, then new
data goes out.  So a burst lost together is resent in one round trip, not one
segment per round trip as NewReno does.  A timeout forgets the scoreboard; a
D-SACK for the segment a timeout resent shows the timeout spurious and undoes
its collapse of the congestion window (RFC 3708, RFC 4015).

Window scaling (RFC 7323): ``snd_wnd`` is in bytes; the caller shifts the
peer's window field by ``snd_wscale`` (0 unless both SYNs offered it).  The
send buffer grows with the path (``bufsize``: twice what the windows allow in
flight, from TCP_SNDBUF up to TCP_SNDBUF_MAX), so the application keeps the
pipe full without INET holding megabytes for a slow peer.

Nagle (RFC 896, RFC 9293 3.7.4): a segment shorter than the MSS is held back
while data is unacknowledged, unless ``nodelay`` is set or it carries the FIN.
"""
from __future__ import annotations

from collections.abc import Callable

from services.inet.stack.tcp_rto import RTO_MAX, RtoEstimator
from services.inet.stack.tcp_sack import Block, Scoreboard
from services.inet.stack.tcp_segment import FIN, PSH, SYN
from services.inet.stack.tcp_seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt

TCP_SNDBUF = 128 * 1024       # bytes the application may queue at first
TCP_SNDBUF_MAX = 4 << 20      # bytes the send buffer may grow to (twice the largest flight)
TCP_INITIAL_CWND = 10         # segments (RFC 6928)
TCP_MAX_CWND = 4 << 20        # bytes
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
        self.snd_wscale = 0             # shift of the peer's window field (RFC 7323)
        self.sack_ok = False            # both SYNs carried SACK-permitted
        self.scoreboard = Scoreboard()
        self.rexmit_next = iss          # SACK recovery: holes below this were resent
        self.sack_recoveries = 0
        self.timeouts_held = 0          # timeouts while the interface held our frames
        self.outage_probes = 0          # heads resent when the interface came back
        self.throttled = 0              # times new data waited for the interface's queue
        self.undo: tuple[int, int, int] | None = None  # (cwnd, ssthresh, SND.UNA) at the last timeout
        self.spurious_timeouts = 0      # timeouts a D-SACK showed spurious (their collapse undone)
        self.nodelay = False            # True: no Nagle
        self.buf_max = bufsize if bufsize > TCP_SNDBUF_MAX else TCP_SNDBUF_MAX

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

    def output(self, now: float, emit: Emit, room: Callable[[], bool] | None = None) -> None:
        """Send whatever the windows allow: the SYN, new data, the FIN.  ``room``: whether the
        interface takes more now; new data waits when it does not (the owner calls again)."""
        if not self.syn_acked:
            if self.snd_nxt == self.iss:
                self._transmit(now, emit, self.iss, SYN, b"")
            return
        if self.recover is not None and self.sack_ok:
            self._resend_holes(now, emit)
        while True:
            offset = seq_diff(self.snd_nxt, self.buf_seq)
            unsent = len(self.buf) - offset
            if unsent > 0:
                if room is not None and not room():
                    self.throttled += 1
                    break
                n = min(self.mss, unsent, self._room())
                if n <= 0 or (n < self.mss and n < unsent and self.in_flight > 0):
                    break                       # wait for a usable window (sender SWS avoidance)
                if n < self.mss and self.in_flight > 0 and not self.nodelay and not self.fin_queued:
                    break                       # Nagle: a small segment waits for the ACK
                flags = PSH if n == unsent else 0
                if n == unsent and self.fin_queued:
                    flags |= FIN
                self._transmit(now, emit, self.snd_nxt, flags, self.buf[offset:offset + n])
            elif unsent == 0 and self.fin_queued:
                self._transmit(now, emit, self.snd_nxt, FIN, b"")
            else:
                break
        self._update_persist(now)

    def on_ack(self, seq: int, ack: int, window: int, pure_ack: bool, now: float, emit: Emit,
               sack: tuple[Block, ...] = ()) -> int:
        """Process an ACK the caller checked is <= SND.MAX; returns the sequence space newly acked.
        ``window`` is in bytes (already scaled); ``sack`` the segment's SACK blocks."""
        if seq_lt(ack, self.snd_una):
            return 0
        window_changed = False
        if seq_lt(self.snd_wl1, seq) or (self.snd_wl1 == seq and seq_le(self.snd_wl2, ack)):
            window_changed = window != self.snd_wnd
            self.snd_wnd, self.snd_wl1, self.snd_wl2 = window, seq, ack
            self._size_buffer()
        sacked_new = False
        if self.sack_ok and sack:
            if self.undo is not None and self._spurious(ack, sack[0]):
                self.cwnd, self.ssthresh = max(self.cwnd, self.undo[0]), self.undo[1]
                self.undo = None
                self.snd_nxt = self.snd_max     # the originals were not lost: no go-back-N
                self.spurious_timeouts += 1
            sacked_new = self.scoreboard.update(ack, self.snd_max, sack)
        acked = seq_diff(ack, self.snd_una)
        if acked == 0:
            # With SACK a duplicate ACK is one that SACKs new data (RFC 6675 2): an ACK for a
            # segment the peer got twice (INET resends what a dying driver may have sent) is not.
            dup = sacked_new if self.sack_ok else pure_ack and not window_changed and self.snd_wnd > 0
            if dup and self.snd_max != self.snd_una:
                self._duplicate_ack(now, emit)
            return 0
        self._new_ack(ack, acked, now, emit)
        return acked

    def on_timer(self, now: float, emit: Emit, held: bool = False) -> bool:
        """Run expired timers; False when the retransmission limit is reached and the connection must die.

        ``held``: the interface still holds what was sent (its driver is being replaced, and
        INET resends its frames to the new one), so nothing is known lost.  As Linux does for
        a segment still in the host's queue, the timeout then only backs off and counts
        towards the retry limit: no go-back-N, no collapse of the congestion window.
        """
        if self.rto_deadline is not None and now >= self.rto_deadline:
            self.rto_deadline = None
            self.retries += 1
            if self.retries > (TCP_MAX_RETRIES if self.syn_acked else TCP_SYN_RETRIES):
                return False
            if held:
                self.timeouts_held += 1
                self.rto.backoff()
                self.rto_deadline = now + self.rto.rto
                return True
            self.timeouts += 1
            if self.undo is None:
                self.undo = (self.cwnd, self.ssthresh, self.snd_una)
            self.ssthresh = max(seq_diff(self.snd_max, self.snd_una) // 2, 2 * self.mss)
            self.cwnd = self.mss
            self.recover = None
            self.scoreboard.clear()             # the peer may have reneged (RFC 2018 8)
            self.dupacks = 0
            self.rto.backoff()
            self.rtt_seq = None
            self.snd_nxt = self.snd_una
            self.output(now, emit)
        if self.persist_deadline is not None and now >= self.persist_deadline:
            self._probe(now, emit)
        return True

    def interface_back(self, now: float, emit: Emit) -> None:
        """The interface's driver was replaced and is back.  What we sent is safe (delivered,
        or resent from INET's queue), but the peer's ACKs that arrived meanwhile were lost
        with the old driver; with the window full, nothing would draw a new ACK until the
        RTO, which the outage backed off.  So resend the segment at SND.UNA now, as a probe
        (the tail loss probe's idea, RFC 8985 7): the peer answers it within a round trip
        with its cumulative ACK (and SACK blocks).  cwnd is kept: nothing is known lost."""
        if self.snd_una != self.snd_max:
            self.outage_probes += 1
            self._retransmit_first(now, emit)

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
        # The resent head must have its full RTO to come back (as Linux rearms it): the
        # timer that ran since the last new ACK already spent the dup ACKs' round trip.
        self.rto_deadline = now + self.rto.rto

    def _duplicate_ack(self, now: float, emit: Emit) -> None:
        self.dupacks += 1
        if self.recover is not None:
            if self.sack_ok:
                self._resend_holes(now, emit)   # pipe shrank: room for another hole
            else:
                self.cwnd = min(TCP_MAX_CWND, self.cwnd + self.mss)  # each dup ACK: a segment has left
            return
        lost = self.sack_ok and self.scoreboard.sacked_bytes > (DUPACK_THRESHOLD - 1) * self.mss
        if self.dupacks == DUPACK_THRESHOLD or lost:
            self.undo = None                    # a real loss: nothing to undo any more
            self.ssthresh = max(seq_diff(self.snd_max, self.snd_una) // 2, 2 * self.mss)
            self.recover = self.snd_max
            self.fast_retransmits += 1
            if self.sack_ok:
                self.sack_recoveries += 1
                self.cwnd = self.ssthresh
                self.rexmit_next = self.snd_una
                self._retransmit_first(now, emit)
                self.rexmit_next = seq_add(self.snd_una, self.mss)
                self._resend_holes(now, emit)
            else:
                self.cwnd = self.ssthresh + DUPACK_THRESHOLD * self.mss
                self._retransmit_first(now, emit)

    def _spurious(self, ack: int, first: Block) -> bool:
        """A D-SACK (RFC 2883: a first block below the cumulative ACK) for the segment the
        last timeout resent: the peer had it already, so the timeout was spurious (RFC 3708)
        and its collapse of the congestion window is undone (in the manner of RFC 4015).
        On a loaded machine a process that is not scheduled for 200 ms looks like a loss."""
        left, right = first
        una = self.undo[2] if self.undo is not None else ack
        return seq_le(right, ack) and seq_le(left, una) and seq_lt(una, right)

    def _room(self) -> int:
        """Bytes of new data the windows let out now (in SACK recovery, cwnd less the pipe)."""
        room = min(self.snd_wnd, self.cwnd) - self.in_flight
        if self.recover is not None and self.sack_ok:
            room = min(self.snd_wnd - self.in_flight, self.cwnd - self.pipe())
        return room

    def pipe(self) -> int:
        """RFC 6675's estimate of the bytes in the network: those sent beyond the highest SACKed
        byte, plus the holes below it that were resent; the other holes are taken as lost."""
        high = self.scoreboard.highest
        if high is None or seq_le(high, self.snd_una):
            return self.in_flight
        beyond = max(0, seq_diff(self.snd_nxt, high))
        resent_end = self.rexmit_next if seq_lt(self.rexmit_next, high) else high
        if seq_le(resent_end, self.snd_una):
            return beyond
        resent = seq_diff(resent_end, self.snd_una) - self.scoreboard.sacked_below(self.snd_una, resent_end)
        return beyond + resent

    def _resend_holes(self, now: float, emit: Emit) -> None:
        """SACK recovery: resend each hole below the highest SACKed byte once, while the pipe
        leaves a segment's room in cwnd."""
        while self.cwnd - self.pipe() >= self.mss:
            start = self.rexmit_next if seq_gt(self.rexmit_next, self.snd_una) else self.snd_una
            hole = self.scoreboard.next_hole(start, self.mss)
            if hole is None:
                return
            left, right = hole
            offset = seq_diff(left, self.buf_seq)
            n = min(seq_diff(right, left), len(self.buf) - offset)
            if offset < 0 or n <= 0:
                return
            self.rtt_seq = None                 # Karn: a retransmission is never timed
            self._transmit(now, emit, left, 0, self.buf[offset:offset + n])
            self.rexmit_next = seq_add(left, n)

    def _new_ack(self, ack: int, acked: int, now: float, emit: Emit) -> None:
        data_acked = min(max(seq_diff(ack, self.buf_seq), 0), len(self.buf))
        if data_acked:
            del self.buf[:data_acked]
            self.buf_seq = seq_add(self.buf_seq, data_acked)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self.scoreboard.advance(ack)
        if self.rtt_seq is not None and seq_ge(ack, self.rtt_seq):
            self.rto.sample(now - self.rtt_start)
            self.rtt_seq = None
        self.retries = 0
        self.dupacks = 0
        if self.recover is not None:
            if seq_ge(ack, self.recover):
                self.cwnd = self.ssthresh
                self.recover = None
            elif self.sack_ok:
                self._resend_holes(now, emit)   # a partial ACK: the pipe decides (RFC 6675)
            else:
                self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
                self._retransmit_first(now, emit)
        elif self.cwnd < self.ssthresh:
            self.cwnd = min(TCP_MAX_CWND, self.cwnd + min(acked, self.mss))
        else:
            self.cwnd = min(TCP_MAX_CWND, self.cwnd + max(1, self.mss * self.mss // self.cwnd))
        self.rto_deadline = None if self.snd_una == self.snd_max else now + self.rto.rto
        self.persist_deadline = None
        self._size_buffer()

    def _size_buffer(self) -> None:
        """Let the send buffer hold twice what the windows allow in flight (a round trip's
        worth queued behind the one in the network), within TCP_SNDBUF_MAX."""
        want = 2 * min(self.snd_wnd, self.cwnd)
        if want > self.bufsize:
            self.bufsize = min(self.buf_max, want)

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
