"""The bus reads only the board (docs/PROTOCOL.md section 9): a frame from any other
peer is dropped unread, and the kernel takes a bounded number of bus frames a loop
turn, so the bus cannot starve the kernel socket.

Before, the kernel decoded up to 1 MiB of every bus frame before it looked at the
sender: eight 1 MiB frames of nested arrays stalled it for seconds.
"""
from __future__ import annotations

import pytest
import zmq

from minikern import params
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_routing_ids import dealer, sockets
from tests.kernel.test_wire import admitted_raw, getinfo

pytestmark = pytest.mark.timeout(120)

FRAMES = 8
NESTED = b"\x91" * ((1 << 20) - 16) + b"\xc0"  # msgpack: arrays of one array, ~1 MiB deep


@pytest.mark.timeout(120)
def test_frames_from_a_peer_that_is_not_the_board_are_dropped_unread(
        system: SystemUnderTest) -> None:
    probe, _ = admitted_raw(system, "probe")
    with sockets() as held:
        held.append(probe)
        before = getinfo(probe)["counters"]
        held.append(dealer("ipc://" + str(system.run_dir / params.BUS_SOCKET)))
        for _ in range(FRAMES):
            held[-1].send(NESTED, zmq.NOBLOCK)

        def dropped() -> int:
            assert system.system.kernel.poll() is None, "the kernel died:\n" + system.console()
            counters = getinfo(probe)["counters"]  # refused whole, or for its size before that
            return int(counters.get("bus_unadmitted", 0) + counters.get("bus_unadmitted_oversized", 0))

        wait_for(lambda: dropped() >= before.get("bus_unadmitted", 0) + FRAMES, 60,
                 "the kernel to drop the frames")
        after = getinfo(probe)["counters"]
        assert after.get("bus_malformed", 0) == before.get("bus_malformed", 0), \
            "a frame from a peer that is not the board was decoded"
        assert any(p["label"] == "echo" for p in getinfo(probe)["procs"])
