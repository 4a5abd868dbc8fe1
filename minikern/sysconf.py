"""Parser for system.conf: per-service privileges and policy, in MINIX's syntax.

    boot hw rs ds;                      # minikern: the kernel's boot image, in order
    service rtl8139 {
        program drivers.rtl8139;        # minikern: the Python module whose main() runs
        system DEVIO IRQCTL;            # kernel calls
        ipc SYSTEM rs ds inet;          # whom it may send to (ALL, ALL_SYS, USER, NONE, labels)
        io 0xc000:256;                  # port windows base[:length]
        irq 11;
        period 500ms;                   # RS heartbeat period (issue: RS)
    };

Every service entry is kept with all its keys, so RS reads its policy keys
(period, script, restarts, ...) from the same place.  ``priv()`` builds the
privilege structure the kernel checks (wire form, docs/PROTOCOL.md).
Errors name the file and line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minikern.const import IPC_ALL_SYS, Call, KCall

_TOKEN = re.compile(r"\s*(?:(#[^\n]*)|([{};])|([^\s{};#]+))")

ALL_TRAPS = [int(c) for c in Call if c is not Call.HELLO]
USER_TRAPS = [int(Call.SENDREC)]  # MINIX: user processes may only trap with SENDREC
KNOWN_KEYS = {"program", "args", "uid", "ipc", "system", "io", "irq", "mem", "user",
              "period", "script", "restarts", "backoff", "stable", "memory_limit",
              "cpu_limit", "depends", "control", "pci", "slot", "publish", "priority"}


class ConfError(ValueError):
    pass


@dataclass
class Service:
    label: str
    keys: dict[str, list[str]] = field(default_factory=dict)
    line: int = 0

    def get(self, key: str, default: str | None = None) -> str | None:
        v = self.keys.get(key)
        return v[0] if v else default

    def uid(self) -> int | None:
        """The ``uid`` key: the uid the component runs as when booted as root (one of
        params.DOMAIN_UID_FIRST..LAST, checked by the kernel), or None: one is allocated."""
        text = self.get("uid")
        return None if text is None else _int(text, self.label)

    def priv(self) -> dict[str, Any]:
        """The privilege structure for the kernel."""
        user = self.get("user") == "yes"
        kcalls = []
        for name in self.keys.get("system", []):
            if name not in KCall.__members__:
                raise ConfError(f"service {self.label}: unknown kernel call {name!r}")
            kcalls.append(int(KCall[name]))
        return {"sys_proc": not user, "traps": USER_TRAPS if user else ALL_TRAPS,
                "ipc": self.keys.get("ipc", [IPC_ALL_SYS]), "kcalls": kcalls,
                "io": [list(_range(x, self.label)) for x in self.keys.get("io", [])],
                "irq": [_int(x, self.label) for x in self.keys.get("irq", [])],
                "mem": [list(_range(x, self.label)) for x in self.keys.get("mem", [])]}


def _int(text: str, label: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ConfError(f"service {label}: not a number: {text!r}") from None


def _range(text: str, label: str) -> tuple[int, int]:
    base, _, length = text.partition(":")
    return _int(base, label), _int(length, label) if length else 1


def parse_duration(text: str) -> float:
    """'500ms', '2s', '5HZ' (MINIX: ticks at 60 Hz... here 'nHZ' means 1/n seconds)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|HZ)?", text)
    if not m:
        raise ConfError(f"not a duration: {text!r}")
    value, unit = float(m.group(1)), m.group(2) or "ms"
    return value / 1000 if unit == "ms" else value if unit == "s" else 1 / value


@dataclass
class SystemConf:
    services: dict[str, Service]
    boot: list[str]


def parse(text: str, name: str = "system.conf") -> SystemConf:
    tokens: list[tuple[str, int]] = []
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise ConfError(f"{name}:{line}: cannot read {text[pos:pos + 20]!r}")
            break
        line += text.count("\n", pos, m.end())
        pos = m.end()
        tok = m.group(2) or m.group(3)
        if tok:
            tokens.append((tok, line))
    services: dict[str, Service] = {}
    boot: list[str] = []
    i = 0

    def take() -> tuple[str, int]:
        nonlocal i
        if i >= len(tokens):
            raise ConfError(f"{name}: unexpected end of file")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        word, ln = take()
        if word == "boot":
            while (tok := take())[0] != ";":
                boot.append(tok[0])
        elif word == "service":
            label, _ = take()
            if take()[0] != "{":
                raise ConfError(f"{name}:{ln}: expected '{{' after service {label}")
            svc = Service(label, line=ln)
            while (tok := take())[0] != "}":
                key, kl = tok
                if key not in KNOWN_KEYS:
                    raise ConfError(f"{name}:{kl}: service {label}: unknown key {key!r}")
                values = []
                while (v := take())[0] != ";":
                    values.append(v[0])
                svc.keys[key] = values
            if take()[0] != ";":
                raise ConfError(f"{name}:{ln}: expected ';' after service {label}")
            if label in services:
                raise ConfError(f"{name}:{ln}: service {label} defined twice")
            svc.priv()  # validate now, so errors name the file
            services[label] = svc
        else:
            raise ConfError(f"{name}:{ln}: expected 'service' or 'boot', got {word!r}")
    for label in boot:
        if label not in services:
            raise ConfError(f"{name}: boot names unknown service {label!r}")
    return SystemConf(services, boot)


def load(path: str | Path) -> SystemConf:
    p = Path(path)
    return parse(p.read_text(), str(p))
