"""One contract for every registered map method (classic and neural), parametrised over the
registry: clone, get/set_params, NotFittedError, the n_features check, validate before any fit,
and save + load in a fresh process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from dinomap import make_maps
from dinomap.exceptions import InvalidParameterError, NotFittedError
from dinomap.reduce import get_reducer, list_reducers, reducer_spec

from ..parametric.conftest import json_from_fresh_process

#: Small, fast settings per method (the contract, not the quality, is under test here).
FAST: dict[str, dict[str, Any]] = {
    "pca": {},
    "tsne": {"n_iter": 30, "early_exaggeration_iter": 20, "perplexity": 5},
    "umap": {"n_neighbors": 5, "n_epochs": 10},
    "parametric_umap": {"n_neighbors": 5, "n_epochs": 2, "hidden": (8,), "device": "cpu"},
    "tsne_nn": {"hidden": (8,), "max_epochs": 3, "device": "cpu"},
}
#: One parameter per method that its validate() must refuse for 60 points.
BAD: dict[str, dict[str, Any]] = {
    "pca": {"n_components": 0},
    "tsne": {"perplexity": 50},
    "umap": {"n_neighbors": 1},
    "parametric_umap": {"min_dist": 2.0},
    "tsne_nn": {"validation_fraction": 1.5},
}
METHODS = list_reducers()


def test_every_registered_method_is_covered() -> None:
    assert set(METHODS) == set(FAST) == set(BAD)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(60, 6)).astype(np.float32)


def _fit(name: str, X: np.ndarray, **extra: Any) -> Any:
    est = get_reducer(name, random_state=0, **{**FAST[name], **extra})
    target = reducer_spec(name).needs_target
    return est.fit(X, X[:, :2] * 5.0) if target else est.fit(X)


@pytest.mark.parametrize("name", METHODS)
def test_params_clone_and_not_fitted(name: str, data: np.ndarray) -> None:
    est = get_reducer(name, random_state=3, **FAST[name])
    params = est.get_params(deep=False)
    assert params["random_state"] == 3
    twin = clone(est)
    assert twin is not est and twin.get_params(deep=False) == params
    assert est.set_params(random_state=4) is est and est.get_params()["random_state"] == 4
    with pytest.raises(NotFittedError, match="not fitted"):
        est.transform(data)
    with pytest.raises(InvalidParameterError, match=r"unknown parameter|bad parameters"):
        get_reducer(name, no_such_parameter=1)


@pytest.mark.parametrize("name", METHODS)
def test_not_fitted_is_scikit_learns_and_bad_input_is_named(name: str, data: np.ndarray) -> None:
    import sklearn.exceptions

    est = get_reducer(name, random_state=0, **FAST[name])
    with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted"):
        est.transform(data)
    target = data[:, :2] if reducer_spec(name).needs_target else None
    with pytest.raises(InvalidParameterError, match="is complex"):
        est.fit(data.astype(np.complex64), target)
    with pytest.raises(InvalidParameterError, match="no feature"):
        est.fit(np.empty((len(data), 0), np.float32), target)


@pytest.mark.parametrize("name", METHODS)
def test_validate_refuses_a_bad_parameter_before_fitting(name: str) -> None:
    est = get_reducer(name, **BAD[name])
    with pytest.raises(InvalidParameterError, match=next(iter(BAD[name]))):
        est.validate(60)
    get_reducer(name, **FAST[name]).validate(60)  # the good settings pass


@pytest.mark.parametrize("name", METHODS)
def test_a_bad_param_fails_make_maps_before_the_first_map(
    name: str, data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dinomap.reduce.pca as pca_module

    def no_fit(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a map was fitted before every parameter was validated")

    monkeypatch.setattr(pca_module.PCAReducer, "_fit", no_fit)
    params = {m: dict(FAST[m]) for m in METHODS}
    params[name].update(BAD[name])
    with pytest.raises(InvalidParameterError, match=next(iter(BAD[name]))):
        make_maps(data, methods=None, params=params, evaluate=False, warm_up_umap=False)


@pytest.mark.parametrize("name", METHODS)
def test_transform_checks_the_number_of_features(name: str, data: np.ndarray) -> None:
    est = _fit(name, data)
    out = est.transform(data[:4])
    assert out.shape == (4, 2) and out.dtype == np.float32
    with pytest.raises(InvalidParameterError, match="features"):
        est.transform(data[:4, :5])


def test_save_and_load_every_method_in_a_fresh_process(data: np.ndarray, tmp_path: Path) -> None:
    expected = {}
    for name in METHODS:
        est = _fit(name, data)
        est.save(tmp_path / name)
        expected[name] = est.transform(data[:5])
    np.save(tmp_path / "x.npy", data[:5])
    code = (
        "import sys, json, numpy as np\n"
        "from dinomap.reduce import load_reducer\n"
        "root = sys.argv[1]; x = np.load(root + '/x.npy')\n"
        "out = {n: load_reducer(root + '/' + n).transform(x).tolist() for n in sys.argv[2:]}\n"
        "print(json.dumps(out))\n"
    )
    got = json_from_fresh_process(code, str(tmp_path), *METHODS)
    for name in METHODS:
        np.testing.assert_allclose(np.array(got[name]), expected[name], atol=1e-4, err_msg=name)
