"""A server's accounting of what it refuses, and its last resort against its own bugs.

Nothing that arrives over IPC is trusted: every request is validated and
refused with an error code.  ``refused`` counts each refusal by kind (the
request, the error) and logs the first of a kind (of the kinds in ``logged``;
the others, ordinary answers such as ENOENT, are only counted), so a hostile
process repeating one cannot flood the console.  ``failed`` is for an
exception no check foresaw: the one request fails (its caller is answered
EINVAL), never the server; the failure is counted by kind and the first of a
kind logged with its traceback.  ``counts`` holds every tally.  INET and VFS
each keep one.
"""
from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Collection
from enum import IntEnum

from minikern.const import err_name


class Guard:
    def __init__(self, server: str, requests: tuple[type[IntEnum], ...],
                 logged: Collection[int] | None = None, qualified: bool = False) -> None:
        """``requests``: the enums a request type is named from (``qualified``: with the
        enum's name); ``logged``: the error codes whose first refusal is logged (None: all)."""
        self.server, self.requests, self.logged, self.qualified = \
            server, requests, logged, qualified
        self.counts: Counter[str] = Counter()

    def request_name(self, req: int) -> str:
        for enum in self.requests:
            try:
                name = enum(req).name
            except ValueError:
                continue
            return f"{enum.__name__}.{name}" if self.qualified else name
        return hex(req)

    def once(self, key: str, text: str) -> None:
        """Count ``key``; log ``text`` the first time only."""
        self.counts[key] += 1
        if self.counts[key] == 1:
            print(f"{self.server}: {text}; repeats are only counted", flush=True)

    def refused(self, req: int, code: int, caller: int, why: str = "") -> None:
        key = f"refused {self.request_name(req)} {err_name(code)}"
        if self.logged is None or code in self.logged:
            self.once(key, f"{key} from endpoint {caller}" + (f" ({why})" if why else ""))
        else:
            self.counts[key] += 1

    def failed(self, what: int | str, e: BaseException) -> None:
        """``what``: the request that failed (answered EINVAL), or the notification or task
        it was in."""
        name = self.request_name(what) if isinstance(what, int) else what
        key = f"failed {name} {type(e).__name__}"
        self.once(key, f"{key}\n" + "".join(traceback.format_exception(e)).rstrip())
