"""House rules on size: no source file over 500 lines, no function over 100 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dinomap"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 100


def _too_long(text: str, rel: str) -> list[str]:
    found = []
    if text.count("\n") > MAX_FILE_LINES:
        found.append(f"{rel}: {text.count(chr(10))} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{rel}:{node.lineno} {node.name}() is {length} lines")
    return found


def test_no_long_files_or_functions() -> None:
    found = [
        f
        for p in sorted(SRC.rglob("*.py"))
        for f in _too_long(p.read_text(encoding="utf-8"), str(p.relative_to(SRC)))
    ]
    assert not found, "split these:\n" + "\n".join(found)


def test_the_check_sees_a_long_function() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert _too_long(f"def f():\n{body}", "probe.py") == ["probe.py:1 f() is 101 lines"]
    assert _too_long("x = 1\n" * (MAX_FILE_LINES + 1), "probe.py") == ["probe.py: 501 lines"]
