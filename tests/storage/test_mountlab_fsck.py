"""mountlab.fsck, the one check of every image the campaign and the storage tests make: what
fsck.minix says about a damaged image is kept whatever its bytes (a directory entry's name
comes out as it is on the disk), never turned into an error of the check itself (the
10,000-fault campaign lost a damaged RAM disk's report so: UnicodeDecodeError, byte 0x88)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage import mountlab

pytestmark = pytest.mark.timeout(30)


def test_a_damaged_names_bytes_are_reported_escaped(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "fsck.minix"  # says what the real one says of a name gone bad, fails
    tool.write_text("#!/bin/sh\nprintf 'Bad file name \\210z in directory /d\\n'\nexit 4\n")
    tool.chmod(0o755)
    monkeypatch.setattr(mountlab, "tool", lambda name: tool)
    clean, said = mountlab.fsck(tmp_path / "ram.img")
    assert not clean
    assert said == "Bad file name \\x88z in directory /d"
