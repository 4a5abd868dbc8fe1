"""The printer driver and the spooler, booted (etc/system.conf): every job's bytes reach the
paper (run_dir/lpt1.out) exactly once, through driver SIGKILLs and paper out (docs/PROTOCOL.md
sections 22.1 and 23), and the driver refuses bad requests as section 22 says."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minikern import cli, params
from minikern.const import CDEV_MAX_IO, CharReq, Err
from minikern.deadline import wait_for
from minikern.proto import Message
from tests.char import printlab
from tests.char.printlab import PrintRig

pytestmark = pytest.mark.timeout(240)
JOB_TIMEOUT = 180.0


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[PrintRig]:
    with printlab.booted(tmp_path) as r:
        yield r


def lpq(rig: PrintRig) -> str:
    r = subprocess.run([str(cli.REPO_ROOT / "bin" / "lpq"), "--run-dir", str(rig.run_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_job_from_bin_lp_is_printed_identical(rig: PrintRig, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    (tmp_path / "doc.bin").write_bytes(data)
    r = subprocess.run([str(cli.REPO_ROOT / "bin" / "lp"), "--run-dir", str(rig.run_dir),
                        "--json", str(tmp_path / "doc.bin")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    job = int(r.stdout.split('"job": ')[1].split(",")[0])
    done = rig.wait_done(job, JOB_TIMEOUT)
    assert (done["printed"], done["name"]) == (len(data), "doc.bin")
    assert rig.paper() == data
    assert f"done {job}: doc.bin {len(data)}/{len(data)} done" in lpq(rig)


def test_the_printer_driver_killed_during_a_job_prints_every_byte_once(rig: PrintRig) -> None:
    data = os.urandom(600_000)
    job = rig.submit(data, "killed")
    pids = []
    for _ in range(3):  # each kill lands while the job is printing
        wait_for(lambda: 0 < (rig.job(job) or {"printed": 0})["printed"] < len(data)
                 and rig.service("printer")["state"] == "up"
                 and rig.service("printer")["pid"] not in pids, 60, "printing, driver up",
                 interval=0.02)
        pid = int(rig.service("printer")["pid"])
        os.kill(pid, signal.SIGKILL)
        pids.append(pid)
    rig.wait_done(job, JOB_TIMEOUT)
    paper = rig.paper()
    assert printlab.compare(data, paper) == (0, 0)
    assert paper == data
    assert rig.service("printer")["incarnation"] >= 3  # (RS may add one: a ping missed under load)
    assert rig.status()["printer"]["resyncs"] >= 2  # the first open, then per driver it saw


@pytest.mark.parametrize("knob,why", [("lpt.paper_out", "paper out"), ("lpt.offline", "offline")])
def test_paper_out_holds_the_job_lpq_says_why_and_paper_back_finishes_it(
        rig: PrintRig, knob: str, why: str) -> None:
    data = os.urandom(1_000_000)
    job = rig.submit(data, "held")
    wait_for(lambda: (rig.job(job) or {"printed": 0})["printed"] > 0, 60, "printing started",
             interval=0.01)
    rig.knob(knob, True)
    def held_row() -> dict[str, Any]:
        row = rig.job(job)
        return row if row is not None and row["state"] == "held" else {}
    held = wait_for(held_row, 30, "the job held", interval=0.02)
    assert held["why"] == why and held["printed"] < len(data)
    assert rig.status()["printer"]["state"] == why
    on_paper = len(rig.paper())
    text = lpq(rig)
    assert f"printer: {why}" in text and "held" in text
    assert len(rig.paper()) == on_paper == (rig.job(job) or {})["printed"]  # nothing moves
    rig.knob(knob, False)
    rig.wait_done(job, JOB_TIMEOUT)
    assert rig.paper() == data


def test_the_driver_refuses_bad_requests_and_a_restarted_one_wants_a_reopen(
        rig: PrintRig) -> None:
    conn = cli.operator_connection(rig.run_dir, "badclient")
    try:
        def ask(req: int, **fields: object) -> int:
            return conn.sendrec(int(rig.service("printer")["endpoint"]), Message(req, fields)).type
        assert ask(CharReq.OPEN, minor=1) == Err.ENXIO  # the printer has minor 0 only
        assert ask(CharReq.WRITE, minor=0, data=b"x") == Err.EBADF  # not open
        assert ask(CharReq.OPEN, minor=0, access=2) == Err.OK
        assert ask(CharReq.READ, minor=0, count=10) == Err.EIO  # a printer is not read
        assert ask(CharReq.IOCTL, minor=0, request="TIOCGWINSZ") == Err.ENOTTY
        assert ask(CharReq.WRITE, minor=0, data=b"x" * (CDEV_MAX_IO + 1)) == Err.E2BIG
        assert ask(CharReq.WRITE, minor=0, data=b"x", tag=256) == Err.EINVAL
        assert ask(0x4FF, minor=0) == Err.EBADREQUEST
        old = rig.service("printer")
        os.kill(int(old["pid"]), signal.SIGKILL)
        wait_for(lambda: rig.service("printer")["pid"] != old["pid"]
                 and rig.service("printer")["state"] == "up", 30, "the printer back")
        assert ask(CharReq.WRITE, minor=0, data=b"x") == Err.ERESTART  # opened with the old one
        assert ask(CharReq.IOCTL, minor=0, request="LPSTATUS") == Err.ERESTART
        assert ask(CharReq.OPEN, minor=0, access=2) == Err.OK
        assert ask(CharReq.IOCTL, minor=0, request="LPSTATUS") == Err.OK
        assert rig.paper() == b""  # nothing refused was printed
    finally:
        conn.close()


def test_a_chunk_is_one_chain_of_the_drivers_ring() -> None:
    """A chunk is printed whole or not at all only if its vector is one chain of the ring;
    and the tags of one WRITE's chunks must stay distinct modulo 256."""
    from drivers.printer.printer import MAX_CHUNKS, chunk_ops
    from minikern.proto import ring
    assert len(chunk_ops(bytes(params.LPT_CHUNK), 0)) <= ring.MAX_CHAIN
    assert MAX_CHUNKS < 256


def test_a_chunk_built_wrong_is_refused_before_anything_is_printed() -> None:
    """Fail-stop: a vector that is not chunk_ops's shape (a byte skipped, cut short, the tag
    lost, a byte changed) is caught by ``well_formed`` before it reaches the board."""
    from drivers.printer.printer import CONTROL, DATA, chunk_ops, well_formed
    chunk, tag = bytes(range(10, 74)), 300
    ops = chunk_ops(chunk, tag)
    assert well_formed(ops, chunk, tag)
    assert ops[-1] == (DATA, 1, tag & 0xFF)
    assert not well_formed(ops[:-1], chunk, tag)                       # no tag
    assert not well_formed(ops[:20] + ops[-1:], chunk, tag)            # returned early
    assert not well_formed(ops[:5] + ops[8:], chunk, tag)              # a byte skipped
    assert not well_formed(ops[:-1] + [(DATA, 1, 7)], chunk, tag)      # the wrong tag
    wrong = list(ops)
    wrong[2 + 3 * 9] = (DATA, 1, chunk[9] ^ 1)                          # a byte changed
    assert not well_formed(wrong, chunk, tag)
    wrong = list(ops)
    wrong[3 + 3 * 20] = (CONTROL, 1, 0)                                 # a strobe lost
    assert not well_formed(wrong, chunk, tag)
    assert not well_formed(ops, chunk[:-1] + b"x", tag)                 # another chunk's vector
