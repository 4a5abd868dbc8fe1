"""A system with a disk for the block tests: the board on an image the test made, RS starting
at_wini (with etc/system.conf's privileges) and the test client component (tests/block/client.py).

Runs in the test process.  ``boot_disk`` boots it with the make_system fixture
(tests/conftest.py), so it is halted and reaped after the test.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minikern import boardctl
from minikern.const import Err
from minikern.proto import Message
from tests.block import client
from tests.conftest import SystemUnderTest, conf_entry
from tests.services.rs_helpers import service, wait_state

DISK_CONF = """
boot hw rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service user {{ user yes; ipc ALL; }};
service hw {{ program hw.board; args --nic none --hz 60 --serial socket --disk {disk};
             ipc SYSTEM rs; }};
service rs {{ program services.rs.main; args at_wini bdevclient;
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; period 2s; }};
service bdevclient {{ program tests.block.client; system SETGRANT REVOKE;
                     ipc SYSTEM USER rs ds at_wini; period 5s; }};
"""


BMIDE_WINDOW = " 0xc100:16"  # the bus-master registers in at_wini's io line (etc/system.conf)


def at_wini_entry(pio: bool = False) -> str:
    """etc/system.conf's at_wini service, with the test client added to its ipc mask; with
    ``pio``, without the bus-master registers in its io window (so it falls back on PIO)."""
    entry = re.sub(r"(\n\s*ipc [^;]*)", r"\1 bdevclient", conf_entry("at_wini"), count=1)
    if pio:
        if BMIDE_WINDOW + ";" not in entry:
            raise AssertionError(f"at_wini's io window does not end with{BMIDE_WINDOW}")
        entry = entry.replace(BMIDE_WINDOW + ";", ";")
    return entry


def make_disk(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(head)
    return path


def boot_disk(make_system: Callable[..., SystemUnderTest], disk: Path,
              pio: bool = False) -> SystemUnderTest:
    conf = DISK_CONF.replace("{disk}", str(disk)) + at_wini_entry(pio)
    s = make_system("hw rs ds", conf)
    for label in ("at_wini", "bdevclient"):
        wait_state(s, label, "up", timeout=30)
    return s


def ask(s: SystemUnderTest, req: int, **fields: Any) -> Message:
    """One request to the client component, from an operator connection."""
    return s.ask("bdevclient", req, **fields)


def raw(s: SystemUnderTest, mtype: int, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A request straight to at_wini, made by the client component (with its grants)."""
    r = ask(s, client.REQ_RAW, label="at_wini", type=mtype, fields=fields, **extra)
    assert r.type == Err.OK, r
    return dict(r.fields)


def at_wini_pid(s: SystemUnderTest) -> int:
    return int(service(s, "at_wini")["pid"])


def board(s: SystemUnderTest) -> boardctl.BoardCtl:
    return boardctl.BoardCtl(s.run_dir)
