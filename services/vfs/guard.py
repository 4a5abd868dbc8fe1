"""VFS's accounting of what it refuses, and its last resort against its own bugs (runs in VFS).

``refused`` counts each refusal by (request, error); a malformed request
(EINVAL) or a forbidden one (EPERM) is logged the first time of its kind, so
a hostile process repeating one cannot flood the console.  ``failed`` is for
an exception no check foresaw: the one request fails with EINVAL, never VFS;
the first of a kind is logged with its traceback.  ``counts`` holds every
tally (ordinary refusals such as ENOENT are only counted).
"""
from __future__ import annotations

import traceback
from collections import Counter

from minikern.const import Err, FsReq, VfsReq, err_name


def request_name(req: int) -> str:
    for enum in (VfsReq, FsReq):
        try:
            return f"{enum.__name__}.{enum(req).name}"
        except ValueError:
            pass
    return hex(req)


class Guard:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def once(self, key: str, text: str) -> None:
        """Count ``key``; log ``text`` the first time only."""
        self.counts[key] += 1
        if self.counts[key] == 1:
            print(f"vfs: {text}; repeats are only counted", flush=True)

    def refused(self, req: int, code: int, caller: int, why: str = "") -> None:
        key = f"refused {request_name(req)} {err_name(code)}"
        if code in (Err.EINVAL, Err.EPERM, Err.EBADREQUEST):
            self.once(key, f"{key} from endpoint {caller}" + (f" ({why})" if why else ""))
        else:
            self.counts[key] += 1

    def failed(self, what: int | str, e: BaseException) -> None:
        """``what``: the request that failed (answered EINVAL), or the task it was in."""
        name = request_name(what) if isinstance(what, int) else what
        key = f"failed {name} {type(e).__name__}"
        self.once(key, f"{key}\n" + "".join(traceback.format_exception(e)).rstrip())
