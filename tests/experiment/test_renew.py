"""An application stuck in a call is replaced (``Load.renew``): the new thread carries the
records on; the one given up writes nothing into them when its call returns at last, and its
late file writes cannot land on the new one's files."""
from __future__ import annotations

from pathlib import Path

from experiment.workload import DiskLoad


def test_the_given_up_thread_records_nothing_and_writes_its_own_files(tmp_path: Path) -> None:
    old = DiskLoad(tmp_path, 5)
    old.ops.append((1.0, 10))
    new = old.renew()
    assert old.stop.is_set() and new.ops == [(1.0, 10)]
    assert [e for _, e in new.errors] == ["stuck: the application gave up its connection"]
    old.corrupted.append((2.0, 16384))  # what it "saw" after its call came back
    old.errors.append((2.0, "late"))
    assert new.corrupted == [] and len(new.errors) == 1
    assert isinstance(new, DiskLoad) and new.expected is old.expected
    assert not {old.path(i) for i in range(16)} & {new.path(i) for i in range(16)}
