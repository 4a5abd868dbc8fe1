"""The line discipline: what a terminal does with the characters typed at it (pure; runs in the
tty driver's process, and in tests without one).

Input comes in as bytes from the line (``receive``) and leaves as records a
reader takes (``take``).  In canonical mode (``icanon``) the discipline edits
a line: ERASE removes the last character, KILL the whole line, NL (or CR,
with ``icrnl``) ends it, EOF ends it without a newline, and EOF on an empty
line is a record of no bytes, which a reader sees as end of file.  A read
then returns at most one line.  In raw mode every byte is a record of its
own; a read waits until ``vmin`` bytes are there (vmin 0: it returns at
once, perhaps with nothing).  With ``isig``, INTR throws away everything
not yet read and sets ``interrupted``: the driver answers the waiting reads
(or the next one) with EINTR, the tty's signal.  With ``ixon``, STOP and
START hold and release output (``stopped``); they are never input.

Everything the terminal must show because of the input (echo, the ``\\b \\b``
of an erase, ``^C``) collects in ``echo`` for the driver to send; output a
program writes goes through ``output`` (NL to CR NL with ``onlcr``).

Invariants: ``line`` holds the line being edited (canonical mode only);
``ready`` holds records no reader has taken; together they never exceed
``max_input`` bytes (more is dropped and counted in ``dropped``, with a bell).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MAX_INPUT = 4096  # bytes typed and not yet read that the discipline holds (POSIX MAX_INPUT)
BELL = b"\x07"
ERASE_ECHO = b"\b \b"


def ctrl(key: str) -> int:
    """The byte Ctrl-``key`` sends: ctrl("C") == 3."""
    return ord(key.upper()) & 0x1F


@dataclass(frozen=True)
class Termios:
    """The settings a program reads with TCGETS and changes with TCSETS (POSIX termios names)."""

    icanon: bool = True  # line editing; off: raw
    echo: bool = True  # show what is typed
    echoe: bool = True  # show ERASE as backspace-space-backspace
    isig: bool = True  # INTR interrupts the reader
    ixon: bool = True  # STOP / START control output
    icrnl: bool = True  # CR typed is read as NL
    onlcr: bool = True  # NL written is sent as CR NL
    crtscts: bool = False  # hold output while the UART's CTS is low
    vmin: int = 1  # raw mode: bytes a read waits for (0: never waits)
    verase: int = 0x7F  # DEL (BS, 0x08, erases too)
    vkill: int = ctrl("U")
    veof: int = ctrl("D")
    vintr: int = ctrl("C")
    vstop: int = ctrl("S")
    vstart: int = ctrl("Q")

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, value: object, base: Termios | None = None) -> Termios | None:
        """Settings from a TCSETS message: every key known and of its type, values in range;
        keys left out keep ``base``'s value.  None if anything is wrong."""
        if not isinstance(value, dict):
            return None
        kinds = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, v in value.items():
            kind = kinds.get(key) if isinstance(key, str) else None
            limit = MAX_INPUT if key == "vmin" else 0xFF
            flag_ok = kind == "bool" and type(v) is bool
            number_ok = kind == "int" and type(v) is int and 0 <= v <= limit
            if not (flag_ok or number_ok):
                return None
            changes[key] = v
        return replace(base or cls(), **changes)


