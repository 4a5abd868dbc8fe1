"""The board's control socket: fault knobs and statistics for tests and the operator.

Runs in the board process.  ``run_dir/board.ctl`` is an AF_UNIX stream
socket, 0600 inside the 0700 run directory, so only the operator's shell and
the test suite reach it; drivers never do (they talk only to the kernel and
through their fast-path channel).  One JSON object per line each way; the
frames are minikern.proto.control's (``Stats`` and ``Set``, answered by a
``Reply``), the client is minikern.boardctl and the command bin/hwctl.

Knobs (one setter each in ``KNOBS``): ``ata.bad_sectors`` (list of LBAs whose
reads fail with UNC), ``nic.drop_rx`` / ``nic.drop_tx`` (a count of frames,
or {"count": n, "rate": r}), ``nic.link`` (bool), ``lpt.paper_out``,
``lpt.offline`` (bool), and ``<device>.irq_disabled`` (bool) for pit, uart,
lpt, ata, nic: the device stops raising its interrupt line.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hw.board_fastpath import Unwatch, Watch
from hw.board_machine import Machine
from hw.wire import WireFault
from minikern.proto import control

SOCKET_NAME = "board.ctl"
MAX_LINE = control.MAX_LINE
MAX_CLIENTS = 8


class KnobError(ValueError):
    pass


def _bool(v: object) -> bool:
    if type(v) is not bool:
        raise KnobError("value must be true or false")
    return v


def _fault(v: object) -> WireFault:
    if type(v) is int and v >= 0:
        return WireFault(count=v)
    if type(v) is dict and set(v) <= {"count", "rate"}:
        count, rate = v.get("count", 0), v.get("rate", 0.0)
        if type(count) is int and count >= 0 and type(rate) in (int, float) and 0 <= rate <= 1:
            return WireFault(rate=float(rate), count=count)
    raise KnobError("value must be a frame count or {\"count\": n, \"rate\": r}")


def _sectors(v: object) -> set[int]:
    if type(v) is not list or len(v) > 4096 or not all(type(x) is int and x >= 0 for x in v):
        raise KnobError("value must be a list of sector numbers")
    return set(v)


def _set_sectors(m: Machine, v: object) -> object:
    m.ata.bad_sectors = _sectors(v)
    return sorted(m.ata.bad_sectors)


def _set_drop_rx(m: Machine, v: object) -> object:
    m.nic.drop_rx = _fault(v)
    return v


def _set_drop_tx(m: Machine, v: object) -> object:
    m.nic.drop_tx = _fault(v)
    return v


def _set_link(m: Machine, v: object) -> object:
    m.nic.set_link(_bool(v))
    return v


def _set_paper_out(m: Machine, v: object) -> object:
    m.lpt.paper_out = _bool(v)
    return v


def _set_offline(m: Machine, v: object) -> object:
    m.lpt.offline = _bool(v)
    return v


def _irq_knob(name: str) -> Callable[[Machine, object], object]:
    def set_disabled(m: Machine, v: object) -> object:
        m.gates[name].set_disabled(_bool(v))
        return v
    return set_disabled


KNOBS: dict[str, Callable[[Machine, object], object]] = {
    "ata.bad_sectors": _set_sectors,
    "nic.drop_rx": _set_drop_rx,
    "nic.drop_tx": _set_drop_tx,
    "nic.link": _set_link,
    "lpt.paper_out": _set_paper_out,
    "lpt.offline": _set_offline,
    **{f"{dev}.irq_disabled": _irq_knob(dev) for dev in ("pit", "uart", "lpt", "ata", "nic")},
}


class Control:
    def __init__(self, run_dir: Path, machine: Machine, stats: Callable[[], dict[str, Any]],
                 watch: Watch, unwatch: Unwatch) -> None:
        self.machine, self.stats, self.watch, self.unwatch = machine, stats, watch, unwatch
        self.path = run_dir / SOCKET_NAME
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old)
        self.listener.listen(4)
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}
        self.refused = 0
        watch(self.listener.fileno(), self.on_accept)

    def on_accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        if len(self.clients) >= MAX_CLIENTS:
            self.refused += 1
            sock.close()
            return
        sock.setblocking(False)
        fd = sock.fileno()
        self.clients[fd] = (sock, bytearray())
        self.watch(fd, lambda: self.on_readable(fd))

    def on_readable(self, fd: int) -> None:
        sock, buf = self.clients[fd]
        try:
            data = sock.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                sock.sendall(control.encode_reply(self.command(line)))
            except OSError:
                data = b""
                break
        if not data or len(buf) > MAX_LINE:
            self.unwatch(fd)
            sock.close()
            del self.clients[fd]

    def command(self, line: bytes) -> control.Reply:
        req = control.decode_request(line)
        if req is None:
            return control.Reply(False, {"error": "not a board control request (minikern.proto."
                                                  "control: proto, version, verb)"})
        if isinstance(req, control.Stats):
            return control.Reply(True, {"stats": self.stats()})
        setter = KNOBS.get(req.knob)
        if setter is None:
            return control.Reply(False, {"error": f"unknown knob {req.knob!r}",
                                         "knobs": sorted(KNOBS)})
        try:
            value = setter(self.machine, req.value)
        except KnobError as e:
            return control.Reply(False, {"error": f"{req.knob}: {e}"})
        return control.Reply(True, {"knob": req.knob, "value": value})

    def close(self) -> None:
        for sock, _ in self.clients.values():
            sock.close()
        self.listener.close()
        self.path.unlink(missing_ok=True)
