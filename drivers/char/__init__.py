"""The character driver framework (MINIX libchardriver): drivers/char/framework.py."""
from drivers.char.framework import SUSPEND, Answer, CharDriver, Framework, Request, run

__all__ = ["SUSPEND", "Answer", "CharDriver", "Framework", "Request", "run"]
