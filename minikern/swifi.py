"""SWIFI inside a component: the code, interface and resource faults of bin/experiment.

Runs in the component's own process.  RS hands a fault of const.SWIFI_FAULTS
over with its answer to a heartbeat PING, as it does bin/crash's faults, and
SEF (minikern/sef.py) calls ``arm``; only RS can do this, and RS takes it only
from an operator tool.  Each fault is one-shot: it waits for its ``nth``
eligible event, fires once, writes an activation record
(run_dir/swifi/<id>.json: when, where, what) and disarms.  A new fault
replaces one still waiting.

    code       a sys.settrace hook on the lines of ``module`` (the driver's own
               code, already imported; minikern/swifi_trace.py): at the nth
               line executed there
               raise      raise InjectedCodeFault at that line
               skip       jump over the statement
               return     jump to a ``return`` statement further down
               corrupt    replace a local's value (``corrupt``: off by one, bit
                          flip, None, zero)
               negate     send a branch the other way than its condition said
    interface  the nth message the component sends, or port write it makes
               field      one field of the message corrupted
               endpoint   the message goes to a wrong endpoint
               port       the write goes to the next ports over
               register   the value written is corrupted
               dma        a byte of the DMA area (``offset`` in the lowest memory
                          window: descriptors, buffers) flipped before the write
                          that starts the device
    resource   leak (memory, params.SWIFI_LEAK_*), spin (a thread burning CPU),
               fdleak (descriptors opened and never closed)

``check_spec`` is the one validation of a spec, used by RS (answering
EINVAL) and again here (a bad spec is logged and ignored).
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minikern import ipc, params
from minikern.const import (CODE_KINDS, CORRUPTIONS, INTERFACE_KINDS, RESOURCE_KINDS, Call)

Spec = dict[str, Any]
KINDS: dict[str, tuple[str, ...]] = {"code": CODE_KINDS, "interface": INTERFACE_KINDS,
                                     "resource": RESOURCE_KINDS}
FIELDS: dict[str, type] = {"id": str, "kind": str, "nth": int, "pick": int, "corrupt": str,
                           "module": str, "offset": int}
REQUIRED = ("id", "kind")
MAX_NTH, MAX_PICK, MAX_OFFSET = 100_000, 1 << 16, 1 << 24
_ID = re.compile(r"[A-Za-z0-9_.-]{1,80}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,5}")
_SEND_CALLS = (Call.SEND, Call.SENDNB, Call.SENDREC, Call.REPLYRECV)


class InjectedCodeFault(Exception):
    """The exception a ``raise`` code fault throws at the driver's line."""


def check_spec(fault: object, spec: object) -> str | None:
    """What is wrong with a (fault, spec) pair from the wire, or None if it is good."""
    if type(fault) is not str or fault not in KINDS:
        return f"fault must be one of {', '.join(KINDS)}"
    if not isinstance(spec, dict):
        return "spec must be a map"
    for key, value in spec.items():
        if key not in FIELDS or type(value) is not FIELDS[key]:
            return f"spec field {key!r} is unknown or of the wrong type"
    for key in REQUIRED:
        if key not in spec:
            return f"spec needs {key!r}"
    if not _ID.fullmatch(spec["id"]):
        return "spec id must be 1-80 of [A-Za-z0-9_.-]"
    if spec["kind"] not in KINDS[fault]:
        return f"{fault} kind must be one of {', '.join(KINDS[fault])}"
    if not 1 <= spec.get("nth", 1) <= MAX_NTH or not 0 <= spec.get("pick", 0) < MAX_PICK:
        return f"nth must be 1..{MAX_NTH}, pick 0..{MAX_PICK - 1}"
    if not 0 <= spec.get("offset", 0) < MAX_OFFSET:
        return f"offset must be 0..{MAX_OFFSET - 1}"
    if spec.get("corrupt", "bitflip") not in CORRUPTIONS:
        return f"corrupt must be one of {', '.join(CORRUPTIONS)}"
    if fault == "code" and not _MODULE.fullmatch(spec.get("module", "")):
        return "a code fault needs module, a dotted module name"
    return None


_NOT = object()  # corrupt(): this value has no corrupted form


