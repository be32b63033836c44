"""End-to-end CLI checks of the downstream commands on a small synthetic run (the CLI imports
only the module of the command it runs, so these do not depend on the other commands)."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

from dinomap.cli import main as cli_main

from .conftest import make_planted, write_run


@pytest.fixture
def cli():
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
    assert "k-means needs --n-clusters" in capsys.readouterr().err
    assert cli(["duplicates", str(run), "--threshold", "2"]) == 2


def test_cli_end_to_end_on_an_embedded_image_folder(tmp_path, capsys):
    """embed (tiny random-init ViT) -> search by a new file -> duplicates -> project on PCA.

    A byte copy of a run image embeds to the same vector with the run's own model, so it must
    come back with similarity 1 to the original and land on the original's PCA coordinates.
    (A random-init ViT gives nearly collinear embeddings, so the similarity ranking itself is not
    tested here; the synthetic tests cover it.)"""
    import shutil

    import numpy as np

    from dinomap import load_embeddings
    from dinomap.reduce import get_reducer

    from ..conftest import TINY_CLI_ARGS, write_images

    folder = tmp_path / "images"
    originals = write_images(folder, n_per_class=3)
    shutil.copy(originals[0], folder / "dog" / "copy_of_cat0.png")  # an exact duplicate
    run = tmp_path / "run"
    assert cli_main.main(["embed", str(folder), "--out", str(run), "-q", *TINY_CLI_ARGS,
                          "--batch-size", "4", "--workers", "0"]) == 0  # fmt: skip
    emb = load_embeddings(run)
    assert emb.random_init and len(emb) == 7

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    query = new_dir / "query.png"
    shutil.copy(originals[4], query)
    capsys.readouterr()
    assert cli_main.main(["search", str(run), str(query), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "(new image)" in out
    hits = {line.split()[2]: float(line.split()[1]) for line in out.splitlines()[1:4]}
    assert hits.get(str(originals[4]), 0.0) >= 0.99999
    from dinomap.downstream.search import embed_new_images

    X_q, ok, errors = embed_new_images([str(query)], run)
    assert ok == [str(query)] and errors == []
    np.testing.assert_allclose(X_q[0], emb.X[emb.paths.index(str(originals[4]))], atol=1e-5)

    capsys.readouterr()
    assert cli_main.main(["duplicates", str(run)]) == 2  # 0.95 links every pair: refused
    err = capsys.readouterr().err
    assert "links every pair of the 7 images" in err and err.count("\n") == 1, err
    assert cli_main.main(["duplicates", str(run), "--threshold", "1"]) == 0
    assert "at cosine >= 1 among 7 images" in capsys.readouterr().out
    with open(run / "downstream" / "duplicates.csv", newline="") as fh:
        exact = {r["path"] for r in csv.DictReader(fh) if r["kind"] == "exact"}
    assert exact == {str(originals[0]), str(folder / "dog" / "copy_of_cat0.png")}
    stamped = json.loads((run / "downstream" / "duplicates.json").read_text())
    assert stamped["random_init"] is True

    pca = get_reducer("pca", random_state=0)
    old = pca.fit_transform(emb.X)
    pca.save(run / "mappers" / "pca")
    assert cli_main.main(["project", str(run), str(new_dir), "-q"]) == 0
    placed = pq.read_table(run / "downstream" / "projected" / "projected.parquet").to_pandas()
    row = emb.paths.index(str(originals[4]))
    spread = float(np.ptp(old, axis=0).max())
    assert spread > 0
    assert np.abs(placed[["pca_x", "pca_y"]].to_numpy()[0] - old[row]).max() <= 1e-3 * spread
    assert (run / "downstream" / "projected" / "pca.png").is_file()
