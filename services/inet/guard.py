"""INET's accounting of what it refuses, and its last resort against its own bugs (runs in INET).

Nothing that arrives over IPC is trusted: every request is validated and
refused with an error code.  ``refused`` counts each refusal by kind (the
request, the error) and logs the first of a kind, so a hostile process
repeating one cannot flood the console.  ``failed`` is for an exception no
check foresaw: the one request fails (its caller is answered EINVAL), never
INET and the connections it carries; the failure is counted by kind and the
first of a kind logged with its traceback.  ``counts`` holds every tally.
"""
from __future__ import annotations

import traceback
from collections import Counter

from minikern.const import NetReq, SockReq, err_name


def request_name(req: int) -> str:
    for enum in (SockReq, NetReq):
        try:
            return enum(req).name
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
            print(f"inet: {text}; repeats are only counted", flush=True)

    def refused(self, req: int, code: int, caller: int, why: str = "") -> None:
        key = f"refused {request_name(req)} {err_name(code)}"
        self.once(key, f"{key} from endpoint {caller}" + (f" ({why})" if why else ""))

    def failed(self, what: int | str, e: Exception) -> None:
        """``what``: the request that failed (answered EINVAL), or the notification."""
        name = request_name(what) if isinstance(what, int) else what
        key = f"failed {name} {type(e).__name__}"
        self.once(key, f"{key}\n" + "".join(traceback.format_exception(e)).rstrip())
