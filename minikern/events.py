"""The event stream: one record type and one writer for every process of the system.

Whatever a person needs to know about the system's life (a boot, a crash and its
recovery, a driver coming back, a link change, a refused call, the halt) is an
event in ``run_dir/events.log`` (params.EVENT_LOG), written by the component that
saw it: the kernel, the board (hw), RS, RS's guardian, INET.  ``bin/logs`` reads
it; ``console.log`` keeps the components' own output beside it.

A record is one JSON object on one line:

    ts      Unix time of the event, in seconds (microsecond resolution)
    boot    the boot's id: the kernel draws one as it starts and leaves it in
            run_dir/boot.id (params.BOOT_ID) for every process of that boot
    source  the component that wrote it (kernel, hw, rs, guardian, inet)
    kind    what happened: a key of SCHEMAS
    label   whom it happened to: the service, the interface, the caller refused
    ...     the kind's own fields, as SCHEMAS lists them (name, JSON type, required
            or not); a record holds nothing else

Invariants:
* One write per record.  Each process opens the log O_APPEND and writes a record
  with a single write(2), so records of several processes never interleave (Linux
  appends to a regular file under the inode's lock).  A short write (a full
  disk) is ended with a newline, so only that record is lost, not the next too.
* Bounded on disk: a writer that takes events.log past params.EVENT_LOG_MAX bytes
  renames it events.log.1 (the older ones shift to .2 ... .EVENT_LOG_KEEP, the oldest
  goes), under an flock on the file so that two writers never rotate twice; every
  writer checks before each record that its descriptor is still events.log, and
  opens the new one if not.  Readers take the rotated files first, oldest first.
* The audit never goes silent: ``Audit`` records a caller's refusals up to
  params.DENIED_PER_WINDOW per params.DENIED_WINDOW, counts the rest, and sums
  them up in one ``denied-suppressed`` event when the window is over.
* The writer never fails its caller.  An event log that cannot be written loses
  the event: recovery never waits for its witness.
* Time order is the reader's job.  Writers stamp ``ts`` just before the write,
  so the file is in order except where two processes raced; ``in_order`` sorts
  boot by boot (in the order the boots appear in the file, so a clock stepped
  back between boots cannot mix them), by ``ts`` within a boot, the boot marker
  first and the halt marker last.
* Nothing read back is trusted: a line that is not a JSON object with a number
  ``ts`` is skipped and counted; ``validate`` says what else is wrong with one.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minikern import domain, params
from minikern.audit import Audit
from minikern.const import PROTO
from minikern.event_kinds import COMMON, SCHEMAS, Field

__all__ = ["COMMON", "SCHEMAS", "Audit", "EventLog", "Field", "Reader", "describe", "in_order",
           "new_boot", "boot_id", "read_all", "run_boot", "validate"]

Event = dict[str, Any]


def new_boot(run_dir: Path) -> str:
    """Draw this boot's id and leave it where every process of the boot reads it (the
    kernel calls this first of all, before any other process of the boot exists)."""
    ident = secrets.token_hex(8)
    tmp = run_dir / (params.BOOT_ID + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        f.write(ident + "\n")
    os.replace(tmp, run_dir / params.BOOT_ID)  # never half a file for a reader
    return ident


def boot_id(run_dir: Path) -> str:
    """The id of the boot running in ``run_dir`` ("" outside a booted system)."""
    try:
        return (run_dir / params.BOOT_ID).read_text().strip()
    except OSError:
        return ""


def run_boot(run_dir: Path, kernel_main: Callable[[], None]) -> None:
    """Run one boot of the kernel between its markers (called by ``python -m minikern.kernel``).

    The boot's id is drawn before the kernel exists, so every process of the boot (all
    started by the kernel) finds it.  The halt marker follows the kernel's last act (every
    process gone); a kernel killed outright leaves none, and bin/logs says so at the next
    boot."""
    marker = EventLog(run_dir, "kernel", boot=new_boot(run_dir))
    started = time.monotonic()
    marker.write("boot", "kernel", pid=os.getpid(), protocol=PROTO)
    try:
        kernel_main()
    except BaseException as e:
        marker.write("halt", "kernel", status="error", error=f"{type(e).__name__}: {e}",
                     uptime_s=round(time.monotonic() - started, 3))
        raise
    marker.write("halt", "kernel", status="clean", uptime_s=round(time.monotonic() - started, 3))


class EventLog:
    """One process's writer: ``EventLog(run_dir, "inet").write("link", "rtl8139", ...)``."""

    def __init__(self, run_dir: Path, source: str, boot: str | None = None,
                 max_bytes: int = params.EVENT_LOG_MAX, keep: int = params.EVENT_LOG_KEEP) -> None:
        self.path = run_dir / params.EVENT_LOG
        self.source = source
        self.boot = boot_id(run_dir) if boot is None else boot
        self.max_bytes, self.keep = max_bytes, keep  # keep 0: never rotated
        self.fd: int | None = None
        self.inode = 0  # of the file self.fd is open on
        self.lost = 0  # records that could not be written

    def write(self, kind: str, label: str, **fields: Any) -> Event:
        """Append one record and return it.  The common fields win over a same-named
        field; a field whose value JSON cannot hold is written as its text."""
        rec: Event = {"ts": round(time.time(), 6), "boot": self.boot, "source": self.source,
                      "kind": kind, "label": label}
        for name, value in fields.items():
            rec.setdefault(name, value)
        try:
            line = json.dumps(rec, default=str, allow_nan=False)
        except ValueError:  # NaN or infinity: JSON has no such number
            line = json.dumps({k: v if k in COMMON else str(v) for k, v in rec.items()})
        self._append((line + "\n").encode())
        return rec

    def _append(self, data: bytes) -> None:
        try:
            fd, size = self._open()
            n = os.write(fd, data)
            if n < len(data):
                self.lost += 1
                os.write(fd, b"\n")  # end the torn line here, not inside the next record
            if self.keep and size + n >= self.max_bytes:
                self._rotate(fd)
                self._open()  # the new events.log at once (booted as root, a component may not)
        except OSError:
            self.lost += 1

    def _open(self) -> tuple[int, int]:
        """The descriptor on events.log, opened again if another writer rotated it since
        the last record (never through a symlink), and the file's size as it was seen."""
        if self.fd is not None and self.keep:
            try:
                st = os.stat(self.path, follow_symlinks=False)
                if st.st_ino == self.inode:
                    return self.fd, st.st_size
            except FileNotFoundError:
                pass
            self.close()
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                              | os.O_NOFOLLOW, 0o600)
            st = os.fstat(self.fd)
            self.inode = st.st_ino
            if st.st_uid == os.geteuid() and st.st_size == 0:  # ours, maybe new: its writers' group
                domain.share_event_log(self.fd)
        return self.fd, os.fstat(self.fd).st_size if self.keep else 0

    def _rotate(self, fd: int) -> None:
        """events.log -> events.log.1, the older ones one further, unless another writer
        rotated it first (the flock on the file makes the check and the renames one step)."""
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st = os.stat(self.path, follow_symlinks=False)
            if st.st_ino != self.inode or st.st_size < self.max_bytes:
                return
            for n in range(self.keep - 1, 0, -1):
                try:
                    os.rename(rotated(self.path, n), rotated(self.path, n + 1))
                except FileNotFoundError:
                    pass
            os.rename(self.path, rotated(self.path, 1))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            self.close()  # the next record opens the new events.log

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rotated(path: Path, n: int) -> Path:
    """The ``n``-th rotated file of the log ``path`` (1: the newest)."""
    return path.with_name(f"{path.name}.{n}")


