"""Recovery scripts: RS starts them and watches them, never waits for them.  Runs inside RS.

MINIX's convention: ``recovery_scripts/<script> <label> <reason> <incarnation>``,
where reason is exit, signal, panic, exception, no-heartbeat (MINIX's name for
a hang) or resource.  The environment adds what MINIX left out:

    MINIKERN_RUN_DIR, MINIKERN_ROOT, MINIKERN_PYTHON   where the system and its tools are
    MINIKERN_OLD_PID, MINIKERN_OLD_ENDPOINT            the instance that failed
    MINIKERN_EXIT_STATUS, MINIKERN_SIGNAL               how it ended (empty if not known)
    MINIKERN_DETAIL                                     panic reason, error, or resource figure
    MINIKERN_FAILURES                                   consecutive failures (for backoff)
    MINIKERN_DEPENDENTS                                 labels whose `depends` names this one

A script's standard input is its channel to RS, as inetd hands a service its
connection on stdin: one end of a socketpair whose other end RS's loop
watches (MINIKERN_RS_CHANNEL=0 says so).  On it the script may ask, one line
each (minikern/proto/scriptchan.py), ``MKSC 1 restart LABEL`` (or refresh, up,
down) and reads one line back once RS has done it (late, as bin/service's
answer): ``MKSC 1 OK key=value ...`` or ``MKSC 1 ENAME reason``.  It costs the
script no interpreter and no connection to the kernel (a shell's ``printf``
and ``read``), so rs.restart is about as fast as RS restarting by itself; RS
knows which script asks without looking it up.  A line RS cannot read is
answered ``EINVAL``; one that is not text, or too long, also ends the
channel.  A script may instead act through bin/service like a person
would (it connects with the run directory's operator key).

stdout and stderr go to run_dir/scripts/<label>.<n>.out; when the script ends
RS copies the output (up to OUTPUT_MAX bytes) into its script event.  RS
learns that a script ended from its pidfd, a descriptor that becomes
readable when the process exits, watched by RS's loop (``Loop.watch``):
nothing is polled, and the script's ``on_done`` runs at once.  RS kills
scripts still running when it shuts down, and a label's scripts when the
operator takes that service down (a script must not bring back what a person
stopped).  If RS dies without that, its guardian
kills them: every script's environment carries SCRIPT_MARK.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from minikern import cli, params, sched
from minikern.const import Err
from minikern.loop import Loop
from minikern.proto import Message, scriptchan

# The scripts' folder; tests point MINIKERN_RECOVERY_SCRIPTS at their own.
SCRIPTS = Path(os.environ.get("MINIKERN_RECOVERY_SCRIPTS", cli.REPO_ROOT / "recovery_scripts"))
OUTPUT_MAX = 16 * 1024
SCRIPT_MARK = "MINIKERN_SCRIPT_OF"  # in every script's environment: its system's run dir
CHANNEL_FD = "MINIKERN_RS_CHANNEL"  # in every script's environment: its channel's fd (stdin)


@dataclass
class Running:
    label: str
    script: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    pidfd: int  # readable once the script has exited (watched by RS's loop)
    out_path: Path
    out: IO[bytes]
    on_done: Callable[[Running, int, str], None]
    channel: socket.socket | None = None  # RS's end of the script's stdin; None once closed
    pending: bytes = b""  # a request line not yet complete


# A request on a script's channel: the script, what it asks, and the function that answers it
# (with RS's Message, late or at once).
ChannelRequest = Callable[[Running, scriptchan.Request, Callable[[Message], None]], None]


class ScriptRunner:
    def __init__(self, run_dir: Path, loop: Loop, scripts_dir: Path = SCRIPTS) -> None:
        self.run_dir, self.loop, self.scripts_dir = run_dir, loop, scripts_dir
        self.running: list[Running] = []
        self.seq = 0
        self.on_request: ChannelRequest | None = None  # RS's core sets it (operations.py)
        self.counters = {"channel_refused": 0, "channel_answer_lost": 0}

    def start(self, script: str, label: str, reason: str, incarnation: int,
              env_extra: dict[str, str],
              on_done: Callable[[Running, int, str], None]) -> Running | str:
        """Start a script; returns it, or an error text.  When it has ended, ``on_done``
        gets it, its exit status and its output."""
        path = self.scripts_dir / script
        if not path.is_file():
            return f"no such recovery script: {path}"
        self.seq += 1
        out_dir = self.run_dir / params.SCRIPT_DIR
        out_dir.mkdir(exist_ok=True)
        out_path = out_dir / f"{label}.{self.seq}.out"
        out = open(out_path, "wb")
        env = {**os.environ, "MINIKERN_RUN_DIR": str(self.run_dir),
               "MINIKERN_ROOT": str(cli.REPO_ROOT), "MINIKERN_PYTHON": sys.executable,
               "PYTHONPATH": str(cli.REPO_ROOT), SCRIPT_MARK: str(self.run_dir),
               CHANNEL_FD: "0", **env_extra}
        args = [label, reason, str(incarnation)]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(sched.weighted(["/bin/sh", str(path), *args]), stdin=theirs.fileno(),
                                    stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=cli.REPO_ROOT, start_new_session=True)
        except OSError as e:
            out.close()
            ours.close()
            return f"cannot run {path}: {e}"
        finally:
            theirs.close()  # the script holds it now
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError as e:  # no pidfd (a kernel before 5.3, or no descriptor left)
            _end(proc)
            out.close()
            return f"cannot watch {path}: {e}"
        r = Running(label, script, args, proc, pidfd, out_path, out, on_done, ours)
        ours.setblocking(False)
        self.running.append(r)
        self.loop.watch(pidfd, lambda: self._exited(r))
        self.loop.watch(ours.fileno(), lambda: self._readable(r))  # the fd: the poller says so
        return r

    # -- the script's channel ---------------------------------------------------------

    def _readable(self, r: Running) -> None:
        """A line (or part of one) from the script, or its end: never trusted, each line is
        decoded by minikern.proto.scriptchan and handed to RS's core as a Request."""
        if r.channel is None:
            return
        try:
            data = r.channel.recv(scriptchan.MAX_LINE + 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._close_channel(r)
        lines, r.pending = scriptchan.split_lines(r.pending + data)
        for line in lines:
            if r.channel is not None:
                self._request(r, line)
        if r.channel is not None and len(r.pending) > scriptchan.MAX_LINE:
            self._request(r, r.pending)  # refused as too long: the channel ends

    def _request(self, r: Running, line: bytes) -> None:
        req = scriptchan.decode_request(line)
        if isinstance(req, scriptchan.Bad):
            self.counters["channel_refused"] += 1
            self._answer(r, Message(int(Err.EINVAL), {"error": req.why}))
            if req.fatal:
                self._close_channel(r)
            return
        if self.on_request is None:
            return self._answer(r, Message(int(Err.ENOSYS), {"error": "RS takes no requests"}))
        self.on_request(r, req, lambda m: self._answer(r, m))

    def _answer(self, r: Running, m: Message) -> None:
        if r.channel is None:  # the script ended (or closed its stdin) before its answer
            self.counters["channel_answer_lost"] += 1
            return
        line = scriptchan.encode_answer(m.type, m.fields)
        try:
            r.channel.send(line)
        except OSError:  # the script is gone, or does not read: its answer is lost
            self.counters["channel_answer_lost"] += 1

    def _close_channel(self, r: Running) -> None:
        if r.channel is not None:
            self.loop.unwatch(r.channel.fileno())
            r.channel.close()
            r.channel = None

    def _exited(self, r: Running) -> None:
        """Its pidfd is readable: the script has ended; reap it and hand it to ``on_done``."""
        status = r.proc.poll()
        if status is None or r not in self.running:
            return
        self._forget(r)
        try:
            output = r.out_path.read_bytes()[:OUTPUT_MAX].decode(errors="replace")
        except OSError:
            output = ""
        r.on_done(r, status, output)

    def _forget(self, r: Running) -> None:
        self.running.remove(r)
        self._close_channel(r)
        self.loop.unwatch(r.pidfd)
        os.close(r.pidfd)
        r.out.close()

    def of(self, pid: int | None) -> Running | None:
        """The running script whose session process ``pid`` belongs to (its own bin/service)."""
        sid = _session(pid) if pid is not None else None
        return next((r for r in self.running if r.proc.pid == sid), None)

    def kill(self, label: str | None = None, spare: Running | None = None) -> None:
        """End the scripts running for ``label`` (all of them for None), with their children;
        never ``spare`` (the script that is asking RS)."""
        for r in [r for r in self.running if label is None or r.label == label]:
            if r is not spare:
                _end(r.proc)
                self._forget(r)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill a script's session (the script and what it started) and reap the script."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def kill_orphans(run_dir: Path) -> None:
    """Kill what is left of this system's scripts (their sessions carry SCRIPT_MARK): the
    guardian calls this when RS or the kernel died without RS's orderly kill()."""
    for p in psutil.process_iter():
        try:
            if p.environ().get(SCRIPT_MARK) == str(run_dir):
                p.kill()
        except (psutil.Error, OSError):
            continue
