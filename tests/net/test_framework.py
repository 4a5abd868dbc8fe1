"""The network driver framework's trading loop, against a scripted INET and device.

The loop must hand INET every frame and take what INET sends, and under a
stream that never pauses it must still go back to RECEIVE (where RS's
heartbeat waits) within a slice, asking the clock to bring it back.
"""
from __future__ import annotations

import itertools
from typing import Any

import pytest

from drivers.net import framework
from minikern.proto import Message
from minikern.const import DS, Err, DsReq, KCall, Kind, NetReq

pytestmark = pytest.mark.timeout(30)
INET = 9


class Device:
    """A NIC that receives ``per_call`` frames each time it is asked, ``limit`` in all."""

    irq = 11

    def __init__(self, per_call: int, limit: int | None) -> None:
        self.per_call, self.limit = per_call, limit
        self.seq = itertools.count()
        self.sent: list[bytes] = []

    def receive(self) -> list[bytes]:
        frames = []
        for _ in range(self.per_call):
            n = next(self.seq)
            if self.limit is not None and n >= self.limit:
                break
            frames.append(n.to_bytes(4, "big") * 16)
        return frames

    def transmit(self, frame: bytes) -> None:
        self.sent.append(frame)

    def kick(self) -> None:
        pass

    def tx_free(self) -> int:
        return 4

    def tx_done(self) -> int:
        return 0

    def link(self) -> bool:
        return True

    def stats(self) -> dict[str, int]:
        return {}


class Inet:
    """The kernel connection as the driver sees it: PULLs go to a scripted INET."""

    def __init__(self, to_send: list[bytes], endpoint: int = INET) -> None:
        self.to_send, self.endpoint = to_send, endpoint
        self.received: list[bytes] = []
        self.alarms: list[int] = []
        self.hellos = 0

    def sendrec(self, dst: int, m: Message) -> Message:
        if dst == DS and m.type == DsReq.RETRIEVE and m.fields["key"] == "inet":
            return Message(Err.OK, {"type": "label", "value": self.endpoint})
        assert dst == self.endpoint, f"sent to {dst}, INET is {self.endpoint}"
        if m.type == NetReq.HELLO:
            self.hellos += 1
            return Message(Err.OK, {"mode": {}})
        assert m.type == NetReq.PULL
        self.received.extend(m.fields["rx"])
        tx, self.to_send = self.to_send[:m.fields["free"]], self.to_send[m.fields["free"]:]
        return Message(Err.OK, {"tx": tx})

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]:
        assert call == KCall.SETALARM
        self.alarms.append(args["ms"])
        return {}


def trading(dev: Device, inet: Inet) -> framework.Framework:
    fw = framework.Framework(dev)  # type: ignore[arg-type]
    fw.ctx = type("Ctx", (), {"conn": inet, "label": "test"})()  # type: ignore[assignment]
    fw.inet, fw.greeted = INET, True
    return fw


def test_every_frame_goes_both_ways_and_the_loop_ends_when_there_is_nothing_left() -> None:
    dev, inet = Device(per_call=3, limit=50), Inet([b"out%d" % i for i in range(10)])
    trading(dev, inet).pull()
    assert [int.from_bytes(f[:4], "big") for f in inet.received] == list(range(50))
    assert dev.sent == [b"out%d" % i for i in range(10)]
    assert not inet.alarms  # nothing left over: no need to come back


def test_a_notify_from_a_restarted_inet_makes_the_driver_find_it_again() -> None:
    dev, inet = Device(per_call=1, limit=3), Inet([b"after"], endpoint=INET + (1 << 15))
    fw = trading(dev, inet)  # it still knows the old INET's endpoint
    fw.mac = b"\x52\x54\x00\x12\x34\x56"
    dev.set_mode = lambda mode: None  # type: ignore[attr-defined]
    fw.on_notify(Message(0, {}, source=inet.endpoint, kind=Kind.NOTIFY))
    assert fw.inet == inet.endpoint and inet.hellos == 1  # looked up in DS, greeted again
    assert len(inet.received) == 3 and dev.sent == [b"after"]


def test_a_stream_that_never_pauses_still_returns_to_receive() -> None:
    dev, inet = Device(per_call=1, limit=None), Inet([])
    fw = trading(dev, inet)
    fw.pull()  # returns: never trades forever
    assert inet.alarms == [1]  # and the clock brings it back for the rest
    before = len(inet.received)
    fw.pull()
    assert len(inet.received) > before
    frames = [int.from_bytes(f[:4], "big") for f in inet.received]
    assert frames == list(range(len(frames)))  # in order, none lost between slices