@dataclass
class Reader:
    """Reads the complete lines appended since the last call; starts again from the top if
    the file was replaced or cut short (a new run directory under the same name).

    ``keep``: the log rotates (EventLog) into ``keep`` files, read first, oldest first,
    when reading from the start; a file rotated between two calls is read to its end,
    and the newer ones whole, before the new file: each record once, in file order."""

    path: Path
    offset: int = 0
    skipped: int = 0  # lines that were not an event record
    inode: int | None = None
    keep: int = 0

    def read_new(self) -> list[Event]:
        out = []
        for raw in self.read_lines():
            rec = parse(raw)
            if rec is None:
                self.skipped += 1 if raw.strip() else 0
            else:
                out.append(rec)
        return out

    def read_lines(self) -> list[bytes]:
        """The complete lines appended since the last call, as they are (bin/logs --console
        reads a text file so)."""
        lines = self._rotated_lines() if self.keep else []
        try:
            with open(self.path, "rb", opener=_no_follow) as f:
                st = os.fstat(f.fileno())
                if (self.inode is not None and st.st_ino != self.inode) or st.st_size < self.offset:
                    self.offset = 0
                self.inode = st.st_ino
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return lines
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.offset += end
        return lines + data[:end].splitlines()

    def _rotated_lines(self) -> list[bytes]:
        """The lines of the rotated files this reader has not read yet."""
        try:
            current: int | None = os.stat(self.path, follow_symlinks=False).st_ino
        except OSError:
            current = None
        if self.inode is None:
            if self.offset:  # told to start inside the current file: no backlog
                return []
            first, start = self.keep, 0
        elif current == self.inode:
            return []
        else:  # the file read so far was rotated: find it, finish it
            first = next((n for n in range(1, self.keep + 1)
                          if _inode(rotated(self.path, n)) == self.inode), 0)
            start = self.offset
        lines: list[bytes] = []
        for n in range(first, 0, -1):
            lines += _lines_from(rotated(self.path, n), start if n == first else 0)
        self.inode, self.offset = current, 0
        if current is None:
            self.inode = -1  # read: the next events.log is new, from its start
        return lines


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path, follow_symlinks=False).st_ino
    except OSError:
        return None


