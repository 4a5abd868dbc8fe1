"""RS on its loop (minikern/loop.py), on a fake clock: DS publications that never block and whose
give-up is logged, late replies to operator tools through the loop (with the request's ``rid``
as ``re``), recovery scripts watched by pidfd, callers known from the kernel by endpoint."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from minikern.const import DS, GENERATION_SIZE, Err, KCall, RsReq
from minikern.proto import Message
from services.rs import requests
from services.rs.service import State
from tests.conftest import wait_for
from tests.services.rs_fake import COMPONENT, OPERATOR, Rig

pytestmark = pytest.mark.timeout(10)


def to_ds(r: Rig) -> list[tuple[str, object]]:
    return [(m["key"], m["value"]) for d, m in r.kernel.sends if d == DS]


def test_publications_wait_for_a_busy_ds_and_arrive_in_order(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff off;")
    r.start()
    x = r.x
    assert x is not None and x.instance is not None
    r.kernel.busy.add(DS)  # DS is not receiving: nothing may block RS
    r.crash()
    r.init_done()
    assert r.state() is State.UP and to_ds(r)[-1] == ("rs.x", "up")  # only the first start's
    new_ep = x.instance.endpoint
    sent = len(to_ds(r))
    r.run_to(r.now + 0.5)
    assert len(to_ds(r)) == sent  # still busy: still queued
    r.kernel.busy.discard(DS)
    r.run_to(r.now + 0.1)
    assert to_ds(r)[sent:] == [("rs.x", "restarting"), ("x", new_ep), ("rs.x", "up")]


def test_a_publication_ds_never_takes_is_given_up_and_logged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = Rig(tmp_path, "period 1s; backoff off;", retry_for=3.0)
    r.start()
    r.kernel.busy.add(DS)
    t = r.now
    r.crash()
    r.run_to(t + 3.0 - 1e-3)
    assert "gave up" not in capsys.readouterr().err
    r.run_to(t + 3.1)
    err = capsys.readouterr().err
    assert "rs: gave up publishing rs.x to DS: ENOTREADY" in err
    assert r.rs.ds.gave_up >= 1  # type: ignore[attr-defined]
    r.init_done()  # and RS goes on: the new copy is up and pinged on time
    x = r.x
    assert x is not None and x.instance is not None
    r.run_to(r.now + 1.0)
    assert r.state() is State.UP and r.kernel.notifies[-1] == x.instance.endpoint


def test_a_refusal_from_ds_is_logged_and_never_answered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = Rig(tmp_path, "period off;")
    handle = requests.default(r.rs)
    assert handle(Message(Err.EPERM, {"error": "not yours"}, source=DS)) is None
    assert handle(Message(Err.OK, {}, source=DS)) is None
    assert handle(Message(Err.EINVAL, {"error": 7}, source=COMPONENT)) is None
    err = capsys.readouterr().err
    assert err.count("DS refused") == 1 and "EPERM not yours" in err
    assert r.rs.ds.refusals == 1  # type: ignore[attr-defined]


def test_a_late_reply_carries_the_requests_rid_and_waits_for_a_busy_tool(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off;")
    r.start()
    x = r.x
    assert x is not None and x.instance is not None
    pid = x.instance.pid
    assert r.rs.down(x, r.request(RsReq.DOWN, label="x", rid=41)) is None
    r.kernel.busy.add(OPERATOR)  # the tool asked with Loop.request and is busy now
    r.crash(signal.SIGTERM)
    assert r.kernel.replies_to(OPERATOR) == []  # queued, not dropped, not blocking
    r.kernel.busy.discard(OPERATOR)
    r.run_to(r.now + 0.1)
    [reply] = r.kernel.replies_to(OPERATOR)
    assert (reply.type, reply["pid"], reply["re"]) == (Err.OK, pid, 41)


def test_a_tool_in_sendrec_gets_its_late_reply_without_re(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off; backoff 1s;")
    r.start()
    x = r.x
    assert x is not None
    r.crash()
    r.init_done()
    r.crash()  # the second failure waits 1 s
    assert r.rs.restart(x, r.request(RsReq.RESTART, label="x")) is None
    r.init_done()
    [reply] = r.kernel.replies_to(OPERATOR)
    assert reply.type == Err.OK and "re" not in reply.fields


def test_a_script_end_is_seen_from_its_pidfd_with_no_polling(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "rs.wait").write_text(
        'while [ ! -e "$MINIKERN_RUN_DIR/go" ]; do sleep 0.01; done\n')
    r = Rig(tmp_path, "period off; script rs.wait;", scripts_dir=scripts)
    r.start()
    r.crash()
    assert r.state() is State.RESTARTING and len(r.loop.watched) == 2  # its pidfd, its channel
    assert not [t for t in r.loop.timers if not t.cancelled]  # no timer polls the script
    assert r.serve_watched() == 0  # still running: its pidfd is not readable
    (tmp_path / "go").touch()

    def ended() -> bool:
        r.serve_watched()
        return r.state() is State.DOWN

    wait_for(ended, 5, "the script's end")
    assert r.events("script")[-1]["phase"] == "done" and r.loop.watched == {}


def test_down_ends_a_running_script_and_stops_watching_it(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "rs.forever").write_text("while :; do sleep 0.01; done\n")
    r = Rig(tmp_path, "period off; script rs.forever;", scripts_dir=scripts)
    r.start()
    r.crash()
    assert len(r.loop.watched) == 2 and len(r.rs.scripts.running) == 1
    x = r.x
    assert x is not None
    assert r.rs.down(x, r.request(RsReq.DOWN, label="x")) is None
    assert r.loop.watched == {} and r.rs.scripts.running == []
    assert r.state() is State.DOWN and r.kernel.replies_to(OPERATOR)[-1].type == Err.OK


def channel_script(tmp_path: Path, lines: str, reads: int) -> Rig:
    """A rig whose service x runs script rs.ask on failure: it sends ``lines`` on its channel
    (stdin) and copies up to ``reads`` answers RS writes back into run_dir/answers, then ends
    (sooner if RS closes the channel)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "rs.ask").write_text(
        f"printf '{lines}' >&0\n"
        f'i=0; while [ $i -lt {reads} ] && read -r line; do\n'
        '    echo "$line" >> "$MINIKERN_RUN_DIR/answers"; i=$((i + 1)); done\n')
    r = Rig(tmp_path, "period off; script rs.ask;", scripts_dir=scripts)
    r.start()
    r.crash()
    return r


