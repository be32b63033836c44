"""``dinomap report RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomap.cli.main import main

from ..fake_run import make_synthetic_run


def test_report_command_writes_page_and_slides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_synthetic_run(tmp_path / "run", 10, methods=("pca", "tsne"))
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert (run / "report.html").is_file() and (run / "slides.md").is_file()
    assert (run / "thumbs" / "sheet-00000.jpg").is_file()
    assert "report.html" in out and "slides.md" in out


def test_report_command_options(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 10, methods=("pca",))
    page = tmp_path / "elsewhere" / "map.html"
    assert (
        main(["report", str(run), "--out", str(page), "--no-thumbnails", "--no-slides", "-q"]) == 0
    )
    assert page.is_file() and not (run / "slides.md").exists() and not (run / "thumbs").exists()


def test_report_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a dinomap run directory" in capsys.readouterr().err
    run = make_synthetic_run(tmp_path / "run", 6, methods=("pca",))
    assert main(["report", str(run), "--thumb-size", "1"]) == 2
    assert "--thumb-size must be an integer >= 8" in capsys.readouterr().err  # the flag typed
