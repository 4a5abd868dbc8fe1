"""minikern/guard.py: a refusal is counted every time and logged the first time of its kind
only (a hostile caller repeating it cannot flood the console); a server's own bug fails the
one request and is logged once with its traceback."""
from __future__ import annotations

import pytest

from minikern.const import Err, FsReq, VfsReq
from minikern.guard import Guard


def test_each_kind_is_logged_once_and_counted_always(capsys: pytest.CaptureFixture[str]) -> None:
    g = Guard("vfs", (VfsReq, FsReq), logged=(Err.EINVAL,), qualified=True)
    for caller in (5, 6, 7):
        g.refused(VfsReq.OPEN, Err.EINVAL, caller, "no path")
    g.refused(VfsReq.OPEN, Err.ENOENT, 5)
    g.refused(0x7FFF, Err.EINVAL, 9)
    out = capsys.readouterr().out.splitlines()
    assert out == ["vfs: refused VfsReq.OPEN EINVAL from endpoint 5 (no path); "
                   "repeats are only counted",
                   "vfs: refused 0x7fff EINVAL from endpoint 9; repeats are only counted"]
    assert g.counts["refused VfsReq.OPEN EINVAL"] == 3
    assert g.counts["refused VfsReq.OPEN ENOENT"] == 1  # counted, never logged


def test_a_servers_own_bug_is_logged_once_with_its_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    g = Guard("inet", (FsReq,))
    table: dict[str, int] = {}
    for _ in range(3):
        try:
            table["missing"]
        except KeyError as e:
            g.failed(FsReq.READ, e)
    out = capsys.readouterr().out
    assert out.count("inet: failed READ KeyError") == 1 and "Traceback" in out
    assert g.counts["failed READ KeyError"] == 3
