"""Where programs and recovery scripts are found: the one search path, for bin/service and RS.

Runs in the operator's shell (bin/service resolves what a person typed) and
in RS (which checks again what arrives on the wire, trusting nothing).

A **program** (system.conf's ``program``, ``bin/service up PROGRAM``) is

* a module of the repository, by its dotted name: ``drivers.rtl8139``;
* a Python file anywhere, by its path: ``./mydrv.py``, ``/opt/drivers/mydrv.py``
  (bin/service makes a relative path absolute; RS and system.conf take
  absolute ones only);
* or a name found in a folder of ``$MINIKERN_PATH`` (colon-separated, searched
  in order, after the repository): ``mydrv`` is the first ``mydrv.py`` there.

A file runs as a component through ``minikern.external``, which loads it by
path in its fresh process and calls its ``main()``, as for any module.

A **recovery script** (``script``) is a name in the repository's
``recovery_scripts/`` (or ``$MINIKERN_RECOVERY_SCRIPTS``, which replaces it),
then in each folder of ``$MINIKERN_PATH``; or a path to a file.  Both are
checked where they are named (at ``service up``), so a misspelt one is an
error then, not a service left down at its first crash.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = "minikern.external"  # the module that runs a program kept in a file
SEARCH_PATH = "MINIKERN_PATH"  # folders searched for programs and scripts, after the repository
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
MAX_PATH = 4096  # bytes of a path RS accepts from the wire


class NotFound(ValueError):
    """A program or script that is not where the search path looks; the text says where."""


def scripts_dir() -> Path:
    return Path(os.environ.get("MINIKERN_RECOVERY_SCRIPTS", REPO / "recovery_scripts"))


def search_path(env: str | None = None) -> list[Path]:
    text = os.environ.get(SEARCH_PATH, "") if env is None else env
    return [Path(p) for p in text.split(":") if p]


def in_repository(module: str) -> bool:
    """True if ``module`` (dotted) is a module or package of the repository."""
    if not _MODULE.fullmatch(module):
        return False
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def is_path(name: str) -> bool:
    return "/" in name or name.endswith(".py")


def program(name: str, cwd: Path | None = None, env: str | None = None) -> str:
    """What system.conf's ``program`` should say for ``name``: a module of the repository,
    or the absolute path of a Python file; NotFound says where it looked."""
    if is_path(name):
        path = (cwd or Path.cwd()) / name
        if not path.is_file():
            raise NotFound(f"no program file {path}")
        return str(path.resolve())
    if in_repository(name):
        return name
    folders = search_path(env)
    for folder in folders:
        if (folder / f"{name}.py").is_file():
            return str((folder / f"{name}.py").resolve())
    where = ", ".join(str(f) for f in folders) or f"none: ${SEARCH_PATH} is not set"
    raise NotFound(f"no program {name!r}: not a module of {REPO}, nor {name}.py in "
                   f"${SEARCH_PATH} ({where})")


def script(name: str, cwd: Path | None = None, env: str | None = None) -> str:
    """What the ``script`` key should say for ``name``: a name in recovery_scripts/, or the
    absolute path of a file; NotFound says where it looked."""
    if "/" in name:
        path = (cwd or Path.cwd()) / name
        if not path.is_file():
            raise NotFound(f"no recovery script {path}")
        return str(path.resolve())
    if (scripts_dir() / name).is_file():
        return name
    folders = search_path(env)
    for folder in folders:
        if (folder / name).is_file():
            return str((folder / name).resolve())
    raise NotFound(f"no recovery script {name!r} in {scripts_dir()} or ${SEARCH_PATH} ("
                   + (", ".join(str(f) for f in folders) or "not set") + ")")


def check_program(value: str) -> str | None:
    """RS's check of a ``program`` from the wire or system.conf: None if it can run, else why."""
    if len(value.encode(errors="replace")) > MAX_PATH or "\0" in value:
        return "program: too long, or a NUL in it"
    if value.startswith("/"):
        return None if Path(value).is_file() else f"no program file {value}"
    return None if in_repository(value) else f"no module {value!r} in {REPO}"


def check_script(value: str) -> str | None:
    """RS's check of a ``script``: None if the file is there, else why."""
    if len(value.encode(errors="replace")) > MAX_PATH or "\0" in value:
        return "script: too long, or a NUL in it"
    path = Path(value) if value.startswith("/") else scripts_dir() / value
    return None if path.is_file() else f"no recovery script {path}"


def component(program_value: str, args: list[str]) -> tuple[str, list[str]]:
    """The (module, args) the kernel starts for a ``program``: a file runs through EXTERNAL."""
    if program_value.startswith("/"):
        return EXTERNAL, [program_value, *args]
    return program_value, args
