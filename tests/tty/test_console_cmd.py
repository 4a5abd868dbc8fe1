"""bin/console's pieces that need no system: the detach key, and a refusal when nothing runs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from minikern.cli import REPO_ROOT
from minikern.commands.console import escape_byte, split_at_escape
from userland.sh import Failed, Shell


def test_the_escape_key_is_a_control_code() -> None:
    assert escape_byte("]") == 0x1D and escape_byte("a") == 1 and escape_byte("^") == 0x1E
    for bad in ("", "ab", "1", "~"):
        with pytest.raises(ValueError):
            escape_byte(bad)


def test_typing_up_to_the_escape_is_sent_and_nothing_after_it() -> None:
    assert split_at_escape(b"ls\r", 0x1D) == (b"ls\r", False)
    assert split_at_escape(b"ls\x1drm -rf\r", 0x1D) == (b"ls", True)
    assert split_at_escape(b"\x1d", 0x1D) == (b"", True)


@pytest.mark.timeout(60)
def test_no_system_is_exit_2_with_the_shared_message(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    got = subprocess.run([str(REPO_ROOT / "bin" / "console"), "--run-dir", str(run_dir)],
                         capture_output=True, text=True, timeout=50, stdin=subprocess.DEVNULL)
    assert got.returncode == 2 and "no system is running" in got.stderr


def test_the_shell_splits_redirections_off() -> None:
    assert Shell.redirection(["echo", "a", ">", "f"]) == (["echo", "a"], "f", False)
    assert Shell.redirection(["echo", "a", ">>f"]) == (["echo", "a"], "f", True)
    assert Shell.redirection(["ls"]) == (["ls"], None, False)
    for bad in (["echo", ">"], ["echo", ">", "f", "g"]):
        with pytest.raises(Failed):
            Shell.redirection(bad)
