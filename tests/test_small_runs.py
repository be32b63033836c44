"""Any collection size: ``dinomap run`` on 1, 2, 5 and 12 images makes every map the data allows.

Defaults that depend on the number of points (t-SNE's perplexity, UMAP's neighbours, the
held-out split, HDBSCAN's sizes) adapt when the user did not set them and are recorded in
``metrics.json``; a method that cannot run is skipped (recorded, one line); a value the user set
is never changed; one image embeds and the run says why there are no maps; and the manifest a
report page exports (``path,label`` + score columns) is accepted unchanged. Tiny random-init
ViT, no export, so the whole file stays fast.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dinomap.cli.main import main
from dinomap.downstream.cluster import cluster_embeddings
from dinomap.exceptions import InvalidParameterError
from dinomap.maps import make_maps
from dinomap.maps.small_n import TooFewPointsError

from .conftest import TINY_CLI_ARGS, write_images

RUN_ARGS = [*TINY_CLI_ARGS, "--no-export", "-q"]
#: Parametric UMAP's own epoch count (200 on a handful of points) dominates these runs.
FAST_PUMAP = ["--param", "parametric_umap.n_epochs=5"]


def _strict_json(path: Path) -> Any:
    """JSON as a browser reads it: NaN / Infinity are errors."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path.name} holds {token}, which JSON.parse rejects")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _points(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    X = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    return X, [("a", "b")[i % 2] for i in range(n)]


def test_twelve_images_make_every_map_and_label_issues(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "img", n_per_class=6)
    run = tmp_path / "run"
    # a user-set perplexity is kept; the other n-dependent defaults adapt
    assert main(["run", str(tmp_path / "img"), "--out", str(run), *RUN_ARGS,
                 "--param", "tsne.perplexity=2", *FAST_PUMAP]) == 0  # fmt: skip
    metrics = _strict_json(run / "metrics.json")
    assert set(metrics["methods"]) == {"pca", "tsne", "umap", "parametric_umap", "tsne_nn"}
    methods = metrics["methods"]
    assert methods["tsne"]["params"]["perplexity"] == 2 and "adapted" not in methods["tsne"]
    assert methods["umap"]["adapted"] == {"n_neighbors": {"default": 15, "used": 11}}
    assert methods["umap"]["params"]["n_neighbors"] == 11
    assert "heldout" in methods["parametric_umap"]["adapted"]
    assert metrics["small_n"]["n_samples"] == 12 and metrics["small_n"]["skipped"] == {}
    assert metrics["metrics"]["k"] < 10  # the map metrics' k adapted too
    maps = pq.read_table(run / "maps.parquet").to_pandas()
    assert len(maps) == 12 and maps.notna().all().all()
    assert (run / "report.html").is_file() and (run / "slides.md").is_file()
    html = (run / "report.html").read_text(encoding="utf-8")  # the page says what adapted
    assert "Defaults adapted to 12 images" in html and "n_neighbors 15 -&gt; 11" in html
    issues = pq.read_table(run / "downstream" / "label_issues.parquet").to_pandas()
    assert len(issues) == 12 and set(issues["label"]) == {"cat", "dog"}
    info = _strict_json(run / "downstream" / "label_issues.json")
    assert info["embeddings"] == metrics["embeddings"]
    # HDBSCAN's default sizes fit a dozen images
    from dinomap.store import load_embeddings

    clusters = cluster_embeddings(load_embeddings(run).X)
    assert clusters.params["min_cluster_size"] == 4 and clusters.params["min_samples"] == 4


def test_two_images_from_an_exported_selection_manifest(tmp_path: Path) -> None:
    """The CSV a report page exports (path,label + scores, relative or absolute paths, any
    text in labels) is accepted unchanged; two images make the PCA map and nothing else."""
    paths = write_images(tmp_path / "data" / "img", n_per_class=1)
    sel = tmp_path / "data" / "selection.csv"
    with open(sel, "w", newline="", encoding="utf-8-sig") as fh:  # with a BOM, as Excel likes
        w = csv.writer(fh)
        w.writerow(["path", "label", "outlier_score", "label_issue_score", "cluster"])
        w.writerow([paths[0].relative_to(sel.parent).as_posix(), 'cat, "the" <b>', 0.5, "", -1])
        w.writerow([str(paths[1]), "dog 🐕", 0.25, 0.9, 3])
    run = tmp_path / "run"
    assert main(["run", str(sel), "--out", str(run), *RUN_ARGS]) == 0
    from dinomap.store import load_embeddings

    emb = load_embeddings(run)
    assert sorted(emb.paths) == sorted(str(p.resolve()) for p in paths)
    assert dict(zip(emb.paths, emb.labels or [], strict=True)) == {
        str(paths[0].resolve()): 'cat, "the" <b>',
        str(paths[1].resolve()): "dog 🐕",
    }
    metrics = _strict_json(run / "metrics.json")
    assert list(metrics["methods"]) == ["pca"]
    skipped = metrics["small_n"]["skipped"]
    assert set(skipped) == {"tsne", "umap", "parametric_umap", "tsne_nn"}
    assert "needs at least 3 points" in skipped["tsne"]
    assert "3 points" in metrics["small_n"]["metrics"]
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "t-SNE skipped: " in html and "needs at least 3 points" in html
    # the same manifest embeds unchanged with `dinomap embed`
    assert main(["embed", str(sel), "--out", str(tmp_path / "emb"), *TINY_CLI_ARGS, "-q"]) == 0
    assert len(load_embeddings(tmp_path / "emb")) == 2


def test_one_image_embeds_and_says_why_there_are_no_maps(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "img", n_per_class=1, classes=("cat",))
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "img"), "--out", str(run), *TINY_CLI_ARGS,
                 "--no-export"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("no maps:")]
    assert len(lines) == 1 and "1 point" in lines[0] and "at least 2 images" in lines[0]
    info = json.loads((run / "run.json").read_text())
    assert info["counts"]["stored"] == 1 and "1 point" in info["maps"]["skipped"]
    assert not (run / "maps.parquet").exists() and (run / "report.html").is_file()
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "No 2-D maps in this run: " in html and "1 point" in html  # why, not "run maps"
    assert not (run / "downstream" / "label_issues.parquet").exists()  # one class: nothing to check


