"""TCP between two stacks on the in-memory wire: handshake, data, loss, reordering, windows, closing."""
from __future__ import annotations

import errno
import hashlib
import random

import pytest

from services.inet.stack import SocketEvent, TcpState
from services.inet.stack.tcp import MSL
from services.inet.stack.tcp_recv import TCP_RCVBUF
from services.inet.stack.tcp_segment import RST, SYN
from tests.inet.wire import IP_B, Transfer, Wire, tcp_view

ISN_NEAR_WRAP = 2**32 - 3000


def payload(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def test_handshake_sends_and_negotiates_mss() -> None:
    w = Wire()
    client, server = w.connect_pair()
    assert client.state is TcpState.ESTABLISHED and server.state is TcpState.ESTABLISHED
    syn = tcp_view(w.sent[0][1])          # frame 0 is the ARP request
    assert syn is not None and syn.flags == SYN
    assert b"\x02\x04\x05\xb4" in w.sent[0][1]          # MSS option 1460
    assert client.sender.mss == 1460 and server.sender.mss == 1460
    assert server.remote_address == client.local_address
    assert client.writable and not client.readable


@pytest.mark.parametrize("isn", [None, ISN_NEAR_WRAP, 2**32 - 1])
def test_data_both_ways_with_wrapping_sequence_numbers(isn: int | None) -> None:
    w = Wire(isn_a=isn, isn_b=isn)
    client, server = w.connect_pair()
    up, down = payload(700_000, 1), payload(500_000, 2)
    t_up, t_down = Transfer(client, server, up), Transfer(server, client, down)

    def step() -> None:
        t_up.step()
        t_down.step()

    w.run(lambda: t_up.done() and t_down.done(), step=step)
    assert sha(t_up.received) == sha(up) and sha(t_down.received) == sha(down)
    if isn is not None:
        assert client.sender.snd_una < isn and server.sender.snd_una < isn     # wrapped past 2**32
    assert client.sender.timeouts == 0 and not w.a.drops and not w.b.drops


def test_random_loss_is_repaired_by_retransmission() -> None:
    w = Wire(seed=3, loss=0.03, isn_a=ISN_NEAR_WRAP)
    client, server = w.connect_pair()
    data = payload(1_000_000)
    t = Transfer(client, server, data)
    w.run(t.done, step=t.step, timeout=300)
    assert sha(t.received) == sha(data)
    assert w.lost > 0
    assert client.sender.fast_retransmits > 0 and client.sender.timeouts > 0
    assert client.sender.retransmitted_segments >= client.sender.fast_retransmits


def test_one_lost_segment_mid_stream_is_fast_retransmitted() -> None:
    w = Wire()
    client, server = w.connect_pair()
    state = {"data_segments": 0, "dropped": False}

    def drop_tenth(src: int, frame: bytes) -> bool:
        view = tcp_view(frame)
        if src != 0 or view is None or view.payload_len == 0 or state["dropped"]:
            return False
        state["data_segments"] += 1
        state["dropped"] = state["data_segments"] == 10
        return bool(state["dropped"])

    w.filters.append(drop_tenth)
    data = payload(300_000)
    t = Transfer(client, server, data)
    w.run(t.done, step=t.step)
    assert sha(t.received) == sha(data)
    assert state["dropped"]
    assert client.sender.fast_retransmits == 1 and client.sender.timeouts == 0


def test_lost_tail_is_recovered_by_timeout_with_backoff() -> None:
    w = Wire()
    client, server = w.connect_pair()
    drops = {"left": 3}

    def drop_tail(src: int, frame: bytes) -> bool:
        view = tcp_view(frame)
        if src == 0 and view is not None and view.payload_len == 100 and drops["left"]:
            drops["left"] -= 1
            return True
        return False

    w.filters.append(drop_tail)
    start = w.clock.now
    assert client.send(payload(100)) == 100
    w.run(lambda: server.recv(1000) is not None)
    assert client.sender.timeouts == 3 and client.sender.fast_retransmits == 0
    # RTO of the first try is at least RTO_MIN (200 ms), then doubles: 0.2 + 0.4 + 0.8 at the very least.
    assert w.clock.now - start >= 1.4


def test_reordering_and_duplication_are_reassembled() -> None:
    w = Wire(seed=5, reorder=0.3, duplicate=0.1, isn_b=ISN_NEAR_WRAP)
    client, server = w.connect_pair()
    data = payload(800_000)
    t = Transfer(server, client, data)
    w.run(t.done, step=t.step)
    assert sha(t.received) == sha(data)
    assert client.receiver.ooo_held > 0 and client.receiver.ooo_dropped == 0


def test_zero_window_and_persist_probes() -> None:
    w = Wire()
    client, server = w.connect_pair()
    data = payload(TCP_RCVBUF + 200_000)
    t = Transfer(client, server, data)
    t.reading = False                                    # the receiver does not read: its window closes
    w.run(lambda: client.sender.probes >= 3, step=t.step, timeout=120)
    # Full, to the window's granularity: a scaled window field counts in 2**wscale bytes.
    assert 0 <= TCP_RCVBUF - len(server.receiver.buf) < 1 << server.receiver.wscale
    assert client.sender.snd_wnd == 0 and client.sender.timeouts == 0
    assert w.clock.now < 1000 + 120
    window_updates = {"left": 1}

    def drop_window_update(src: int, frame: bytes) -> bool:
        view = tcp_view(frame)
        if src == 1 and view is not None and view.window > 0 and window_updates["left"]:
            window_updates["left"] -= 1
            return True
        return False

    w.filters.append(drop_window_update)                # the persist timer must recover the lost update
    t.reading = True
    w.run(t.done, step=t.step, timeout=300)
    assert window_updates["left"] == 0
    assert sha(t.received) == sha(data)


def test_orderly_close_and_time_wait_expiry() -> None:
    w = Wire()
    client, server = w.connect_pair()
    events: list[tuple[object, SocketEvent]] = []
    w.b.on_event = lambda sock, ev: events.append((sock, ev))
    client.send(b"bye")
    client.close()
    assert client.state is TcpState.FIN_WAIT_1
    with pytest.raises(OSError) as e:
        client.send(b"more")
    assert e.value.errno == errno.EPIPE
    w.run(lambda: server.state is TcpState.CLOSE_WAIT and client.state is TcpState.FIN_WAIT_2)
    assert server.recv(10) == b"bye" and server.recv(10) == b""
    assert (server, SocketEvent.READABLE) in events
    server.send(b"reply")
    server.close()
    w.run(lambda: server.state is TcpState.CLOSED)
    assert (server, SocketEvent.CLOSED) in events
    assert client.state is TcpState.TIME_WAIT and client.recv(10) == b"reply" and client.recv(10) == b""
    entered = w.clock.now
    w.run(lambda: client.state is TcpState.CLOSED, timeout=10)
    assert 2 * MSL - 0.1 <= w.clock.now - entered <= 2 * MSL + 0.1
    assert not w.a.tcp.connections and not w.b.tcp.connections
    assert w.a.next_deadline() is None and w.b.next_deadline() is None


def test_simultaneous_close() -> None:
    w = Wire()
    client, server = w.connect_pair()
    client.close()
    server.close()
    w.run(lambda: client.state is TcpState.TIME_WAIT and server.state is TcpState.TIME_WAIT)
    w.run(lambda: not w.a.tcp.connections and not w.b.tcp.connections, timeout=10)


def test_simultaneous_open() -> None:
    w = Wire()
    a, b = w.a.tcp_socket(), w.b.tcp_socket()
    a.bind(4000)
    b.bind(4001)
    a.connect((IP_B, 4001))
    b.connect(("10.0.0.1", 4000))
    w.run(lambda: a.connected and b.connected)
    a.send(b"ping")
    b.send(b"pong")
    w.run(lambda: a.readable and b.readable)
    assert a.recv(10) == b"pong" and b.recv(10) == b"ping"


def test_abort_resets_the_peer() -> None:
    w = Wire()
    client, server = w.connect_pair()
    client.abort()
    assert client.state is TcpState.CLOSED
    w.run(lambda: server.state is TcpState.CLOSED)
    assert server.error == errno.ECONNRESET and server.readable
    with pytest.raises(OSError) as e:
        server.recv(10)
    assert e.value.errno == errno.ECONNRESET


def test_close_with_unread_data_resets() -> None:
    w = Wire()
    client, server = w.connect_pair()
    client.send(b"unread")
    w.run(lambda: server.readable)
    server.close()
    assert server.state is TcpState.CLOSED
    w.run(lambda: client.state is TcpState.CLOSED)
    assert client.error == errno.ECONNRESET


def test_connect_to_closed_port_is_refused() -> None:
    w = Wire()
    sock = w.a.tcp_socket()
    sock.connect((IP_B, 9))
    w.run(lambda: sock.state is TcpState.CLOSED)
    assert sock.error == errno.ECONNREFUSED and w.b.drops["tcp_no_socket"] == 1
    assert any((v := tcp_view(f)) is not None and v.flags & RST for f in w.sent[1])


def test_connect_times_out_when_nobody_answers() -> None:
    w = Wire(filters=[lambda src, frame: src == 1 and tcp_view(frame) is not None])
    sock = w.a.tcp_socket()
    sock.connect((IP_B, 5000))
    w.run(lambda: sock.state is TcpState.CLOSED, timeout=600)
    assert sock.error == errno.ETIMEDOUT and sock.sender.timeouts == 6


def test_backlog_limits_pending_connections() -> None:
    w = Wire()
    listener = w.b.tcp_socket()
    listener.bind(5000)
    listener.listen(backlog=2)
    clients = [w.a.tcp_socket() for _ in range(3)]
    for c in clients:
        c.connect((IP_B, 5000))
    w.run(lambda: len(listener.accept_queue) == 2)
    assert w.b.drops["tcp_backlog_full"] >= 1
    assert listener.readable and sum(c.connected for c in clients) == 2
    first = listener.accept()
    assert first is not None and first.connected
    # The third client's SYN was dropped; its retransmission now finds room.
    w.run(lambda: len(listener.accept_queue) == 2 and all(c.connected for c in clients), timeout=30)
    assert listener.accept() is not None and listener.accept() is not None and listener.accept() is None


def test_events_wake_a_waiting_server() -> None:
    w = Wire()
    events: list[SocketEvent] = []
    client, server = w.connect_pair()
    w.a.on_event = lambda sock, ev: events.append(ev) if sock is client else None
    big = payload(300_000)
    sent = client.send(big)
    assert 0 < sent < len(big) and client.send(big[sent:]) == 0 and not client.writable
    w.run(lambda: SocketEvent.WRITABLE in events)
    assert client.writable
    assert server.recv(1) is not None


def test_api_misuse_raises_oserror() -> None:
    w = Wire()
    sock = w.a.tcp_socket()
    with pytest.raises(OSError):
        sock.send(b"x")
    with pytest.raises(OSError):
        sock.listen()
    with pytest.raises(OSError):
        sock.accept()
    sock.bind(80)
    other = w.a.tcp_socket()
    with pytest.raises(OSError) as e:
        other.bind(80)
    assert e.value.errno == errno.EADDRINUSE
