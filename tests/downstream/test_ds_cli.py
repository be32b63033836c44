"""End-to-end CLI checks of the downstream commands on a small synthetic run.

``COMMANDS`` is narrowed to the downstream modules so these tests do not depend on the other
commands being importable."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

from dinomap.cli import main as cli_main

from .conftest import make_planted, write_run

DOWNSTREAM = ("search", "cluster", "outliers", "duplicates")


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", DOWNSTREAM)
    return cli_main.main


@pytest.fixture
def small_run(tmp_path, image_files):
    """A run whose first paths are real image files, so contact sheets show thumbnails."""
    planted = make_planted(per_blob=30, n_dup_groups=3, n_outliers=3)
    files = image_files(len(planted.paths))
    run = write_run(tmp_path / "run", planted.X, files, planted.labels)
    return run, planted, files


def test_cli_search_cluster_outliers_duplicates(cli, small_run, capsys):
    run, planted, files = small_run
    assert cli(["search", str(run), files[0], "-k", "4"]) == 0
    out = capsys.readouterr().out
    assert "(in the run)" in out and "contact sheet:" in out
    assert len(list((run / "downstream" / "search").glob("*.png"))) == 1

    assert cli(["cluster", str(run)]) == 0
    out = capsys.readouterr().out
    assert "5 clusters" in out and "ARI" in out
    assert pq.read_table(run / "downstream" / "clusters.parquet").num_rows == len(files)

    assert cli(["cluster", str(run), "--method", "kmeans", "--n-clusters", "3", "--pca", "0"]) == 0
    assert json.loads((run / "downstream" / "clusters.json").read_text())["n_clusters"] == 3
    capsys.readouterr()

    assert cli(["outliers", str(run), "--top", "3", "--method", "lof"]) == 0
    out = capsys.readouterr().out
    for i in planted.outliers:
        assert files[i] in out
    assert (run / "downstream" / "outliers.png").is_file()

    assert cli(["duplicates", str(run), "--threshold", "0.95", "--index", "hnsw"]) == 0
    out = capsys.readouterr().out
    assert "3 near-duplicate groups" in out
    with open(run / "downstream" / "duplicates.csv", newline="") as fh:
        groups = {r["group"] for r in csv.DictReader(fh)}
    assert len(groups) == 3


def test_cli_errors_are_one_line(cli, small_run, capsys):
    run, _, _ = small_run
    assert cli(["search", str(run), "no/such/image.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dinomap search: error:") and err.count("\n") == 1
    assert cli(["cluster", str(run), "--method", "kmeans"]) == 2
    assert "n_clusters" in capsys.readouterr().err
    assert cli(["duplicates", str(run), "--threshold", "2"]) == 2
