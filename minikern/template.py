"""A clean template process: imports the libraries, then waits to be told what to run.

Started by the kernel (minikern.kernel.spawn) ahead of need.  It has never run
component code; when the kernel hands it a startup record it becomes that
component, a fresh copy.  Booted as root, a refill (a template started ahead of
need, with no record waiting for it yet) imports in params.TEMPLATE_QUEUE, below
every service: the kernel refills its pool as it hands a template out, so a
refill imports while the instance just started initialises, and would
otherwise do so in the kernel's own queue, above it.  One started for a record
already sent (at boot, or with the pool empty) imports in the kernel's queue,
as a component's start should.  Either takes the component's queue from the
record (still root) before it runs any of its code.  It dies
with the kernel (PR_SET_PDEATHSIG), so no component outlives its system.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import select
import signal
import socket
import sys

import zmq  # noqa: F401  (imported ahead of need: this is what the template saves)

from minikern import domain, ipc, params, sched, sef
from minikern.proto import codec, startup

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def _prctl(option: int, arg: int | bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, arg, 0, 0, 0)


def main() -> None:
    fd, kernel_pid = int(sys.argv[1]), int(sys.argv[2])
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != kernel_pid:  # the kernel died before the prctl took effect
        os._exit(0)
    sock = socket.socket(fileno=fd)
    # a refill (no record waiting: started ahead of need) imports below every service; only
    # root may raise it again when it becomes a component
    if os.geteuid() == 0 and not select.select([sock], [], [], 0)[0]:
        sched.apply(os.getpid(), params.TEMPLATE_QUEUE)
    for name in params.TEMPLATE_PRELOAD:  # library code only: no component's code runs here
        importlib.import_module(name)
    try:
        data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    except OSError:
        os._exit(0)
    sock.close()
    if not data:
        os._exit(0)  # the kernel is discarding this template
    record = startup.decode(data)
    if record is None:  # the kernel sees this process die before its HELLO
        print(f"template: refused a startup record {dict(codec.refused)}", flush=True)
        os._exit(1)
    if "priority" in record:  # while still root: a raised priority needs CAP_SYS_NICE
        sched.apply(os.getpid(), record["priority"])  # refused without root: RS says so
    try:  # its own uid and gid (booted as root), no_new_privs, not dumpable, seccomp, no other fd
        domain.enter(record.get("domain"), fds[:1])
    except OSError as e:  # never run a component with more than it was given
        print(f"template: cannot enter {record['label']}'s domain: {e}", flush=True)
        os._exit(1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: a change of uid clears it
    if os.getppid() != kernel_pid:
        os._exit(0)
    ipc.boot_record.update(record)
    ipc.boot_memfd = fds[0] if fds else -1
    _prctl(PR_SET_NAME, ("mk-" + record["label"])[:15].encode())
    sys.argv = [record["module"], *record["args"]]
    sef.run_component(lambda: importlib.import_module(record["module"]).main())


if __name__ == "__main__":
    main()
