"""A message whose body does not decode (the kernel forwards bodies unread) is refused by its
receiver as an unknown request (EBADREQUEST), counted, never an exception in its loop: RS, DS
and a driver survive a sender of garbage and serve the next request (bin/bench fuzz found
the uncaught exception, which killed RS)."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from minikern import ds, ipc
from minikern.const import DS, RS, Call, Err
from minikern.proto import codec
from tests.conftest import SystemUnderTest, wait_for
from tests.services.rs_helpers import boot_rs, status

pytestmark = pytest.mark.timeout(120)
GARBAGE = [b"\xc1",                    # not msgpack
           b"\x93\x01\x80\x03",        # three items, not [type, fields]
           b"\x92\x01\x81\x01\x02",    # a field named by an int
           b"\x92\xa1x\x80",           # a type that is a string
           b"\x92\x01\xdd\xff\xff\xff\xff"]  # an array that claims 4 G items


def sendrec_raw(conn: ipc.Connection, dst: int, body: bytes) -> int:
    """SENDREC ``body`` as it is; the type of the answer."""
    conn.sock.send_multipart([codec.encode_request(Call.SENDREC, dst), body])
    (status, source, _, _, _), answer = conn._wait_reply()
    assert status == Err.OK and source == dst and answer is not None
    decoded = codec.decode_body(answer)
    assert decoded is not None
    return decoded[0]


def test_servers_and_drivers_drop_garbage_and_carry_on(
        make_system: Callable[..., SystemUnderTest]) -> None:
    s = boot_rs(make_system, ds=True)
    vandal = s.connect("vandal", "operator")
    hello = ds.retrieve_label(vandal, "hello")
    pids = {ep: (s.proc(ep) or {}).get("pid") for ep in (RS, DS, hello)}
    for dst in (RS, DS, hello):
        for body in GARBAGE:
            assert sendrec_raw(vandal, dst, body) == Err.EBADREQUEST  # not left waiting
    wait_for(lambda: s.console().count("an undecodable message body from endpoint") == 3, 10,
             "each receiver to log the first")
    # Every receiver is the same process, and serves the next request.
    assert {ep: (s.proc(ep) or {}).get("pid") for ep in (RS, DS, hello)} == pids
    assert status(s)["hello"]["state"] == "up"
    assert ds.retrieve_label(vandal, "hello") == hello
    assert "Traceback" not in s.console()
    assert s.console().count("an undecodable message body") == 3  # the others only counted
