"""The run store's layout and run.json updates."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

from dinomap.store import RunLayout, read_run_info, update_run_info
from dinomap.store import layout as layout_module


def _add_section(args: tuple[str, int]) -> None:
    run, i = args
    update_run_info(run, lambda info: info.update({f"stage{i}": {"i": i}}))


def test_concurrent_updates_lose_no_section(tmp_path: Path) -> None:
    run = tmp_path / "run"
    update_run_info(run, lambda info: info.update(model={"name": "m"}), create=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.map(_add_section, [(str(run), i) for i in range(16)])
    info = read_run_info(run)
    assert info["model"] == {"name": "m"}
    assert {k for k in info if k.startswith("stage")} == {f"stage{i}" for i in range(16)}
    assert json.loads((run / "run.json").read_text()) == info


def test_every_run_file_name_is_defined_once_in_the_library() -> None:
    names = dict(re.findall(r'^([A-Z_]+) = "([^"]+)"$', Path(layout_module.__file__).read_text(),
                            re.M))  # fmt: skip
    src = Path(layout_module.__file__).parents[1]
    values = {v for k, v in names.items() if "." in v or k.endswith("_DIR")}
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "layout.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r'^([A-Z_]+) = "([^"]+)"$', line)
            if m and m.group(2) in values:
                offenders.append(f"{path.relative_to(src)}:{lineno}: {line}")
    assert offenders == []


def test_layout_names_every_path() -> None:
    lay = RunLayout("runs/x")
    assert lay.run_info == Path("runs/x/run.json")
    assert lay.mapper("umap") == Path("runs/x/mappers/umap")
    assert lay.export == Path("runs/x/model_repository")
