"""The wire is not trusted: unadmitted, forged, malformed, oversized and flooding traffic."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from minikern import params
from minikern.cli import REPO_ROOT
from minikern.proto import Message, codec, image
from minikern.const import NR_PROCS, PROTO, Call, Err, KCall
from tests.conftest import SystemUnderTest, wait_for

pytestmark = pytest.mark.timeout(60)


def raw_socket(system: SystemUnderTest) -> zmq.Socket:  # type: ignore[type-arg]
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("ipc://" + str(system.run_dir / params.KERNEL_SOCKET))
    return s


def admitted_raw(system: SystemUnderTest, label: str) -> tuple[zmq.Socket, int]:  # type: ignore[type-arg]
    s = raw_socket(system)
    key = (system.run_dir / params.OPERATOR_KEY).read_bytes()
    s.send(codec.encode_hello(key, os.getpid(), label, system.conf.services["client"].priv()))
    assert s.poll(5000)
    status, endpoint, *_ = codec.decode_reply(s.recv())  # type: ignore[misc]
    assert status == Err.OK
    return s, endpoint


def getinfo(s: zmq.Socket) -> dict:  # type: ignore[type-arg]
    from minikern.const import SYSTEM
    s.send_multipart([codec.encode_request(Call.SENDREC, SYSTEM),
                      codec.encode_body(KCall.GETINFO, {})])
    assert s.poll(5000), "the kernel stopped answering"
    frames = s.recv_multipart()
    return codec.decode_body(frames[1], params.MAX_KERNEL_ANSWER)[1]  # type: ignore[index]


def test_unadmitted_connection_gets_nothing(system: SystemUnderTest) -> None:
    s = raw_socket(system)
    echo = system.endpoint_of("echo")
    s.send_multipart([codec.encode_request(Call.SENDREC, echo), codec.encode_body(1, {})])
    s.send(codec.encode_hello(b"x" * 32, os.getpid(), "intruder", None))  # a wrong credential
    assert not s.poll(300)
    counters = system.info()["counters"]
    assert counters["unadmitted"] >= 1 and counters["hello_refused"] >= 1
    assert "intruder" not in {p["label"] for p in system.info()["procs"]}


def test_malformed_frames_are_dropped_and_counted(system: SystemUnderTest) -> None:
    s, _ = admitted_raw(system, "raw")
    bad = [
        [b"\xc1"],  # not msgpack
        [codec.pack([PROTO, Call.SEND])],  # missing destination
        [codec.pack([PROTO + 1, Call.RECEIVE, 0])],  # wrong protocol version
        [codec.pack([PROTO, 99, 0])],  # no such trap
        [codec.pack([PROTO, Call.SEND, "rs"]), b"x"],  # wrongly typed endpoint
        [codec.pack([PROTO, Call.SEND, 1 << 40]), b"x"],  # out of range
        [codec.pack([PROTO, Call.SEND, 8])],  # SEND without a body
        [codec.pack([PROTO, Call.RECEIVE, 8]), b"body", b"extra"],  # too many frames
        [codec.pack({"proto": 1})],  # a map instead of an array
        [codec.pack([PROTO, Call.RECEIVE, 8])[:-1]],  # truncated
        [codec.pack([PROTO, Call.HELLO, b"k", 1, None, None])],  # HELLO after admission
    ]
    for frames in bad:
        s.send_multipart(frames)
    assert not s.poll(200)  # nothing is answered
    info = getinfo(s)  # and the kernel still serves this very connection
    assert info["counters"]["malformed"] >= 10
    assert info["counters"]["hello_twice"] == 1
    echo = system.endpoint_of("echo")
    assert system.connect("b", "client").sendrec(echo, Message(1, {"v": 1})).fields == {"v": 1}


def test_malformed_kernel_call_gets_ebadrequest(system: SystemUnderTest) -> None:
    from minikern.const import SYSTEM
    s, _ = admitted_raw(system, "raw")
    s.send_multipart([codec.encode_request(Call.SENDREC, SYSTEM), b"\x93\x01"])
    assert s.poll(5000)
    assert codec.decode_reply(s.recv_multipart()[0])[0] == Err.EBADREQUEST  # type: ignore[index]
    s.send_multipart([codec.encode_request(Call.SENDREC, SYSTEM),
                      codec.encode_body(KCall.KILL, {"endpoint": "x", "signal": []})])
    assert s.poll(5000)
    frames = s.recv_multipart()
    assert codec.decode_body(frames[1])[0] == Err.EINVAL  # type: ignore[index]


def test_oversized_frame_does_not_hurt_the_kernel(system: SystemUnderTest) -> None:
    s, _ = admitted_raw(system, "big")
    echo = system.endpoint_of("echo")
    s.send_multipart([codec.encode_request(Call.SEND, echo), b"\0" * (params.MAX_MESSAGE * 2)])
    b = system.connect("b", "client")
    assert b.sendrec(echo, Message(1, {"v": 2})).fields == {"v": 2}
    assert not s.poll(200)


def test_the_library_refuses_an_oversized_message_before_sending(system: SystemUnderTest) -> None:
    """A process's own oversized message is its error at once (E2BIG), not a lost connection."""
    from minikern.ipc import IpcError
    c, echo = system.connect("c", "client"), system.endpoint_of("echo")
    with pytest.raises(IpcError) as e:
        c.sendrec(echo, Message(1, {"data": b"\0" * params.MAX_MESSAGE}))
    assert e.value.code == Err.E2BIG
    assert c.send(echo, Message(1, {"data": b"\0" * params.MAX_MESSAGE})) == Err.E2BIG
    assert c.sendrec(echo, Message(1, {"v": 3})).fields == {"v": 3}  # and the connection works


