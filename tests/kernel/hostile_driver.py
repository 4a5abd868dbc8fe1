"""A hostile driver: started by RS with a driver's privileges (the ``hostile`` entry of
tests/kernel/test_hostile_driver.py), it tries every forbidden thing it can at the IPC
level when the test asks, and answers what each attempt got (docs/PROTOCOL.md sections
6-8 and 10).

ATTACK {victim, stale, grant_of}: ``victim`` is a driver it may talk to (hello),
``stale`` an endpoint of that driver's dead incarnation.  The answer maps each attempt
to the status it got (0 when it was carried out, which the test treats as a failure).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minikern import devio, sef
from minikern.const import ANY, HW, KCall, CharReq, Err
from minikern.ipc import IpcError
from minikern.proto import Message

ATTACK = 1
FOREIGN_PORT = 0x1F7  # the IDE status register: at_wini's, not mine
FOREIGN_IRQ = 14  # the IDE's line
RS, DS = 0, 1  # fixed endpoints
FLOOD = 2000  # refused calls in a row


def status_of(attempt: Callable[[], Any]) -> int:
    try:
        result = attempt()
    except IpcError as e:
        return e.code
    except devio.ChannelError as e:
        return e.code
    if isinstance(result, tuple):  # kcall_status
        return int(result[0])
    if isinstance(result, int):  # sendnb, notify
        return result
    return int(getattr(result, "type", Err.OK))


def attack(ctx: sef.Context, m: Message) -> Message:
    conn = ctx.conn
    victim, stale = int(m.get("victim", -1)), int(m.get("stale", -1))
    forged = victim + (7 << 15)  # the victim's slot, a generation it never had
    read = Message(CharReq.READ, {})
    out: dict[str, int] = {
        # IPC outside the send mask (ipc SYSTEM USER rs hello: the test asks as a user)
        "sendrec_ds": status_of(lambda: conn.sendrec(DS, read)),
        "notify_ds": status_of(lambda: conn.notify(DS)),
        "sendnb_board": status_of(lambda: conn.sendnb(HW, read)),
        "send_any": status_of(lambda: conn.sendnb(ANY, read)),
        # kernel calls it lacks (system DEVIO VDEVIO IRQCTL IOMAP)
        "kill_rs": status_of(lambda: conn.kcall_status(KCall.KILL, endpoint=RS, signal="KILL")),
        "privctl": status_of(lambda: conn.kcall_status(
            KCall.PRIVCTL, label="evil", module="os", args=[], priv={})),
        "shutdown": status_of(lambda: conn.kcall_status(KCall.SHUTDOWN, reason="evil")),
        "getinfo": status_of(lambda: conn.kcall_status(KCall.GETINFO)),
        "safecopy": status_of(lambda: conn.kcall_status(
            KCall.SAFECOPYFROM, granter=victim, grant=1, goffset=0, offset=0, length=16)),
        # ports and IRQs it does not hold
        "devio_foreign": status_of(lambda: conn.kcall_status(KCall.DEVIO, port=FOREIGN_PORT, size=1)),
        "vdevio_mixed": status_of(lambda: conn.kcall_status(
            KCall.VDEVIO, ops=[[0x378, 1, None], [FOREIGN_PORT, 1, None]])),
        "irq_foreign": status_of(lambda: conn.kcall_status(KCall.IRQCTL, op=1, irq=FOREIGN_IRQ)),
        # forged and stale endpoints
        "sendrec_forged": status_of(lambda: conn.sendrec(forged, read)),
        "sendrec_stale": status_of(lambda: conn.sendrec(stale, read)),
    }
    # the fast path: ports outside its windows, DMA outside its memory
    try:
        ch = devio.open_channel(conn)
    except (IpcError, devio.ChannelError, OSError) as e:
        out["iomap"] = getattr(e, "code", Err.EIO)
    else:
        try:
            out["channel_foreign_port"] = status_of(lambda: ch.inb(FOREIGN_PORT))
            out["channel_dma"] = status_of(lambda: ch.dma_grant("ata", 0x100000, 4096, True))
        finally:
            ch.close()
    # floods: refused calls, and notifications and messages at a driver it may talk to
    out["flood_denied"] = min(status_of(lambda: conn.kcall_status(KCall.DEVIO, port=FOREIGN_PORT,
                                                                  size=1)) for _ in range(FLOOD))
    out["flood_notify"] = min(status_of(lambda: conn.notify(victim)) for _ in range(FLOOD))
    out["flood_sendnb"] = min(status_of(lambda: conn.sendnb(victim, read)) for _ in range(FLOOD))
    return Message(Err.OK, out)


def main() -> None:
    ctx = sef.startup()
    sef.serve(ctx, {ATTACK: lambda m: attack(ctx, m)})
