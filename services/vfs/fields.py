"""Checks of a request's fields (runs in VFS): every field is typed and bounded, or EINVAL."""
from __future__ import annotations

from typing import Any

from minikern.const import PATH_MAX, Err
from services.vfs.task import Fail

MAX_OFFSET = 1 << 62  # no file offset or size beyond this (the file server's EFBIG comes first)


def want_int(f: dict[str, Any], key: str, lo: int = 0, hi: int = MAX_OFFSET,
             default: int | None = None) -> int:
    v = f.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise Fail(Err.EINVAL, f"{key}: an int in {lo}..{hi}")
    return v


def maybe_int(f: dict[str, Any], key: str, lo: int = 0, hi: int = MAX_OFFSET) -> int | None:
    """An optional int field (absent or None: None)."""
    return None if f.get(key) is None else want_int(f, key, lo, hi)


def want_num(f: dict[str, Any], key: str) -> float:
    v: Any = f.get(key)
    if type(v) not in (int, float) or v != v or abs(v) > 1 << 40:
        raise Fail(Err.EINVAL, f"{key}: a number")
    return float(v)


def want_bool(f: dict[str, Any], key: str, default: bool = False) -> bool:
    v = f.get(key, default)
    if type(v) is not bool:
        raise Fail(Err.EINVAL, f"{key}: a bool")
    return v


def want_str(f: dict[str, Any], key: str, limit: int = PATH_MAX) -> str:
    v = f.get(key)
    if type(v) is not str:
        raise Fail(Err.EINVAL, f"{key}: a str")
    if len(v) > limit:
        raise Fail(Err.ENAMETOOLONG)
    return v


def want_bytes(f: dict[str, Any], key: str) -> bytes:
    v = f.get(key)
    if type(v) is not bytes:
        raise Fail(Err.EINVAL, f"{key}: bytes")
    return v
