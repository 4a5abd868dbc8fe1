"""The TCP connection state machine (RFC 793 figure 6) as one table and one transition function.

The table lists every legal (state, event) pair.  close() in SYN_RECEIVED
aborts (the FIN could not be sent before our SYN is acknowledged anyway).  Connection code never
assigns a state directly: it calls ``transition`` and reacts to the result;
an event that has no entry for the current state returns None and the caller
treats it as an error (API misuse) or a segment to drop (wire input).
Creating a listener's child (LISTEN -> SYN_RECEIVED) is expressed on the
child, which starts in LISTEN.
"""
from __future__ import annotations

import enum


class TcpState(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"


class TcpEvent(enum.Enum):
    PASSIVE_OPEN = "listen()"
    ACTIVE_OPEN = "connect()"
    CLOSE = "close()"
    RCV_SYN = "SYN received"
    RCV_SYN_ACK = "SYN+ACK received"
    RCV_ACK_OF_SYN = "our SYN acknowledged"
    RCV_FIN = "FIN received"
    RCV_ACK_OF_FIN = "our FIN acknowledged"
    RCV_RST = "RST received"
    TIMEOUT = "timer expired"
    ABORT = "abort"


S = TcpState
E = TcpEvent

_TABLE: dict[tuple[TcpState, TcpEvent], TcpState] = {
    (S.CLOSED, E.PASSIVE_OPEN): S.LISTEN,
    (S.CLOSED, E.ACTIVE_OPEN): S.SYN_SENT,
    (S.LISTEN, E.RCV_SYN): S.SYN_RECEIVED,
    (S.LISTEN, E.CLOSE): S.CLOSED,
    (S.SYN_SENT, E.RCV_SYN_ACK): S.ESTABLISHED,
    (S.SYN_SENT, E.RCV_SYN): S.SYN_RECEIVED,          # simultaneous open
    (S.SYN_SENT, E.CLOSE): S.CLOSED,
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): S.ESTABLISHED,
    (S.ESTABLISHED, E.CLOSE): S.FIN_WAIT_1,
    (S.ESTABLISHED, E.RCV_FIN): S.CLOSE_WAIT,
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, E.RCV_FIN): S.CLOSING,             # simultaneous close
    (S.FIN_WAIT_2, E.RCV_FIN): S.TIME_WAIT,
    (S.CLOSE_WAIT, E.CLOSE): S.LAST_ACK,
    (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): S.CLOSED,
    (S.TIME_WAIT, E.TIMEOUT): S.CLOSED,
}
# A reset, an abort or a fatal timeout ends any open connection.
for _state in TcpState:
    if _state is not S.CLOSED:
        _TABLE[(_state, E.RCV_RST)] = S.CLOSED
        _TABLE[(_state, E.ABORT)] = S.CLOSED
        _TABLE.setdefault((_state, E.TIMEOUT), S.CLOSED)

# States in which both sides have exchanged SYNs.
SYNCHRONIZED = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT,
                          S.CLOSING, S.LAST_ACK, S.TIME_WAIT})
# States in which the application may still queue data.
CAN_SEND = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
# States in which data from the peer is still accepted.
CAN_RECEIVE = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})


def transition(state: TcpState, event: TcpEvent) -> TcpState | None:
    """The state after ``event`` in ``state``, or None when the event is not legal there."""
    return _TABLE.get((state, event))
