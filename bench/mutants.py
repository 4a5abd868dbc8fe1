"""The mutants of bin/bench mutation: Cosmic Ray's operators applied one place at a time.

Every operator Cosmic Ray registers (and that needs no configuring) is tried at
every place it applies in a module, except inside type annotations: under
``from __future__ import annotations`` those are never evaluated, so a change
there could never be caught.
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass

from minikern.cli import REPO_ROOT


@dataclass(frozen=True)
class Mutant:
    module: str       # path relative to the repository
    operator: str     # Cosmic Ray's operator name
    occurrence: int   # which place in the module the operator changes
    line: int
    before: str       # the changed line, before and after
    after: str
    source: str       # the whole mutated module


def _annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for node in ast.walk(ast.parse(source)):
        note: ast.expr | None = None
        if isinstance(node, (ast.AnnAssign, ast.arg)):
            note = node.annotation
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            note = node.returns
        if note is not None:
            spans.append(((note.lineno, note.col_offset),
                          (note.end_lineno or note.lineno, note.end_col_offset or 0)))
    return spans


@dataclass(frozen=True)
class Place:
    module: str
    operator: str     # Cosmic Ray's full operator name
    occurrence: int   # which place in the module the operator changes
    line: int


def places(module: str) -> list[Place]:
    """Every place Cosmic Ray's operators change in one module, annotations left alone."""
    import cosmic_ray.plugins
    from cosmic_ray.ast import ast_nodes, get_ast

    source = (REPO_ROOT / module).read_text()
    spans = _annotation_spans(source)
    tree = get_ast(source)
    found = []
    for name in cosmic_ray.plugins.operator_names():
        op_class = cosmic_ray.plugins.get_operator(name)
        if op_class.arguments():
            continue  # operators that need configuring (none by default) are not used
        op = op_class()
        starts = [start for node in ast_nodes(tree) for start, _ in op.mutation_positions(node)]
        found += [Place(module, name, i, start[0]) for i, start in enumerate(starts)
                  if not any(a <= start < b for a, b in spans)]
    return found


def mutant(place: Place) -> Mutant | None:
    """The module with that one change made (None if the operator finds nothing to change)."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    source = (REPO_ROOT / place.module).read_text()
    mutated = mutate_code(source, cosmic_ray.plugins.get_operator(place.operator)(),
                          place.occurrence)
    if mutated is None:
        return None
    old_lines, new_lines = source.splitlines(), mutated.splitlines()
    line = place.line
    for tag, i1, _, _, _ in difflib.SequenceMatcher(a=old_lines, b=new_lines).get_opcodes():
        if tag != "equal":
            line = i1 + 1
            break
    after = new_lines[line - 1] if line - 1 < len(new_lines) else ""
    return Mutant(place.module, place.operator.split("/", 1)[1], place.occurrence, line,
                  old_lines[line - 1].strip(), after.strip(), mutated)