def answers(r: Rig, tmp_path: Path, n: int) -> list[str]:
    def got() -> list[str] | None:
        r.serve_watched()
        path = tmp_path / "answers"
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) >= n else None
    lines = wait_for(got, 5, f"{n} answer(s) on the script's channel")
    assert lines is not None
    return lines


def test_a_script_asks_on_its_channel_and_is_answered_once_it_is_done(tmp_path: Path) -> None:
    """services/rs/scripts.py: ``MKSC 1 restart LABEL`` on stdin is RS's RESTART, answered late
    (once the new copy said init-done) with ``MKSC 1 OK key=value ...``; no kernel involved."""
    r = channel_script(tmp_path, "MKSC 1 restart x\\n", reads=1)
    wait_for(lambda: r.serve_watched() >= 0 and r.spawns() == 2, 5, "the restart")
    assert r.state() is State.STARTING and not (tmp_path / "answers").exists()
    r.init_done()
    inst = r.x.instance if r.x else None
    assert inst is not None
    assert answers(r, tmp_path, 1) == [f"MKSC 1 OK endpoint={inst.endpoint} pid={inst.pid} "
                                       f"incarnation=1"]
    assert r.events("restart")[-1]["old_pid"] == r.events("crash")[-1]["pid"]
    wait_for(lambda: r.serve_watched() >= 0 and r.loop.watched == {}, 5, "the script's end")


def test_a_bad_line_on_the_channel_is_refused_and_ends_it(tmp_path: Path) -> None:
    """Never trust the wire: another protocol, an unknown action, a missing label or an
    unknown service is an error line and the channel stays; a line that is not text ends it,
    and what follows it is never read."""
    r = channel_script(tmp_path, "restart x\\nMKSC 1 reboot x\\nMKSC 1 restart\\n"
                                 "MKSC 1 restart nosuch\\n\\377\\nMKSC 1 restart x\\n", reads=7)
    got = answers(r, tmp_path, 5)
    assert got[0] == "MKSC 1 EINVAL not MKSC 1"
    assert got[1].startswith("MKSC 1 EINVAL expected") and got[2] == got[1]
    assert got[3] == "MKSC 1 ESRCH no service 'nosuch'"
    assert got[4] == "MKSC 1 EINVAL a request line that is not ASCII text"
    wait_for(lambda: r.serve_watched() >= 0 and r.state() is State.DOWN, 5, "the script's end")
    assert r.spawns() == 1  # the line after the refusal was never read: nothing restarted
    assert r.rs.scripts.counters["channel_refused"] == 4 and r.loop.watched == {}


def test_an_overlong_line_ends_the_channel(tmp_path: Path) -> None:
    r = channel_script(tmp_path, "MKSC 1 restart " + "x" * 300, reads=2)
    assert answers(r, tmp_path, 1) == ["MKSC 1 EINVAL a request line longer than 256 bytes"]
    wait_for(lambda: r.serve_watched() >= 0 and r.state() is State.DOWN, 5, "the script's end")
    assert r.spawns() == 1 and r.loop.watched == {}


def test_callers_are_known_from_the_kernel_by_endpoint_not_by_slot(tmp_path: Path) -> None:
    r = Rig(tmp_path, "period off;")
    r.start()
    table = requests.table(r.rs)
    status = table[int(RsReq.CRASH)](r.request(RsReq.CRASH, label="x", fault="exit"))
    assert status is not None and status.type == Err.OK
    lookups = len(r.kernel.calls(KCall.GETINFO))
    table[int(RsReq.CRASH)](r.request(RsReq.CRASH, label="x", fault="exit"))
    assert len(r.kernel.calls(KCall.GETINFO)) == lookups  # the same endpoint: no new lookup
    # The tool exits and a component gets its slot, under a new generation (a new endpoint).
    heir = OPERATOR + GENERATION_SIZE
    r.kernel.procs = [p for p in r.kernel.procs if p["endpoint"] != OPERATOR] + [
        {"endpoint": heir, "pid": 92, "label": "heir", "manager": -1, "operator": False,
         "uptime": 0}]
    refused = table[int(RsReq.DOWN)](r.request(RsReq.DOWN, source=heir, label="x"))
    assert refused is not None and refused.type == Err.EPERM and r.state() is State.UP
    gone = table[int(RsReq.DOWN)](r.request(RsReq.DOWN, label="x"))  # the dead tool's endpoint
    assert gone is not None and gone.type == Err.EPERM


def test_with_nothing_due_rs_sets_no_timer(tmp_path: Path) -> None:
    """Then its loop waits on the kernel alone: one REPLYRECV a turn (minikern/loop.py)."""
    r = Rig(tmp_path, "period off;")
    r.start()
    assert r.state() is State.UP
    assert not [t for t in r.loop.timers if not t.cancelled]
    assert r.kernel.calls(KCall.SETALARM) == []  # RS keeps no kernel alarm either
