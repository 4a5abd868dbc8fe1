"""The event stream's library: one write per record, a writer that never fails its caller,
the stream's time order, the reader's distrust, and each kind's schema."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from minikern import events, params
from minikern.cli import REPO_ROOT
from minikern.deadline import wait_for
from minikern.event_kinds import SCHEMAS

WRITER = """
import sys
from pathlib import Path
from minikern.events import EventLog
run_dir, name = Path(sys.argv[1]), sys.argv[2]
log = EventLog(run_dir, name)
(run_dir / name).touch()
while not (run_dir / "go").exists():  # all start writing at once
    pass
for i in range(int(sys.argv[3])):
    log.write("fatal", "rs", detail=name * 60000 + str(i))
"""
COUNT = 100


def line(**rec: Any) -> bytes:
    return (json.dumps(rec) + "\n").encode()


def append(run_dir: Path, *raw: bytes) -> None:
    with open(run_dir / params.EVENT_LOG, "ab") as f:
        for r in raw:
            f.write(r)


def test_records_of_several_processes_never_interleave(tmp_path: Path) -> None:
    """Each record is 60 kB, so one that took two writes would be cut by the others'."""
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, str(COUNT)],
                                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
               for name in "abcdef"]
    try:
        wait_for(lambda: all((tmp_path / name).exists() for name in "abcdef"), 30, "the writers")
        (tmp_path / "go").touch()
    finally:
        for w in writers:
            assert w.wait(60) == 0
    raw = events.Reader(tmp_path / params.EVENT_LOG, keep=params.EVENT_LOG_KEEP).read_lines()
    recs = [json.loads(r) for r in raw]  # every line whole (over the rotated files too)
    assert len(recs) == 6 * COUNT
    for name in "abcdef":
        mine = [r["detail"] for r in recs if r["source"] == name]
        assert mine == [name * 60000 + str(i) for i in range(COUNT)]  # each in its order


def test_a_write_that_fails_loses_the_event_never_the_caller(tmp_path: Path) -> None:
    gone = events.EventLog(tmp_path / "no-such-dir", "rs")
    rec = gone.write("fatal", "rs", detail="x")
    assert rec["kind"] == "fatal" and gone.lost == 1
    (tmp_path / params.EVENT_LOG).symlink_to("/dev/full")  # ENOSPC on every write
    full = events.EventLog(tmp_path, "rs")
    full.write("fatal", "rs", detail="x")
    assert full.lost == 1