def corrupt(value: Any, how: str, pick: int = 0) -> Any:
    """``value`` corrupted ``how`` (one of CORRUPTIONS); _NOT for a value it cannot corrupt."""
    if how == "none":
        return None if value is not None else 0
    if isinstance(value, bool):
        return False if how == "zero" else not value
    if isinstance(value, int):
        return {"zero": 0, "off_by_one": value + (1 if pick % 2 else -1)}.get(
            how, value ^ (1 << (pick % 16)))
    if isinstance(value, float):
        return {"zero": 0.0, "off_by_one": value + 1.0}.get(how, -value if value else 1.0)
    if isinstance(value, (str, bytes)):
        if how == "zero":
            return value[:0]
        if how == "off_by_one":
            if value:
                return value[:-1]
            return "x" if isinstance(value, str) else b"x"
        if not value:
            return _NOT
        i = pick % len(value)
        if isinstance(value, str):
            return value[:i] + chr(ord(value[i]) ^ 1) + value[i + 1:]
        return value[:i] + bytes([value[i] ^ (1 << (pick % 8))]) + value[i + 1:]
    if value is None:
        return 0
    return _NOT


class _Fault:
    """One armed fault: the countdown to its nth eligible event, and its record once fired."""

    def __init__(self, fault: str, spec: Spec, run_dir: Path | None, label: str) -> None:
        self.fault, self.spec, self.run_dir, self.label = fault, spec, run_dir, label
        self.kind: str = spec["kind"]
        self.remaining: int = spec.get("nth", 1)
        self.pick: int = spec.get("pick", 0)
        self.how: str = spec.get("corrupt", "bitflip")
        self.fired = False

    def due(self) -> bool:
        """Count one eligible event; True when it is the one to fire at."""
        if self.fired:
            return False
        self.remaining -= 1
        return self.remaining <= 0

    def record(self, where: str, detail: str = "") -> None:
        self.fired = True
        if self.run_dir is None:
            return
        rec = {"id": self.spec["id"], "fault": self.fault, "kind": self.kind, "label": self.label,
               "pid": os.getpid(), "ts": time.time(), "where": where, "detail": detail}
        try:
            d = self.run_dir / params.SWIFI_DIR
            d.mkdir(exist_ok=True)
            (d / f"{self.spec['id']}.json").write_text(json.dumps(rec))
        except OSError:
            pass  # the record is the experiment's witness, never the component's problem


# -- interface faults -----------------------------------------------------------------

