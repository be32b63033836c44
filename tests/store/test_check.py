"""Broken run files: one line naming the file and the way out, ``run.json.bak`` kept before each
update, and ``dinomap check RUN [--repair]``: restore, rebuild, repeated rows, stale outputs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dinomap.cli.main import main
from dinomap.store.check import check_run
from dinomap.store.embeddings import load_embeddings

from ..conftest import TINY_CLI_ARGS

EMBED = ["--workers", "0", "--runtime", "torch", "--device", "cpu", "-q", *TINY_CLI_ARGS]


@pytest.fixture
def run(image_folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert main(["embed", str(image_folder), "--out", str(out), *EMBED]) == 0
    assert main(["map", str(out), "--methods", "pca", "--no-plots", "-q"]) == 0
    return out


@pytest.mark.parametrize("broken", [b"", b'{"model": {"name": "dinov2-s14", "tim'])
def test_a_broken_run_json_gives_one_line_naming_it(
    run: Path, image_folder: Path, broken: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "run.json").write_bytes(broken)
    image = str(next(image_folder.rglob("*.png")))
    for argv in (["report", str(run), "--no-thumbnails"], ["map", str(run), "--methods", "pca"],
                 ["search", str(run), image, "--no-write"], ["cluster", str(run)],
                 ["embed", str(image_folder), "--out", str(run), *EMBED]):  # fmt: skip
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, (argv, err)
        assert str(run / "run.json") in err[0] and f"dinomap check {run} --repair" in err[0], err
        assert ("empty" if not broken else "does not parse") in err[0]
    assert main(["check", str(run)]) == 1


def test_repair_restores_the_previous_run_json(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = run / "run.json.bak"
    assert backup.is_file(), "no run.json.bak after an update"
    good = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(good)[:100])
    capsys.readouterr()
    assert main(["check", str(run), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "restored from run.json.bak" in out and "passed" in out.splitlines()[-1]
    restored = json.loads((run / "run.json").read_text())
    assert restored["model"] == good["model"] and restored["weights"] == good["weights"]
    assert restored["counts"]["stored"] == good["counts"]["stored"]
    assert restored["status"] in ("complete", "interrupted")  # never a "running" left over
    assert main(["map", str(run), "--methods", "pca", "--no-plots", "-q"]) == 0


def test_a_missing_run_json_comes_back_from_its_backup(run: Path) -> None:
    good = json.loads((run / "run.json").read_text())
    (run / "run.json").unlink()
    assert not check_run(run).passed
    result = check_run(run, repair=True)
    assert result.passed and any("restored from run.json.bak" in r for r in result.repaired)
    assert json.loads((run / "run.json").read_text())["model"] == good["model"]


def test_repair_rebuilds_run_json_from_the_shards(run: Path) -> None:
    (run / "run.json").write_text("")
    (run / "run.json.bak").unlink()
    result = check_run(run, repair=True)
    assert result.passed, result.problems
    assert any("rebuilt" in line and "random-init" in line for line in result.repaired)
    info = json.loads((run / "run.json").read_text())
    assert info["weights"]["random_init"] is True  # never passed off as trained weights
    assert info["counts"]["stored"] == len(load_embeddings(run))
    assert check_run(run).passed


def test_repeated_rows_are_reported_and_dropped(
    run: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    n = len(load_embeddings(run))
    shard = next((run / "embeddings").glob("part-*.parquet"))
    shutil.copy(shard, run / "embeddings" / "part-00001.parquet")  # what two writers left
    assert len(pd.read_parquet(run / "embeddings")) == 2 * n
    with caplog.at_level(logging.WARNING):
        assert len(load_embeddings(run)) == n
    assert f"stores {n} row(s) twice" in caplog.text
    capsys.readouterr()
    assert main(["check", str(run)]) == 1
    assert f"PROBLEM   {n} stored rows repeat" in capsys.readouterr().out
    assert main(["check", str(run), "--repair"]) == 0
    assert len(pd.read_parquet(run / "embeddings")) == n
    assert check_run(run).passed


def test_stale_and_missing_outputs_are_named(run: Path, image_folder: Path) -> None:
    assert check_run(run).passed
    assert main(["report", str(run), "--no-thumbnails", "--no-slides", "-q"]) == 0
    assert check_run(run).passed
    new = image_folder / "cat" / "img_new.png"
    shutil.copy(next(image_folder.rglob("*.png")), new)
    new.write_bytes(new.read_bytes())  # another image of the same content, another path
    assert main(["embed", str(image_folder), "--out", str(run), *EMBED]) == 0
    problems = check_run(run).problems
    assert any("maps.parquet has" in p and "dinomap map" in p for p in problems), problems
    assert any("stale" in p for p in problems), problems
    assert main(["map", str(run), "--methods", "pca", "--no-plots", "-q"]) == 0
    problems = check_run(run).problems
    assert any("report.html is older than" in p for p in problems), problems
