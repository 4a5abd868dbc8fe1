"""The tty driver on the char framework and the real UART model (tests/tty/rig.py): the
registers it programs, input by interrupt through the discipline, output by THRE interrupts
with flow control, the refusals, and what a restarted instance takes back."""
from __future__ import annotations

from drivers.tty import regs as R
from drivers.tty.line import ctrl
from minikern.const import CDEV_MAX_IO, CharFlag, CharReq, Err, SelOp, make_endpoint
from tests.tty.rig import Rig

READ, WRITE, IOCTL = CharReq.READ, CharReq.WRITE, CharReq.IOCTL


def test_reset_programs_the_uart_as_documented() -> None:
    u = Rig().uart
    assert u.divisor == R.CLOCK_BASE // 115200 and u.lcr == R.LCR_8BITS
    assert u.fifo_enabled and u.fcr & 0xC0 == R.FCR_TRIGGER_8
    assert u.ier == R.IER_ERBFI | R.IER_ELSI | R.IER_EDSSI  # no THRE while nothing to send
    assert u.mcr & (R.MCR_DTR | R.MCR_RTS | R.MCR_OUT2) == R.MCR_DTR | R.MCR_RTS | R.MCR_OUT2


def test_a_read_waits_for_a_line_and_input_is_echoed() -> None:
    rig = Rig()
    assert rig.request(READ, count=100) is None  # suspended
    rig.type(b"lx\x7fs")
    assert rig.answered() == []
    rig.type(b"\r")
    [reply] = rig.answered()
    assert reply.type == Err.OK and reply["data"] == b"ls\n"
    assert bytes(rig.host.screen) == b"lx\b \bs\r\n"


def test_input_longer_than_the_fifo_arrives_whole() -> None:
    rig = Rig()
    line = bytes(range(0x41, 0x5B)) * 3 + b"\n"  # 79 bytes: several FIFO drains
    rig.type(line)
    reply = rig.request(READ, count=200)
    assert reply is not None and reply["data"] == line
    assert bytes(rig.host.screen) == line[:-1] + b"\r\n"


def test_raw_mode_through_tcsets() -> None:
    rig = Rig()
    reply = rig.request(IOCTL, request="TCSETS", arg={"icanon": False, "echo": False, "vmin": 2})
    assert reply is not None and reply.type == Err.OK and reply["termios"]["vmin"] == 2
    assert rig.request(READ, count=10) is None
    rig.type(b"\x7f")
    assert rig.answered() == []
    rig.type(b"q")
    [got] = rig.answered()
    assert got["data"] == b"\x7fq" and rig.host.screen == b""
    got2 = rig.request(IOCTL, request="TCGETS")
    assert got2 is not None and got2["termios"]["icanon"] is False


def test_interrupt_answers_the_waiting_read_with_eintr_or_the_next_one() -> None:
    rig = Rig()
    rig.request(READ, count=10)
    rig.type(b"half" + bytes([ctrl("C")]))
    [got] = rig.answered()
    assert got.type == Err.EINTR
    rig.type(bytes([ctrl("C")]))  # nobody reading: the next read is told
    got2 = rig.request(READ, count=10)
    assert got2 is not None and got2.type == Err.EINTR
    assert rig.request(READ, count=10) is None  # told once


def test_a_write_is_answered_once_all_of_it_went_out() -> None:
    rig = Rig()
    text = b"x" * 100 + b"\n"
    assert rig.request(WRITE, data=text) is None
    assert [r["count"] for r in rig.answered()] == [len(text)]
    assert bytes(rig.host.screen) == b"x" * 100 + b"\r\n"
    assert not rig.uart.ier & R.IER_ETBEI  # idle: the THRE interrupt off again


def test_ctrl_s_holds_output_and_its_writer_until_ctrl_q() -> None:
    rig = Rig()
    rig.type(bytes([ctrl("S")]))
    rig.request(WRITE, data=b"held\n")
    assert rig.answered() == [] and rig.host.screen == b""
    got = rig.request(WRITE, data=b"more", flags=int(CharFlag.NONBLOCK))
    assert got is not None and got["count"] == 4  # queued, answered at once
    rig.type(bytes([ctrl("Q")]))
    [got] = rig.answered()
    assert got["count"] == 5 and rig.host.screen == b"held\r\nmore"


def test_select_says_readable_once_a_line_is_there() -> None:
    rig = Rig()
    got = rig.request(CharReq.SELECT, ops=int(SelOp.RD | SelOp.WR | SelOp.NOTIFY))
    assert got is not None and got["ready"] == SelOp.WR
    got = rig.request(CharReq.SELECT, ops=int(SelOp.RD | SelOp.NOTIFY))
    assert got is not None and got["ready"] == 0
    rig.type(b"x\r")
    assert [m.type for _, m in rig.ctx.loop.sent] == [CharReq.SEL2_REPLY]


