"""Connections to the kernel are bounded: past the bound the kernel stops listening,
counts it, and listens again once connections go; never an abort (docs/PROTOCOL.md,
"Connections and routing ids").

Without a bound, libzmq's listener asserts when accept() fails with EMFILE: the kernel
died with SIGABRT once its connections reached its descriptor limit.
"""
from __future__ import annotations

import resource
from collections.abc import Callable

import psutil
import pytest
import zmq

from minikern import params
from tests.conftest import SystemUnderTest, wait_for
from tests.kernel.test_routing_ids import dealer, sockets
from tests.kernel.test_wire import admitted_raw, getinfo

pytestmark = pytest.mark.timeout(120)

BOUND = 32  # the test's bound on the kernel's connections (MINIKERN_MAX_CONNECTIONS)
FD_LIMIT = 256  # the kernel's descriptor limit, lowered once it runs
ATTACKERS = 400  # plain connections, well past both
BATCH = 20  # connections made at once


@pytest.mark.timeout(120)
def test_connections_past_the_fd_limit_do_not_abort_the_kernel(
        make_system: Callable[..., SystemUnderTest], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS", str(BOUND))
    monkeypatch.setenv("MINIKERN_MAX_CONNECTIONS_PER_PID", str(ATTACKERS))  # all are the test's
    system = make_system()
    kernel = system.system.kernel
    probe, _ = admitted_raw(system, "probe")  # admitted before the flood: it must keep working
    psutil.Process(kernel.pid).rlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    address = "ipc://" + str(system.run_dir / params.KERNEL_SOCKET)
    with sockets() as held:
        held.append(probe)

        def refused() -> int:
            assert kernel.poll() is None, "the kernel died:\n" + system.console()
            return int(getinfo(probe)["counters"].get("kernel_connection_refused", 0))

        for batch in range(0, ATTACKERS, BATCH):  # in batches: past the bound, each is refused
            for _ in range(BATCH):
                held.append(dealer(address))
                held[-1].setsockopt(zmq.RECONNECT_IVL, 60_000)  # refused: stays away
                held[-1].send(b"hello?")
            made = batch + BATCH
            try:
                wait_for(lambda made=made: refused() >= made - BOUND, 30,  # type: ignore[misc]
                         f"the kernel to refuse the connections past its bound ({made} made)")
            except AssertionError as e:  # say what the kernel counted, to explain it
                counters = getinfo(probe)["counters"]
                raise AssertionError(f"{e}\ncounters: {counters}\nconsole:\n"
                                     f"{system.console()[-3000:]}") from None
        assert any(p["label"] == "echo" for p in getinfo(probe)["procs"])
        for s in held[1:]:
            s.close(0)
        del held[1:]

        def listening_again() -> bool:  # a new connection is admitted once the flood has gone
            assert kernel.poll() is None, "the kernel died:\n" + system.console()
            try:
                fresh, _ = admitted_raw(system, "after")
            except AssertionError:
                return False
            held.append(fresh)
            return True

        wait_for(listening_again, 30, "the kernel to listen again", interval=0.2)
        assert any(p["label"] == "after" for p in getinfo(held[-1])["procs"])
