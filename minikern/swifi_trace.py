"""SWIFI code faults: the sys.settrace hook that faults a component's own code (runs in the
component; armed by minikern/swifi.py, which says what each kind does).

The hook counts the lines executed in the files of the target package (frames
already running there, such as the driver's loop, are traced too) and, at the
nth eligible one, acts through the frame: raises InjectedCodeFault, sets
``f_lineno`` (skip: the next line; return: a line that only returns, further
down; negate: at the line after a conditional jump, the other side of it) or
rewrites a local (the interpreter writes a tracer's change of ``f_locals``
back into the frame).  A jump Python refuses (into a block) is not a fire:
the hook waits for the next eligible line.  Once fired it removes itself.
"""
from __future__ import annotations

import dis
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minikern.swifi import _NOT, InjectedCodeFault, Spec, _Fault, corrupt

_RETURN_OPS = {"RETURN_VALUE", "RETURN_CONST", "LOAD_CONST", "LOAD_FAST", "NOP", "RESUME"}


def _line_map(code: types.CodeType) -> dict[int, list[dis.Instruction]]:
    lines: dict[int, list[dis.Instruction]] = {}
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if ins.starts_line is not None:
            line = ins.starts_line
        lines.setdefault(line, []).append(ins)
    return lines


def _line_of(code: types.CodeType, offset: int) -> int | None:
    line = None
    for start, ln in dis.findlinestarts(code):
        if start > offset:
            break
        line = ln
    return line


class CodeFault(_Fault):
    """A settrace hook on the lines of the files under ``prefix``."""

    def __init__(self, fault: str, spec: Spec, run_dir: Path | None, label: str,
                 prefix: str) -> None:
        super().__init__(fault, spec, run_dir, label)
        self.prefix = prefix
        self.negating: tuple[types.FrameType, int, int] | None = None

    def install(self) -> None:
        frame = sys._getframe(1)
        while frame is not None:  # frames already running the driver's code: its loops
            if frame.f_code.co_filename.startswith(self.prefix):
                frame.f_trace = self.local
            frame = frame.f_back  # type: ignore[assignment]
        sys.settrace(self.global_)

    def uninstall(self) -> None:
        sys.settrace(None)

    def global_(self, frame: types.FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if self.fired or not frame.f_code.co_filename.startswith(self.prefix):
            return None
        return self.local

    def local(self, frame: types.FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if self.fired:
            return None
        if event != "line":
            return self.local
        if self.negating is not None:
            self._negate_landing(frame)
            return None if self.fired else self.local
        if self.remaining > 1:
            if self._eligible(frame):
                self.remaining -= 1
            return self.local
        self._try_fire(frame)
        return None if self.fired else self.local

    def _where(self, frame: types.FrameType) -> str:
        return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"

    def _eligible(self, frame: types.FrameType) -> bool:
        if self.kind == "corrupt":
            return bool(self._locals(frame))
        if self.kind == "negate":
            return self._branch(frame) is not None
        return True

    def _locals(self, frame: types.FrameType) -> list[str]:
        return sorted(k for k, v in frame.f_locals.items()
                      if k != "self" and corrupt(v, self.how, self.pick) is not _NOT)

    def _branch(self, frame: types.FrameType) -> tuple[int, int] | None:
        """(fall-through line, jump-target line) of a line with one conditional jump."""
        code = frame.f_code
        jumps = [i for i in _line_map(code).get(frame.f_lineno, [])
                 if "JUMP" in i.opname and "IF" in i.opname]
        if len(jumps) != 1 or type(jumps[0].argval) is not int:
            return None
        j = jumps[0]
        after = [i.offset for i in dis.get_instructions(code) if i.offset > j.offset]
        fall = _line_of(code, after[0]) if after else None
        target = _line_of(code, j.argval)
        if fall is None or target is None or fall == target or frame.f_lineno in (fall, target):
            return None
        return fall, target

    def _try_fire(self, frame: types.FrameType) -> None:
        where = self._where(frame)
        if self.kind == "raise":
            self.record(where)
            self.uninstall()
            raise InjectedCodeFault(f"code fault injected at {where}")
        if self.kind == "corrupt":
            names = self._locals(frame)
            if names:
                name = names[self.pick % len(names)]
                local = frame.f_locals  # one read: each read syncs it again from the frame
                old = local[name]
                local[name] = bad = corrupt(old, self.how, self.pick)
                self.record(where, f"{name}: {old!r:.40} -> {bad!r:.40}")
        elif self.kind == "negate":
            branch = self._branch(frame)
            if branch is not None:
                self.negating = (frame, *branch)
        else:
            lines = sorted({ln for _, ln in dis.findlinestarts(frame.f_code)
                            if ln is not None and ln > frame.f_lineno})
            if self.kind == "return":
                table = _line_map(frame.f_code)
                lines = [ln for ln in lines
                         if {i.opname for i in table.get(ln, [])} <= _RETURN_OPS
                         and any(i.opname.startswith("RETURN") for i in table.get(ln, []))]
            for line in lines[:1]:
                try:
                    frame.f_lineno = line  # type: ignore[misc]
                except ValueError:
                    return  # not a jump Python allows from here: try the next line executed
                self.record(where, f"{self.kind}: jumped to line {line}")
        if self.fired:
            self.uninstall()

    def _negate_landing(self, frame: types.FrameType) -> None:
        assert self.negating is not None
        branch_frame, fall, target = self.negating
        if frame is not branch_frame:
            return
        self.negating = None
        other = {fall: target, target: fall}.get(frame.f_lineno)
        if other is None:
            return  # the condition went elsewhere (a short circuit): wait for another branch
        where = self._where(frame)
        try:
            frame.f_lineno = other  # type: ignore[misc]
        except ValueError:
            return
        self.record(where, f"negate: line {frame.f_lineno} taken instead of the branch's choice")
        self.uninstall()
