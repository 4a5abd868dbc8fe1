"""MFS as a server in a booted system: the disk through at_wini (minikern/bdev.py), VFS's
requests from a stand-in (tests/mfs/vfs_stub.py), at_wini killed mid-copy, fsck.minix -f after."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minikern.const import Err, FsReq
from minikern.deadline import wait_for
from minikern.proto import Message
from tests.conftest import SystemUnderTest, conf_entry
from tests.mfs import vfs_stub
from tests.mfs.conftest import assert_clean, fsck, make_image, needs_util_linux
from tests.services.rs_helpers import wait_state

CONF = """
boot hw rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service user {{ user yes; ipc ALL; }};
service hw {{ program hw.board; args --nic none --hz 60 --serial socket --disk {disk};
             ipc SYSTEM rs; }};
service rs {{ program services.rs.main; args at_wini mfs vfs;
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; period 2s; }};
service vfs {{ program tests.mfs.vfs_stub; system GETINFO; ipc SYSTEM USER rs ds mfs;
             period off; }};  # a COPY is one long request: no pings meanwhile
"""


def boot(make_system: Callable[..., SystemUnderTest], disk: Path) -> SystemUnderTest:
    s = make_system("hw rs ds", CONF.replace("{disk}", str(disk)) + conf_entry("at_wini")
                    + conf_entry("mfs"))
    for label in ("at_wini", "mfs", "vfs"):
        wait_state(s, label, "up", timeout=30)
    return s


def fs(s: SystemUnderTest, req: FsReq, **fields: Any) -> Message:
    r = s.ask("vfs", vfs_stub.REQ_FS, type=int(req), fields=fields)
    assert r.type == Err.OK, r
    return Message(r["type"], r["fields"])


@needs_util_linux
@pytest.mark.timeout(240)
def test_mfs_on_at_wini_survives_driver_kills(make_system: Callable[..., SystemUnderTest],
                                             tmp_path: Path) -> None:
    disk = make_image(tmp_path / "disk.img", 64 * 1024 * 1024)
    s = boot(make_system, disk)
    r = fs(s, FsReq.READSUPER, driver="at_wini", minor=0, readonly=False)
    assert r.type == Err.OK and r["root"]["ino"] == 1, r
    quiet = s.ask("vfs", vfs_stub.REQ_COPY, dir=1, name="quiet", bytes=2_000_000, seed=1)
    assert quiet.type == Err.OK and quiet["written"] == quiet["read"], quiet
    print(f"through IPC: write {2 / quiet['write_s']:.1f} MB/s, read {2 / quiet['read_s']:.1f} MB/s")
    copy = s.pool.submit(s.ask, "vfs", vfs_stub.REQ_COPY, dir=1, name="killed", bytes=20_000_000, seed=2)
    kills = 0
    deadline = time.monotonic() + 180
    while not copy.done() and time.monotonic() < deadline:
        time.sleep(1.0)  # a pace for the kills (one a second), not a wait for a condition
        if copy.done():
            break
        pid = int(wait_state(s, "at_wini", "up", timeout=30)["pid"])
        os.kill(pid, signal.SIGKILL)
        kills += 1
    r = copy.result(timeout=60)
    assert r.type == Err.OK and r["written"] == r["read"], r
    assert kills >= 1
    print(f"at_wini killed {kills} times during a 20 MB copy: {r['write_s']:.1f} s + {r['read_s']:.1f} s")
    assert fs(s, FsReq.UNMOUNT).type == Err.OK
    s.close()
    wait_for(lambda: fsck(disk).returncode == 0 or None, 10, "fsck clean")
    assert_clean(disk)
    listed = fsck(disk, "-l").stdout.splitlines()[1:]
    assert sorted(listed) == ["/killed", "/quiet"]
