"""The systems one trial runs on, built as the drivers under test need them.

System A is etc/system.conf booting only what the target drivers need (RS's
args: each Target's ``boots``, in system.conf's order; VFS mounts the RAM disk
only when the memory driver is a target), with each target driver's policy set
for a campaign: restart at once every time (``backoff off; restarts off;``, as
bin/bench recovery), a short heartbeat period, and resource limits (so a
leak or a spin is something RS can see).  With "disk" A boots on a fresh
MINIX v3 image (mkfs.minix -3).  With "net" the echo server is the peer
chosen by ``net_peer`` (netns.PEERS; ``auto``: linux-tap when it can be made):
``linux-tap``, A's board on a TAP in a network namespace the rig makes
(tests/net/netns.py, deleted at ``halt``, also after a failure or Ctrl-C) where
Linux's own TCP echoes (tests/net/peer.py ``echo`` at lab.LINUX_IP); ``udp``,
A's board joined by the UDP wire to system B (INET at lab.SECOND_IP, the
policy as shipped), which runs bin/echod and is never injected.  ``halt``
halts everything, reaps every child and deletes the namespace; ``check_disk``
(A halted) runs ``fsck.minix -f`` on the image (never -a or -r), boots A again
alone and reads back what the disk load left.
``check_ram`` (A still up, the applications stopped) has VFS sync, copies the
RAM disk out of the memory driver's shared memory segment (the name is in DS,
``memory.segment``; the disk follows the segment's header and journal) and runs
``fsck.minix -f`` on the copy, then reads every file back through VFS: the
segment dies with the system (bin/halt releases it), so it is checked before.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drivers.memory import segment
from minikern import cli, ipc, params, shm
from minikern import rsctl as ctl
from minikern.boot import System
from minikern.const import DS, DsReq, Err, RsReq
from minikern.proto import Message
from minikern.deadline import wait_for
from tests.net import lab, netns
from tests.storage import mountlab
from userland import spool
from userland.fs import Files, FsError

from experiment import devloads, workload
from experiment.targets import TARGETS

BOOT_DEADLINE = 90.0
VERIFY_DEADLINE = 120.0  # seconds to read every file back (a few seconds when all is well)
MEMORY_LIMIT = "192M"  # a driver is far below: a leak goes over it within a second
MEMORY_LIMIT_BYTES = 192 << 20
# RS's resource checks in the campaign's systems (params.RESOURCE_CHECK, by its environment
# variable: the kernel and RS inherit it): a leak or a spin is seen sooner, the window is shorter
RESOURCE_CHECK = 0.5
PEER = ["inet", "rtl8139"]  # what system B runs (the echo server's side of the wire)
NETNS_PREFIX, TAP_PREFIX = "mk-exp-", "mke"  # the names of the namespaces and TAPs it makes
CPU_LIMIT = "60%"  # a spinning thread goes over it in one check period (a driver: < 30%)


def boots(labels: list[str]) -> list[str]:
    """The services the target drivers need, in the order of RS's args in system.conf."""
    text = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    block = re.search(r"service\s+rs\s*\{.*?\n\s*args ([^;]*);", text, re.S)
    if block is None:
        raise SystemExit("experiment: no args of rs in etc/system.conf")
    wanted = {s for label in labels for s in TARGETS[label].boots}
    return [s for s in block.group(1).split() if s in wanted]


def campaign_conf(labels: list[str], period_ms: int, ip: str | None = None,
                  only: list[str] | None = None) -> str:
    """etc/system.conf for a campaign on ``labels``; ``only``: RS starts just these."""
    text = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    if ip is not None:
        text = text.replace(f"--ip {lab.SYSTEM_IP} ", f"--ip {ip} ")
    if only is not None:
        text = re.sub(r"(service\s+rs\s*\{.*?\n\s*args )[^;]*;",
                      lambda m: m.group(1) + " ".join(only) + ";", text, count=1, flags=re.S)
        if "memory" not in only:
            text = re.sub(r" --mount /ram=[^\s;]+", "", text)
    for label in labels:
        block = re.search(r"service\s+" + re.escape(label) + r"\s*\{.*?\n\};", text, re.S)
        if block is None:
            raise SystemExit(f"experiment: no service {label!r} in etc/system.conf")
        extra = (f"    backoff off;\n    restarts off;\n    period {period_ms}ms;\n"
                 f"    memory_limit {MEMORY_LIMIT};\n    cpu_limit {CPU_LIMIT};\n")
        text = text[:block.end() - 2] + extra + text[block.end() - 2:]
    return text