def _lines_from(path: Path, offset: int) -> list[bytes]:
    """The complete lines of ``path`` from ``offset`` on ([] if it cannot be read)."""
    try:
        with open(path, "rb", opener=_no_follow) as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return []
    return data[:data.rfind(b"\n") + 1].splitlines()


def parse(raw: bytes) -> Event | None:
    """One line as a record, or None unless it is a JSON object with a number ``ts``."""
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(rec, dict) or type(rec.get("ts")) not in (int, float):
        return None
    return rec


def read_all(run_dir: Path, keep: int = params.EVENT_LOG_KEEP) -> list[Event]:
    """Every record of ``run_dir``'s event log (its rotated files first), in time order."""
    return in_order(Reader(run_dir / params.EVENT_LOG, keep=keep).read_new())


class Order:
    """The sort key of the stream: boots in the order they first appear, then time."""

    def __init__(self) -> None:
        self.boots: dict[str, int] = {}

    def key(self, rec: Event) -> tuple[int, int, float]:
        boot = str(rec.get("boot", ""))
        index = self.boots.setdefault(boot, len(self.boots))
        pin = {"boot": 0, "halt": 2}.get(str(rec.get("kind")), 1)
        return index, pin, float(rec["ts"])


def in_order(records: Iterable[Event], order: Order | None = None) -> list[Event]:
    """``records`` (as read, in file order) sorted into the stream's time order."""
    order = order or Order()
    records = list(records)
    for rec in records:  # the boots' ranks come from file order, before anything moves
        order.key(rec)
    return sorted(records, key=order.key)


def validate(rec: object) -> list[str]:
    """What is wrong with ``rec`` as a record of its kind: [] for a valid one."""
    if not isinstance(rec, dict):
        return ["not a JSON object"]
    kind = rec.get("kind")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        return [f"unknown kind {kind!r}"]
    problems = []
    for name, field in (*COMMON.items(), *schema.fields.items()):
        if name not in rec:
            if field.required:
                problems.append(f"{kind}: missing {name}")
        elif not field.accepts(rec[name]):
            problems.append(f"{kind}: {name}={rec[name]!r} is not {field.describe()}")
    problems += [f"{kind}: undocumented field {name}" for name in rec
                 if name not in COMMON and name not in schema.fields]
    return problems


BLOCKS = ("traceback", "output")  # multi-line fields: shown indented below the line


def describe(rec: Event) -> str:
    """The kind's fields as readable ``name=value`` words, in the schema's order (the
    common fields and the multi-line ones left out; control characters escaped)."""
    schema = SCHEMAS.get(str(rec.get("kind")))
    names = list(schema.fields) if schema else []
    names += [n for n in rec if n not in names]
    words = []
    for name in names:
        value = rec.get(name)
        if name in COMMON or name in BLOCKS or value is None or value == "":
            continue
        words.append(f"{printable(name)}={show(value)}")
    return " ".join(words)


def show(value: object) -> str:
    if isinstance(value, str):
        text = printable(value)
        return json.dumps(text) if (" " in text or not text) else text
    if isinstance(value, (list, dict)):
        return printable(json.dumps(value, separators=(",", ":"), default=str))
    return printable(str(value))


def printable(text: str) -> str:
    """``text`` with every control character escaped, so a record cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
