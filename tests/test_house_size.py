"""House rules on size: no source file over 500 lines, no function body over 100 lines (the
body's statements, from the first after the docstring to the last: a long signature or
docstring does not count)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dinomap"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 100


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of the body's statements, the docstring left out."""
    body = node.body
    if (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def _too_long(text: str, rel: str) -> list[str]:
    found = []
    if text.count("\n") > MAX_FILE_LINES:
        found.append(f"{rel}: {text.count(chr(10))} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = _body_lines(node)
            if length > MAX_FUNCTION_LINES:
                found.append(f"{rel}:{node.lineno} {node.name}() has {length} body lines")
    return found


def test_no_long_files_or_functions() -> None:
    found = [
        f
        for p in sorted(SRC.rglob("*.py"))
        for f in _too_long(p.read_text(encoding="utf-8"), str(p.relative_to(SRC)))
    ]
    assert not found, "split these:\n" + "\n".join(found)


def test_the_check_sees_a_long_function() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES + 1))
    assert _too_long(f"def f():\n{body}", "probe.py") == ["probe.py:1 f() has 101 body lines"]
    # a long docstring and signature do not count; the body alone does
    doc = '    """' + "\n" * 50 + '    """\n'
    args = "".join(f"    a{i},\n" for i in range(30))
    at_limit = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert _too_long(f"def f(\n{args}):\n{doc}{at_limit}", "probe.py") == []
    assert _too_long("x = 1\n" * (MAX_FILE_LINES + 1), "probe.py") == ["probe.py: 501 lines"]