def test_five_points_adapt_the_defaults_and_record_them(caplog) -> None:
    X, labels = _points(5)
    with caplog.at_level(logging.WARNING, logger="dinomap.maps.fit"):
        res = make_maps((X, labels), methods="pca,tsne,tsne_nn", plots=False, device="cpu")
    entries = res.metrics["methods"]
    assert set(entries) == {"pca", "tsne", "tsne_nn"}
    assert entries["tsne"]["adapted"]["perplexity"] == {"default": 30.0, "used": 4 / 3}
    agreement = entries["tsne_nn"].get("agreement")
    assert agreement is None or math.isfinite(agreement)  # never NaN in metrics.json
    said = [r.message for r in caplog.records if r.name == "dinomap.maps.fit"]
    assert said == [
        "t-SNE: perplexity=30.0 is too large for 5 points; using 1.333 (set tsne.perplexity "
        "to choose)",
        # the t-SNE network's own affinities (when fit is given none) follow the same rule
        "t-SNE NN: perplexity=30.0 is too large for 5 points; using 1.333 (set "
        "tsne_nn.perplexity to choose)",
    ]  # one line per adapted default
    assert all(np.isfinite(Y).all() and Y.shape == (5, 2) for Y in res.coords.values())


def test_three_points_skip_what_cannot_run_and_user_values_are_never_changed() -> None:
    X, labels = _points(3)
    res = make_maps((X, labels), warm_up_umap=False, plots=False, device="cpu",
                    params={"parametric_umap": {"n_epochs": 5}})  # fmt: skip
    skipped = res.metrics["small_n"]["skipped"]
    assert "tsne" in skipped and "tsne_nn" in skipped and "pca" in res.coords
    assert set(res.coords) | set(skipped) == {"pca", "tsne", "umap", "parametric_umap", "tsne_nn"}
    assert set(res.mappers) == set(res.coords)  # no unfitted mapper is saved
    with pytest.raises(InvalidParameterError, match="perplexity=30 is too large for 5 points"):
        make_maps(_points(5), methods="tsne", params={"tsne": {"perplexity": 30}}, plots=False)
    with pytest.raises(TooFewPointsError, match="at least 2 images"):
        make_maps(_points(1), plots=False)


def test_small_defaults_do_not_change_large_runs() -> None:
    """At 150 points nothing adapts (t-SNE's perplexity 30 fits), so nothing is recorded."""
    from dinomap.maps.small_n import estimators_for, small_n_record

    names = ["pca", "tsne", "umap", "parametric_umap", "tsne_nn"]
    mappers, adapted, skipped = estimators_for(names, {}, 0, None, "cpu", 150)
    assert list(mappers) == names and adapted == {}
    assert skipped == {} and small_n_record(150, adapted, skipped) is None
    assert mappers["tsne"].perplexity == 30 and mappers["umap"].n_neighbors == 15
    X, _ = _points(150)
    assert pd.Series(cluster_embeddings(X).params)["min_cluster_size"] == 5
