"""The board joins the bus only once the kernel has taken its hello (hw/board.py join_bus).

ZeroMQ makes a connection in the background, so a HELLO sent is not a HELLO taken: the
board's init done, on its kernel connection made long before, could overtake it, and RS
would start a driver on a machine the kernel does not have yet (CI saw it once,
tests/services/test_rs_boot.py).  So the board waits for the kernel's WELCOME, bounded by
params.BUS_WELCOME_WAIT, and fails its init without it.  Here a ROUTER socket of the test
plays the kernel's bus; the real kernel's side is in tests/services/test_rs_boot.py."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq

from hw.board import Board
from minikern import params
from minikern.proto import bus as wire

pytestmark = pytest.mark.timeout(30)
CREDENTIAL = b"c" * 32


@pytest.fixture
def kernel_bus(tmp_path: Path) -> Iterator[tuple[zmq.Socket[bytes], dict[str, Any]]]:
    ctx = zmq.Context.instance()
    router: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    address = f"ipc://{tmp_path}/bus.sock"
    router.bind(address)
    try:
        yield router, {"bus": address, "bus_credential": CREDENTIAL}
    finally:
        router.close()


def board_stub() -> Any:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    return SimpleNamespace(bus=sock)


def kernel_answers(router: zmq.Socket[bytes], answer: wire.FromKernel | None,
                   seen: list[wire.FromBoard | None]) -> threading.Thread:
    """Take the board's first frame (into ``seen``) and send ``answer`` back, if any."""
    def run() -> None:
        if router.poll(10_000):
            ident, frame = router.recv_multipart()
            seen.append(wire.decode_from_board(frame))
            if answer is not None:
                router.send_multipart([ident, wire.encode(answer)])
    t = threading.Thread(target=run)
    t.start()
    return t


def test_the_board_goes_on_once_welcomed(kernel_bus: tuple[zmq.Socket[bytes], dict[str, Any]]
                                         ) -> None:
    router, record = kernel_bus
    seen: list[wire.FromBoard | None] = []
    t = kernel_answers(router, wire.Welcome(), seen)
    stub = board_stub()
    try:
        Board.join_bus(stub, record)
    finally:
        t.join()
        stub.bus.close()
    assert seen == [wire.Hello(CREDENTIAL)]


@pytest.mark.parametrize("answer", [None, wire.IrqCtl(3, True)], ids=["silence", "other"])
def test_the_board_fails_its_init_unless_welcomed(
        kernel_bus: tuple[zmq.Socket[bytes], dict[str, Any]], answer: wire.FromKernel | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that never takes the hello, or whose first frame is something else: the board
    does not go on (its init fails: RS takes the board's death as fatal)."""
    monkeypatch.setattr(params, "BUS_WELCOME_WAIT", 0.5)
    router, record = kernel_bus
    seen: list[wire.FromBoard | None] = []
    t = kernel_answers(router, answer, seen)
    stub = board_stub()
    try:
        with pytest.raises(RuntimeError, match="welcome"):
            Board.join_bus(stub, record)
    finally:
        t.join()
        stub.bus.close()
    assert seen == [wire.Hello(CREDENTIAL)]
