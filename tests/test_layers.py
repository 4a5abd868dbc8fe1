"""The folders say which process runs the code (STYLE.md, first rule), so imports run one way.

``minikern/`` is the kernel and the library every process uses: it depends on no server,
no device of the machine, no driver and no user program.  A client of a server or of the
board (RS control, the DS client, the driver's fast-path channel, the board's control
client) is part of that library, so programs that run outside the servers and the board
(drivers, user programs, the benchmarks, the experiment, the commands) reach them through ``minikern/``.
"""
from __future__ import annotations

import ast
import runpy
from pathlib import Path


from minikern.cli import REPO_ROOT

PROCESS_CODE = ("services", "hw", "drivers", "userland", "bench", "experiment")
# Runs outside the servers and the board; may import no server or machine module.
CLIENTS = ("drivers", "userland", "bench", "experiment")
# The chip's register map: the emulated chip and its driver both follow it, as a datasheet.
DATASHEETS = {"hw.rtl8139_regs"}


def _is_module(dotted: str) -> bool:
    path = REPO_ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the code (a function's lazy import
    counts); ``from pkg import mod`` names ``pkg.mod`` when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                found.add(dotted if _is_module(dotted) else node.module)
    return found


def crossings(folder: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    """module file -> the modules it imports from the ``forbidden`` top-level packages."""
    out = {}
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        bad = {m for m in imports(path) if m.split(".")[0] in forbidden}
        if bad:
            out[str(path.relative_to(REPO_ROOT))] = bad
    return out


def test_the_library_imports_no_process_code() -> None:
    assert crossings("minikern", PROCESS_CODE) == {}


def test_the_importer_sees_lazy_imports_and_submodules(tmp_path: Path) -> None:
    """The checker itself: a crossing hidden in a function, or named as a submodule."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from services.rs import requests\n    import hw.board\n")
    assert imports(probe) == {"services.rs.requests", "hw.board"}


def test_programs_outside_the_servers_reach_them_through_the_library() -> None:
    found: dict[str, set[str]] = {}
    for folder in CLIENTS:
        found.update(crossings(folder, ("services", "hw")))
    table = runpy.run_path(str(REPO_ROOT / "bin" / "_launch"), run_name="launcher_table")
    for name, (module, _) in table["COMMANDS"].items():
        if module.split(".")[0] not in ("minikern", "userland", "bench", "experiment"):
            found[f"bin/{name}"] = {module}
    unexpected = {where: mods - DATASHEETS for where, mods in found.items()}
    assert {where: mods for where, mods in unexpected.items() if mods} == {}
