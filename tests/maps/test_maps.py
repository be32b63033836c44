"""make_maps and `dinomap map`: the run-directory contract (files, columns, keys, flags)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dinomap import make_maps
from dinomap.cli.main import main
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.maps import format_metrics_table, resolve_methods
from dinomap.reduce import load_reducer

METRIC_KEYS = {"params", "fit_seconds", "trustworthiness", "knn_preservation", "knn_accuracy"}


def test_resolve_methods_orders_and_adds_dependencies() -> None:
    assert resolve_methods("umap, pca") == ["pca", "umap"]
    assert resolve_methods(["tsne_nn"]) == ["tsne", "tsne_nn"]
    with pytest.raises(InvalidParameterError, match="Did you mean 'umap'"):
        resolve_methods("pca,umpa")
    with pytest.raises(InvalidParameterError, match="at least one"):
        resolve_methods(" , ")


def test_make_maps_from_arrays_writes_the_contract(tmp_path: Path, make_clusters, fast_tsne):
    X, labels = make_clusters(150, 24, k=3)
    out = tmp_path / "out"
    res = make_maps(
        (X, labels), methods="pca,tsne", out_dir=out, random_state=0, params={"tsne": fast_tsne}
    )
    table = pq.read_table(out / "maps.parquet")
    assert table.column_names == ["path", "label", "pca_x", "pca_y", "tsne_x", "tsne_y"]
    assert str(table.schema.field("tsne_x").type) == "float"
    assert table.column("label").to_pylist() == labels
    np.testing.assert_array_equal(table.column("tsne_x").to_numpy(), res.coords["tsne"][:, 0])

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 150 and metrics["random_init"] is False
    assert set(metrics["methods"]) == {"pca", "tsne"}
    for entry in metrics["methods"].values():
        assert set(entry) >= METRIC_KEYS
        assert entry["knn_accuracy"] > 0.9  # three well separated clusters
    assert metrics["methods"]["tsne"]["params"]["perplexity"] == fast_tsne["perplexity"]
    assert metrics["metrics"]["k"] == 10

    plots = {p.name for p in (out / "plots").iterdir()}
    assert plots == {"pca_embeddings.png", "tsne_embeddings.png", "all_maps.png"}
    for name in ("pca", "tsne"):
        mapper = load_reducer(out / "mappers" / name)
        np.testing.assert_allclose(mapper.embedding_, res.coords[name])
        np.testing.assert_allclose(
            mapper.transform(X[:4]), res.mappers[name].transform(X[:4]), atol=1e-4
        )
    assert "trustworthiness" in res.table and "tsne" in res.table


def test_make_maps_on_a_run_dir_is_stamped_random_init_and_keeps_other_methods(
    make_run, fast_tsne, capsys
):
    run = make_run(n=120, random_init=True)
    make_maps(run, methods="pca", random_state=0, verbose=True)
    assert "random-init" in capsys.readouterr().out
    first = pq.read_table(run / "maps.parquet")
    assert first.column("path").to_pylist()[0].startswith("/imgs/")
    # a second call with another method keeps the PCA map, metrics and plot
    make_maps(run, methods=["tsne"], random_state=0, params={"tsne": fast_tsne}, plots=False)
    table = pq.read_table(run / "maps.parquet")
    assert {"pca_x", "tsne_x"} <= set(table.column_names)
    np.testing.assert_array_equal(table.column("pca_x"), first.column("pca_x"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["random_init"] is True
    assert list(metrics["methods"]) == ["pca", "tsne"]
    assert "random-init" in format_metrics_table(metrics)


def test_random_init_plots_differ_from_normal_ones(tmp_path: Path, make_clusters) -> None:
    X, labels = make_clusters(60, 8, k=3)
    for flag in (False, True):
        make_maps((X, labels), methods="pca", out_dir=tmp_path / str(flag), random_init=flag)
    a = (tmp_path / "False" / "plots" / "pca_embeddings.png").read_bytes()
    b = (tmp_path / "True" / "plots" / "pca_embeddings.png").read_bytes()
    assert a[:8] == b"\x89PNG\r\n\x1a\n" and a != b


def test_same_seed_gives_identical_pca_and_tsne_maps(make_clusters, fast_tsne) -> None:
    X, labels = make_clusters(150, 24, k=3)
    kw = {"methods": "pca,tsne", "random_state": 7, "params": {"tsne": fast_tsne}}
    a = make_maps((X, labels), evaluate=False, **kw)
    b = make_maps((X, labels), evaluate=False, **kw)
    for name in ("pca", "tsne"):
        np.testing.assert_array_equal(a.coords[name], b.coords[name])


def test_bad_parameters_fail_before_any_work(tmp_path: Path, make_clusters) -> None:
    X, labels = make_clusters(40, 8)
    out = tmp_path / "out"
    with pytest.raises(InvalidParameterError, match="perplexity=30 is too large for 40 points"):
        # a perplexity the user gave is refused (only the default adapts to a small n)
        make_maps((X, labels), methods="pca,tsne", out_dir=out, params={"tsne": {"perplexity": 30}})
    assert not out.exists()  # nothing was written, PCA did not even run
    with pytest.raises(InvalidParameterError, match="unknown parameter"):
        make_maps((X, labels), methods="pca", params={"pca": {"perplexity": 3}})
    X[0, 0] = np.nan
    with pytest.raises(InvalidParameterError, match="NaN or infinite"):
        make_maps((X, labels), methods="pca")
    with pytest.raises(DinomapError, match="no map can be made from 1 point"):
        make_maps((X[1:2], labels[1:2]), methods="pca")  # 2 points make a PCA map (small_n)
    with pytest.raises(InvalidParameterError, match="labels must have 39 entries"):
        make_maps((X[1:], labels[:3]), methods="pca")
    with pytest.raises(DinomapError, match="does not exist"):
        make_maps(tmp_path / "missing")


def test_cli_features_file(tmp_path: Path, make_clusters, capsys) -> None:
    X, labels = make_clusters(90, 12, k=3)
    np.save(tmp_path / "features.npy", X)
    np.save(tmp_path / "labels.npy", np.array(labels))
    out = tmp_path / "f"
    argv = ["map", str(tmp_path / "features.npy"), "--labels", str(tmp_path / "labels.npy")]
    assert main([*argv, "--out", str(out), "--methods", "pca", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["methods"]["pca"]["knn_accuracy"] > 0.9
    assert (out / "plots" / "pca_embeddings.png").is_file()
    assert pq.read_table(out / "maps.parquet").column("label").to_pylist() == labels
    # a features file needs --out; a bad method is one line on stderr with exit code 2
    assert main([*argv, "--methods", "pca"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--methods", "tsnee"]) == 2
    assert "Did you mean 'tsne'" in capsys.readouterr().err


def test_cli_run_dir_with_params(make_run, capsys) -> None:
    run = make_run(n=100)
    code = main(["map", str(run), "--methods", "tsne", "--seed", "3", "--no-mappers",
                 "--param", "tsne.perplexity=8", "--param", "tsne.n_iter=50",
                 "--param", "tsne.early_exaggeration_iter=50"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "t-SNE" in out and "trustworthiness" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["methods"]["tsne"]["params"]["perplexity"] == 8
    assert metrics["random_state"] == 3
    assert not (run / "mappers").exists()
