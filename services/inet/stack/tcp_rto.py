"""The retransmission timeout estimator of RFC 6298, with exponential backoff.

Karn's rule is the caller's job: only segments sent once may be timed, and a
retransmission cancels the measurement in progress (tcp_send.py).  A backed-off
RTO stays backed off until the next valid sample (RFC 6298 5.7).
"""
from __future__ import annotations

RTO_INITIAL = 1.0             # seconds, before any sample (RFC 6298 2.1)
RTO_MIN = 0.2                 # seconds; RFC 6298 says 1 s, we follow Linux's 200 ms
RTO_MAX = 60.0                # seconds, cap on the backed-off value
CLOCK_GRANULARITY = 0.001     # G in RFC 6298
ALPHA = 1 / 8
BETA = 1 / 4
K = 4


class RtoEstimator:
    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = RTO_INITIAL

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self.rto = min(RTO_MAX, max(RTO_MIN, self.srtt + max(CLOCK_GRANULARITY, K * self.rttvar)))

    def backoff(self) -> None:
        self.rto = min(RTO_MAX, self.rto * 2)
