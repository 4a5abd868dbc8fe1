"""The systems one trial runs on, built as the drivers under test need them.

System A is etc/system.conf with each target driver's policy set for a
campaign: restart at once every time (``backoff off; restarts off;``, as
bin/bench recovery), a short heartbeat period, and resource limits (so a
leak or a spin is something RS can see).  With "disk" A boots on a fresh
MINIX v3 image (mkfs.minix -3); with "net" its board is joined by the UDP
wire to system B (INET at lab.SECOND_IP, the policy as shipped), which runs
the echo server and is never injected.  ``close`` halts everything and reaps
every child; ``check_disk`` (A halted) runs ``fsck.minix -f`` on the image
(never -a or -r), boots A again alone and reads back what the disk load left.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from minikern import cli, params
from minikern import rsctl as ctl
from minikern.boot import System
from minikern.const import RsReq
from minikern.deadline import wait_for
from tests.net import lab
from tests.storage import mountlab

from experiment import workload
from experiment.targets import TARGETS

BOOT_DEADLINE = 90.0
MEMORY_LIMIT = "192M"  # a driver is far below: a leak goes over it within a second
CPU_LIMIT = "60%"  # a spinning thread goes over it in one check period (a driver: < 30%)


def campaign_conf(labels: list[str], period_ms: int, ip: str | None = None) -> str:
    text = (cli.REPO_ROOT / "etc" / "system.conf").read_text()
    if ip is not None:
        text = text.replace(f"--ip {lab.SYSTEM_IP} ", f"--ip {ip} ")
    for label in labels:
        block = re.search(r"service\s+" + re.escape(label) + r"\s*\{.*?\n\};", text, re.S)
        if block is None:
            raise SystemExit(f"experiment: no service {label!r} in etc/system.conf")
        extra = (f"    backoff off;\n    restarts off;\n    period {period_ms}ms;\n"
                 f"    memory_limit {MEMORY_LIMIT};\n    cpu_limit {CPU_LIMIT};\n")
        text = text[:block.end() - 2] + extra + text[block.end() - 2:]
    return text


class Rig:
    def __init__(self, work: Path, drivers: list[str], period_ms: int) -> None:
        self.work, self.drivers = work, drivers
        self.needs = set().union(*(TARGETS[d].needs for d in drivers))
        self.children = lab.Children(work)
        self.run_a, self.run_b = work / "a", work / "b"
        self.run_a.mkdir(parents=True, exist_ok=True)
        self.image = self.run_a / "disk.img"  # the board's default --disk
        if "disk" in self.needs:
            mountlab.make_image(self.image, 16)
        self.conf_a = work / "a.conf"
        self.conf_a.write_text(campaign_conf(drivers, period_ms))
        self.a: System | None = None
        self.b: System | None = None
        self.echo_port = 7000
        self.echod: subprocess.Popen[bytes] | None = None

    def boot(self) -> None:
        nic_a = "none"
        if "net" in self.needs:
            pa, pb = lab.free_udp_port(), lab.free_udp_port()
            nic_a = f"udp:{pa}:{pb}"
            conf_b = self.work / "b.conf"
            conf_b.write_text(campaign_conf([], 1000, ip=lab.SECOND_IP))
            self.b = System(self.run_b, conf_b, nic=f"udp:{pb}:{pa}")
        self.a = System(self.run_a, self.conf_a, nic=nic_a)
        for system, labels in ((self.a, [*self.drivers, "vfs", "inet"]), (self.b, ["inet"])):
            if system is None:
                continue
            if not system.wait_ready(timeout=BOOT_DEADLINE):
                raise RuntimeError(f"system {system.run_dir.name} did not come up")
            for label in labels:
                self.wait_up(system.run_dir, label)

    def wait_up(self, run_dir: Path, label: str) -> None:
        def up() -> bool:
            return self.state(run_dir, label) == "up"
        wait_for(up, BOOT_DEADLINE, f"{label} up")

    @staticmethod
    def state(run_dir: Path, label: str) -> str:
        for s in ctl.request(run_dir, RsReq.STATUS)["services"]:
            if s["label"] == label:
                return str(s["state"])
        return "unknown"

    def kernel_alive(self) -> bool:
        return all(s is None or s.kernel.poll() is None for s in (self.a, self.b))

    def echo(self) -> int:
        """(Re)start the echo server on B; its port."""
        if self.echod is not None and self.echod.poll() is None:
            self.echod.kill()
            self.echod.wait(10)
        self.echo_port += 1
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
                out[d] = workload.NetLoad(self.run_a, seed, lab.SECOND_IP, self.echo)
            else:
                out[d] = workload.WORKLOADS[kind](self.run_a, seed)
        return out

    def halt(self) -> None:
        self.children.reap()
        for s in (self.a, self.b):
            if s is not None:
                s.halt()

    def check_disk(self, expected: dict[str, str]) -> dict[str, Any]:
        """A halted: fsck.minix -f the image, boot A alone on it, read the files back."""
        clean, said = mountlab.fsck(self.image)
        result: dict[str, Any] = {"fsck_clean": clean, "fsck": said[-400:]}
        again = System(self.run_a, self.conf_a, nic="none")
        try:
            if not again.wait_ready(timeout=BOOT_DEADLINE):
                raise RuntimeError("system A did not come up again on its image")
            self.wait_up(self.run_a, "vfs")
            result["verify"] = workload.verify(self.run_a, expected)
        finally:
            again.halt()
        return result


def events_path(run_dir: Path) -> Path:
    return run_dir / params.EVENT_LOG