class Rig:
    def __init__(self, work: Path, drivers: list[str], period_ms: int,
                 net_peer: str = "auto") -> None:
        self.work, self.drivers = work, drivers
        self.needs = set().union(*(TARGETS[d].needs for d in drivers))
        self.children = lab.Children(work)
        self.run_a, self.run_b = work / "a", work / "b"
        self.run_a.mkdir(parents=True, exist_ok=True)
        self.image = self.run_a / "disk.img"  # the board's default --disk
        if "disk" in self.needs:
            mountlab.make_image(self.image, 16)
        self.conf_a = work / "a.conf"
        self.services = boots(drivers)
        self.conf_a.write_text(campaign_conf(drivers, period_ms, only=self.services))
        self.a: System | None = None
        self.b: System | None = None
        self.echo_port = 7000
        self.echod: subprocess.Popen[bytes] | None = None
        self.line: devloads.Line | None = None
        self.net_choice = net_peer
        self.net_peer: str | None = None  # the peer in use: "linux-tap" or "udp" (None: no net)
        self.netns: netns.Namespace | None = None
        self.owned = contextlib.ExitStack()  # the namespace, deleted at halt

    def boot(self) -> None:
        nic_a = "none"
        if "net" in self.needs:
            self.netns = self.owned.enter_context(netns.peer_namespace(
                self.net_choice, "experiment", NETNS_PREFIX, TAP_PREFIX))
            self.net_peer = "udp" if self.netns is None else "linux-tap"
        if self.netns is not None:
            nic_a = f"tap:{self.netns.tap}"
        elif "net" in self.needs:
            pa, pb = lab.free_udp_port(), lab.free_udp_port()
            nic_a = f"udp:{pa}:{pb}"
            conf_b = self.work / "b.conf"
            conf_b.write_text(campaign_conf([], 1000, ip=lab.SECOND_IP, only=PEER))
            self.b = System(self.run_b, conf_b, nic=f"udp:{pb}:{pa}")
        before = os.environ.get("MINIKERN_RESOURCE_CHECK")
        os.environ["MINIKERN_RESOURCE_CHECK"] = str(RESOURCE_CHECK)  # for the kernel's children
        try:
            self.a = System(self.run_a, self.conf_a, nic=nic_a)  # the kernel starts here
        finally:  # this process's environment is not the campaign's to change for good
            if before is None:
                del os.environ["MINIKERN_RESOURCE_CHECK"]
            else:
                os.environ["MINIKERN_RESOURCE_CHECK"] = before
        for system, labels in ((self.a, self.services), (self.b, PEER)):
            if system is None:
                continue
            if not system.wait_ready(timeout=BOOT_DEADLINE):
                raise RuntimeError(f"system {system.run_dir.name} did not come up")
            for label in labels:
                self.wait_up(system.run_dir, label)
        if self.netns is not None:
            self.netns.attach(f"{lab.LINUX_IP}/24")
        if "ram" in self.needs:
            with cli.connected(self.run_a, "exp-wait", privileges="user") as conn:
                files = Files(conn)
                wait_for(lambda: _ram_mounted(files), BOOT_DEADLINE, "VFS serving /ram")
        if "printer" in self.drivers:
            with cli.connected(self.run_a, "exp-wait", privileges="user") as conn:
                wait_for(lambda: _spooler_idle(conn), BOOT_DEADLINE, "the spooler ready")
        if "tty" in self.drivers:
            self.line = devloads.Line(self.run_a / params.COM1_SOCKET)

    def wait_up(self, run_dir: Path, label: str) -> None:
        with cli.connected(run_dir, "exp-wait") as conn:
            wait_for(lambda: service_state(conn, label) == "up", BOOT_DEADLINE, f"{label} up")

    def kernel_alive(self) -> bool:
        return all(s is None or s.kernel.poll() is None for s in (self.a, self.b))

    def echo(self) -> int:
        """(Re)start the echo server (Linux's in the namespace, or on B); its port."""
        if self.echod is not None and self.echod.poll() is None:
            self.echod.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # still in the host kernel
                # (a loaded host, a namespace's socket teardown): it is one of the rig's
                # children, reaped when the trial ends; a new server takes a new port now
                self.echod.wait(10)
        self.echo_port += 1
        if self.netns is not None:
            self.echod = self.netns.peer(self.children, "echo", lab.LINUX_IP, self.echo_port)
            try:
                self.children.read_json(self.echod, BOOT_DEADLINE)  # {"ready": true}
            except AssertionError as e:  # it exited, or said nothing in time
                raise OSError(f"Linux's echo server did not start: {e}") from None
            return self.echo_port
        self.echod = self.children.start("echod", [
            sys.executable, str(cli.REPO_ROOT / "bin" / "echod"), "--run-dir", str(self.run_b),
            str(self.echo_port)])
        return self.echo_port

    def loads(self, seed: int) -> dict[str, workload.Load]:
        """One application per target driver (not started)."""
        out: dict[str, workload.Load] = {}
        for d in self.drivers:
            kind = TARGETS[d].workload
            if kind == "net":
                peer_ip = lab.SECOND_IP if self.netns is None else lab.LINUX_IP
                out[d] = workload.NetLoad(self.run_a, seed, peer_ip, self.echo)
            elif kind == "console":
                assert self.line is not None
                out[d] = devloads.ConsoleLoad(self.run_a, seed, self.line)
            else:
                out[d] = devloads.WORKLOADS[kind](self.run_a, seed)
        return out

    def halt(self) -> None:
        if self.line is not None:
            self.line.close()
            self.line = None
        self.children.reap()
        for s in (self.a, self.b):
            if s is not None:
                s.halt()
        self.owned.close()  # after A's halt: its board no longer holds the TAP

    def check_disk(self, expected: dict[str, str]) -> dict[str, Any]:
        """A halted: fsck.minix -f the image, boot A alone on it, read the files back."""
        clean, said = mountlab.fsck(self.image)
        result: dict[str, Any] = {"fsck_clean": clean, "fsck": said[-400:]}
        again = System(self.run_a, self.conf_a, nic="none")
        try:
            if not again.wait_ready(timeout=BOOT_DEADLINE):
                raise RuntimeError(f"system A did not come up again on its image within "
                                   f"{BOOT_DEADLINE:g} s")
            self.wait_up(self.run_a, "vfs")
            with cli.connected(self.run_a, "exp-wait") as conn:  # VFS is in DS once it mounted /
                wait_for(lambda: vfs_published(conn), BOOT_DEADLINE, "VFS in DS", interval=0.05)
            with bounded(again, VERIFY_DEADLINE):
                verified = workload.verify(self.run_a, expected)
            result["verify"] = verified
        except (RuntimeError, AssertionError, OSError, ipc.IpcError) as e:
            # the check could not be made: said in the trial (with A's last console lines),
            # which keeps its outcomes; the files were not read back, so none counts as bad
            result["error"] = f"{type(e).__name__}: {e}"[:300]
            result["console"] = tail(self.run_a / params.CONSOLE_LOG)
        finally:
            again.halt()
        return result


    def check_ram(self, expected: dict[str, str]) -> dict[str, Any]:
        """A up, its applications stopped: VFS syncs, the RAM disk is copied out of the memory
        driver's segment and checked with fsck.minix -f; every file is read back via VFS."""
        result: dict[str, Any] = {"fsck_clean": False, "fsck": ""}
        try:
            self._check_ram(expected, result)
        except (RuntimeError, OSError, ValueError, KeyError, ipc.IpcError, FsError) as e:
            result["error"] = f"{type(e).__name__}: {e}"[:300]
            result["console"] = tail(self.run_a / params.CONSOLE_LOG)
        return result

    def _check_ram(self, expected: dict[str, str], result: dict[str, Any]) -> None:
        image = self.work / "ram.img"
        with cli.connected(self.run_a, "exp-ram", privileges="user") as conn:
            Files(conn).sync()
        with cli.connected(self.run_a, "exp-ram") as conn:
            r = conn.sendrec(DS, Message(DsReq.RETRIEVE, {"key": "memory.segment",
                                                         "version": 0, "operator": True}))
        if r.type != Err.OK:
            result["fsck"] = f"no memory.segment in DS ({r.type})"
        else:
            info = json.loads(str(r["value"]))
            with (shm.shm_dir() / str(info["name"])).open("rb") as f:
                f.seek(segment.DATA)
                image.write_bytes(f.read(int(info["size"])))
            result["fsck_clean"], said = mountlab.fsck(image)
            result["fsck"] = said[-400:]
        if self.a is None:
            raise RuntimeError("system A is not up")
        with bounded(self.a, VERIFY_DEADLINE):
            verified = workload.verify(self.run_a, expected)
        result["verify"] = verified