def test_a_short_write_is_ended_so_the_next_record_is_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = events.EventLog(tmp_path, "rs")
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # the disk fills in the middle of the record
        return real_write(fd, data[:len(data) // 2] if len(data) > 1 else data)

    monkeypatch.setattr(os, "write", half)
    log.write("fatal", "rs", detail="torn")
    monkeypatch.setattr(os, "write", real_write)
    log.write("fatal", "rs", detail="whole")
    reader = events.Reader(tmp_path / params.EVENT_LOG)
    assert [r["detail"] for r in reader.read_new()] == ["whole"] and reader.skipped == 1
    assert log.lost == 1


def test_every_record_carries_the_boot_id_and_the_common_fields_win(tmp_path: Path) -> None:
    assert events.EventLog(tmp_path, "rs").boot == ""  # outside a booted system
    ident = events.new_boot(tmp_path)
    assert events.boot_id(tmp_path) == ident and ident != events.new_boot(tmp_path)
    ident = events.boot_id(tmp_path)
    rec = events.EventLog(tmp_path, "inet").write("link", "rtl8139", state="up", endpoint=3,
                                                  source="forged", ts=0)
    assert (rec["boot"], rec["source"]) == (ident, "inet") and rec["ts"] > 0
    assert list(rec)[:5] == ["ts", "boot", "source", "kind", "label"]
    assert events.read_all(tmp_path) == [rec]


def test_a_value_json_cannot_hold_is_written_as_text(tmp_path: Path) -> None:
    log = events.EventLog(tmp_path, "rs")
    log.write("giveup", "hello", restarts=1, window_s=float("nan"))
    log.write("script", "hello", phase="error", script="s", error=ValueError("no"))
    got = events.read_all(tmp_path)
    assert got[0]["window_s"] == "nan" and got[1]["error"] == "no"


def test_the_stream_is_in_time_order_boot_by_boot() -> None:
    """Within a boot by time; boots in the order they appear (the clock went back between
    them); a boot's marker first and its halt last whatever their stamps."""
    recs = [{"ts": 100.0, "boot": "a", "kind": "boot"}, {"ts": 100.3, "boot": "a", "kind": "up"},
            {"ts": 100.2, "boot": "a", "kind": "crash"}, {"ts": 100.25, "boot": "a", "kind": "halt"},
            {"ts": 50.0, "boot": "b", "kind": "boot"}, {"ts": 49.0, "boot": "b", "kind": "up"},
            {"ts": 51.0, "boot": "b", "kind": "crash"}]
    got = [(r["boot"], r["kind"]) for r in events.in_order(recs)]
    assert got == [("a", "boot"), ("a", "crash"), ("a", "up"), ("a", "halt"),
                   ("b", "boot"), ("b", "up"), ("b", "crash")]


def test_the_reader_takes_only_whole_lines_and_skips_what_is_no_record(tmp_path: Path) -> None:
    reader = events.Reader(tmp_path / params.EVENT_LOG)
    assert reader.read_new() == []  # no file yet
    append(tmp_path, line(ts=1.0, kind="up"), b'{"ts": 2.0, "kind": "do')
    assert [r["ts"] for r in reader.read_new()] == [1.0]  # the second is still being written
    append(tmp_path, b'wn"}\n', b"not json\n", b"[1, 2]\n", line(ts="late"), b"\n",
           line(ts=3, kind="up"))
    assert [r["ts"] for r in reader.read_new()] == [2.0, 3] and reader.skipped == 3
    (tmp_path / params.EVENT_LOG).unlink()  # a new run directory under the same name
    append(tmp_path, line(ts=9.0, kind="boot"))
    assert [r["ts"] for r in reader.read_new()] == [9.0]


def record(kind: str, **fields: Any) -> dict[str, Any]:
    return {"ts": 1.5, "boot": "b", "source": SCHEMAS[kind].sources[0], "kind": kind,
            "label": "hello", **fields}


def test_validate_holds_a_record_to_its_kind_s_schema() -> None:
    good = record("crash", reason="signal", action="restart", pid=7, signal="SIGKILL")
    assert events.validate(good) == []
    assert events.validate(record("crash", reason="exit", action="backoff", pid=None)) == []
    assert events.validate(record("down", pid=None, by="script")) == []
    bad = [
        ({**good, "pid": True}, "pid"),  # JSON true is not an integer
        ({**good, "reason": "meteor"}, "reason"),  # not one of the reasons
        ({**good, "signal": None}, "signal"),  # null only where the schema says
        ({k: v for k, v in good.items() if k != "action"}, "missing action"),
        ({k: v for k, v in good.items() if k != "boot"}, "missing boot"),
        ({**good, "ts": "now"}, "ts"),
        ({**good, "colour": "red"}, "undocumented field colour"),
        ({**good, "kind": "party"}, "unknown kind"),
    ]
    for rec, problem in bad:
        found = events.validate(rec)
        assert found and problem in found[0], (rec, found)
    assert events.validate([1]) == ["not a JSON object"]


def test_every_kind_has_a_json_schema_that_says_the_same() -> None:
    for name, kind in SCHEMAS.items():
        schema = kind.json_schema(name)
        assert schema["properties"]["kind"]["const"] == name
        assert schema["additionalProperties"] is False
        assert {"ts", "boot", "source", "kind", "label"} <= set(schema["required"])
        assert set(schema["properties"]) == {"ts", "boot", "source", "kind", "label",
                                             *kind.fields}
        json.dumps(schema)  # printable as JSON


def test_describe_reads_as_words_and_escapes_what_would_drive_a_terminal() -> None:
    rec = record("driver-gone", endpoint=11, reason="DS: gone", kept_frames=0)
    assert events.describe(rec) == 'endpoint=11 reason="DS: gone" kept_frames=0'
    hostile = record("fatal", detail="\x1b[2J\x1b]0;owned\x07")
    assert "\x1b" not in events.describe(hostile) and "\x07" not in events.describe(hostile)
    assert events.describe(record("script", phase="start", script="s", args=["a", "b"])) == \
        'phase=start script=s args=["a","b"]'
