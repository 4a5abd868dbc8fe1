"""One protocol layer: only minikern/proto serializes, and nothing else builds a frame by hand.

The rule (docs/PROTOCOL.md, STYLE.md rule 6): no module outside minikern/proto
imports msgpack or reaches its pack/unpack functions; outside the package and
the tests, nothing calls the package's raw framing (``codec.pack``,
``encode_frame``, ...), and nothing hands a socket a frame it assembled
itself (a literal, a str, ``.encode()``, ``json.dumps``).  Checked on the
syntax tree of every Python file in the repository.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from minikern.cli import REPO_ROOT

ROOT = Path(REPO_ROOT)
PACKAGE = ROOT / "minikern" / "proto"
SKIP_DIRS = {".venv", ".git", "__pycache__", "node_modules"}
SERIALIZERS = {"msgpack"}
MSGPACK_NAMES = {"packb", "unpackb", "Packer", "Unpacker"}
RAW_FRAMING = {"pack", "unpack", "encode_frame", "decode_frame", "encode_json", "decode_json"}
SENDS = {"send", "send_multipart", "sendall", "send_fds"}
HAND_BUILDERS = {"encode", "dumps", "packb", "pack"}


def python_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        if SKIP_DIRS & set(path.relative_to(ROOT).parts):
            continue
        if path.suffix == ".py" or path.parent.name == "bin" and path.is_file():
            try:
                head = path.read_bytes()[:200]
            except OSError:
                continue
            if path.suffix == ".py" or head.startswith(b"#!") and b"python" in head.split(b"\n")[0]:
                yield path


def outside_package() -> Iterator[tuple[Path, ast.AST]]:
    for path in python_files():
        if PACKAGE in path.parents:
            continue
        yield path, ast.parse(path.read_text(), str(path))


def is_test(path: Path) -> bool:
    return (ROOT / "tests") in path.parents


def hand_built(arg: ast.expr) -> bool:
    """Is this argument of a send a frame assembled on the spot rather than by an encoder?"""
    if isinstance(arg, (ast.List, ast.Tuple)):  # send_multipart / send_fds take lists of frames
        return any(hand_built(e) for e in arg.elts)
    if isinstance(arg, (ast.Dict, ast.JoinedStr)):
        return True
    if isinstance(arg, ast.Constant):
        # one byte is a wake-up or a READY marker, not a frame
        return isinstance(arg.value, str) or isinstance(arg.value, bytes) and len(arg.value) > 1
    if isinstance(arg, ast.BinOp):
        return hand_built(arg.left) or hand_built(arg.right)
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute):
        return arg.func.attr in HAND_BUILDERS and not _proto_module(arg.func.value)
    return False


def _proto_module(node: ast.expr) -> bool:
    """``wire.encode(...)``, ``fp.encode(...)``: a channel module's encoder, by its import name."""
    return isinstance(node, ast.Name) and node.id in PROTO_ALIASES


PROTO_ALIASES = {"wire", "fp", "bus", "control", "startup", "image", "codec", "fastpath"}


def violations() -> list[str]:
    found = []
    for path, tree in outside_package():
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{rel}:{node.lineno}: imports {a.name}" for a in node.names
                          if a.name.split(".")[0] in SERIALIZERS]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in SERIALIZERS:
                    found.append(f"{rel}:{node.lineno}: imports from {node.module}")
            elif isinstance(node, ast.Attribute) and node.attr in MSGPACK_NAMES:
                found.append(f"{rel}:{node.lineno}: uses .{node.attr}")
            elif (isinstance(node, ast.Attribute) and node.attr in RAW_FRAMING
                  and isinstance(node.value, ast.Name) and node.value.id == "codec"
                  and not is_test(path)):
                found.append(f"{rel}:{node.lineno}: raw framing codec.{node.attr}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in SENDS and not is_test(path)
                  and any(hand_built(a) for a in node.args)):
                found.append(f"{rel}:{node.lineno}: sends a frame built by hand")
    return found


def test_only_the_protocol_package_serializes_frames() -> None:
    assert violations() == []


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    """Each forbidden shape, planted in a module, is reported (so the rule cannot pass vacuously)."""
    planted = {
        "import msgpack": "imports msgpack",
        "from msgpack import packb": "imports from msgpack",
        "x = lib.unpackb(b'')": "uses .unpackb",
        "sock.send(b'\\x93\\x01\\x02\\x03')": "sends a frame built by hand",
        "sock.send_multipart([ident, json.dumps(m).encode()])": "sends a frame built by hand",
        "sock.sendall(('stats' + '\\n').encode())": "sends a frame built by hand",
        "codec.pack([1, 2])": "raw framing codec.pack",
    }
    global ROOT, PACKAGE
    saved = ROOT, PACKAGE
    try:
        ROOT, PACKAGE = tmp_path, tmp_path / "minikern" / "proto"
        PACKAGE.mkdir(parents=True)
        (PACKAGE / "codec.py").write_text("import msgpack\n")  # allowed here, and only here
        for i, line in enumerate(planted):
            (tmp_path / f"m{i}.py").write_text(f"{line}\n")
        found = violations()
    finally:
        ROOT, PACKAGE = saved
    for i, what in enumerate(planted.values()):
        assert any(v.startswith(f"m{i}.py:") and what in v for v in found), (what, found)
    assert not any("codec.py" in v for v in found)
