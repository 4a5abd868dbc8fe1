"""sh: the console's shell, a program of the system (runs in its own process, label sh, under RS).

It reads command lines from the tty driver (userland/terminal.py: the
console, COM1) and does each command through the system's own servers:

    ls [DIR...]          cat FILE...          echo WORDS... [> FILE | >> FILE]
    cp FROM TO           rm FILE...           mkdir DIR...        rmdir DIR...
    cd [DIR]             ps                   service [LABEL]     ifconfig
    lp FILE              help

Files go through VFS (userland/fs.py); ``ps`` asks the kernel (GETINFO) and RS
(STATUS), as bin/ps does; ``service`` shows RS's table (starting and
stopping services is for the operator's bin/service: RS refuses it to a
program of the system); ``ifconfig`` asks INET; ``lp`` hands a file of the
system's to the printer spooler lpd (userland/spool.py), or says the
spooler is not available in a system without one.  Any command's output may be
redirected with ``> FILE`` or ``>> FILE``.  Words are split as a POSIX shell
splits them (quotes, backslashes); there are no pipes, variables or globs.

^C at the prompt throws the line away (the tty answers the read EINTR);
^D on an empty line is ignored (the console's shell does not log out).  The
shell waits through a restart of the tty driver and carries on
(userland/terminal.py).  A command's failure is one line, ``CMD: why``.
"""
from __future__ import annotations

import posixpath
import shlex
import stat
from collections.abc import Callable
from typing import Any

from minikern import ds, sef
from minikern.ipc import Connection, IpcError
from userland.fs import O_APPEND, O_CREAT, O_TRUNC, O_WRONLY, Files, FsError
from userland.terminal import Interrupted, Terminal

PROMPT = "minikern:{cwd}$ "


class Failed(Exception):
    """A command failed: its one line of why."""


