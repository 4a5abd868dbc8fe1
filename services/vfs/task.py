"""Request chains as generators, driven by the file servers' answers (runs in VFS).

A user's request is usually several file-server requests (a path lookup,
then the operation).  VFS must never block while one is in flight, so each
``do_<request>`` is a generator: it yields a ``Call`` (a file server, a
request, its fields), and is resumed with the answer's fields, or has
``Fail`` thrown into it if the file server refused (the code is the FS's
Err).  What it returns is the reply to the user.  Sub-chains compose with
``yield from`` (``lookup.resolve`` returns the node it found)::

    def do_stat(self, proc, f):
        node = yield from self.resolve(proc, path, follow=True)
        answer = yield Call(node.fs, FsReq.STAT, {"ino": node.ino})
        return Message(Err.OK, {"stat": answer["stat"]})

``Task`` drives one such generator.  A chain that never yields (CLOSE,
LSEEK on a set offset) finishes inside ``start``, which returns the reply
at once; otherwise ``start`` returns None (EDONTREPLY) and ``done`` gets
the reply later.  A ``Fail`` that escapes the chain becomes the reply's
status; any other exception fails this request alone with EINVAL and is
reported to ``bug`` (logged once with its traceback), never VFS.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from minikern.const import Err, FsReq, err_name
from minikern.ipc import KernelGone
from minikern.proto import Message

if TYPE_CHECKING:
    from services.vfs.fsconn import FileServer


class Fail(Exception):
    """This request fails with ``code`` (an Err); ``why`` goes to the log if it is logged."""

    def __init__(self, code: int, why: str = "") -> None:
        super().__init__(f"{err_name(code)}" + (f": {why}" if why else ""))
        self.code = code
        self.why = why


@dataclass
class Call:
    """One request to a file server, yielded by a chain."""

    fs: FileServer
    req: FsReq
    fields: dict[str, Any] = field(default_factory=dict)


Fields = dict[str, Any]
Op = Generator[Call, Fields, Message]
Reply = Message | Op  # a handler answers at once, or with a chain


class Task:
    """Drives one chain: sends its calls, feeds it the answers, delivers its reply."""

    def __init__(self, op: Op, done: Callable[[Message], None],
                 bug: Callable[[BaseException], None]) -> None:
        self.op, self.done, self.bug = op, done, bug
        self.sync = True
        self.result: Message | None = None
        self.finished = False

    def start(self) -> Message | None:
        """Run until the first call goes out; the reply if the chain already finished."""
        self._step(None, None)
        self.sync = False
        return self.result

    def _step(self, value: Fields | None, error: Fail | None) -> None:
        try:
            # None starts the generator; after that it is an answer's fields
            call = self.op.throw(error) if error is not None else self.op.send(cast(Fields, value))
        except StopIteration as e:
            self._finish(e.value if isinstance(e.value, Message) else Message(Err.EINVAL))
        except Fail as e:
            self._finish(Message(e.code))
        except KernelGone:
            raise
        except Exception as e:  # noqa: BLE001 (the last resort: this request fails, not VFS)
            self.bug(e)
            self._finish(Message(Err.EINVAL))
        else:
            call.fs.submit(self, call.req, call.fields, self._answer)

    def _answer(self, m: Message) -> None:
        if m.type == Err.OK:
            self._step(m.fields, None)
        else:
            self._step(None, Fail(m.type, str(m.get("error", ""))))

    def _finish(self, reply: Message) -> None:
        self.finished = True
        if self.sync:
            self.result = reply
        else:
            self.done(reply)