class Stopped(RuntimeError):
    """A block past its deadline: ``bounded`` stopped the system under it."""


@contextlib.contextmanager
def bounded(system: System, seconds: float) -> Iterator[None]:
    """Stop ``system``'s kernel if the block has not ended within ``seconds``: a file call
    waits without a deadline (VFS parks it until the root is mounted, which a file system
    a fault broke may never be), and the kernel's going ends it (as KernelGone, or as the
    errors the block made of it); then ``Stopped`` says so."""
    lock, stopped, ended = threading.Lock(), threading.Event(), threading.Event()

    def stop() -> None:
        with lock:  # a block that ended meanwhile keeps its kernel, and its result
            if ended.is_set():
                return
            stopped.set()
        system.kernel.kill()
    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    except ipc.KernelGone:
        if not stopped.is_set():
            raise
    finally:
        with lock:
            ended.set()
        timer.cancel()
    if stopped.is_set():  # (what the block made of the kernel's going is not its result)
        with contextlib.suppress(subprocess.TimeoutExpired):  # its threads still exiting
            system.kernel.wait(10)
        raise Stopped(f"not done within {seconds:g} s: the system was stopped")


def vfs_published(conn: ipc.Connection) -> bool:
    try:
        Files(conn)
    except FsError:
        return False
    return True


def service_state(conn: ipc.Connection, label: str) -> str:
    """RS's word on ``label`` ("unknown" if RS does not answer), asked on ``conn``: one
    connection for every look (a connection per look, every few ms, would churn through the
    kernel's bound on one process's connections)."""
    try:
        services = ctl.call(conn, RsReq.STATUS)["services"]
    except ctl.RsError:
        return "unknown"
    return next((str(s["state"]) for s in services if s["label"] == label), "unknown")


def tail(path: Path, lines: int = 60) -> list[str]:
    """The last ``lines`` lines of a log, for a trial's record (the folder is removed)."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as e:
        return [f"unreadable: {e}"]


def _spooler_idle(conn: ipc.Connection) -> bool:
    """lpd is up, has published its label (RS says "up" first), and its printer is idle."""
    try:
        return bool(spool.status(conn)["printer"]["state"] == "idle")
    except ipc.KernelGone:
        raise
    except ipc.IpcError:
        return False


def _ram_mounted(files: Files) -> bool:
    """/ram is the RAM disk's root (inode 1 there; the root disk's folder has another)."""
    try:
        return files.stat("/ram").st_ino == 1
    except FsError:
        return False


def events_path(run_dir: Path) -> Path:
    return run_dir / params.EVENT_LOG
