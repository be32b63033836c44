"""The house rule on writing files: only ``store/``, ``cli/`` and explicit writers write.

(Removing a file or a stale cache entry is not writing one: ``rmtree`` / ``unlink`` are free.)

A *writer* is a function whose name (without leading underscores) starts with ``write_`` or
ends with ``_run``. Everything else computes and returns; a stage that has outputs ends in a
thin ``*_run`` / ``write_*`` wrapper or hands its bytes to a ``dinomap.store`` writer. The check
reads the source (``ast``): it looks for the calls that put bytes on disk.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dinomap"

#: Calls that write a file whatever their arguments.
ALWAYS = {
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "write_text",
    "write_bytes",
    "to_parquet",
    "copyfile",
    "copy2",
    "copytree",
    "move",
}
#: Calls that write a file unless their first argument is an in-memory buffer of the function.
TO_TARGET = {"savefig", "save", "savez", "savez_compressed", "write_table", "to_csv", "imwrite"}
#: ``os.replace`` / ``os.rename`` (``str.replace`` is not a write).
OS_MOVES = {"replace", "rename"}

#: Packages that own the disk.
OWNERS = {"store", "cli"}


def _is_writer(name: str) -> bool:
    bare = name.lstrip("_")
    return bare.startswith("write_") or bare.endswith("_run")


def _buffers(fn: ast.AST) -> set[str]:
    """Names bound to ``io.BytesIO()`` / ``io.StringIO()`` inside ``fn``."""
    names: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            f = node.value.func
            callee = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if callee in {"BytesIO", "StringIO"}:
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _write_call(call: ast.Call, buffers: set[str]) -> str | None:
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
    if name is None:
        return None
    if name == "open":
        modes = [a for a in call.args[1:2]] + [k.value for k in call.keywords if k.arg == "mode"]
        for m in modes:
            if isinstance(m, ast.Constant) and any(c in str(m.value) for c in "wax+"):
                return "open(..., 'w')"
        return None
    if name in ALWAYS:
        return name
    if name in OS_MOVES:
        owner = f.value if isinstance(f, ast.Attribute) else None
        return f"os.{name}" if isinstance(owner, ast.Name) and owner.id == "os" else None
    if name in TO_TARGET:
        target = call.args[0] if call.args else None
        if name == "to_csv" and target is None:  # to_csv() with no path returns a string
            return None
        if any(isinstance(a, ast.Name) and a.id in buffers for a in call.args):
            return None  # torch.save(obj, buf), fig.savefig(buf): into memory
        owner = f.value if isinstance(f, ast.Attribute) else None
        if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
            return None  # super().save(...): the parent's method, itself checked
        return name
    return None


def _violations(rel: Path, text: str) -> list[str]:
    """The writes in module ``rel`` (relative to ``src/dinomap``) of source ``text``."""
    if rel.parts[0] in OWNERS:
        return []
    tree = ast.parse(text)
    found: list[str] = []

    def visit(node: ast.AST, stack: list[str], buffers: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, [*stack, child.name], buffers | _buffers(child))
                continue
            if isinstance(child, ast.Call) and not any(_is_writer(s) for s in stack):
                what = _write_call(child, buffers)
                if what:
                    where = ".".join(stack) or "<module>"
                    found.append(f"{rel}:{child.lineno} {where}() calls {what}")
            visit(child, stack, buffers)

    visit(tree, [], set())
    return found


def test_only_store_cli_and_writers_write_files() -> None:
    found = [
        v
        for p in sorted(SRC.rglob("*.py"))
        for v in _violations(p.relative_to(SRC), p.read_text(encoding="utf-8"))
    ]
    assert not found, "files written outside store/, cli/ and write_*/*_run wrappers:\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(p):\n    atomic_write_json(p, {})\n", 1),
        ("def f(p, fig):\n    fig.savefig(p)\n", 1),
        ("def f(fig):\n    buf = io.BytesIO()\n    fig.savefig(buf)\n", 0),
        ("def f(m):\n    buf = io.BytesIO()\n    torch.save(m, buf)\n", 0),
        ("def f(m, p):\n    torch.save(m, p)\n", 1),
        ("def f(p):\n    open(p, 'w').write('x')\n", 1),
        ("def f(p):\n    open(p).read()\n", 0),
        ("def f(p, q):\n    os.replace(p, q)\n", 1),
        ("def f(s):\n    return s.replace('a', 'b')\n", 0),
        ("def write_x(p):\n    atomic_write_json(p, {})\n", 0),
        ("def x_run(p):\n    def inner():\n        Path(p).write_text('x')\n", 0),
        ("def _write_x(p, df):\n    df.to_parquet(p)\n", 0),
        ("def f(df):\n    return df.to_csv(index=False)\n", 0),
    ],
)
def test_the_check_sees_writes(source: str, expected: int) -> None:
    """The checker finds a write where there is one, and only there (so it can fail)."""
    assert len(_violations(Path("downstream/probe.py"), source)) == expected, source
    assert _violations(Path("store/probe.py"), source) == []
