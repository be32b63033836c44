"""Every parameter is checked before any work, and errors name the flags as typed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dinomap.cli.main import main

from .conftest import TINY_CLI_ARGS

RUN = ["--workers", "0", "--runtime", "torch", "--device", "cpu", "-q", *TINY_CLI_ARGS]


def _refuse(monkeypatch: pytest.MonkeyPatch, targets: tuple[str, ...], what: str) -> None:
    """Make each of ``targets`` fail the test if it is reached: ``what`` happened too early."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError(f"{what} before the parameters were checked")

    for target in targets:
        monkeypatch.setattr(target, refuse)


def _no_image_read(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse(monkeypatch, ("dinomap.embed.extract._load_encoder",
                          "dinomap.embed.extract.resume_plan"), "an image was read")  # fmt: skip


@pytest.mark.parametrize(
    ("param", "says"),
    [("nosuch.x=1", "--param nosuch.*: method must be one of"),
     ("tsne.perplexity=-3", "perplexity must be a number > 0"),
     ("tsne.perplexity=50", "perplexity=50 is too large for 8 points"),
     ("umap.nosuch=1", "unknown parameter(s) ['nosuch'] for method 'umap'")],
)  # fmt: skip
def test_run_checks_map_parameters_before_embedding(
    image_folder: Path, tmp_path: Path, param: str, says: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _no_image_read(monkeypatch)
    out = tmp_path / "fresh"
    assert main(["run", str(image_folder), "--out", str(out), "--param", param, *RUN]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists(), "a refused command left a run directory behind"


def test_map_checks_parameters_before_loading_the_run(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = tmp_path / "run"
    assert main(["embed", str(image_folder), "--out", str(run), *RUN]) == 0

    _refuse(monkeypatch, ("dinomap.maps.fit.load_points",), "the embeddings were loaded")
    capsys.readouterr()
    assert main(["map", str(run), "--methods", "pca,tsne", "--param", "tsne.perplexity=-3"]) == 2
    assert "perplexity must be a number > 0; got -3" in capsys.readouterr().err
    assert not (run / "maps.parquet").exists()


def test_errors_name_the_flags_as_typed(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["embed", str(image_folder), "--out", str(run), *RUN]) == 0
    capsys.readouterr()
    assert main(["cluster", str(run), "--method", "kmeans"]) == 2
    err = capsys.readouterr().err
    assert "--n-clusters" in err and "n_clusters" not in err, err
    assert main(["cluster", str(run), "--min-cluster-size", "1"]) == 2
    assert "--min-cluster-size must be an integer >= 2; got 1." in capsys.readouterr().err


def test_project_checks_its_maps_before_embedding(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = tmp_path / "run"
    assert main(["embed", str(image_folder), "--out", str(run), *RUN]) == 0
    assert main(["map", str(run), "--methods", "pca", "--no-plots", "-q"]) == 0

    _refuse(monkeypatch, ("dinomap.downstream.search.embed_new_images",), "an image was embedded")
    capsys.readouterr()
    assert main(["project", str(run), str(image_folder), "--method", "umap"]) == 2
    assert "method must be one of 'pca'; got 'umap'" in capsys.readouterr().err


def test_run_checks_against_the_points_the_maps_will_hold(
    image_folder: Path, tmp_path: Path
) -> None:
    """Two new images into a run of eight: perplexity 2 is fine for the ten points mapped,
    though it would be too large for the two new ones alone."""
    from .conftest import write_images

    run = tmp_path / "run"
    assert main(["embed", str(image_folder), "--out", str(run), *RUN]) == 0
    more = tmp_path / "more"
    write_images(more, n_per_class=1, seed=5)
    assert main(["run", str(more), "--out", str(run), "--methods", "pca,tsne",
                 "--param", "tsne.perplexity=2", "--no-export", "--no-report", *RUN]) == 0  # fmt: skip
