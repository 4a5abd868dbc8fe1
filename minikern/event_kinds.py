"""The kinds of event and the schema of each: the event stream's documentation as data.

``minikern/events.py`` writes and reads the stream; this table says what a
record of each kind holds.  ``events.validate`` checks a record against it,
``bin/logs --schema`` prints it as JSON Schema, and ``bin/logs`` shows a
record's fields in the order given here.  A new kind, or a new field of one,
is added here first: a record with a field missing from its kind's schema does
not validate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "string": (str,), "array": (list,),
    "object": (dict,)}


@dataclass(frozen=True)
class Field:
    type: str  # a JSON Schema type name (the keys of _JSON_TYPES)
    doc: str
    required: bool = True
    null: bool = False  # JSON null is a value of this field
    choices: tuple[str, ...] = ()  # the only strings it may hold, if any

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.null
        if type(value) not in _JSON_TYPES[self.type]:  # type(): JSON true is no integer
            return False
        return not self.choices or value in self.choices

    def describe(self) -> str:
        what = " | ".join(self.choices) if self.choices else self.type
        return what + (" or null" if self.null else "")

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": [self.type, "null"] if self.null else self.type,
                               "description": self.doc}
        if self.choices:
            out["enum"] = [*self.choices, *([None] if self.null else [])]
        return out


def _f(type_: str, doc: str, *choices: str, opt: bool = False, null: bool = False) -> Field:
    return Field(type_, doc, required=not opt, null=null, choices=choices)


@dataclass(frozen=True)
class Kind:
    doc: str
    sources: tuple[str, ...]  # the components that write it
    fields: dict[str, Field]

    def json_schema(self, name: str) -> dict[str, Any]:
        props = {n: f.json_schema() for n, f in (*COMMON.items(), *self.fields.items())}
        props["kind"] = {**props["kind"], "const": name}
        props["source"] = {**props["source"], "enum": list(self.sources)}
        return {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": f"minikern event: {name}", "description": self.doc,
                "type": "object", "properties": props, "additionalProperties": False,
                "required": [n for n, f in (*COMMON.items(), *self.fields.items())
                             if f.required]}


COMMON = {
    "ts": _f("number", "Unix time of the event, seconds"),
    "boot": _f("string", "the boot's id (run_dir/boot.id), \"\" outside a booted system"),
    "source": _f("string", "the component that wrote the record"),
    "kind": _f("string", "what happened"),
    "label": _f("string", "whom it happened to"),
}

_REASONS = ("exit", "signal", "panic", "exception", "heartbeat", "resource")
_ACTIONS = ("restart", "backoff", "script", "giveup", "fatal")
_PID = "the process id"
_EP = "the endpoint"

SCHEMAS: dict[str, Kind] = {
    "boot": Kind("the kernel started: the first record of a boot (label kernel)", ("kernel",), {
        "pid": _f("integer", "the kernel's process id"),
        "protocol": _f("integer", "the IPC protocol version"),
    }),
    "halt": Kind("the kernel ended, every process of the boot gone: the last record of a boot",
                 ("kernel",), {
        "status": _f("string", "clean, or error when the kernel itself failed", "clean",
                     "error"),
        "uptime_s": _f("number", "seconds since the boot marker"),
        "error": _f("string", "the kernel's failure", opt=True),
    }),
    "crash": Kind("a service failed, or RS ended it; action says what RS does next", ("rs",), {
        "reason": _f("string", "why it ended", *_REASONS),
        "action": _f("string", "what RS does about it", *_ACTIONS),
        "pid": _f("integer", _PID + " that failed", opt=True, null=True),
        "endpoint": _f("integer", _EP + " it had", opt=True),
        "incarnation": _f("integer", "its incarnation (0 for the first start)", opt=True),
        "delay_ms": _f("integer", "the restart delay RS chose", opt=True),
        "status": _f("integer", "its exit status", opt=True),
        "signal": _f("string", "the signal that killed it (SIGKILL, ...)", opt=True),
        "detail": _f("string", "the panic reason, error, hang or resource figure", opt=True),
        "traceback": _f("string", "the unhandled exception's traceback", opt=True),
    }),
    "script": Kind("a recovery script started, ended, or could not start", ("rs",), {
        "phase": _f("string", "start, done or error", "start", "done", "error"),
        "script": _f("string", "the script's name (recovery_scripts/)"),
        "args": _f("array", "its arguments: label, reason, incarnation", opt=True),
        "pid": _f("integer", "the script's process id (start)", opt=True),
        "status": _f("integer", "its exit status (done)", opt=True),
        "output": _f("string", "what it printed, up to a bound (done)", opt=True),
        "error": _f("string", "why it could not start (error)", opt=True),
    }),
    "restart": Kind("a failed or refreshed service is up again in a new process", ("rs",), {
        "old_pid": _f("integer", _PID + " that ended", null=True),
        "new_pid": _f("integer", _PID + " now serving"),
        "old_endpoint": _f("integer", _EP + " that ended", null=True),
        "new_endpoint": _f("integer", _EP + " now serving"),
        "incarnation": _f("integer", "the new incarnation"),
        "cause": _f("string", "restart after a failure, refresh on request", "restart",
                    "refresh"),
        "downtime_ms": _f("number", "from the failure to the new init done", null=True),
    }),
    "up": Kind("a service started fresh (at boot, or by service up) and finished init", ("rs",), {
        "pid": _f("integer", _PID),
        "endpoint": _f("integer", _EP),
        "incarnation": _f("integer", "its incarnation"),
    }),
    "down": Kind("a service was stopped on request", ("rs",), {
        "pid": _f("integer", _PID + " stopped", null=True),
        "by": _f("string", "who asked", "operator", "script"),
    }),
    "giveup": Kind("a service failed more often than its intensity limit: RS leaves it FAILED",
                   ("rs",), {
        "restarts": _f("integer", "the restarts the limit allows ..."),
        "window_s": _f("number", "... within this many seconds"),
    }),
    "fatal": Kind("the system cannot go on (RS or a core server died): it shuts down",
                  ("rs", "guardian"), {
        "detail": _f("string", "what happened"),
    }),
    "shutdown": Kind("the operator asked for a shutdown", ("rs",), {
        "by": _f("string", "who asked"),
        "detail": _f("string", "the reason given"),
    }),
    "driver-gone": Kind("an interface's driver died: its frames in flight wait for the next",
                        ("inet",), {
        "endpoint": _f("integer", "the driver's endpoint"),
        "reason": _f("string", "how INET learnt it"),
        "kept_frames": _f("integer", "frames the driver had taken, queued again"),
    }),
    "driver-up": Kind("DS says an interface's driver is up: INET wakes it", ("inet",), {
        "endpoint": _f("integer", "the driver's endpoint, from DS", opt=True),
        "notify": _f("string", "the NOTIFY's result (OK, EDEADSRCDST, ...)", opt=True),
        "error": _f("string", "why DS could not name the endpoint", opt=True),
    }),
    "driver-back": Kind("a new driver instance said HELLO: queued frames flow again", ("inet",), {
        "endpoint": _f("integer", "the new driver's endpoint"),
        "resend_frames": _f("integer", "frames waiting for it"),
    }),
    "link": Kind("an interface's link changed, as its driver reports it", ("inet",), {
        "state": _f("string", "the link now", "up", "down"),
        "endpoint": _f("integer", "the driver's endpoint"),
    }),
    "mac-changed": Kind("a new driver instance reports another MAC address", ("inet",), {
        "old": _f("string", "the MAC before"),
        "new": _f("string", "the MAC now"),
    }),
    "denied": Kind("a refused call (label: the caller); a writer records up to "
                   "params.DENIED_PER_WINDOW per caller and window, then sums the rest up "
                   "(denied-suppressed)", ("kernel", "hw"), {
        "caller": _f("integer", "the caller's endpoint"),
        "call": _f("string", "the trap or kernel call (SEND, DEVIO, DMA, ...)"),
        "target": _f("integer", "the endpoint, port or address it aimed at (-1: none)"),
        "error": _f("string", "the error it got (ECALLDENIED, EPERM, ...)"),
        "path": _f("string", "the board's path it came by (channel)", opt=True),
        "device": _f("string", "the device of a DMA refusal", opt=True),
        "length": _f("integer", "the bytes of a DMA refusal", opt=True, null=True),
        "op": _f("string", "read or write, for a DMA refusal", opt=True, null=True),
    }),
    "denied-suppressed": Kind("refused calls of one caller past the audit's rate, counted "
                              "and not recorded one by one (minikern/audit.py)",
                              ("kernel", "hw"), {
        "caller": _f("integer", "the caller's endpoint"),
        "suppressed": _f("integer", "refusals in the window beyond the ones recorded"),
        "window_s": _f("number", "the window's length, in seconds (params.DENIED_WINDOW)"),
    }),
}
