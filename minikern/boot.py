"""bin/boot and bin/halt: bring a system up from its configuration, and take it down.

Runs in the operator's shell process, never in the system.  Boot prepares the
private run directory (0700), writes the boot image the kernel reads
(label, module, privilege, fixed slot, manager endpoint for each boot process:
RS's fixed endpoint, the board's included, when RS is in the image), starts
the kernel in its own session (so a terminal's Ctrl-C reaches only bin/boot,
which then shuts the system down in order), and follows the console.

Halting is owned here, not by the kernel: the kernel tells every process
SHUTDOWN and exits once none is left; ``stop`` gives them SHUTDOWN_GRACE,
then kills the ones still there (a hung component, one blocked where SHUTDOWN
cannot reach it), so that the kernel still ends in order.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import psutil

from minikern import cli, events, mounts, params, rundir, sched, shm, sysconf
from minikern.proto import image
from minikern.const import DS, HW, KERNEL_Q, RS

FIXED_SLOTS = {"rs": RS, "ds": DS, "hw": HW}
DEFAULT_CONFIG = cli.REPO_ROOT / "etc" / "system.conf"


def boot_image(conf: sysconf.SystemConf, nic: str | None = None) -> list[image.BootEntry]:
    entries: list[image.BootEntry] = []
    for label in conf.boot:
        svc = conf.services[label]
        if label == "hw" and nic is not None:  # bin/boot --nic overrides the board's wire
            args = svc.keys.get("args", [])
            if "--nic" in args:
                i = args.index("--nic")
                args = args[:i] + args[i + 2:]
            svc.keys["args"] = [*args, "--nic", nic]
        program = svc.get("program")
        if program is None:
            raise sysconf.ConfError(f"boot service {label} has no program")
        slot = FIXED_SLOTS.get(label)
        if svc.get("slot") is not None:
            slot = int(svc.get("slot") or 0)
        entries.append({"label": label, "module": program, "args": svc.keys.get("args", []),
                        "priv": svc.priv(), "slot": slot, "uid": svc.uid(),
                        "priority": _priority(svc),
                        "manager": RS if "rs" in conf.boot and label != "rs" else None})
    return entries


def _priority(svc: sysconf.Service) -> int:
    """A boot process's scheduling queue, set by its template while still root."""
    try:
        return sched.parse(svc.get("priority") or str(params.DEFAULT_PRIORITY))
    except sched.PriorityError as e:
        raise sysconf.ConfError(f"service {svc.label}: {e}") from None


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _size(dir_fd: int, name: str) -> int:
    """The size of ``name`` in the directory of ``dir_fd`` (0 if there is none)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class System:
    """A booted system: the kernel process and its run directory."""

    def __init__(self, run_dir: str | Path, config: str | Path = DEFAULT_CONFIG,
                 tie_to_parent: bool = True, nic: str | None = None,
                 wrap: Sequence[str] = ()) -> None:
        """``wrap``: a command the kernel is started under, which must exec it in the end
        (tools/open_root_home.sh for the domain tests on a host whose Python is in /root)."""
        self.run_dir = Path(run_dir)
        conf = sysconf.load(config)
        self.labels = list(conf.boot)
        config_text = Path(config).read_bytes()
        if cli.kernel_pid(self.run_dir) is not None:
            raise RuntimeError(f"a system is already running in {self.run_dir}")
        dir_fd = rundir.open_dir(self.run_dir, create=True)  # RunDirError: refused, nothing written
        try:
            rundir.write_file(dir_fd, "system.conf", config_text)
            entries = boot_image(conf, nic)
            rundir.write_file(dir_fd, "boot.image", image.encode(entries))
            out = rundir.open_file(dir_fd, params.CONSOLE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                self.console_offset = os.fstat(out).st_size
                self.event_reader = events.Reader(self.run_dir / params.EVENT_LOG,
                                                  _size(dir_fd, params.EVENT_LOG),
                                                  keep=params.EVENT_LOG_KEEP)
                self.kernel = subprocess.Popen(
                    [*wrap, sys.executable, "-m", "minikern.kernel", os.path.abspath(self.run_dir)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cli.REPO_ROOT,
                    start_new_session=True, preexec_fn=_die_with_parent if tie_to_parent else None,
                    env={**os.environ, "PYTHONPATH": str(cli.REPO_ROOT)})
                # the kernel in MINIX's queue 0 (RS places every component, minikern/sched.py);
                # a refusal (not root) leaves it with the user's programs, as RS then says
                sched.apply(self.kernel.pid, KERNEL_Q)
            finally:
                os.close(out)
        finally:
            os.close(dir_fd)
        self.console = self.run_dir / params.CONSOLE_LOG

    def wait_ready(self, timeout: float = params.INIT_TIMEOUT) -> bool:
        """True once every boot process has finished initializing (entered RECEIVE) and, when
        RS is among them, every service RS starts has reported its init done."""
        deadline = time.monotonic() + timeout
        conn = None
        try:
            while time.monotonic() < deadline and self.kernel.poll() is None:
                try:
                    if conn is None:
                        conn = cli.operator_connection(self.run_dir, "boot")
                    from minikern.const import KCall
                    procs = conn.kcall(KCall.GETINFO)["procs"]
                    ready = {p["label"] for p in procs if p["ready"]}
                    if all(label in ready for label in self.labels) and self._rs_settled(conn):
                        return True
                except Exception:  # noqa: BLE001 (kernel still starting: keep trying)
                    pass
                time.sleep(0.02)
            return False
        finally:
            if conn is not None:
                conn.close()

    def _rs_settled(self, conn: Any) -> bool:
        if "rs" not in self.labels:
            return True
        from minikern.proto import Message
        from minikern.const import RS, Err, RsReq
        m = conn.sendrec(RS, Message(RsReq.STATUS))
        return m.type == Err.OK and all(s["state"] != "starting" for s in m["services"])

    def wait_services(self, timeout: float = params.INIT_TIMEOUT) -> list[dict[str, Any]]:
        """Wait until every service RS supervises is up and has stayed up, not restarted, for
        ``params.BOOT_SETTLE`` s; [] then, else the services that are not (one RS gave up on,
        at once; at ``timeout``, those still starting or restarting: a crash loop)."""
        from minikern import rsctl
        from minikern.const import RsReq
        deadline = time.monotonic() + timeout
        seen: dict[str, int] = {}  # label -> incarnation when it was last seen up
        settled_at: float | None = None
        with cli.connected(self.run_dir, "boot") as conn:
            while True:
                services = rsctl.call(conn, RsReq.STATUS)["services"]
                failed = [s for s in services if s["state"] == "failed"]
                if failed:
                    return failed
                now = time.monotonic()
                current = {s["label"]: s["incarnation"] for s in services if s["state"] == "up"}
                if len(current) == len(services) and current == seen:
                    settled_at = settled_at or now
                    if now - settled_at >= params.BOOT_SETTLE:
                        return []
                else:
                    seen, settled_at = current, None
                if now >= deadline:
                    return [s for s in services if s["state"] != "up"
                            or s["incarnation"] != seen.get(s["label"])]
                time.sleep(0.05)

    def follow(self) -> None:
        """Copy new events to stdout as bin/logs prints them, then new console output.
        A crash's traceback is shown once, as the component printed it on the console
        (the ``crash`` event's copy stays for bin/logs and bin/status)."""
        from minikern.commands import logs
        for e in events.in_order(self.event_reader.read_new()):
            colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
            shown = tuple(b for b in events.BLOCKS if b != "traceback")
            sys.stdout.write(logs.format_event(e, colour, blocks=shown) + "\n")
        try:
            with open(self.console, "rb", opener=_no_follow) as f:
                f.seek(self.console_offset)
                data = f.read()
        except OSError:
            return
        if data:
            self.console_offset += len(data)
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()

    def halt(self, timeout: float = 10.0) -> bool:
        unmount_all(self.run_dir)
        if self.kernel.poll() is None:
            sync_files(self.run_dir)
        ok = self.kernel.poll() is not None or stop(self.kernel.pid, timeout=timeout)
        self.kernel.wait()
        release_segments(self.run_dir)
        return ok


def halt(run_dir: str | Path, timeout: float = 10.0) -> bool:
    """Stop the system in ``run_dir`` (not our child), as ``stop`` does.  A pid file naming
    a process that is not this run directory's kernel is refused (RunDirError), before
    anything is unmounted or signalled."""
    pid = rundir.kernel_pid(run_dir)
    unmount_all(run_dir)
    if pid is not None:
        sync_files(run_dir)
    ok = True if pid is None else stop(pid, timeout=timeout)
    if ok:
        release_segments(run_dir)
    return ok


def release_segments(run_dir: str | Path) -> None:
    """The system is gone: its drivers' shared memory (the RAM disks, minikern/shm.py) goes
    too.  The memory driver unlinks its own at SHUTDOWN; this catches one killed meanwhile."""
    for name in shm.remove_all(Path(run_dir)):
        print(f"halt: removed the shared segment {name}", file=sys.stderr)


def unmount_all(run_dir: str | Path) -> None:
    """Unmount the host's FUSE mounts of the system first (bin/mount): each has VFS write
    everything back, so the data are on the disk before its drivers stop."""
    for problem in mounts.unmount_all(run_dir):
        print(f"halt: {problem}", file=sys.stderr)


def sync_files(run_dir: str | Path, timeout: float = params.HALT_SYNC_TIMEOUT) -> bool:
    """As MINIX's shutdown runs sync: VFS has every file server write its dirty blocks
    back and flush its device, before SIGTERM stops the drivers under them.  A system
    without VFS has nothing to sync; one whose VFS does not answer within ``timeout`` is
    stopped anyway (said on stderr).  True if the file systems were synced or none runs."""
    import threading
    conf = Path(run_dir) / "system.conf"  # as booted
    if not conf.exists() or "vfs" not in sysconf.load(conf).services:
        return True
    done: list[str] = []

    def ask() -> None:
        from minikern import ds
        from minikern.const import Err, VfsReq, err_name
        from minikern.ipc import IpcError, KernelGone
        from minikern.proto import Message
        try:
            with cli.connected(run_dir, "halt") as conn:
                try:
                    vfs = ds.retrieve_label(conn, "vfs")
                except IpcError:
                    done.append("")  # no VFS in this system (or not up): nothing to sync
                    return
                m = conn.sendrec(vfs, Message(VfsReq.SYNC))
                done.append("" if m.type == Err.OK else f"VFS answered {err_name(m.type)}")
        except (KernelGone, IpcError, OSError, SystemExit) as e:
            done.append(f"{e}")

    t = threading.Thread(target=ask, name="halt-sync", daemon=True)
    t.start()
    t.join(timeout)
    problem = done[0] if done else f"no answer within {timeout:g} s"
    if problem:
        print(f"halt: file systems not synced: {problem}", file=sys.stderr)
    return not problem


def stop(kernel_pid: int, grace: float = params.SHUTDOWN_GRACE, timeout: float = 10.0) -> bool:
    """Shut down the system of ``kernel_pid`` and return once every process of it is gone.

    SIGTERM asks the kernel for the shutdown; a process of the system still there after
    ``grace`` is killed (the kernel reaps it, then exits in order, removing its sockets).  Only
    a kernel still there after ``timeout`` is killed itself (its processes die with it), and
    then the answer is False: the system did not end in order."""
    try:
        kernel = os.pidfd_open(kernel_pid)
    except ProcessLookupError:
        return True
    members: list[int] = []
    try:
        signal.pidfd_send_signal(kernel, signal.SIGTERM)
        if _ended([kernel], grace):
            return True
        members = _children(kernel_pid)
        for fd in members:
            _signal(fd, signal.SIGKILL)
        if _ended([kernel], max(0.0, timeout - grace)):
            return True
        members += _children(kernel_pid)
        _signal(kernel, signal.SIGKILL)
        _ended([kernel, *members], None)
        return False
    finally:
        for fd in (kernel, *members):
            os.close(fd)


def _children(parent: int) -> list[int]:
    """pidfds on ``parent``'s children (a kernel's: its components and templates)."""
    fds = []
    try:
        children = psutil.Process(parent).children()
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            fd = os.pidfd_open(child.pid)
        except OSError:
            continue
        try:  # the pidfd is on a child of ``parent``, not on a process that reused its pid
            ours = psutil.Process(child.pid).ppid() == parent
        except psutil.NoSuchProcess:
            ours = False
        if ours:
            fds.append(fd)
        else:
            os.close(fd)
    return fds


def _signal(pidfd: int, signo: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signo)
    except ProcessLookupError:
        pass  # ended meanwhile


def _ended(pidfds: list[int], timeout: float | None) -> bool:
    """True once every process behind ``pidfds`` has ended (a pidfd reads as ended as soon as
    its process exits, reaped or not), False if ``timeout`` passes first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    left = list(pidfds)
    while left:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select(left, [], [], wait)
        if not ready:
            return False
        left = [fd for fd in left if fd not in ready]
    return True


def main(argv: list[str] | None = None) -> int:
    """bin/boot: start a minikern system.

    Starts the kernel, which starts the boot image named in the configuration.
    In the foreground it prints the boot log and every later event; Ctrl-C or
    SIGTERM shuts the whole system down cleanly.  With --detach it returns 0
    once every service is up and has stayed up, not restarted, for a second; a
    service RS gave up on, or one still not up after 10 s (a crash loop), is
    named on stderr and boot exits 1, leaving the system running for
    bin/status and bin/logs (bin/halt stops it).
    """
    ap = cli.Command("boot", main.__doc__, needs_system=False)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="system.conf to boot")
    ap.add_argument("--nic", help="the NIC's wire: none, udp:LOCALPORT:REMOTEPORT or tap:NAME "
                    "(overrides the board's args in the configuration)")
    ap.add_argument("--detach", action="store_true",
                    help="return once every service is up (exit 1: some are not)")
    return ap.run(argv, _boot)


def _boot(args: argparse.Namespace) -> int:
    """bin/boot's body, run by the command base: the kernel gone or a refused call while
    the system comes up is one line, not a traceback."""
    try:
        system = System(args.run_dir, args.config, tie_to_parent=not args.detach, nic=args.nic)
    except (RuntimeError, sysconf.ConfError, OSError) as e:
        print(f"boot: {e}", file=sys.stderr)
        return 1
    if args.detach:
        try:
            ok = system.wait_ready()
        except BaseException:  # Ctrl-C, or the kernel gone: leave no half-booted system behind
            system.halt()
            raise
        system.follow()
        if not ok:
            print("boot: the system did not come up; halting it", file=sys.stderr)
            system.halt()
            return 1
        troubled = system.wait_services() if "rs" in system.labels else []
        system.follow()
        if troubled:
            for s in troubled:
                why = (f"{s['failures']} failure(s) in a row, the last: "
                       f"{s['last_reason'] or 'none'}")
                print(f"boot: {s['label']} failed: RS gave up after {why}" if s["state"] == "failed"
                      else f"boot: {s['label']} is in a crash loop ({s['state']}; {why})",
                      file=sys.stderr)
            print(f"boot: the system is up in {args.run_dir} without them; see bin/status "
                  "LABEL, bin/halt to stop it", file=sys.stderr)
            return 1
        print(f"boot: system up in {args.run_dir} (kernel pid {system.kernel.pid})")
        return 0
    asked = []  # a signal asked for the halt
    signal.signal(signal.SIGINT, lambda *_: asked.append(1))
    signal.signal(signal.SIGTERM, lambda *_: asked.append(1))
    while system.kernel.poll() is None:
        if asked:
            system.halt()
        system.follow()
        time.sleep(0.1)
    system.follow()
    return 0


def halt_main(argv: list[str] | None = None) -> int:
    """bin/halt: shut a running minikern system down; returns once every process of it is gone.

    The host's mounts of it (bin/mount) are unmounted first, each once the system has
    written its files back.  The kernel gets SIGTERM and takes the system down; a kernel
    not gone within 10 s is killed, and halt exits 1.  The pid file is checked first: a
    process that is not this run directory's kernel (another user's, another program, the
    kernel of another run directory) is named on stderr, nothing is signalled, exit 1.
    """
    cmd = cli.Command("halt", halt_main.__doc__, needs_system=False,
                      failures=(rundir.RunDirError,))
    return cmd.run(argv, _halt)


def _halt(args: argparse.Namespace) -> int:
    """bin/halt's body: 2 with no system, 1 for a pid file naming another process."""
    if rundir.kernel_pid(args.run_dir) is None:
        return cli.no_system("halt", args.run_dir)
    return cli.EXIT_OK if halt(args.run_dir) else cli.EXIT_FAILED
