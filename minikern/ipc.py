"""The IPC library every process uses to talk to the kernel: one call per trap.

A ``Connection`` is one endpoint: a ZeroMQ DEALER socket to the kernel's
ROUTER, admitted once with a credential.  Each trap sends one request and
waits for the one reply that completes it (docs/PROTOCOL.md).  A RECEIVE can
also be started without waiting (``start_receive``): the caller then waits on
other things too (minikern/loop.py), and either takes the reply when the
socket is readable (``finish``) or ends the RECEIVE with ``cancel``, which
always yields exactly one reply: EINTR, or the message that won the race.  Components
started by the kernel connect with ``Connection.from_boot()``; operator tools
and tests with ``Connection.operator(run_dir, label, priv)``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import zmq

from minikern import params
from minikern.proto import codec
from minikern.proto import Message
from minikern.const import ANY, SYSTEM, UNDECODABLE, Call, Err, KCall, Kind, err_name

_encode_request = codec.encode_request
_encode_body = codec.encode_body


class IpcError(Exception):
    """A trap or kernel call failed; ``code`` is the Err value."""

    def __init__(self, code: int, what: str = "") -> None:
        super().__init__(f"{what}: {err_name(code)}" if what else err_name(code))
        self.code = code


class Undecodable(IpcError):
    """The answer to my SENDREC does not decode."""

    def __init__(self, source: int) -> None:
        super().__init__(Err.EBADREQUEST, f"undecodable message body from endpoint {source}")
        self.source = source


class KernelGone(IpcError):
    """The kernel died or stopped answering: the system is gone."""

    def __init__(self) -> None:
        super().__init__(Err.EDEADSRCDST, "kernel gone")

    def __reduce__(self) -> tuple[type[KernelGone], tuple[()]]:
        return KernelGone, ()  # pickled as it is made (a campaign's worker hands it back)


KERNEL_CHECK_S = 1.0  # a caller blocked this long checks that the kernel still lives

# Set by minikern.template before a component's main() runs.
boot_record: dict[str, Any] = {}
boot_memfd: int = -1


class Connection:
    def __init__(self, address: str, credential: bytes, label: str | None = None,
                 priv: dict[str, Any] | None = None, kernel_pid: int | None = None) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, int(KERNEL_CHECK_S * 1000))
        self.sock.connect(address)
        self.kernel_pid = kernel_pid
        self.sock.send(codec.encode_hello(credential, os.getpid(), label, priv))
        try:
            status, endpoint, _, _, _ = self._wait_reply(timeout=params.CALL_TIMEOUT)[0]
        except IpcError:
            self.sock.close(linger=0)  # a caller that tries again must not pile up sockets
            raise
        if status != Err.OK:
            self.sock.close(linger=0)
            raise IpcError(status, "admission")
        self.endpoint = endpoint
        self.label = label
        self.undecodable = 0  # received messages whose bodies did not decode

    @classmethod
    def from_boot(cls) -> Connection:
        r = boot_record
        return cls(r["address"], r["credential"], r["label"])

    @classmethod
    def operator(cls, run_dir: str | Path, label: str, priv: dict[str, Any]) -> Connection:
        """Connect as an operator tool (or test), proving it with the run directory's key."""
        run = Path(run_dir)
        try:
            key = (run / params.OPERATOR_KEY).read_bytes()
            kernel_pid = int((run / params.KERNEL_PIDFILE).read_text())
        except (OSError, ValueError):
            raise KernelGone() from None
        return cls("ipc://" + str(run / params.KERNEL_SOCKET), key, label, priv, kernel_pid)

    def close(self) -> None:
        if not self.sock.closed:
            try:
                self.sock.send(codec.encode_bye(), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            self.sock.close(linger=1000)  # let the goodbye reach the kernel

    # -- the traps -------------------------------------------------------------------

    def _wait_reply(self, timeout: float | None = None) -> tuple[tuple[int, int, int, int, int],
                                                                 bytes | None]:
        """Wait for the reply frame; while waiting, check now and then that the kernel lives."""
        waited = 0.0
        while True:  # a blocking receive that wakes each second (RCVTIMEO): no poll per call
            try:
                frames = self.sock.recv_multipart()
                break
            except zmq.Again:
                waited += KERNEL_CHECK_S
                if not self.kernel_alive():
                    raise KernelGone() from None
                if timeout is not None and waited >= timeout:  # alive, but it did not admit us
                    raise IpcError(Err.ETIMEDOUT, "no answer from the kernel (a connection "
                                   "over its bounds is refused unanswered)") from None
        hdr = codec.decode_reply(frames[0])
        if hdr is None or len(frames) > 2:
            raise IpcError(Err.EIO, "malformed reply from the kernel")
        return hdr, frames[1] if len(frames) == 2 else None

    def kernel_alive(self) -> bool:
        if self.kernel_pid is None:
            return os.getppid() != 1  # a component is the kernel's child
        try:  # a zombie kernel (not yet reaped by its parent) is a dead kernel too
            with open(f"/proc/{self.kernel_pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def _trap(self, frames: list[bytes], what: str) -> Message:
        self._start(frames, what)
        return self._message(what)

    def _start(self, frames: list[bytes], what: str) -> None:
        if len(frames[-1]) > params.MAX_MESSAGE:  # the kernel would refuse it, or drop us
            raise IpcError(Err.E2BIG, f"{what}: a message of {len(frames[-1])} bytes "
                           f"(at most {params.MAX_MESSAGE}; bulk data goes through grants)")
        self.sock.send_multipart(frames)

    def _message(self, what: str) -> Message:
        (status, source, kind, aux, send_status), body = self._wait_reply()
        if status != Err.OK:
            raise IpcError(status, what)
        m = Message(source=source, kind=kind, aux=aux, send_status=send_status)
        if body is not None:
            decoded = codec.decode_body(body, params.MAX_KERNEL_ANSWER if kind == Kind.KERNEL
                                        else params.MAX_MESSAGE)
            if decoded is None and what == "sendrec":
                raise Undecodable(source)
            m.type, m.fields = decoded or self._undecodable(source)
        return m

    def _undecodable(self, source: int) -> tuple[int, dict[str, Any]]:
        """A received message whose body does not decode (a broken or hostile sender): it
        becomes a request of type UNDECODABLE with no fields, which the receiver refuses as
        it refuses any unknown request; counted, the first one logged.  Never an exception
        in the receiver's loop."""
        self.undecodable += 1
        if self.undecodable == 1:
            print(f"{self.label or 'ipc'}: an undecodable message body from endpoint {source}"
                  f" (refused as an unknown request; further ones are only counted)",
                  file=sys.stderr, flush=True)
        return UNDECODABLE, {}

    def _status(self, frames: list[bytes]) -> int:
        if len(frames[-1]) > params.MAX_MESSAGE:
            return Err.E2BIG
        self.sock.send_multipart(frames)
        return self._wait_reply()[0][0]

    def send(self, dst: int, m: Message) -> int:
        """Rendezvous: returns once ``dst`` has taken the message (or with an error code)."""
        return self._status([_encode_request(Call.SEND, dst), _encode_body(m.type, m.fields)])

    def sendnb(self, dst: int, m: Message) -> int:
        return self._status([_encode_request(Call.SENDNB, dst), _encode_body(m.type, m.fields)])

    def notify(self, dst: int) -> int:
        return self._status([_encode_request(Call.NOTIFY, dst)])

    def receive(self, src: int = ANY) -> Message:
        return self._trap([_encode_request(Call.RECEIVE, src)], "receive")

    def sendrec(self, dst: int, m: Message) -> Message:
        return self._trap([_encode_request(Call.SENDREC, dst), _encode_body(m.type, m.fields)],
                          "sendrec")

    def reply_recv(self, dst: int, m: Message, src: int = ANY) -> Message:
        """Server fast path: SENDNB the reply to ``dst``, then RECEIVE, in one trap.

        The reply's own status is in the returned message's ``send_status``.
        """
        return self._trap([_encode_request(Call.REPLYRECV, dst, src),
                           _encode_body(m.type, m.fields)], "reply_recv")

    def start_receive(self, src: int = ANY, reply_to: int | None = None,
                      reply: Message | None = None) -> None:
        """Begin a RECEIVE (a REPLYRECV if ``reply`` is given) and return at once.

        Until ``finish`` is called no other trap may be made: the kernel is
        still working on this one.  ``cancel`` ends it early.
        """
        if reply is None or reply_to is None:
            return self._start([_encode_request(Call.RECEIVE, src)], "receive")
        self._start([_encode_request(Call.REPLYRECV, reply_to, src),
                     _encode_body(reply.type, reply.fields)], "reply_recv")

    def cancel(self) -> None:
        """Ask the kernel to end the pending RECEIVE; ``finish`` then takes its one reply."""
        self.sock.send(codec.encode_cancel())

    def finish(self) -> Message | None:
        """The reply to a started RECEIVE: the message, or None if CANCEL ended it first."""
        try:
            return self._message("receive")
        except IpcError as e:
            if e.code == Err.EINTR:
                return None
            raise

    def kcall(self, call: KCall, **args: Any) -> dict[str, Any]:
        """A kernel call; raises IpcError with the call's status if it fails."""
        m = self.sendrec(SYSTEM, Message(call, args))
        if m.type != Err.OK:
            raise IpcError(m.type, call.name)
        return m.fields

    def kcall_status(self, call: KCall, **args: Any) -> tuple[int, dict[str, Any]]:
        m = self.sendrec(SYSTEM, Message(call, args))
        return m.type, m.fields

