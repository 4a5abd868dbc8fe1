"""The tty driver: the console on COM1's 16550A (drivers/tty/tty.py), on the character framework."""
from drivers.char import run
from drivers.tty.tty import Tty


def main() -> None:
    run(Tty())


__all__ = ["main"]