def test_source_is_stamped_by_the_kernel(system: SystemUnderTest) -> None:
    a, b = system.connect("a", "client"), system.connect("b", "client")
    fut = system.background(b.receive)
    wait_for(lambda: system.blocked(b.endpoint, "recv"))
    a.send(b.endpoint, Message(1, {"source": 0, "m_source": 0}))
    assert fut.result(10).source == a.endpoint


def test_flooding_process_is_bounded(system: SystemUnderTest) -> None:
    s, ep = admitted_raw(system, "flood")
    from minikern.const import SYSTEM
    s.send(codec.encode_request(Call.RECEIVE, SYSTEM))  # blocks: nothing will come from SYSTEM
    wait_for(lambda: system.blocked(ep, "recv"))
    frame = [codec.encode_request(Call.SEND, system.endpoint_of("echo")), b"\x92\x01\x80"]
    intruder = raw_socket(system)
    for _ in range(5000):  # when the high-water mark is reached, the sender is held back
        try:
            s.send_multipart(frame, zmq.NOBLOCK)
            intruder.send(b"garbage", zmq.NOBLOCK)
        except zmq.Again:
            pass
    echo = system.endpoint_of("echo")
    b = system.connect("b", "client")
    assert b.sendrec(echo, Message(1, {"v": 3})).fields == {"v": 3}
    counters = wait_for(lambda: (c := system.info()["counters"]).get("trap_while_blocked", 0)
                        + c.get("unadmitted", 0) > 1000 and c, what="flood counted")
    assert counters["trap_while_blocked"] > 0
    proc = system.proc(ep)
    assert proc is not None and proc["wait"] == "recv"  # the one legitimate trap still stands


def test_alarms_set_again_and_again_do_not_grow_the_kernel(system: SystemUnderTest) -> None:
    """Each SETALARM replaces the caller's alarm; the replaced ones must not pile up."""
    c = system.connect("c", "client")
    for _ in range(6 * NR_PROCS):
        c.kcall(KCall.SETALARM, ms=3_600_000)
    assert system.info()["alarm_heap"] <= 2 * NR_PROCS


def test_random_frames_and_kernel_calls_do_not_hurt_the_kernel(system: SystemUnderTest) -> None:
    """A seeded fuzz of headers and kernel-call bodies from an admitted connection."""
    import random

    from minikern.const import SYSTEM
    rng = random.Random(7)
    s, _ = admitted_raw(system, "fuzz")
    atoms = [0, 1, -1, 2, 3, 7, 64, 65, SYSTEM, -3, 0x7ACE, 1 << 31, -(1 << 33), 2.5, "x", b"",
             b"\xff" * 40, None, True, [], {}, [1, 2], {"port": 1}]
    for _ in range(1500):
        n = rng.randint(0, 6)
        call = rng.choice([1, 2, 3, 4, 5, 7, 64, 65, 99, rng.choice(atoms)])
        hdr = [PROTO, call] + [rng.choice(atoms) for _ in range(n)]
        if rng.random() < 0.5:  # a well-formed kernel call with random arguments
            hdr = [PROTO, Call.SENDREC, SYSTEM]
        frames = [codec.pack(hdr)]
        if hdr[1] in (1, 3, 5, 7) or rng.random() < 0.1:
            args = {rng.choice(["port", "size", "value", "ops", "endpoint", "signal", "ms",
                                "irq", "op", "grant", "granter", "label", "priv", "module"]):
                    rng.choice(atoms) for _ in range(rng.randint(0, 4))}
            frames.append(codec.pack([rng.choice(list(KCall) + [0, 99]), args]))
        s.send_multipart(frames)
        if s.poll(0):
            s.recv_multipart()
        if rng.random() < 0.02:  # a trap may have left us blocked: start over clean
            s.close()
            s, _ = admitted_raw(system, "fuzz")
    s.close()
    assert "Traceback" not in system.console()
    info = system.info()
    assert info["kernel_pid"] == system.system.kernel.pid
    echo = system.endpoint_of("echo")
    assert system.connect("b", "client").sendrec(echo, Message(1, {"v": 4})).fields == {"v": 4}


def test_the_kernel_refuses_to_boot_from_an_image_it_cannot_read(tmp_path: Path) -> None:
    """docs/PROTOCOL.md section 13: an image of another version stops the kernel before it listens."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    other = image.IMAGE._replace(version=image.IMAGE.version + 1)
    (run / "boot.image").write_bytes(codec.encode_frame(other, image.ENTRIES, []))
    r = subprocess.run([sys.executable, "-m", "minikern.kernel", str(run)], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "MKIMAGE:protocol" in r.stderr
    assert not (run / params.KERNEL_PIDFILE).exists() and not (run / params.KERNEL_SOCKET).exists()


def test_a_wrong_operator_key_is_refused_whatever_else_the_hello_gets_right(
        system: SystemUnderTest) -> None:
    """Admission rests on the key alone (PROTOCOL, Admission): a HELLO whose label, pid and
    privileges would all pass, but whose key is one bit off, gets no answer and no slot."""
    key = (system.run_dir / params.OPERATOR_KEY).read_bytes()
    wrong = bytes([key[0] ^ 1]) + key[1:]
    priv = system.conf.services["client"].priv()
    s = raw_socket(system)
    try:
        s.send(codec.encode_hello(wrong, os.getpid(), "forger", priv))
        assert not s.poll(500), "a wrong key was answered"
        assert "forger" not in {p["label"] for p in system.info()["procs"]}
        s.send(codec.encode_hello(key, os.getpid(), "keeper", priv))  # the same HELLO, right key
        assert s.poll(5000), "the right key was not answered"
    finally:
        s.send(codec.encode_bye())
        s.close()
