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

stdout and stderr go to run_dir/scripts/<label>.<n>.out; when the script ends
RS copies the output (up to OUTPUT_MAX bytes) into its script event.  The
script acts through bin/service like a person would (it connects with the run
directory's operator key).  RS kills scripts still running when it shuts down,
and a label's scripts when the operator takes that service down (a script must
not bring back what a person stopped).  If RS dies without that, its guardian
kills them: every script's environment carries SCRIPT_MARK.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from minikern import cli, params

# The scripts' folder; tests point MINIKERN_RECOVERY_SCRIPTS at their own.
SCRIPTS = Path(os.environ.get("MINIKERN_RECOVERY_SCRIPTS", cli.REPO_ROOT / "recovery_scripts"))
OUTPUT_MAX = 16 * 1024
SCRIPT_MARK = "MINIKERN_SCRIPT_OF"  # in every script's environment: its system's run dir


@dataclass
class Running:
    label: str
    script: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    out_path: Path
    out: IO[bytes]


class ScriptRunner:
    def __init__(self, run_dir: Path, scripts_dir: Path = SCRIPTS) -> None:
        self.run_dir, self.scripts_dir = run_dir, scripts_dir
        self.running: list[Running] = []
        self.seq = 0

    def start(self, script: str, label: str, reason: str, incarnation: int,
              env_extra: dict[str, str]) -> Running | str:
        """Start a script; returns it, or an error text."""
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
               "PYTHONPATH": str(cli.REPO_ROOT), SCRIPT_MARK: str(self.run_dir), **env_extra}
        args = [label, reason, str(incarnation)]
        try:
            proc = subprocess.Popen(["/bin/sh", str(path), *args], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=cli.REPO_ROOT, start_new_session=True)
        except OSError as e:
            out.close()
            return f"cannot run {path}: {e}"
        r = Running(label, script, args, proc, out_path, out)
        self.running.append(r)
        return r

    def finished(self) -> list[tuple[Running, int, str]]:
        """Scripts that ended since the last call, with exit status and output."""
        done = []
        for r in list(self.running):
            status = r.proc.poll()
            if status is None:
                continue
            self.running.remove(r)
            r.out.close()
            try:
                output = r.out_path.read_bytes()[:OUTPUT_MAX].decode(errors="replace")
            except OSError:
                output = ""
            done.append((r, status, output))
        return done

    def of(self, pid: int | None) -> Running | None:
        """The running script whose session process ``pid`` belongs to (its own bin/service)."""
        sid = _session(pid) if pid is not None else None
        return next((r for r in self.running if r.proc.pid == sid), None)

    def kill(self, label: str | None = None, spare: Running | None = None) -> None:
        """End the scripts running for ``label`` (all of them for None), with their children;
        never ``spare`` (the script that is asking RS)."""
        for r in [r for r in self.running if label is None or r.label == label]:
            if r is spare:
                continue
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            r.proc.wait()
            r.out.close()
            self.running.remove(r)


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
