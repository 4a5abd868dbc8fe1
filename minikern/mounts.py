"""The host's FUSE mounts of a system: their records in the run directory, and unmounting.

Runs in the operator's shell (bin/mount -u, bin/halt) and in the mount process
itself (userland/mount.py, which writes its record once the kernel has sent
FUSE's INIT and removes it when it ends).  One record per mount point,
``run_dir/mounts/<key>.json``: ``dir`` (the mount point, resolved), ``pid`` (the
mount process), ``log`` (its output).  Unmounting is ``fusermount3 -u``: the
mount process then gets FUSE's DESTROY, has VFS write everything back (SYNC) and
exits; bin/halt does it for every record before it stops the system, so no
mount outlives the system and the data are on the disk before its drivers stop.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from minikern import params

MOUNTS_DIR = "mounts"  # under the run directory
FUSERMOUNT = "fusermount3"


@dataclass(frozen=True)
class Mount:
    """One recorded mount: its point, the process serving it and that process's log."""

    dir: str
    pid: int
    log: str


def resolve(mount_point: str | Path) -> str:
    """``mount_point`` absolute, its directory's symlinks resolved, without a stat of the
    mount point itself: a stat of a mount from inside its own server waits for itself
    (and one of a dead mount answers ENOTCONN)."""
    path = os.path.abspath(mount_point)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def record_path(run_dir: str | Path, mount_point: str | Path) -> Path:
    """Where the record of ``mount_point`` lives (a name made from the resolved path)."""
    key = hashlib.sha256(os.fsencode(resolve(mount_point))).hexdigest()[:16]
    return Path(run_dir) / MOUNTS_DIR / f"{key}.json"


def write_record(run_dir: str | Path, mount_point: str | Path, log: str | Path = "") -> None:
    """Record this process as the server of ``mount_point`` (written whole, then renamed)."""
    path = record_path(run_dir, mount_point)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"dir": resolve(mount_point), "pid": os.getpid(),
                               "log": str(log)}))
    tmp.replace(path)


def remove_record(run_dir: str | Path, mount_point: str | Path, pid: int | None = None) -> None:
    """Remove the record of ``mount_point`` (only if it names ``pid``, when given)."""
    path = record_path(run_dir, mount_point)
    found = read_record(path)
    if found is not None and (pid is None or found.pid == pid):
        path.unlink(missing_ok=True)


def read_record(path: Path) -> Mount | None:
    """The record in ``path``; None if there is none or it is not one (a torn or foreign file)."""
    try:
        d = json.loads(path.read_text())
        return Mount(str(d["dir"]), int(d["pid"]), str(d.get("log", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded(run_dir: str | Path) -> list[Mount]:
    """Every mount recorded in ``run_dir`` whose mount process still runs (stale records,
    and records naming any other process, go)."""
    out = []
    for path in sorted((Path(run_dir) / MOUNTS_DIR).glob("*.json")):
        m = read_record(path)
        if m is not None and serving(m.pid, run_dir):
            out.append(m)
        else:
            path.unlink(missing_ok=True)
    return out


def find(run_dir: str | Path, mount_point: str | Path) -> Mount | None:
    m = read_record(record_path(run_dir, mount_point))
    return m if m is not None and serving(m.pid, run_dir) else None


def serving(pid: int, run_dir: str | Path) -> bool:
    """True if ``pid`` is a running bin/mount of ``run_dir``: a record is a file anyone who
    can write the run directory may have written, and halt signals the pid it names, so the
    process must be what the record says (its command line: bin/mount, and the same
    --run-dir when it names one)."""
    if not alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
    except OSError:
        return False
    starts = [i for i, w in enumerate(argv[:3]) if os.path.basename(w) == "mount"
              and os.path.basename(os.path.dirname(w)) == "bin"]
    if not starts:
        return False
    words = argv[starts[0] + 1:]
    if "--run-dir" in words[:-1]:
        given = words[words.index("--run-dir") + 1]
        return os.path.realpath(given) == os.path.realpath(run_dir)
    return True


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def is_fuse_mount(mount_point: str | Path) -> bool:
    """True if ``mount_point`` is a FUSE mount point now (read from /proc/self/mounts, which
    does not touch the mount: a stat of a dead one would answer ENOTCONN)."""
    target = resolve(mount_point)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and _unescape(fields[1]) == target \
                        and fields[2].startswith("fuse"):
                    return True
    except OSError:
        pass
    return False


def _unescape(field: str) -> str:
    """A path as /proc/self/mounts writes it (space, tab, newline, backslash octal-escaped)."""
    for esc, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(esc, ch)
    return field


def fusermount(mount_point: str | Path, lazy: bool = False) -> tuple[bool, str]:
    """``fusermount3 -u`` (``-z``: detach now, even while files are open in it); whether it
    unmounted, and its complaint if not."""
    tool = shutil.which(FUSERMOUNT)
    if tool is None:
        return False, f"{FUSERMOUNT} is not installed (Debian: apt-get install fuse3)"
    argv = [tool, "-u", *(["-z"] if lazy else []), resolve(mount_point)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return r.returncode == 0, r.stderr.strip()


def unmount(run_dir: str | Path, mount_point: str | Path, force: bool = False,
            timeout: float = params.UNMOUNT_TIMEOUT) -> tuple[bool, str]:
    """Unmount ``mount_point`` and wait for its process to have written back and ended.

    Busy (a file open in it, a shell's working directory): refused, unless ``force``, which
    detaches it lazily and, if the process is still there after ``timeout``, kills it.
    Returns (done, why not)."""
    m = find(run_dir, mount_point)
    if m is None and not is_fuse_mount(mount_point):
        return False, f"{mount_point} is not mounted by this system"
    if is_fuse_mount(mount_point):
        ok, why = fusermount(mount_point)
        if not ok and not force:
            return False, why or "fusermount3 -u failed"
        if not ok:
            fusermount(mount_point, lazy=True)
    if m is None:
        return True, ""  # a mount whose process had died already: cleaned up
    if _ended(m.pid, timeout):
        remove_record(run_dir, mount_point, m.pid)
        return True, ""
    if not force:
        return False, f"the mount process {m.pid} did not end within {timeout:g} s"
    with contextlib.suppress(ProcessLookupError):
        os.kill(m.pid, signal.SIGKILL)
    _ended(m.pid, 5.0)
    remove_record(run_dir, mount_point, m.pid)
    return False, f"the mount process {m.pid} did not end within {timeout:g} s: killed"


def unmount_all(run_dir: str | Path, timeout: float = params.UNMOUNT_TIMEOUT) -> list[str]:
    """Unmount every mount recorded in ``run_dir`` (forcibly: bin/halt is stopping the
    system); a line per mount that did not end in order."""
    problems = []
    for m in recorded(run_dir):
        ok, why = unmount(run_dir, m.dir, force=True, timeout=timeout)
        if not ok:
            problems.append(f"{m.dir}: {why}")
    return problems


def _ended(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True

