"""House rules on imports inside ``src/dinomap``: no import cycle between files (an import inside
a function that closes a circle counts, one under ``if TYPE_CHECKING`` too), and no import of
another module's private name (``from dinomap.x import _name``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(module: str, node: ast.ImportFrom, is_package: bool) -> str | None:
    if not node.level:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(sources: dict[str, tuple[str, bool]]) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the project modules it imports, and the private names imported across modules.

    ``sources``: module name -> (its text, whether it is a package's ``__init__``)."""
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for module, (text, is_package) in sources.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    while name and name not in sources:
                        name = name.rpartition(".")[0]
                    if name:
                        out.add(name)
            elif isinstance(node, ast.ImportFrom):
                target = _target(module, node, is_package)
                if target not in sources:
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in sources:
                        out.add(full)
                        continue
                    out.add(target)
                    name = alias.name
                    if name.startswith("_") and not name.startswith("__") and target != module:
                        private.append(f"{module} imports {target}.{name}")
        edges[module] = out - {module}
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _project() -> dict[str, tuple[str, bool]]:
    return {
        _module_name(p, SRC): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
        for p in sorted((SRC / "dinomap").rglob("*.py"))
    }


def test_no_import_cycle_between_files() -> None:
    edges, _ = import_graph(_project())
    assert len(edges) > 100  # the whole package was read
    assert not cycles(edges), "import cycles:\n" + "\n".join(map(str, cycles(edges)))


def test_no_private_name_imported_from_another_module() -> None:
    _, private = import_graph(_project())
    assert not private, "make these public where they are defined, or move them:\n" + "\n".join(
        private
    )


def test_the_checks_see_a_cycle_and_a_private_import() -> None:
    probe = {
        "pkg": ("", True),
        "pkg.a": ("from pkg.b import f\n", False),
        "pkg.b": ("def f():\n    from . import c\n", False),
        "pkg.c": ("import pkg.a\nfrom pkg.d import _hidden\n", False),
        "pkg.d": ("_hidden = 1\n", False),
    }
    edges, private = import_graph(probe)
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert private == ["pkg.c imports pkg.d._hidden"]
    probe["pkg.c"] = ("import pkg.d\n", False)
    edges, private = import_graph(probe)
    assert cycles(edges) == [] and private == []
