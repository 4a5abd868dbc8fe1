"""Every channel's decoder: what it accepts round-trips; anything else is refused, counted, never raised.

docs/PROTOCOL.md's rules under test, for each channel: a frame carries its
channel's protocol name and version and is refused (None, counted in
``codec.refused``) with any other; a frame over the channel's size bound is
refused before it is parsed; malformed and random input never raises.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from minikern.const import PROTO, Call, Err
from minikern.proto import bus, codec, control, fastpath, image, startup

RECORD: startup.StartupRecord = {
    "module": "drivers.hello.hello", "args": ["-v"], "label": "hello", "endpoint": 0x10007,
    "credential": b"k" * 32, "address": "ipc:///tmp/x/kernel.sock", "run_dir": "/tmp/x",
    "incarnation": 2, "memory_size": 1 << 20}
ENTRY: image.BootEntry = {"label": "rs", "module": "services.rs.main", "args": [],
                          "priv": {"ipc": ["ALL"]}, "slot": 3, "manager": None,
                          "uid": None, "priority": 4}

# (channel, a decoder, one valid frame of it, its decoded value)
Case = tuple[codec.Protocol, Callable[[bytes], Any], bytes, Any]
CASES: list[Case] = [
    (bus.BUS, bus.decode_from_board, bus.encode(bus.Irq(11)), bus.Irq(11)),
    (bus.BUS, bus.decode_from_board, bus.encode(bus.Done(9, 0, {"values": [1, None]})),
     bus.Done(9, 0, {"values": [1, None]})),
    (bus.BUS, bus.decode_from_kernel, bus.encode(bus.Io(9, bus.IoKind.VDEVIO,
                                                       [(0x3F8, 1, None), (0x3F9, 1, 3)], {})),
     bus.Io(9, bus.IoKind.VDEVIO, [(0x3F8, 1, None), (0x3F9, 1, 3)], {})),
    (bus.BUS, bus.decode_from_kernel, bus.encode(bus.IrqCtl(4, True)), bus.IrqCtl(4, True)),
    (bus.BUS, bus.decode_from_kernel, bus.encode(bus.IoMap(9, "nic", [(0xC000, 256)], [])),
     bus.IoMap(9, "nic", [(0xC000, 256)], [])),
    (bus.BUS, bus.decode_from_kernel, bus.encode(bus.Shutdown()), bus.Shutdown()),
    (bus.BUS, bus.decode_from_kernel, bus.encode(bus.Welcome()), bus.Welcome()),
    (fastpath.FASTPATH, fastpath.decode_request, fastpath.encode(fastpath.Attach("ab" * 16)),
     fastpath.Attach("ab" * 16)),
    (control.CONTROL, control.decode_request, control.encode_request(control.Set("nic.link", False)),
     control.Set("nic.link", False)),
    (startup.STARTUP, startup.decode, startup.encode(RECORD), RECORD),
    (image.IMAGE, image.decode, image.encode([ENTRY]), [ENTRY]),
]
IDS = [f"{c[0].name}-{type(c[3]).__name__}" for c in CASES]


def refused_by(proto: codec.Protocol, reason: str) -> int:
    return codec.refused[f"{proto.name}:{reason}"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_valid_frame_decodes_to_what_was_sent(case: Case) -> None:
    _, decode, frame, value = case
    assert decode(frame) == value


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_another_protocol_name_or_version_is_refused_and_counted(case: Case) -> None:
    proto, decode, frame, _ = case
    for other in (proto._replace(version=proto.version + 1), proto._replace(name="MKOTHER")):
        if proto is control.CONTROL:
            forged = frame.replace(f'"version": {proto.version}'.encode(),
                                   f'"version": {other.version}'.encode()).replace(
                f'"proto": "{proto.name}"'.encode(), f'"proto": "{other.name}"'.encode())
        else:
            fields = codec.unpack(frame)
            forged = codec.pack([other.name, other.version, *fields[2:]])
        assert forged != frame
        before = refused_by(proto, "protocol")
        assert decode(forged) is None
        assert refused_by(proto, "protocol") == before + 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_oversized_frame_is_refused_unparsed(case: Case) -> None:
    proto, decode, frame, _ = case
    before = refused_by(proto, "oversized")
    assert decode(frame + b" " * (proto.max_frame + 1 - len(frame))) is None
    assert refused_by(proto, "oversized") == before + 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_truncated_and_random_frames_never_raise(case: Case) -> None:
    proto, decode, frame, _ = case
    rng = random.Random(proto.name)
    for cut in range(len(frame)):
        decode(frame[:cut])  # whatever it returns, it returns
    for _ in range(300):
        decode(rng.randbytes(rng.randint(0, 64)))
    flipped = bytearray(frame)
    for _ in range(300):
        i = rng.randrange(len(flipped))
        flipped[i] = rng.randrange(256)
        decode(bytes(flipped))


ATOMS: list[Any] = [0, -1, 1 << 16, 1 << 40, 2.5, "x", b"", b"\xff" * 8, None, True, [], {},
                    [1, 2], [[1, 1, None]], {"a": 1}, {1: 2}]


@pytest.mark.parametrize("case", [c for c in CASES if c[0] is not control.CONTROL],
                         ids=[i for c, i in zip(CASES, IDS, strict=True) if c[0] is not control.CONTROL])
def test_well_framed_nonsense_is_refused_not_raised(case: Case) -> None:
    """The right name and version around wrongly typed or numbered fields: None, every time."""
    proto, decode, frame, value = case
    verb = codec.unpack(frame)[2]
    rng = random.Random(7)
    accepted = 0
    for _ in range(2000):
        fields = [rng.choice(ATOMS) for _ in range(rng.randint(0, 5))]
        out = decode(codec.pack([proto.name, proto.version,
                                 rng.choice([verb, 0, 99, -1, verb + 1]), *fields]))
        accepted += out is not None
    assert accepted < 2000 // 10  # nearly all of it is nonsense, and none of it raised


def test_bus_directions_are_separate() -> None:
    """A verb the other side sends is refused: the board cannot forge an Io to the kernel."""
    assert bus.decode_from_board(bus.encode(bus.Gone(3))) is None
    assert bus.decode_from_board(bus.encode(bus.Welcome())) is None
    assert bus.decode_from_kernel(bus.encode(bus.Irq(3))) is None


def test_bus_io_that_does_not_decode_is_still_answerable() -> None:
    """A driver blocks until the board answers its Io: an unreadable one names whom to answer."""
    bad = codec.encode_frame(bus.BUS, bus.Verb.IO, 9, bus.IoKind.DEVIO, [[1 << 20, 1, None]], {})
    assert bus.decode_from_kernel(bad) == bus.Unreadable(9)


def test_bus_lines_and_ports_are_bounded() -> None:
    assert bus.decode_from_board(bus.encode(bus.Irq(16))) is None
    assert bus.decode_from_kernel(bus.encode(bus.IrqCtl(-1, True))) is None
    ops = [(0x80, 1, None)] * (bus.MAX_OPS + 1)
    assert type(bus.decode_from_kernel(bus.encode(bus.Io(1, bus.IoKind.VDEVIO, ops, {})))) \
        is bus.Unreadable


def test_fastpath_carries_only_attach() -> None:
    """Port I/O is ring slots now (tests/proto/test_ring.py): any other op is refused."""
    assert fastpath.decode_request(codec.pack(["MKFP", 2, 2, 0x3FF, 1])) is None  # the old IN
    assert fastpath.decode_request(codec.pack(["MKFP", 2, fastpath.Op.ATTACH, 7])) is None
    assert fastpath.decode_request(fastpath.encode(fastpath.Attach("x" * 2000))) is None  # bound


def test_fastpath_reply_and_attach() -> None:
    a = fastpath.Attached(7, [(0x3F8, 8)], [(0x100000, 4096)])
    reply = fastpath.decode_reply(fastpath.encode_attached(a))
    assert reply is not None and fastpath.decode_attached(reply) == a
    assert fastpath.decode_reply(fastpath.encode_reply(Err.ECALLDENIED)) == [Err.ECALLDENIED]
    assert fastpath.decode_attached([Err.OK, {"endpoint": "7", "io": [], "mem": []}]) is None


def test_control_replies() -> None:
    ok = control.Reply(True, {"knob": "nic.link", "value": False})
    assert control.decode_reply(control.encode_reply(ok)) == ok
    assert control.decode_reply(control.encode_reply(control.Reply(False, {}))) is None
    assert control.decode_request(b'{"cmd": "stats"}') is None  # no protocol name: refused


def test_startup_record_fields_are_typed() -> None:
    for key, bad in (("endpoint", "1"), ("credential", "k"), ("args", [1]), ("extra", 1)):
        rec: dict[str, Any] = {**RECORD, key: bad}
        assert startup.decode(codec.encode_frame(startup.STARTUP, startup.RECORD, rec)) is None
    half_board = {**RECORD, "bus": "ipc:///tmp/x/bus.sock"}  # the bus without its credential
    assert startup.decode(codec.encode_frame(startup.STARTUP, startup.RECORD, half_board)) is None


def test_boot_image_entries_are_typed_and_bounded() -> None:
    assert image.decode(image.encode([{**ENTRY, "slot": "3"}])) is None  # type: ignore[typeddict-item]
    assert image.decode(image.encode([ENTRY] * (image.MAX_ENTRIES + 1))) is None


def test_kernel_ipc_headers() -> None:
    assert codec.decode_request([codec.encode_request(Call.SEND, 8), b"x"]) == (Call.SEND, 8, 0, b"x")
    assert codec.decode_request([codec.pack([PROTO + 1, Call.RECEIVE, 0])]) is None
    assert codec.decode_request([b"\x91" + b"\x00" * 300]) is None  # over the header bound
    hello = codec.decode_request([codec.encode_hello(b"k" * 32, 42, "op", None)])
    assert hello == codec.Hello(Call.HELLO, b"k" * 32, 42, "op", None)
    assert codec.decode_reply(codec.encode_reply(Err.OK, 8, 2, 5, 0)) == (Err.OK, 8, 2, 5, 0)
    assert codec.decode_reply(codec.pack([PROTO, 0, 8, 2, 5, True])) is None
    assert codec.decode_reply(codec.pack([PROTO + 1, 0, 0, 0, 0, 0])) is None
    assert codec.decode_body(codec.pack([1, {2: 3}])) is None  # field names are strings


def test_the_attach_handshake_checks_its_version() -> None:
    before = refused_by(fastpath.FASTPATH, "protocol")
    forged = codec.pack(["MKFP", 1, fastpath.Op.ATTACH, "ab" * 16])  # version 1: the packet era
    assert fastpath.decode_request(forged) is None
    assert refused_by(fastpath.FASTPATH, "protocol") == before + 1