class InterfaceFault(_Fault):
    """Wraps the IPC codec's encoders or the board channel's writes, for one event."""

    def __init__(self, fault: str, spec: Spec, run_dir: Path | None, label: str) -> None:
        super().__init__(fault, spec, run_dir, label)
        self.offset: int = spec.get("offset", 0)
        self.undo: list[Callable[[], None]] = []

    def _patch(self, owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        setattr(owner, name, wrap(original))
        self.undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        from minikern import devio
        if self.kind == "field":
            self._patch(ipc, "_encode_body", self._body)
        elif self.kind == "endpoint":
            self._patch(ipc, "_encode_request", self._request)
        else:
            for name in ("outb", "outw", "outl"):
                self._patch(devio.Channel, name, self._out)
            self._patch(devio.Channel, "vec", self._vec)

    def uninstall(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo.clear()

    def _body(self, original: Callable[..., bytes]) -> Callable[..., bytes]:
        def encode(mtype: int, fields: dict[str, Any] | None = None) -> bytes:
            names = sorted(k for k, v in (fields or {}).items()
                           if corrupt(v, self.how, self.pick) is not _NOT)
            if fields and names and self.due():
                name = names[self.pick % len(names)]
                bad = corrupt(fields[name], self.how, self.pick)
                self.record(f"message type {mtype}", f"{name}: {fields[name]!r:.40} -> {bad!r:.40}")
                self.uninstall()
                fields = {**fields, name: bad}
            return original(mtype, fields)
        return encode

    def _request(self, original: Callable[..., bytes]) -> Callable[..., bytes]:
        def encode(call: int, *args: int) -> bytes:
            if call in _SEND_CALLS and args and self.due():
                wrong = args[0] ^ (1 << (self.pick % 4))
                self.record(f"{Call(call).name} to {args[0]}", f"sent to {wrong} instead")
                self.uninstall()
                args = (wrong, *args[1:])
            return original(call, *args)
        return encode

    def _write(self, chan: Any, port: int, value: int, size: int) -> tuple[int, int]:
        """One port write about to go to the board, faulted if it is the one."""
        if not self.due():
            return port, value
        if self.kind == "port":
            wrong = port + 1 + self.pick % 3
            self.record(f"out {port:#x}", f"written to {wrong:#x} instead")
            port = wrong
        elif self.kind == "register":
            bad = corrupt(value, self.how, self.pick)
            bad = (bad if type(bad) is int else 0) & ((1 << (8 * size)) - 1)
            self.record(f"out {port:#x}", f"value {value:#x} -> {bad:#x}")
            value = bad
        else:  # dma: a byte of the area the device reads by DMA, before the write that starts it
            windows = getattr(chan, "windows", {})
            if windows:
                mem = windows[min(windows)]
                at = self.offset % len(mem)
                mem[at] ^= 1 << (self.pick % 8)
                self.record(f"out {port:#x}", f"DMA byte {at:#x} of window {min(windows):#x} "
                            f"flipped")
            else:
                self.remaining = 1  # no DMA area yet: the next write
                return port, value
        self.uninstall()
        return port, value

    def _out(self, original: Callable[..., None]) -> Callable[..., None]:
        size = {"outb": 1, "outw": 2, "outl": 4}[original.__name__]

        def out(chan: Any, port: int, value: int) -> None:
            port, value = self._write(chan, port, value, size)
            original(chan, port, value)
        return out

    def _vec(self, original: Callable[..., list[int | None]]) -> Callable[..., list[int | None]]:
        def vec(chan: Any, ops: list[tuple[int, int, int | None]]) -> list[int | None]:
            writes = [i for i, (_, _, v) in enumerate(ops) if v is not None]
            if writes and not self.fired:
                i = writes[self.pick % len(writes)]
                port, size, value = ops[i]
                assert value is not None
                port, value = self._write(chan, port, value, size)
                ops = [*ops[:i], (port, size, value), *ops[i + 1:]]
            return original(chan, ops)
        return vec


# -- resource faults ------------------------------------------------------------------

def _resource(fault: _Fault) -> None:
    """The leak, spin or fd leak, in a daemon thread: the driver's loop goes on beside it."""
    fault.record(f"resource {fault.kind}")
    if fault.kind == "leak":
        hoard: list[bytes] = []
        while len(hoard) * params.SWIFI_LEAK_CHUNK < params.SWIFI_LEAK_CAP:
            hoard.append(b"\x5a" * params.SWIFI_LEAK_CHUNK)  # touched: it counts in the RSS
            time.sleep(params.SWIFI_LEAK_STEP)
        threading.Event().wait()  # hold it until the process ends
    elif fault.kind == "spin":
        end = time.monotonic() + params.SWIFI_SPIN_MAX
        while time.monotonic() < end:
            pass
    else:
        held = []
        for _ in range(params.SWIFI_FD_LEAK):
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        threading.Event().wait()


# -- arming -----------------------------------------------------------------------------

_armed: Any = None  # the fault waiting for its event: a swifi_trace.CodeFault or InterfaceFault


def arm(fault: str, spec: object, run_dir: Path | None, label: str) -> str | None:
    """Arm ``fault`` as ``spec`` says (replacing any fault still waiting); the reason it
    was refused, or None."""
    global _armed
    error = check_spec(fault, spec)
    if error is not None:
        return error
    assert isinstance(spec, dict)
    if _armed is not None:
        _armed.uninstall()
        _armed = None
    if fault == "resource":
        threading.Thread(target=_resource, args=(_Fault(fault, spec, run_dir, label),),
                         daemon=True, name=f"swifi-{spec['kind']}").start()
        return None
    if fault == "interface":
        _armed = InterfaceFault(fault, spec, run_dir, label)
    else:
        module = sys.modules.get(spec["module"])
        path = getattr(module, "__file__", None)
        if path is None:
            return f"module {spec['module']} is not loaded in this component"
        prefix = str(Path(path).parent) + os.sep if path.endswith("__init__.py") else path
        from minikern.swifi_trace import CodeFault  # here: it needs this module's pieces
        _armed = CodeFault(fault, spec, run_dir, label, prefix)
    _armed.install()
    return None
