"""The RAM disk's segment without a system (drivers/memory/segment.py, minikern/shm.py): made
0600 with O_EXCL, taken back only after every check, a write either all old or all new
whatever the instant of the kill (the journal), and halt's clean-up of one run directory."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.memory.segment import COMMIT_AT, DATA, HEADER, Info, Refused, Segment
from minikern import params, shm

SIZE = 64 * 1024
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def shm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "shm"
    d.mkdir()
    monkeypatch.setattr(params, "SHM_DIR", str(d))
    yield d


def make(run_dir: Path, size: int = SIZE) -> Segment:
    return Segment.create(run_dir, "memory", size, generation=3)


def test_a_new_segment_is_ours_0600_and_named_for_the_run_dir(shm_dir: Path,
                                                              tmp_path: Path) -> None:
    seg = make(tmp_path)
    st = os.stat(shm_dir / seg.name)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    assert st.st_size == DATA + SIZE
    assert shm.is_ours(tmp_path, seg.name) and not shm.is_ours(tmp_path / "other", seg.name)
    assert bytes(seg.disk[:16]) == bytes(16)
    seg.close()


def test_contents_survive_a_take_back(shm_dir: Path, tmp_path: Path) -> None:
    seg = make(tmp_path)
    data = os.urandom(8 * 512)
    seg.write(10, memoryview(data))
    info = seg.info
    seg.close()  # the driver is gone; the segment stays
    back = Segment.take_back(tmp_path, "memory", info, SIZE)
    out = bytearray(len(data))
    back.read(10, memoryview(out))
    assert out == data and back.generation == info.generation == 3
    back.close()


@pytest.mark.parametrize("change,why", [
    (lambda i: Info(i.name, i.size * 2, i.generation), "size"),
    (lambda i: Info(i.name, i.size, i.generation + 1), "generation"),
    (lambda i: Info("minikern-0-000000000000-memory-0000000000000000", i.size, i.generation),
     "not one of this run directory"),
    (lambda i: Info("../../etc/passwd", i.size, i.generation), "not one of this run directory"),
])
def test_a_take_back_refuses_what_does_not_match(shm_dir: Path, tmp_path: Path,
                                                 change: object, why: str) -> None:
    seg = make(tmp_path)
    info = seg.info
    seg.close()
    with pytest.raises(Refused, match=why):
        Segment.take_back(tmp_path, "memory", change(info), SIZE)  # type: ignore[operator]
    with pytest.raises(Refused, match="belongs to"):
        Segment.take_back(tmp_path, "other", info, SIZE)


def test_a_take_back_refuses_a_missing_a_symlinked_or_a_loose_segment(shm_dir: Path,
                                                                      tmp_path: Path) -> None:
    seg = make(tmp_path)
    info = seg.info
    seg.close()
    os.chmod(shm_dir / info.name, 0o644)
    with pytest.raises(Refused, match="mode 644"):
        Segment.take_back(tmp_path, "memory", info, SIZE)
    real = shm_dir / "real"
    os.rename(shm_dir / info.name, real)
    os.symlink(real, shm_dir / info.name)
    with pytest.raises(Refused, match="cannot open"):
        Segment.take_back(tmp_path, "memory", info, SIZE)  # O_NOFOLLOW
    os.unlink(shm_dir / info.name)
    with pytest.raises(Refused, match="cannot open"):
        Segment.take_back(tmp_path, "memory", info, SIZE)


def test_a_segment_of_the_wrong_length_or_header_is_refused(shm_dir: Path,
                                                            tmp_path: Path) -> None:
    seg = make(tmp_path)
    info = seg.info
    seg.map[0:8] = b"NOTRAMSG"
    seg.close()
    with pytest.raises(Refused, match="header"):
        Segment.take_back(tmp_path, "memory", info, SIZE)
    os.truncate(shm_dir / info.name, DATA + SIZE - 512)
    with pytest.raises(Refused, match="bytes, not"):
        Segment.take_back(tmp_path, "memory", info, SIZE)


def test_a_write_killed_between_any_two_stores_is_all_old_or_all_new(shm_dir: Path,
                                                                     tmp_path: Path) -> None:
    """A kill after each of the write's stores in turn (its steps, abandoned there), the
    segment then taken back: the request's sectors are all old or all new, never a mix, and
    both happen (before the commit: old; from the commit on: new)."""
    old, new = os.urandom(16 * 512), os.urandom(16 * 512)
    seg = make(tmp_path)
    steps = list(seg.write_steps(0, memoryview(old)))
    seg.close()
    seg.remove()
    outcome = {}
    for kill_after in steps:
        seg = make(tmp_path)
        seg.write(4, memoryview(old))
        info = seg.info
        for step in seg.write_steps(4, memoryview(new)):
            if step == kill_after:
                break  # SIGKILL here: nothing after this store happens
        seg.close()
        back = Segment.take_back(tmp_path, "memory", info, SIZE)
        out = bytearray(len(old))
        back.read(4, memoryview(out))
        assert out in (old, new), f"killed after {kill_after}: a mix of old and new"
        outcome[kill_after] = "new" if out == new else "old"
        assert back.map[COMMIT_AT:COMMIT_AT + 4] == bytes(4), "the record is cleared"
        back.close()
        back.remove()
    assert outcome == {"journal": "old", "record": "old", "commit": "new",
                       "half the disk": "new", "disk": "new", "done": "new"}


def test_a_committed_record_with_a_bad_crc_is_not_replayed(shm_dir: Path,
                                                           tmp_path: Path) -> None:
    seg = make(tmp_path)
    old = os.urandom(512)
    seg.write(0, memoryview(old))
    for step in seg.write_steps(0, memoryview(os.urandom(512))):
        if step == "commit":
            break
    seg.map[HEADER] ^= 0xFF  # the journal's data is not what the record's crc says
    info = seg.info
    seg.close()
    back = Segment.take_back(tmp_path, "memory", info, SIZE)
    assert bytes(back.disk[:512]) == old
    back.close()


def test_halt_removes_this_run_dirs_segments_only(shm_dir: Path, tmp_path: Path) -> None:
    mine, other = tmp_path / "a", tmp_path / "b"
    mine.mkdir()
    other.mkdir()
    a, b = make(mine), make(other)
    (shm_dir / "unrelated").write_bytes(b"x")
    assert shm.segments(mine) == [a.name]
    assert shm.remove_all(mine) == [a.name]
    assert sorted(p.name for p in shm_dir.iterdir()) == sorted([b.name, "unrelated"])
    a.close()
    b.close()
    assert HEADER < DATA


def test_a_fifo_under_the_name_is_refused_without_hanging(shm_dir: Path, tmp_path: Path) -> None:
    seg = Segment.create(tmp_path, "ram-1", SIZE, generation=1)  # a label with a dash
    info = seg.info
    seg.close()
    back = Segment.take_back(tmp_path, "ram-1", info, SIZE)
    assert back.name == info.name
    back.close()
    os.unlink(shm_dir / info.name)
    os.mkfifo(shm_dir / info.name, 0o600)
    with pytest.raises(Refused, match="regular file|cannot open"):
        Segment.take_back(tmp_path, "ram-1", info, SIZE)
