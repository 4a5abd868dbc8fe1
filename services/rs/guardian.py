"""RS's guardian: a small host process that shuts the system down if RS itself dies.

Nobody manages RS (it is the root of the tree), and the kernel only logs a
death it has no manager for, so RS starts this watcher (QNX HAM's Guardian,
reduced to what MINIX does when RS dies: a fatal, clean shutdown).  It holds
pidfds on RS and the kernel and the read end of a pipe from RS.  RS writes
``q`` on the pipe when it exits in order (system shutdown); if RS dies
without saying so while the kernel lives, the guardian writes a ``fatal``
event (source ``guardian``) to the event stream and asks the kernel for
SHUTDOWN through an operator connection.  It exits as soon as the kernel is gone, so it never
outlives its system, and on its way out kills recovery scripts RS left behind.
Runs as ``python -m services.rs.guardian RUN_DIR RS_PID KERNEL_PID``.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from minikern import cli
from minikern.events import EventLog


def start(run_dir: Path) -> subprocess.Popen[bytes] | None:
    """Called by RS: start the guardian for this RS and kernel."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "services.rs.guardian", str(run_dir), str(os.getpid()),
             str(os.getppid())], stdin=subprocess.PIPE, cwd=cli.REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(cli.REPO_ROOT)}, start_new_session=True)
    except OSError:
        return None


def release(g: subprocess.Popen[bytes] | None) -> None:
    """Called by RS on an orderly exit: the guardian may go."""
    if g is None or g.stdin is None:
        return
    try:
        g.stdin.write(b"q")
        g.stdin.close()
    except OSError:
        pass


def _fatal(run_dir: Path) -> None:
    detail = "the Reincarnation Server died; shutting the system down"
    with EventLog(run_dir, "guardian") as log:
        log.write("fatal", "rs", detail=detail)
    print(f"guardian: FATAL: {detail}", file=sys.stderr, flush=True)
    from minikern import ipc
    from minikern.const import KCall
    try:
        conn = cli.operator_connection(run_dir, "guardian")
        conn.kcall_status(KCall.SHUTDOWN, reason="rs died")
        conn.close()
    except (ipc.IpcError, OSError):
        pass  # the kernel is already going


def main() -> None:
    run_dir = Path(sys.argv[1])
    try:
        watch(run_dir, int(sys.argv[2]), int(sys.argv[3]))
    finally:  # RS or the kernel died, or RS exited in order (then there is nothing left)
        from services.rs.scripts import kill_orphans
        kill_orphans(run_dir)


def watch(run_dir: Path, rs_pid: int, kernel_pid: int) -> None:
    try:
        kernel_fd = os.pidfd_open(kernel_pid)
    except OSError:
        return  # the system is gone already
    stdin = sys.stdin.buffer.fileno()
    try:
        rs_fd = os.pidfd_open(rs_pid)
    except OSError:  # RS is gone before we could watch it: in order only if it said so
        if b"q" not in os.read(stdin, 16):  # never blocks: RS alone held the pipe's other end
            _fatal(run_dir)
        return
    released = False
    while True:
        ready, _, _ = select.select([rs_fd, kernel_fd, stdin], [], [])
        if kernel_fd in ready:
            return
        if stdin in ready:
            data = os.read(stdin, 16)
            if b"q" in data:
                released = True
            if not data and released:
                return
            if not data:
                stdin = -1  # EOF: RS is gone or going; its pidfd says which
        if rs_fd in ready:
            if not released:
                _fatal(run_dir)
            return
        if stdin == -1:
            ready, _, _ = select.select([rs_fd, kernel_fd], [], [], 1.0)
            if kernel_fd in ready:
                return
            if not released:
                _fatal(run_dir)
            return


if __name__ == "__main__":
    main()
