"""Placing new points on the saved maps of a run."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pandas as pd
import pytest

from dinomap.downstream import project as project_mod
from dinomap.downstream.project import project_embeddings, project_images
from dinomap.exceptions import DinomapError, InvalidParameterError

from .conftest import make_planted, write_run


def _knn_label_agreement(old, old_labels, new, label, k=10):
    """Share of new points whose k nearest old points on the map mostly carry ``label``."""
    d = ((new[:, None, :] - old[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = [Counter(old_labels[j] for j in row).most_common(1)[0][0] for row in nearest]
    return float(np.mean([v == label for v in votes]))


def _fit_and_save(run, X, methods):
    from dinomap.reduce import get_reducer

    maps = {}
    for method in methods:
        if method == "tsne":
            # n_jobs=1: on a shared 2-core machine openTSNE's thread pool is 10x slower.
            mapper = get_reducer("tsne", n_iter=250, n_jobs=1, random_state=0)
            maps[method] = mapper.fit_transform(X)
        elif method == "tsne_nn":
            mapper = get_reducer("tsne_nn", max_epochs=150, random_state=0, device="cpu")
            maps[method] = mapper.fit_transform(X, maps["tsne"])
        elif method == "parametric_umap":
            mapper = get_reducer("parametric_umap", n_epochs=30, random_state=0, device="cpu")
            maps[method] = mapper.fit_transform(X)
        else:
            mapper = get_reducer(method, random_state=0)
            maps[method] = mapper.fit_transform(X)
        mapper.save(run / "mappers" / method)
    return maps


def _new_points(planted, blob, n, seed=7):
    rng = np.random.default_rng(seed)
    dim = planted.X.shape[1]
    return (planted.centres[blob] + rng.normal(scale=planted.noise, size=(n, dim))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def mapped_run(tmp_path_factory):
    """One run with PCA, t-SNE and t-SNE NN maps fitted and saved (shared: fitting is the slow
    part; tests write only under downstream/)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLP: threads only add contention
    planted = make_planted(n_dup_groups=0, n_outliers=0)
    run = write_run(
        tmp_path_factory.mktemp("mapped") / "run", planted.X, planted.paths, planted.labels
    )
    try:
        maps = _fit_and_save(run, planted.X, ["pca", "tsne", "tsne_nn"])
    finally:
        torch.set_num_threads(threads)
    frame = {"path": planted.paths, "label": planted.labels}
    for method, xy in maps.items():
        frame[f"{method}_x"] = xy[:, 0].astype(np.float32)
        frame[f"{method}_y"] = xy[:, 1].astype(np.float32)
    pd.DataFrame(frame).to_parquet(run / "maps.parquet")
    return run, planted, maps


def test_new_points_land_in_their_cluster(mapped_run):
    run, planted, maps = mapped_run
    X_new = _new_points(planted, blob=2, n=20)
    names = [f"new_{i:02d}.png" for i in range(20)]
    result = project_embeddings(run, X_new, names)
    assert set(result.coords) == {"pca", "tsne", "tsne_nn"}
    for method, xy in result.coords.items():
        assert xy.shape == (20, 2)
        agreement = _knn_label_agreement(maps[method], planted.labels, xy, "class2")
        assert agreement >= 0.9, (method, agreement)
    out = run / "downstream" / "projected"
    table = pd.read_parquet(out / "projected.parquet")
    assert table["path"].tolist() == names
    np.testing.assert_allclose(table[["tsne_x", "tsne_y"]].to_numpy(), result.coords["tsne"])
    assert pd.read_csv(out / "projected.csv").shape == (20, 7)
    for method in result.coords:
        img = cv2.imread(str(out / f"{method}.png"))
        assert img is not None and img.shape[0] > 300
    info = json.loads((out / "projected.json").read_text())
    assert info["n_new"] == 20 and info["random_init"] is False


def test_a_plot_draws_a_sample_of_a_large_run(mapped_run, monkeypatch):
    """Above PLOT_MAX_OLD points the plot draws a fixed uniform sample of the run (its title
    says so; every class still drawn); the new points are all drawn."""
    run, planted, maps = mapped_run
    n = len(planted.labels)
    monkeypatch.setattr(project_mod, "PLOT_MAX_OLD", n // 4)
    drawn, labels = project_mod._drawn(maps["pca"], list(planted.labels))
    assert len(drawn) == len(labels) == n // 4
    assert set(labels) == set(planted.labels)
    again, _ = project_mod._drawn(maps["pca"], list(planted.labels))
    np.testing.assert_array_equal(drawn, again)  # the same sample every time
    titles = []
    monkeypatch.setattr("matplotlib.axes.Axes.set_title", lambda ax, t, *a, **k: titles.append(t))
    project_embeddings(run, _new_points(planted, blob=1, n=5), list("abcde"), methods=["pca"],
                       out_dir=run / "downstream" / "sampled")  # fmt: skip
    assert titles == [f"PCA: 5 new images over {n:,} of the run ({n // 4:,} drawn)"]


def test_methods_filter_and_errors(mapped_run):
    run, planted, _ = mapped_run
    X_new = _new_points(planted, blob=0, n=3)
    result = project_embeddings(run, X_new, ["a", "b", "c"], methods=["pca"], write=False)
    assert list(result.coords) == ["pca"] and result.directory is None
    with pytest.raises(InvalidParameterError, match="Did you mean 'tsne'"):
        project_embeddings(run, X_new, ["a", "b", "c"], methods=["tnse"])
    with pytest.raises(InvalidParameterError, match="features"):
        project_embeddings(run, X_new[:, :10], ["a", "b", "c"])


def test_run_without_mappers_says_how_to_make_them(planted_run):
    run, planted = planted_run
    with pytest.raises(DinomapError, match="no fitted mappers"):
        project_embeddings(run, planted.X[:2], ["a", "b"])


def test_project_images_embeds_folder_like_the_run(mapped_run, image_files, monkeypatch):
    run, planted, maps = mapped_run
    files = image_files(4)
    X_new = _new_points(planted, blob=1, n=4)
    calls = []

    def fake_embed(paths, run_dir, progress=None):
        calls.append(list(paths))
        return X_new[:3], list(paths[:3]), [(paths[3], "cannot decode")]

    from dinomap.downstream import search as search_mod

    monkeypatch.setattr(search_mod, "embed_new_images", fake_embed)
    result = project_images(run, str(files[0].rsplit("/", 1)[0]), methods=["pca", "tsne"])
    assert calls == [files]  # the whole folder, sorted
    assert result.paths == files[:3]
    assert result.errors == [(files[3], "cannot decode")]
    assert (run / "downstream" / "projected" / "errors.csv").is_file()
    assert _knn_label_agreement(maps["pca"], planted.labels, result.coords["pca"], "class1") == 1.0
    assert project_mod.PROJECTED_DIR == "projected"


@pytest.mark.slow
def test_umap_maps_place_new_points_in_their_cluster(tmp_path):
    planted = make_planted(n_dup_groups=0, n_outliers=0)
    run = write_run(tmp_path / "run", planted.X, planted.paths, planted.labels)
    maps = _fit_and_save(run, planted.X, ["umap", "parametric_umap"])
    X_new = _new_points(planted, blob=3, n=20)
    result = project_embeddings(run, X_new, [f"n{i}" for i in range(20)])
    for method in ("umap", "parametric_umap"):
        agreement = _knn_label_agreement(
            maps[method], planted.labels, result.coords[method], "class3"
        )
        assert agreement >= 0.9, (method, agreement)