class Shell:
    def __init__(self, conn: Connection, write: Callable[[bytes], None]) -> None:
        self.conn, self.write = conn, write
        self._files: Files | None = None
        self.cwd = "/"
        self.out: list[str] = []
        self.commands: dict[str, Callable[[list[str]], None]] = {
            "ls": self.do_ls, "cat": self.do_cat, "echo": self.do_echo, "cp": self.do_cp,
            "rm": self.do_rm, "mkdir": self.do_mkdir, "rmdir": self.do_rmdir, "cd": self.do_cd,
            "ps": self.do_ps, "service": self.do_service, "ifconfig": self.do_ifconfig,
            "lp": self.do_lp, "help": self.do_help}

    @property
    def files(self) -> Files:
        """VFS's client, made on first use (VFS may come up after the shell)."""
        if self._files is None:
            self._files = Files(self.conn)
        return self._files

    def prompt(self) -> str:
        return PROMPT.format(cwd=self.cwd)

    # -- one line ------------------------------------------------------------------------

    def run_line(self, line: str) -> None:
        """Run one command line; its output (or its redirection) and errors are written."""
        try:
            words = shlex.split(line)
        except ValueError as e:
            self.write(f"sh: {e}\n".encode())
            return
        if not words:
            return
        name = words[0]
        try:
            words, target, append = self.redirection(words)
            command = self.commands.get(name)
            if command is None:
                raise Failed("command not found (help lists the commands)")
            self.out = []
            command(words[1:])
            text = "".join(self.out).encode()
            if target is None:
                self.write(text)
            else:
                self.store(target, text, append)
        except Failed as e:
            self.write(f"{name}: {e}\n".encode())
        except FsError as e:
            where = f"{e.filename}: " if e.filename else ""
            self.write(f"{name}: {where}{e.strerror or e}\n".encode())
        except IpcError as e:
            self.write(f"{name}: {e}\n".encode())

    @staticmethod
    def redirection(words: list[str]) -> tuple[list[str], str | None, bool]:
        """The words without ``> FILE`` / ``>> FILE`` (or ``>FILE``), the file and whether to
        append."""
        for i, w in enumerate(words):
            if w.startswith(">"):
                append = w.startswith(">>")
                rest = w[2:] if append else w[1:]
                tail = words[i + 1:]
                if not rest:
                    if not tail:
                        raise Failed("a redirection needs a file name")
                    rest, tail = tail[0], tail[1:]
                if tail:
                    raise Failed("words after the redirection's file")
                return words[:i], rest, append
        return words, None, False

    def path(self, name: str) -> str:
        return posixpath.normpath(posixpath.join(self.cwd, name))

    def print(self, text: str = "") -> None:
        self.out.append(text + "\n")

    def store(self, target: str, data: bytes, append: bool) -> None:
        path = self.path(target)
        fd = self.files.open(path, O_WRONLY | O_CREAT | (O_APPEND if append else O_TRUNC))
        try:
            self.files.write(fd, data)
        finally:
            self.files.close(fd)

    # -- the commands --------------------------------------------------------------------

    def do_help(self, args: list[str]) -> None:
        self.print("commands: " + " ".join(sorted(self.commands)) + "; redirect with > or >>")

    def do_ls(self, args: list[str]) -> None:
        for i, name in enumerate(args or ["."]):
            path = self.path(name)
            if not stat.S_ISDIR(self.files.stat(path).st_mode):
                self.print(name)
                continue
            if len(args) > 1:
                self.print(("\n" if i else "") + f"{name}:")
            for entry in sorted(self.files.listdir(path)):
                mode = self.files.lstat(posixpath.join(path, entry)).st_mode
                self.print(entry + ("/" if stat.S_ISDIR(mode) else ""))

    def do_cat(self, args: list[str]) -> None:
        if not args:
            raise Failed("usage: cat FILE...")
        for name in args:
            self.out.append(self.files.read_file(self.path(name)).decode("utf-8", "replace"))

    def do_echo(self, args: list[str]) -> None:
        self.print(" ".join(args))

    def do_cp(self, args: list[str]) -> None:
        if len(args) != 2:
            raise Failed("usage: cp FROM TO")
        source, target = self.path(args[0]), self.path(args[1])
        if self.files.exists(target) and stat.S_ISDIR(self.files.stat(target).st_mode):
            target = posixpath.join(target, posixpath.basename(source))
        self.files.write_file(target, self.files.read_file(source))

    def do_rm(self, args: list[str]) -> None:
        if not args:
            raise Failed("usage: rm FILE...")
        for name in args:
            self.files.unlink(self.path(name))

    def do_mkdir(self, args: list[str]) -> None:
        if not args:
            raise Failed("usage: mkdir DIR...")
        for name in args:
            self.files.mkdir(self.path(name))

    def do_rmdir(self, args: list[str]) -> None:
        if not args:
            raise Failed("usage: rmdir DIR...")
        for name in args:
            self.files.rmdir(self.path(name))

    def do_cd(self, args: list[str]) -> None:
        if len(args) > 1:
            raise Failed("usage: cd [DIR]")
        path = self.path(args[0] if args else "/")
        if not stat.S_ISDIR(self.files.stat(path).st_mode):
            raise Failed(f"{path}: not a directory")
        self.cwd = path

    def do_ps(self, args: list[str]) -> None:
        from minikern.commands import ps
        if args:
            raise Failed("usage: ps")
        self.print(ps.table(ps.collect(self.conn), ("label", "endpoint", "pid", "state",
                                                    "incarnation")))

    def do_service(self, args: list[str]) -> None:
        from minikern import rsctl
        from minikern.const import RsReq
        if len(args) > 1:
            raise Failed("usage: service [LABEL] (bin/service, the operator's tool, starts "
                         "and stops services)")
        services: list[dict[str, Any]] = rsctl.call(self.conn, RsReq.STATUS).get("services", [])
        rows = [s for s in services if not args or s.get("label") == args[0]]
        if args and not rows:
            raise Failed(f"no service {args[0]!r}")
        for s in rows:
            self.print(f"{s.get('label')}: {s.get('state')}, endpoint {s.get('endpoint')}, "
                       f"restarts {s.get('incarnation')}")

    def do_ifconfig(self, args: list[str]) -> None:
        from userland.ifconfig import readable
        from userland.socket import SocketError, ifstat
        try:
            self.print(readable(ifstat(self.conn)))
        except SocketError as e:
            raise Failed(str(e)) from None

    def do_lp(self, args: list[str]) -> None:
        from userland import spool
        if len(args) != 1:
            raise Failed("usage: lp FILE")
        path = self.path(args[0])
        data = self.files.read_file(path)
        try:
            ds.retrieve_label(self.conn, spool.SPOOLER)
        except IpcError:
            raise Failed("spooler not available (no lpd in this system)") from None
        job = spool.submit(self.conn, posixpath.basename(path)[:60] or "job", data)
        self.print(f"request id is {job} ({len(data)} bytes)")


def serve(term: Terminal, shell: Shell) -> None:
    """Prompt, read a line, run it; for ever (the console's shell does not log out)."""
    while True:
        term.write(shell.prompt().encode())
        try:
            line = term.read()
        except Interrupted:
            continue
        if not line:
            term.write(b"\n")  # ^D on an empty line
            continue
        shell.run_line(line.decode("utf-8", "replace"))


def main() -> None:
    ctx = sef.startup()
    term = Terminal(ctx)
    term.open()
    serve(term, Shell(ctx.conn, term.write))
