"""The line discipline alone (drivers/tty/line.py): canonical and raw input, echo, the special
characters, the settings from the wire, the backup a restarted driver takes back."""
from __future__ import annotations

from drivers.tty.line import BELL, ERASE_ECHO, LineDiscipline, Termios, ctrl

DEL = bytes([0x7F])


def typed(text: bytes, termios: Termios | None = None) -> LineDiscipline:
    ld = LineDiscipline(termios)
    ld.receive(text)
    return ld


def test_canonical_read_waits_for_the_end_of_the_line() -> None:
    ld = typed(b"ls -l")
    assert not ld.readable()
    ld.receive(b"\r")  # CR is read as NL (icrnl)
    assert ld.readable()
    assert ld.take(100) == b"ls -l\n"
    assert not ld.readable()


def test_erase_and_kill_edit_the_line_and_show_it() -> None:
    ld = typed(b"cax" + DEL + b"t\n")
    assert ld.take(100) == b"cat\n"
    assert ld.take_echo() == b"cax" + ERASE_ECHO + b"t\r\n"
    ld.receive(b"rm -rf" + bytes([ctrl("U")]) + b"ls" + b"\x08\x08pwd\n")
    assert ld.take(100) == b"pwd\n"
    assert ld.take_echo() == b"rm -rf" + ERASE_ECHO * 6 + b"ls" + ERASE_ECHO * 2 + b"pwd\r\n"


def test_erase_at_the_start_of_a_line_does_nothing() -> None:
    ld = typed(DEL * 3 + b"a\n")
    assert ld.take(10) == b"a\n"
    assert ld.take_echo() == b"a\r\n"


def test_a_read_returns_one_line_at_a_time_and_long_lines_in_pieces() -> None:
    ld = typed(b"one\ntwo\n")
    assert ld.take(100) == b"one\n"
    assert ld.take(2) == b"tw"
    assert ld.take(100) == b"o\n"


def test_eof_ends_a_line_without_newline_and_on_an_empty_line_is_end_of_file() -> None:
    ld = typed(b"abc" + bytes([ctrl("D")]))
    assert ld.readable() and ld.take(10) == b"abc"
    ld.receive(bytes([ctrl("D")]))
    assert ld.readable() and ld.take(10) == b""


def test_interrupt_discards_unread_input_and_marks_the_reader() -> None:
    ld = typed(b"done\nhalf" + bytes([ctrl("C")]))
    assert ld.interrupted and not ld.readable() and ld.held() == 0
    assert ld.take_echo().endswith(b"^C\r\n")


def test_without_isig_interrupt_is_an_ordinary_character() -> None:
    ld = typed(bytes([ctrl("C")]) + b"\n", Termios(isig=False))
    assert not ld.interrupted and ld.take(10) == bytes([ctrl("C")]) + b"\n"


def test_no_echo_shows_nothing() -> None:
    ld = typed(b"secret\n", Termios(echo=False))
    assert ld.take(100) == b"secret\n" and ld.take_echo() == b""


def test_raw_mode_reads_bytes_as_they_come_and_waits_for_vmin() -> None:
    ld = typed(b"a" + DEL, Termios(icanon=False, vmin=3))
    assert not ld.readable()  # DEL is a byte like any other in raw mode
    ld.receive(b"q")
    assert ld.readable()
    assert ld.take(2) == b"a" + DEL
    assert ld.take(5) == b"q"


def test_raw_mode_with_vmin_zero_never_waits() -> None:
    ld = LineDiscipline(Termios(icanon=False, vmin=0))
    assert ld.readable() and ld.take(10) == b""


def test_leaving_canonical_mode_makes_the_half_typed_line_readable() -> None:
    ld = typed(b"abc")
    ld.set_termios(Termios(icanon=False))
    assert ld.take(10) == b"abc"


def test_stop_and_start_hold_output_and_are_not_input() -> None:
    ld = typed(bytes([ctrl("S")]) + b"x")
    assert ld.stopped
    ld.receive(bytes([ctrl("Q")]) + b"\n")
    assert not ld.stopped and ld.take(10) == b"x\n"


def test_input_beyond_max_input_is_dropped_counted_and_belled() -> None:
    ld = LineDiscipline(max_input=4)
    ld.receive(b"abcdef")
    assert ld.held() == 4 and ld.dropped == 2
    assert ld.take_echo() == b"abcd" + BELL * 2


def test_output_turns_nl_into_cr_nl_with_onlcr() -> None:
    assert LineDiscipline().output(b"a\nb") == b"a\r\nb"
    assert LineDiscipline(Termios(onlcr=False)).output(b"a\nb") == b"a\nb"


def test_settings_from_the_wire_are_checked_key_by_key() -> None:
    base = Termios()
    assert Termios.from_wire({"icanon": False, "vmin": 4}, base) == Termios(icanon=False, vmin=4)
    bad: object
    for bad in ({"icanon": 1}, {"vmin": -1}, {"verase": 256}, {"nosuch": True}, {3: True},
                {"vmin": True}, [], "icanon", None):
        assert Termios.from_wire(bad, base) is None, bad


def test_a_snapshot_restores_settings_and_unread_input() -> None:
    ld = typed(b"first\nsec", Termios(echo=False))
    back = LineDiscipline.restore(ld.snapshot())
    assert back.termios == ld.termios and back.take(100) == b"first\n"
    back.receive(b"ond\n")
    assert back.take(100) == b"second\n"


def test_a_bad_snapshot_gives_a_fresh_discipline() -> None:
    for bad in (None, {"termios": {}, "line": 3, "ready": []}, {"termios": "x"},
                {"termios": {}, "line": "", "ready": ["\u0100"]},
                {"termios": {}, "line": "x" * (LineDiscipline().max_input + 1), "ready": []}):
        ld = LineDiscipline.restore(bad)
        assert ld.held() == 0 and ld.termios == Termios()


def test_a_raw_mode_snapshot_keeps_the_bytes_in_one_record() -> None:
    ld = typed(b"abc", Termios(icanon=False, vmin=3))
    snap = ld.snapshot()
    assert snap["ready"] == ["abc"]
    assert LineDiscipline.restore(snap).take(10) == b"abc"


def test_a_line_a_dead_reader_took_is_put_back_first() -> None:
    """The driver puts back what it could not deliver (the reader died): the next read gets
    that line, before the lines typed after it, and nothing twice."""
    ld = LineDiscipline()
    ld.receive(b"first\nsecond\n")
    taken = ld.take(100)
    assert taken == b"first\n"
    ld.unread(taken)
    assert [ld.take(100), ld.take(100)] == [b"first\n", b"second\n"] and not ld.readable()