class LineDiscipline:
    def __init__(self, termios: Termios | None = None, max_input: int = MAX_INPUT) -> None:
        self.termios = termios or Termios()
        self.max_input = max_input
        self.line = bytearray()
        self.ready: deque[bytes] = deque()
        self.echo = bytearray()
        self.stopped = False
        self.interrupted = False
        self.dropped = 0

    # -- input ---------------------------------------------------------------------------

    def held(self) -> int:
        return len(self.line) + sum(len(r) for r in self.ready)

    def receive(self, data: bytes) -> None:
        for byte in data:
            self._byte(byte)

    def _byte(self, c: int) -> None:
        t = self.termios
        if t.ixon and c == t.vstop:
            self.stopped = True
            return
        if t.ixon and c == t.vstart:
            self.stopped = False
            return
        if t.isig and c == t.vintr:
            self.line.clear()
            self.ready.clear()
            self.interrupted = True
            self._show(b"^C\r\n")
            return
        if t.icrnl and c == 0x0D:
            c = 0x0A
        if not t.icanon:
            self._store(c, lambda: self.ready.append(bytes([c])))
            return
        if c in (t.verase, 0x08):
            if self.line:
                self.line.pop()
                self._show(ERASE_ECHO if t.echoe else bytes([c]))
            return
        if c == t.vkill:
            self._show((ERASE_ECHO if t.echoe else b"") * len(self.line))
            self.line.clear()
            return
        if c == t.veof:
            self.ready.append(bytes(self.line))  # empty: end of file
            self.line.clear()
            return
        if c == 0x0A:
            self._store(c, self._end_line)
            return
        self._store(c, lambda: self.line.append(c))

    def _store(self, c: int, keep: Callable[[], None]) -> None:
        """Keep ``c`` (with its echo) if there is room; else drop it and ring the bell."""
        if self.held() >= self.max_input:
            self.dropped += 1
            self._show(BELL)
            return
        keep()
        self._show(b"\r\n" if c == 0x0A else bytes([c]))

    def _end_line(self) -> None:
        self.line.append(0x0A)
        self.ready.append(bytes(self.line))
        self.line.clear()

    def _show(self, text: bytes) -> None:
        if self.termios.echo:
            self.echo += text

    def take_echo(self) -> bytes:
        out = bytes(self.echo)
        self.echo.clear()
        return out

    def set_termios(self, t: Termios) -> None:
        """New settings; leaving canonical mode makes the line being edited readable."""
        if self.termios.icanon and not t.icanon and self.line:
            self.ready.extend(bytes([c]) for c in self.line)
            self.line.clear()
        if not t.ixon:
            self.stopped = False
        self.termios = t

    # -- reading -------------------------------------------------------------------------

    def readable(self) -> bool:
        """Would a read be answered now (a line, EOF, or vmin bytes)?"""
        if self.termios.icanon:
            return bool(self.ready)
        return sum(len(r) for r in self.ready) >= self.termios.vmin

    def take(self, count: int) -> bytes:
        """What a read of ``count`` bytes gets now: in canonical mode at most one line (a
        line longer than ``count`` is read in pieces), in raw mode up to ``count`` bytes."""
        out = bytearray()
        while self.ready and len(out) < count:
            record = self.ready.popleft()
            room = count - len(out)
            out += record[:room]
            if len(record) > room:
                self.ready.appendleft(record[room:])
            if self.termios.icanon:
                break
        return bytes(out)

    def flush_input(self) -> None:
        """Discard what was typed and not yet read (tcflush TCIFLUSH)."""
        self.line.clear()
        self.ready.clear()

    def unread(self, data: bytes) -> None:
        """Put back what a read took but could not deliver (its reader died): read first again."""
        self.ready.appendleft(bytes(data))

    # -- output --------------------------------------------------------------------------

    def output(self, data: bytes) -> bytes:
        return data.replace(b"\n", b"\r\n") if self.termios.onlcr else data

    # -- the driver's backup across a restart --------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What a restarted driver needs to carry on: the settings and the unread input."""
        ready = list(self.ready)
        if not self.termios.icanon and ready:  # raw mode reads across records: keep one
            ready = [b"".join(ready)]
        return {"termios": self.termios.to_wire(), "line": self.line.decode("latin-1"),
                "ready": [r.decode("latin-1") for r in ready]}

    @classmethod
    def restore(cls, snap: object, max_input: int = MAX_INPUT) -> LineDiscipline:
        """The discipline a snapshot describes; a fresh one if it is not a valid snapshot."""
        ld = cls(max_input=max_input)
        if not isinstance(snap, dict):
            return ld
        termios = Termios.from_wire(snap.get("termios"))
        line, ready = snap.get("line"), snap.get("ready")
        if (termios is None or not isinstance(line, str) or not isinstance(ready, list)
                or not all(isinstance(r, str) for r in ready)):
            return ld
        try:
            ld.line = bytearray(line.encode("latin-1"))
            ld.ready = deque(r.encode("latin-1") for r in ready)
        except UnicodeEncodeError:
            return cls(max_input=max_input)
        ld.termios = termios
        if ld.held() > ld.max_input:
            return cls(max_input=max_input)
        return ld
