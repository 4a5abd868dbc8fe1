"""Count lines of code: blank lines, comments and docstrings not counted.

Usage: python tools/loc.py DIR  (prints per-file counts and the total)
"""
from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENDMARKER}


def count(path: Path) -> int:
    src = path.read_text()
    docs: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docs.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in _SKIP:
            code.update(range(tok.start[0], tok.end[0] + 1))
    return len(code - docs)


def count_dir(d: Path) -> dict[str, int]:
    return {str(p): count(p) for p in sorted(d.glob("*.py"))}


if __name__ == "__main__":
    counts = count_dir(Path(sys.argv[1]))
    for name, n in counts.items():
        print(f"{n:6} {name}")
    print(f"{sum(counts.values()):6} total")
