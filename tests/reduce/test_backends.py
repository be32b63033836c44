"""Backends behind the one interface: get_reducer(name, backend=...), TorchDR fitted for real,
cuML only dispatched (its missing-package error), and the backend through make_maps."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from dinomap.data.synthetic import make_clusters
from dinomap.exceptions import InvalidParameterError, MissingDependencyError
from dinomap.metrics import trustworthiness
from dinomap.reduce.registry import get_reducer, load_reducer, reducer_spec

HAVE_CUML = importlib.util.find_spec("cuml") is not None

#: TorchDR's UMAP may lose at most this much trustworthiness against umap-learn's on the same
#: data (measured: 1,500 x 32 synthetic clusters, 500 iterations: 0.968 vs 0.976; at 2,000
#: points 0.973 vs 0.976).
TORCHDR_MARGIN = 0.02


def test_backend_names_and_defaults() -> None:
    assert reducer_spec("tsne").backend_names() == ["opentsne", "cuml"]
    assert reducer_spec("umap").backend_names() == ["umap-learn", "cuml", "torchdr"]
    assert type(get_reducer("tsne", backend="opentsne")).__name__ == "TSNEReducer"
    assert type(get_reducer("umap", backend="umap-learn")).__name__ == "UMAPReducer"
    assert type(get_reducer("umap")).__name__ == "UMAPReducer"
    assert get_reducer("umap", backend="torchdr", n_neighbors=10).n_neighbors == 10


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidParameterError, match=r"torchdr.*Did you mean 'torchdr'"):
        get_reducer("umap", backend="torchd")
    with pytest.raises(InvalidParameterError, match="pca backend must be one of 'dinomap'"):
        get_reducer("pca", backend="cuml")


@pytest.mark.skipif(HAVE_CUML, reason="cuML is installed (a CUDA machine): nothing to check")
@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_cuml_missing_names_what_to_install(method: str) -> None:
    with pytest.raises(MissingDependencyError) as info:
        get_reducer(method, backend="cuml")
    text = str(info.value)
    assert "'cuml'" in text and "not installed" in text and "pip install" in text
    assert isinstance(info.value, ImportError)


def test_torchdr_umap_quality_close_to_umap_learn(tmp_path) -> None:
    X, _ = make_clusters(1000, 32, 5, 4, 0)
    tdr = get_reducer("umap", backend="torchdr", random_state=0, n_jobs=1)
    Y = tdr.fit_transform(X)
    assert Y.shape == (1000, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    ref = get_reducer("umap", random_state=0).fit_transform(X)
    t_tdr, t_ref = trustworthiness(X, Y), trustworthiness(X, ref)
    assert t_tdr >= t_ref - TORCHDR_MARGIN, (t_tdr, t_ref)
    assert t_tdr > 0.9
    with pytest.raises(InvalidParameterError, match="cannot place new points"):
        tdr.transform(X[:5])
    back = load_reducer(tdr.save(tmp_path / "tdr"))
    assert type(back).__name__ == "TorchDRUMAPReducer"
    np.testing.assert_array_equal(back.embedding_, tdr.embedding_)


def test_torchdr_backend_through_make_maps(tmp_path) -> None:
    from dinomap.maps import make_maps

    X, y = make_clusters(400, 16, 4, 3, 1)
    res = make_maps((X, y.tolist()), methods="umap", out_dir=tmp_path, plots=False,
                    n_jobs=1, params={"umap": {"backend": "torchdr", "max_iter": 200}})  # fmt: skip
    entry = json.loads((tmp_path / "metrics.json").read_text())["methods"]["umap"]
    assert entry["backend"] == "torchdr"
    assert entry["params"]["max_iter"] == 200
    assert entry["trustworthiness"] > 0.85
    assert res.coords["umap"].shape == (400, 2)
    with pytest.raises(InvalidParameterError, match="umap backend must be one of"):
        make_maps((X, None), methods="umap", params={"umap": {"backend": 3}})
