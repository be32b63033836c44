"""The classic reducers (PCA, t-SNE, UMAP) and their registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dinomap.exceptions import InvalidParameterError, NotFittedError
from dinomap.reduce import (
    PCAReducer,
    TSNEReducer,
    UMAPReducer,
    get_reducer,
    list_reducers,
    load_reducer,
    max_perplexity,
    reducers_supporting,
    require_capability,
)


# ----------------------------------------------------------------------------- registry
def test_registry_knows_the_five_methods() -> None:
    assert list_reducers() == ["pca", "tsne", "umap", "parametric_umap", "tsne_nn"]
    assert isinstance(get_reducer("tsne", perplexity=12), TSNEReducer)
    assert get_reducer("tsne", perplexity=12).perplexity == 12


def test_unknown_method_lists_valid_ones_and_suggests() -> None:
    with pytest.raises(InvalidParameterError) as err:
        get_reducer("tnse")
    msg = str(err.value)
    assert "'pca'" in msg and "'umap'" in msg and "Did you mean 'tsne'?" in msg


def test_bad_parameter_name_is_a_clear_error() -> None:
    with pytest.raises(InvalidParameterError, match="bad parameters for method 'umap'"):
        get_reducer("umap", perplexity=30)


def test_capability_error_names_the_methods_that_can() -> None:
    assert reducers_supporting("inverse_transform") == ["pca"]
    require_capability("pca", "inverse_transform")  # no error
    with pytest.raises(InvalidParameterError, match="methods that can: pca"):
        require_capability("tsne", "inverse_transform")
    with pytest.raises(InvalidParameterError, match="parametric_umap, tsne_nn"):
        require_capability("umap", "export")


def test_inverse_transform_of_tsne_names_pca() -> None:
    with pytest.raises(InvalidParameterError, match="methods that can: pca"):
        TSNEReducer().inverse_transform(np.zeros((2, 2)))


def test_documented_defaults() -> None:
    t = TSNEReducer()
    assert (t.perplexity, t.pca_components) == (30.0, 50)
    assert t.early_exaggeration_iter + t.n_iter == 1000
    assert (t.negative_gradient_method, t.n_jobs) == ("fft", 1)
    u = UMAPReducer()
    assert (u.n_neighbors, u.min_dist, u.low_memory) == (15, 0.1, True)


# ----------------------------------------------------------------------------- PCA
def test_pca_signs_are_deterministic(make_clusters) -> None:
    X, _ = make_clusters(200, 16)
    a = PCAReducer().fit(X)
    b = PCAReducer().fit(X[::-1].copy())  # same data, other row order
    np.testing.assert_allclose(a.components_, b.components_, atol=1e-5)
    top = np.abs(a.components_).argmax(axis=1)
    assert (a.components_[np.arange(2), top] > 0).all()
    np.testing.assert_allclose(a.transform(X), a.embedding_, atol=1e-4)


def test_pca_inverse_transform_reconstructs_rank_two_data() -> None:
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(50, 2)) @ rng.normal(size=(2, 6)) + 3.0).astype(np.float32)
    pca = PCAReducer().fit(X)
    np.testing.assert_allclose(pca.inverse_transform(pca.embedding_), X, atol=1e-3)


def test_pca_too_many_components() -> None:
    with pytest.raises(InvalidParameterError, match="n_components must be <="):
        PCAReducer(n_components=5).fit(np.random.default_rng(0).normal(size=(10, 3)))


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("cls", [PCAReducer, TSNEReducer, UMAPReducer])
def test_nan_and_inf_are_refused(cls) -> None:
    X = np.random.default_rng(0).normal(size=(40, 5))
    X[3, 1] = np.nan
    X[7, 0] = np.inf
    with pytest.raises(InvalidParameterError, match=r"NaN or infinite values in 2 row"):
        cls().fit(X)


@pytest.mark.parametrize("cls", [TSNEReducer, UMAPReducer])
def test_fewer_than_three_points(cls) -> None:
    with pytest.raises(InvalidParameterError, match="at least 3 samples; got 2"):
        cls().fit(np.zeros((2, 4)))


def test_perplexity_too_large_for_n() -> None:
    X = np.random.default_rng(0).normal(size=(50, 8))
    with pytest.raises(InvalidParameterError) as err:
        TSNEReducer(perplexity=30).fit(X)
    msg = str(err.value)
    assert "perplexity=30 is too large for 50 points" in msg and "at most 16.33" in msg
    assert max_perplexity(50) == pytest.approx(49 / 3)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"perplexity": -1}, "perplexity must be a number > 0"),
        ({"negative_gradient_method": "fast"}, "Did you mean 'fft'"),
        ({"n_iter": 2.5}, "n_iter must be an integer"),
        ({"ints_in_interval": 0}, "ints_in_interval must be a number > 0"),
    ],
)
def test_bad_tsne_parameters(params, match) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        TSNEReducer(**params).validate(100)


def test_umap_n_neighbors_too_large() -> None:
    with pytest.raises(InvalidParameterError, match="n_neighbors=15 is too large for 10 points"):
        UMAPReducer().validate(10)


def test_transform_before_fit_and_wrong_width(make_clusters) -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        PCAReducer().transform(np.zeros((2, 3)))
    X, _ = make_clusters(40, 8)
    pca = PCAReducer().fit(X)
    with pytest.raises(InvalidParameterError, match=r"X has 5 features but .* fitted on 8"):
        pca.transform(np.zeros((2, 5)))


# ----------------------------------------------------------------------------- t-SNE
def test_tsne_same_seed_same_map_and_transform_places_new_points(make_clusters, fast_tsne):
    X, labels = make_clusters(300, 64, k=5)
    a = TSNEReducer(random_state=3, **fast_tsne)
    Ya = a.fit_transform(X[:250])
    Yb = TSNEReducer(random_state=3, **fast_tsne).fit_transform(X[:250])
    assert Ya.dtype == np.float32 and Ya.shape == (250, 2)
    np.testing.assert_array_equal(Ya, Yb)
    assert a.pca_ is not None and a.pca_.components_.shape == (50, 64)
    assert a.gradient_method_ == "fft"
    # new points land in their own cluster: nearest training point has the same label
    new = a.transform(X[250:])
    d = ((new[:, None, :] - Ya[None, :, :]) ** 2).sum(-1)
    nearest = np.asarray(labels[:250])[d.argmin(axis=1)]
    assert (nearest == np.asarray(labels[250:])).mean() >= 0.95


@pytest.mark.slow
def test_tsne_saved_mapper_reloads_in_another_process(tmp_path: Path, make_clusters, fast_tsne):
    X, _ = make_clusters(200, 16)
    tsne = TSNEReducer(random_state=0, **fast_tsne).fit(X)
    tsne.save(tmp_path / "tsne")
    np.save(tmp_path / "new.npy", X[:5])
    code = (
        "import numpy as np, sys; from dinomap.reduce import load_reducer; "
        f"m = load_reducer({str(tmp_path / 'tsne')!r}); "
        f"np.save({str(tmp_path / 'out.npy')!r}, m.transform(np.load({str(tmp_path / 'new.npy')!r})))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), tsne.transform(X[:5]), atol=1e-4)
    reloaded = load_reducer(tmp_path / "tsne")
    np.testing.assert_array_equal(reloaded.embedding_, tsne.embedding_)
    assert reloaded.tsne_embedding_.affinities.P is None  # the slim save drops P ...
    assert tsne.tsne_embedding_.affinities.P is not None  # ... but not from the live model


# ----------------------------------------------------------------------------- UMAP
def test_umap_fit_transform_save_load(tmp_path: Path, make_clusters) -> None:
    X, labels = make_clusters(300, 16, k=4)
    um = UMAPReducer(random_state=0, n_epochs=50)
    Y = um.fit_transform(X[:250])
    assert Y.shape == (250, 2) and Y.dtype == np.float32
    assert um.graph_.shape == (250, 250)
    um.save(tmp_path / "umap")
    back = load_reducer(tmp_path / "umap")
    assert isinstance(back, UMAPReducer)
    new = back.transform(X[250:])
    d = ((new[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    nearest = np.asarray(labels[:250])[d.argmin(axis=1)]
    assert (nearest == np.asarray(labels[250:])).mean() >= 0.95


def test_a_umap_fitted_with_progress_on_draws_no_bar_when_it_is_off(
    tmp_path: Path, make_clusters, capsys: pytest.CaptureFixture[str]
) -> None:
    """A map made in a terminal (bars on) and placed on later with stderr redirected (bars
    off, as ``dinomap project 2> log``) writes no carriage-return bar into that log."""
    from dinomap.maps.progress import show_progress

    X, _ = make_clusters(300, 16, k=4)
    um = UMAPReducer(random_state=0, n_epochs=20)
    with show_progress(True):
        um.fit(X[:250])
    um.save(tmp_path / "umap")
    back = load_reducer(tmp_path / "umap")
    capsys.readouterr()
    with show_progress(False):
        back.transform(X[250:])
    err = capsys.readouterr().err
    assert "\r" not in err, err[:300]
