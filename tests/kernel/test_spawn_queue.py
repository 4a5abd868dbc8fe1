"""A template handed a component runs in the component's scheduling queue from its first step.

A refill template waits in params.TEMPLATE_QUEUE, below every service (minikern/kernel/spawn.py).
Were it left there until it read its record and raised itself, a restart on a busy
machine would wait for a CPU behind every service before the new instance's first line
ran (a driver killed under a TCP transfer: 17 to 53 ms of its 40 to 80 ms downtime).  So
the kernel puts it in the record's queue before it hands the record over."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from minikern import params, sched
from minikern.kernel import spawn
from minikern.proto import startup

pytestmark = pytest.mark.timeout(30)

RECORD: startup.StartupRecord = {"module": "drivers.hello", "args": [], "label": "hello",
                                 "endpoint": 12, "credential": bytes(32), "address": "ipc://x",
                                 "run_dir": "/nonexistent", "incarnation": 0, "memory_size": 4096}


@pytest.fixture
def waiting() -> Iterator[tuple[spawn.Spawner, spawn.Template, socket.socket]]:
    """A spawner whose pool holds one stand-in template (a process in the refill queue, and
    the kernel's end of a startup socket); the test holds the template's end."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    kernel_end, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.geteuid() == 0:  # (a raised priority needs CAP_SYS_NICE: without it, nice 0)
        os.setpriority(os.PRIO_PROCESS, proc.pid, sched.nice_of(params.TEMPLATE_QUEUE))
    spawner = spawn.Spawner(console_fd=2, pool_size=0)
    t = spawn.Template(proc.pid, os.pidfd_open(proc.pid), kernel_end)
    spawner.pool.append(t)
    try:
        yield spawner, t, template_end
    finally:
        template_end.close()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        os.close(t.pidfd)


def test_the_template_is_in_the_records_queue_before_the_record_reaches_it(
        waiting: tuple[spawn.Spawner, spawn.Template, socket.socket],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spawner, t, template_end = waiting
    assert params.TEMPLATE_QUEUE > 2  # the test's component queue is above the refill's
    seen: list[tuple[str, object]] = []
    apply, send_fds = sched.apply, socket.send_fds

    def applied(pid: int, queue: int) -> str | None:
        seen.append(("apply", (pid, queue)))
        return apply(pid, queue)

    def sent(sock: socket.socket, buffers: list[bytes], fds: list[int]) -> int:
        seen.append(("record", os.getpriority(os.PRIO_PROCESS, t.pid)))
        return send_fds(sock, buffers, fds)

    monkeypatch.setattr(sched, "apply", applied)
    monkeypatch.setattr(socket, "send_fds", sent)
    with open(os.devnull) as memory:
        assert spawner.spawn({**RECORD, "priority": 2}, memory.fileno()) == (t.pid, t.pidfd)
    assert [kind for kind, _ in seen] == ["apply", "record"]
    assert seen[0][1] == (t.pid, 2)
    if os.geteuid() == 0:  # raising a process's priority needs CAP_SYS_NICE
        assert seen[1][1] == sched.nice_of(2), "the record went to a template still in its queue"
    data, fds, _, _ = socket.recv_fds(template_end, 4096, 1)
    for fd in fds:
        os.close(fd)
    got = startup.decode(data)
    assert got is not None and got.get("priority") == 2


def test_a_record_without_a_queue_leaves_the_template_where_it_is(
        waiting: tuple[spawn.Spawner, spawn.Template, socket.socket],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spawner, t, _ = waiting
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(sched, "apply", lambda pid, queue: calls.append((pid, queue)))
    with open(os.devnull) as memory:
        assert spawner.spawn(RECORD, memory.fileno()) == (t.pid, t.pidfd)
    assert calls == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a template below the kernel could not be raised "
                    "again without CAP_SYS_NICE: without root it stays at the kernel's nice")
def test_a_template_starts_below_every_service() -> None:
    """Its interpreter's start and imports (about 0.2 s of CPU) run while the instance that
    took the last template initialises: in the kernel's queue they would run above it."""
    spawner = spawn.Spawner(console_fd=2, pool_size=1)
    try:
        spawner.fill()
        (t,) = spawner.pool
        assert os.getpriority(os.PRIO_PROCESS, t.pid) == sched.nice_of(params.TEMPLATE_QUEUE)
    finally:
        spawner.close()
