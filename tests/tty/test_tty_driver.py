"""The tty driver's logic on the real UART model (tests/tty/rig.py): the registers it programs,
input by interrupt through the discipline, output by THRE interrupts with flow control, the
requests' refusals, and what a restarted instance takes back."""
from __future__ import annotations

from drivers.tty import regs as R
from drivers.tty.line import ctrl
from minikern import params
from minikern.const import Err
from tests.tty.rig import Rig


def test_reset_programs_the_uart_as_documented() -> None:
    rig = Rig()
    u = rig.uart
    assert u.divisor == R.CLOCK_BASE // 115200 and u.lcr == R.LCR_8BITS
    assert u.fifo_enabled and u.fcr & 0xC0 == R.FCR_TRIGGER_8
    assert u.ier == R.IER_ERBFI | R.IER_ELSI | R.IER_EDSSI  # no THRE while nothing to send
    assert u.mcr & (R.MCR_DTR | R.MCR_RTS | R.MCR_OUT2) == R.MCR_DTR | R.MCR_RTS | R.MCR_OUT2


def test_a_read_waits_for_a_line_and_input_is_echoed() -> None:
    rig = Rig()
    assert rig.request("do_read", count=100) is None  # suspended
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
    reply = rig.request("do_read", count=200)
    assert reply is not None and reply["data"] == line


def test_raw_mode_through_tcsets() -> None:
    rig = Rig()
    reply = rig.request("do_ioctl", request="TCSETS", termios={"icanon": False, "echo": False,
                                                               "vmin": 2})
    assert reply is not None and reply.type == Err.OK and reply["termios"]["vmin"] == 2
    assert rig.request("do_read", count=10) is None
    rig.type(b"\x7f")
    assert rig.answered() == []
    rig.type(b"q")
    [got] = rig.answered()
    assert got["data"] == b"\x7fq" and rig.host.screen == b""
    got = rig.request("do_ioctl", request="TCGETS")
    assert got is not None and got["termios"]["icanon"] is False


def test_interrupt_answers_the_waiting_read_with_eintr_or_the_next_one() -> None:
    rig = Rig()
    rig.request("do_read", count=10)
    rig.type(b"half" + bytes([ctrl("C")]))
    [got] = rig.answered()
    assert got.type == Err.EINTR
    rig.type(bytes([ctrl("C")]))  # nobody reading: the next read is told
    got2 = rig.request("do_read", count=10)
    assert got2 is not None and got2.type == Err.EINTR
    assert rig.request("do_read", count=10) is None  # told once


def test_a_write_is_answered_once_all_of_it_went_out() -> None:
    rig = Rig()
    text = b"x" * 100 + b"\n"
    assert rig.request("do_write", data=text) is None
    replies = rig.answered()
    assert [r["count"] for r in replies] == [len(text)]
    assert bytes(rig.host.screen) == b"x" * 100 + b"\r\n"
    assert not rig.uart.ier & R.IER_ETBEI  # idle: THRE interrupt off again


def test_ctrl_s_holds_output_and_its_writer_until_ctrl_q() -> None:
    rig = Rig()
    rig.type(bytes([ctrl("S")]))
    rig.request("do_write", data=b"held\n")
    assert rig.answered() == [] and rig.host.screen == b""
    rig.type(bytes([ctrl("Q")]))
    [got] = rig.answered()
    assert got["count"] == 5 and rig.host.screen == b"held\r\n"


def test_bad_requests_are_refused_clearly() -> None:
    rig = Rig()
    for handler, fields in (("do_open", {"minor": 7}), ("do_read", {"minor": "0", "count": 1}),
                            ("do_write", {"minor": -1, "data": b"x"})):
        got = rig.request(handler, **fields)
        assert got is not None and got.type == Err.ENXIO, handler
    got = rig.request("do_ioctl", request="DIOCGETP")
    assert got is not None and got.type == Err.ENOTTY
    got = rig.request("do_write", data=b"x" * (params.TTY_MAX_WRITE + 1))
    assert got is not None and got.type == Err.E2BIG
    for bad in ({"count": 0}, {"count": params.TTY_MAX_READ + 1}, {"count": "9"}):
        got = rig.request("do_read", **bad)
        assert got is not None and got.type == Err.EINVAL
    got = rig.request("do_ioctl", request="TCSETS", termios={"vmin": "lots"})
    assert got is not None and got.type == Err.EINVAL
    got = rig.request("do_write", data="text")
    assert got is not None and got.type == Err.EINVAL


def test_cancel_ends_the_callers_read_with_eintr() -> None:
    rig = Rig()
    rig.request("do_read", count=10)
    [(waiting, _)] = [(m, None) for m in rig.tty.reads]
    rig.tty.do_cancel(waiting)
    [got] = rig.answered()
    assert got.type == Err.EINTR and not rig.tty.reads


def test_a_restarted_driver_delivers_what_was_typed_while_it_was_down() -> None:
    rig = Rig()
    rig.type(b"ech")  # taken in by the first instance, not yet a line
    rig.uart.receive(b"o hello world, typed while no driver ran\r")  # waits in the UART
    rig.restart()
    got = rig.request("do_read", count=200)
    assert got is not None and got["data"] == b"echo hello world, typed while no driver ran\n"
    assert rig.request("do_read", count=200) is None  # once: nothing doubled


def test_a_line_handed_over_is_not_handed_over_again_by_the_next_instance() -> None:
    rig = Rig()
    rig.type(b"once\r")
    got = rig.request("do_read", count=100)
    assert got is not None and got["data"] == b"once\n"
    rig.restart()
    assert rig.request("do_read", count=100) is None
