"""Systems with the memory driver for the RAM disk tests and bin/bench ramdisk.

Runs in the test (or bench) process.  Two shapes, both from etc/system.conf's
entries: ``boot_driver`` (RS starting the memory driver and the block tests'
client component, tests/block/client.py, which has a memory segment to grant
from) and ``boot_stack`` (the whole storage stack: at_wini, MFS and VFS on a
disk image, the memory driver and mfs_ram mounted by VFS on /ram, and the
client).  The memory driver's ipc mask gains the client; ``ram`` sets its
``--ram``.  Systems are made with a ``make(boot, conf)`` (the make_system
fixture, or SystemUnderTest itself in the bench) and halted by their owner.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minikern import shm
from minikern.const import SECTOR_SIZE, DsReq, Err
from minikern.deadline import wait_for
from minikern.proto import Message
from tests.block import client
from tests.conftest import SystemUnderTest, conf_entry
from tests.services.rs_helpers import service, wait_state
from userland.fs import Files, FsError

LABEL = "memory"
MOUNT = "/ram"
DUMP_PIECE = 32 * 1024  # bytes of one read of the device through the client (a message)
UP_DEADLINE = 60.0  # seconds for the stack to come up and mount /ram

HEAD = """
boot hw rs ds;
service operator {{ user yes; system GETINFO KILL SHUTDOWN; ipc ALL; }};
service user {{ user yes; ipc ALL; }};
service hw {{ program hw.board; args --nic none --hz 60 --serial socket --disk {disk};
             ipc SYSTEM rs; }};
service rs {{ program services.rs.main; args {rs_args};
             system PRIVCTL KILL GETINFO SHUTDOWN; ipc ALL; }};
service ds {{ program services.ds; system GETINFO; ipc ALL; period 2s; }};
service bdevclient {{ program tests.block.client; system SETGRANT REVOKE;
                     ipc SYSTEM USER rs ds memory; period 5s; }};
"""

Make = Callable[[str, str], SystemUnderTest]


def memory_entry(ram: str = "4M", extra: str = "") -> str:
    """etc/system.conf's memory service, reachable by the client, with ``--ram ram``."""
    entry = re.sub(r"(\n\s*ipc [^;]*)", r"\1 bdevclient", conf_entry(LABEL), count=1)
    return re.sub(r"args --ram \S+;", f"args --ram {ram}{extra};", entry, count=1)


def _conf(disk: Path, rs_args: str, entries: str) -> str:
    return HEAD.replace("{disk}", str(disk)).replace("{rs_args}", rs_args) + entries


def sparse(path: Path, size: int = 1 << 20) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def boot_driver(make: Make, work: Path, ram: str = "4M", extra: str = "") -> SystemUnderTest:
    """The board (a small unused disk), RS, DS, the memory driver and the client."""
    conf = _conf(sparse(work / "unused.img"), "memory bdevclient", memory_entry(ram, extra))
    s = make("hw rs ds", conf)
    for label in (LABEL, "bdevclient"):
        wait_state(s, label, "up", timeout=UP_DEADLINE)
    return s


def boot_stack(make: Make, disk: Path, ram: str = "16M") -> SystemUnderTest:
    """The storage stack with the RAM disk mounted on /ram (disk: a MINIX v3 image)."""
    entries = "".join(conf_entry(n) for n in ("at_wini", "mfs", "mfs_ram", "vfs")) \
        + memory_entry(ram)
    s = make("hw rs ds", _conf(disk, "at_wini mfs memory mfs_ram vfs bdevclient", entries))
    for label in ("vfs", "mfs_ram", "bdevclient"):
        wait_state(s, label, "up", timeout=UP_DEADLINE)
    files = Files(s.connect("waiter", "user"))
    wait_for(lambda: mounted(files), UP_DEADLINE, f"VFS serving {MOUNT} from mfs_ram")
    return s


def mounted(files: Files) -> bool:
    """True once /ram is the RAM disk's root: inode 1 of its file system (the root disk's
    directory /ram has another inode, as inode 1 there is /)."""
    try:
        return files.stat(MOUNT).st_ino == 1
    except FsError:
        return False


def bdev(s: SystemUnderTest, op: str, **fields: Any) -> Message:
    """One BlockDevice call of the client on the RAM disk (minor 0)."""
    return s.ask("bdevclient", client.REQ_BDEV, label=LABEL, minor=0, op=op, **fields)


def raw(s: SystemUnderTest, mtype: int, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A request straight to the memory driver, made by the client (with its grants)."""
    r = s.ask("bdevclient", client.REQ_RAW, label=LABEL, type=mtype, fields=fields, **extra)
    assert r.type == Err.OK, r
    return dict(r.fields)


def dump(s: SystemUnderTest, to: Path) -> str:
    """Read the whole RAM disk through the driver into ``to``; its sha256."""
    g = bdev(s, "geometry")
    assert g.type == Err.OK, g
    size, digest = int(g["size"]), hashlib.sha256()
    # one connection for every piece: one each (s.ask) churned through the kernel's bound
    # of connections per process faster than a loaded kernel saw them close
    conn, client_ep = s.connect("dumper", "operator"), s.endpoint_of("bdevclient")
    try:
        with to.open("wb") as f:
            for pos in range(0, size, DUMP_PIECE):
                r = conn.sendrec(client_ep, Message(client.REQ_BDEV, {
                    "label": LABEL, "minor": 0, "op": "read", "pos": pos,
                    "count": min(DUMP_PIECE, size - pos)}))
                assert r.type == Err.OK and len(r["data"]) % SECTOR_SIZE == 0, r
                f.write(r["data"])
                digest.update(r["data"])
    finally:
        conn.close()
        s.conns.remove(conn)
    return digest.hexdigest()


def pid(s: SystemUnderTest) -> int:
    return int(service(s, LABEL)["pid"])


def segment_entry(s: SystemUnderTest) -> dict[str, Any]:
    """The memory driver's DS entry (PRIVATE: asked as the operator)."""
    r = s.ask("ds", DsReq.RETRIEVE, key=f"{LABEL}.segment", version=0, operator=True)
    assert r.type == Err.OK, r
    return dict(json.loads(str(r["value"])))


def segments(s: SystemUnderTest) -> list[str]:
    return shm.segments(s.run_dir)


def fsck(image: Path) -> tuple[bool, str]:
    """fsck.minix -f: check only (-a or -r would corrupt a v3 image)."""
    from tests.storage.conftest import FSCK
    r = subprocess.run([FSCK, "-f", str(image)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    return r.returncode == 0, (r.stdout + r.stderr).strip()
