"""`dinomap --help` and each command's --help load no heavy library (torch, OpenCV, timm, FAISS,
umap-learn, scikit-learn, numpy...): checked in a fresh interpreter, not with a stopwatch
(benchmarks/bench_cli_startup.py times it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "cv2", "timm", "faiss", "umap", "sklearn", "numpy", "pyarrow", "pandas",
         "matplotlib", "openTSNE", "openvino", "onnx", "onnxruntime")  # fmt: skip
CODE = """
import contextlib, io, json, sys
from dinomap.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
heavy = json.loads('%s')
print(json.dumps({"loaded": [m for m in heavy if m in sys.modules], "help": out.getvalue()}))
"""


def _last_line(code: str, *argv: str) -> str:
    """Run ``code`` in a fresh interpreter; return the last line it prints."""
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    return proc.stdout.strip().splitlines()[-1]


def _help_of(*argv: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(_last_line(CODE % json.dumps(HEAVY), *argv))
    return result


@pytest.mark.parametrize(
    ("argv", "light"),
    [
        (("--help",), HEAVY),
        (("map", "--help"), HEAVY),
        (("embed", "--help"), HEAVY),
        (("run", "--help"), HEAVY),
        (("export", "--help"), HEAVY),
    ],
)
def test_help_imports_no_heavy_library(argv: tuple[str, ...], light: tuple[str, ...]) -> None:
    res = _help_of(*argv)
    assert "usage: dinomap" in str(res["help"])
    assert [m for m in res["loaded"] if m in light] == []  # type: ignore[attr-defined]


def test_top_level_help_lists_every_command() -> None:
    from dinomap.cli._commands import COMMANDS

    text = str(_help_of("--help")["help"])
    for name, (_, line) in COMMANDS.items():
        assert name in text and line.split()[0] in text


def test_importing_dinomap_is_light_and_names_load_on_use() -> None:
    code = (
        "import sys, json, dinomap\n"
        f"heavy = {list(HEAVY)!r}\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "dinomap.make_maps\n"
        "print(json.dumps({'before': before, 'after': 'sklearn' in sys.modules or 'numpy' in sys.modules,"
        " 'all': sorted(dinomap.__all__) == sorted(set(dinomap.__all__) & set(dir(dinomap)))}))\n"
    )
    res = json.loads(_last_line(code))
    assert res == {"before": [], "after": True, "all": True}


def test_a_lazy_name_that_is_also_a_submodule_stays_the_function() -> None:
    code = (
        "import dinomap.downstream.contact_sheet\n"
        "from dinomap.downstream import contact_sheet\n"
        "print(callable(contact_sheet) and not hasattr(contact_sheet, '__path__'), "
        "type(contact_sheet).__name__)\n"
    )
    assert _last_line(code).split() == ["True", "function"]