def test_bad_requests_are_refused_clearly() -> None:
    rig = Rig()
    for rtype, fields in ((CharReq.OPEN, {"minor": 7}), (READ, {"minor": 1, "count": 1}),
                          (WRITE, {"minor": 255, "data": b"x"})):
        got = rig.request(rtype, **fields)
        assert got is not None and got.type == Err.ENXIO, rtype
    got = rig.request(IOCTL, request="DIOCGETP")
    assert got is not None and got.type == Err.ENOTTY
    got = rig.request(WRITE, data=b"x" * (CDEV_MAX_IO + 1))
    assert got is not None and got.type == Err.E2BIG
    for bad in ({"count": 0}, {"count": CDEV_MAX_IO + 1}, {"count": "9"}):
        got = rig.request(READ, **bad)
        assert got is not None and got.type == Err.EINVAL
    for arg in ({"vmin": "lots"}, {"nosuch": 1}, "raw", None):
        got = rig.request(IOCTL, request="TCSETS", arg=arg)
        assert got is not None and got.type == Err.EINVAL
    got = rig.request(READ, source=555, count=1)  # never opened
    assert got is not None and got.type == Err.EBADF
    assert rig.tty.ld.termios.icanon  # nothing changed by the bad ones


def test_cancel_ends_the_callers_read_with_eintr() -> None:
    rig = Rig()
    rig.request(READ, count=10, id=7)
    got = rig.request(CharReq.CANCEL, id=7)
    assert got is not None and got["cancelled"] is True
    [answer] = rig.answered()
    assert answer.type == Err.EINTR
    rig.type(b"later\r")
    assert rig.answered() == []  # nobody is given the line


def test_a_restarted_driver_delivers_what_was_typed_while_it_was_down() -> None:
    rig = Rig()
    rig.type(b"ech")  # taken in by the first instance, not yet a line
    rig.uart.receive(b"o hello world, typed while no driver ran\r")  # waits in the UART
    rig.restart(reopen=False)
    got = rig.request(READ, count=200)
    assert got is not None and got.type == Err.ERESTART  # MINIX: reopen first
    rig.request(CharReq.OPEN, access=3)
    got = rig.request(READ, count=200)
    assert got is not None and got["data"] == b"echo hello world, typed while no driver ran\n"
    assert rig.request(READ, count=200) is None  # once: nothing doubled
    assert rig.host.screen.endswith(b"o hello world, typed while no driver ran\r\n")


def test_a_line_handed_over_is_not_handed_over_again_by_the_next_instance() -> None:
    rig = Rig()
    rig.type(b"once\r")
    got = rig.request(READ, count=100)
    assert got is not None and got["data"] == b"once\n"
    rig.restart()
    assert rig.request(READ, count=100) is None


def test_the_settings_survive_a_restart() -> None:
    rig = Rig()
    rig.request(IOCTL, request="TCSETS", arg={"echo": False})
    rig.restart()
    got = rig.request(IOCTL, request="TCGETS")
    assert got is not None and got["termios"]["echo"] is False


def test_a_dead_readers_wait_does_not_take_the_next_line() -> None:
    rig = Rig()
    rig.request(READ, count=100)  # the shell, endpoint 100 (slot 100), then it dies
    successor = make_endpoint(1, 100)  # its restarted instance: the same slot
    assert rig.request(CharReq.OPEN, source=successor, access=3) is not None
    assert [m.type for m in rig.answered()] == [Err.EDEADSRCDST]  # the old wait is gone
    assert rig.request(READ, source=successor, count=100) is None
    rig.type(b"for the living\r")
    [got] = rig.answered()
    assert got["data"] == b"for the living\n"


def test_a_backup_ds_refuses_is_deleted_so_a_restart_never_hands_a_line_over_twice() -> None:
    rig = Rig()
    rig.type(b"first\r")  # backed up
    rig.type(b"\x01" * 2000)  # unread, and too much for a DS value once escaped
    assert rig.tty.counters["backup_refused"] > 0 and "tty.ld" not in rig.store
    got = rig.request(READ, count=100)
    assert got is not None and got["data"] == b"first\n"
    rig.restart()
    assert rig.request(READ, count=100) is None  # "first" is not read again


def test_tcflsh_in_discards_unread_input_for_this_and_the_next_instance() -> None:
    # A driver fault can leave a backlog of bogus input (256 CRs read from the wrong
    # register); the backup keeps it across restarts, and a program that reads one line per
    # line it types never catches up, unless it flushes, as after any garbage.
    rig = Rig()
    rig.type(b"\r" * 40 + b"half")
    bad = rig.request(IOCTL, request="TCFLSH", arg="sideways")
    assert bad is not None and bad.type == Err.EINVAL
    got = rig.request(IOCTL, request="TCFLSH", arg="in")
    assert got is not None and got.type == Err.OK
    rig.restart()
    assert rig.request(READ, count=100) is None  # nothing left, nor in the backup
    rig.type(b"ls\r")
    [line] = rig.answered()
    assert line["data"] == b"ls\n"
