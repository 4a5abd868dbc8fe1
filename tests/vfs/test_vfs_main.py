"""VFS's server shell (services/vfs/main.py) on a fake clock: a file server's restart is
noticed from DS's notification, not a poll, and the sweep sleeps long while VFS knows no
process and every mount is settled."""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from minikern import params
from minikern.const import DS, DsReq, Err, Kind, VfsReq
from minikern.loop import FakeClock, Loop
from minikern.proto import Message
from services.vfs.main import VfsServer, parse_args
from tests.vfs.fakefs import Harness

pytestmark = pytest.mark.timeout(30)
P = 11  # a user process


class FakeDs:
    """The connection as drain_ds sees it: DS answering CHECK from a queue of changes."""

    def __init__(self) -> None:
        self.changes: deque[tuple[str, str, str]] = deque()

    def sendrec(self, dst: int, m: Message) -> Message:
        assert dst == DS and m.type == DsReq.CHECK
        if not self.changes:
            return Message(Err.ESRCH)
        key, vtype, owner = self.changes.popleft()
        return Message(Err.OK, {"key": key, "type": vtype, "owner": owner})


def server(h: Harness) -> tuple[VfsServer, FakeDs, Loop]:
    """A VfsServer around the harness's VFS, as its init would leave it (no kernel)."""
    s, conn, loop = VfsServer(parse_args([])), FakeDs(), Loop(clock=FakeClock(100.0))
    s.vfs, s.loop, s.ctx = h.vfs, loop, SimpleNamespace(conn=conn)  # type: ignore[assignment]
    s.sweep_timer = loop.call_later(params.VFS_SWEEP, s.sweep)
    return s, conn, loop


def restart(h: Harness, label: str, endpoint: int) -> None:
    """RS restarted the file server: it answers at a new endpoint (what DS now says)."""
    fs = h.servers[label]
    del h.by_endpoint[fs.endpoint]
    fs.endpoint = endpoint
    h.by_endpoint[endpoint] = fs


def test_ds_notification_of_a_mounted_servers_label_mounts_it_again_at_once() -> None:
    h = Harness()
    s, conn, _ = server(h)
    mount = h.vfs.st.mounts.by_label("mfs")
    assert mount is not None and h.mounted[0][0] == Err.OK
    old = mount.fs.endpoint
    restart(h, "mfs", 2000)
    conn.changes.append(("hello", "label", "rs"))  # another service's restart: not ours
    s.on_notify(Message(0, source=DS, kind=Kind.NOTIFY))
    h.run()
    assert mount.fs.endpoint == old  # no look at DS for a label VFS does not mount
    conn.changes.extend([("hello", "label", "rs"), ("mfs", "label", "rs")])
    s.on_notify(Message(0, source=DS, kind=Kind.NOTIFY))
    h.run()
    assert mount.fs.endpoint == 2000 and mount.fs.recovering is None and not mount.fs.stale
    assert not conn.changes  # drained


def test_the_sweep_sleeps_long_while_no_process_is_known_and_comes_back_with_one() -> None:
    h = Harness()
    s, _, loop = server(h)
    assert not h.vfs.st.procs and h.vfs.ready
    assert s.sweep_period() == params.VFS_IDLE_SWEEP
    s.sweep_timer.cancel()
    s.sweep()  # as the timer would: the next look is the idle one
    assert s.sweep_timer.when == pytest.approx(loop.clock.now() + params.VFS_IDLE_SWEEP)
    reply = s.dispatch(Message(VfsReq.OPEN, {"path": "/", "flags": 0, "mode": 0}, source=P))
    h.run()
    assert reply is None or reply.type == Err.OK
    assert h.vfs.st.procs  # VFS knows the process now: it may die holding a descriptor
    assert s.sweep_timer.when == pytest.approx(loop.clock.now() + params.VFS_SWEEP)
    assert s.sweep_period() == params.VFS_SWEEP
