"""Client of the board's control socket (run_dir/board.ctl): fault knobs and device statistics.

Runs in the operator's shell or the test suite, never in a driver.  The
protocol is minikern.proto.control; the command is bin/hwctl
(minikern.commands.hwctl).
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from minikern.proto import control

SOCKET_NAME = "board.ctl"


class CtlError(Exception):
    pass


class BoardCtl:
    def __init__(self, run_dir: str | Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(Path(run_dir) / SOCKET_NAME))
        self.buf = b""

    def request(self, req: control.Request) -> dict[str, Any]:
        """One request; its result fields, or CtlError with the board's reason."""
        self.sock.sendall(control.encode_request(req))
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise CtlError("the board closed the control socket")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        reply = control.decode_reply(line)
        if reply is None:
            raise CtlError("an unreadable answer from the board")
        if not reply.ok:
            raise CtlError(reply.fields["error"])
        return reply.fields

    def set(self, knob: str, value: Any) -> Any:
        return self.request(control.Set(knob, value))["value"]

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.request(control.Stats())["stats"]
        return stats

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BoardCtl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
