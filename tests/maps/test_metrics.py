"""Map metrics: equal to the textbook definitions, without N x N matrices."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.manifold import trustworthiness as sk_trustworthiness
from sklearn.neighbors import NearestNeighbors

from dinomap.exceptions import InvalidParameterError
from dinomap.metrics import MapEvaluator, knn_accuracy, knn_preservation, trustworthiness


def _data(n: int = 400, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = X[:, :2] + rng.normal(scale=0.7, size=(n, 2))
    return X, Y


@pytest.mark.parametrize("k", [1, 5, 10])
def test_trustworthiness_equals_sklearn(k: int) -> None:
    X, Y = _data()
    assert trustworthiness(X, Y, k=k) == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=k))


def test_trustworthiness_uses_a_fixed_subsample() -> None:
    X, Y = _data(n=900)
    a = trustworthiness(X, Y, max_samples=300)
    assert a == trustworthiness(X, Y, max_samples=300)  # fixed seed
    idx = np.sort(np.random.default_rng(0).choice(900, size=300, replace=False))
    assert a == pytest.approx(sk_trustworthiness(X[idx], Y[idx], n_neighbors=10))
    assert a != pytest.approx(trustworthiness(X, Y, max_samples=None), abs=1e-9)


def test_knn_preservation_equals_brute_force() -> None:
    X, Y = _data()

    def nn(A: np.ndarray) -> np.ndarray:
        return NearestNeighbors(n_neighbors=11).fit(A).kneighbors(A, return_distance=False)[:, 1:]

    expected = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(nn(X), nn(Y), strict=True)])
    assert knn_preservation(X, Y, max_queries=None) == pytest.approx(expected)
    assert knn_preservation(X, X[:, :12], max_queries=None) == 1.0


def test_knn_accuracy_separable_random_and_unlabelled() -> None:
    rng = np.random.default_rng(0)
    Y = np.r_[rng.normal(0, 0.1, (60, 2)), rng.normal(5, 0.1, (60, 2))]
    labels = ["a"] * 60 + ["b"] * 60
    assert knn_accuracy(Y, labels) == 1.0
    shuffled = list(rng.permutation(labels))
    assert knn_accuracy(Y, shuffled) < 0.75
    partly = [*labels[:100], *([None] * 20)]  # unlabelled points are left out, not a class
    assert knn_accuracy(Y, partly) == 1.0
    assert knn_accuracy(Y, ["a"] * 120) is None  # one class: nothing to measure
    with pytest.raises(InvalidParameterError, match="labels must have 120 entries"):
        knn_accuracy(Y, labels[:5])


def test_evaluator_matches_the_functions_and_reports_how() -> None:
    X, Y = _data(n=500)
    labels = [str(v) for v in (X[:, 0] > 0)]
    ev = MapEvaluator(X, labels, max_trust_samples=200, max_queries=300)
    got = ev.evaluate(Y)
    assert got["trustworthiness"] == pytest.approx(trustworthiness(X, Y, max_samples=200))
    assert got["knn_preservation"] == pytest.approx(knn_preservation(X, Y, max_queries=300))
    assert got["knn_accuracy"] == pytest.approx(knn_accuracy(Y, labels))
    assert ev.info["trustworthiness_samples"] == 200
    assert ev.info["knn_preservation_queries"] == 300
    assert MapEvaluator(X).evaluate(Y)["knn_accuracy"] is None


def test_metrics_never_build_an_n_by_n_matrix() -> None:
    n = 20_000  # an N x N float32 matrix would take 1.6 GB
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    Y = X[:, :2].copy()
    labels = [str(v) for v in rng.integers(0, 3, n)]
    tracemalloc.start()
    try:
        MapEvaluator(X, labels).evaluate(Y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 400e6, f"peak {peak / 1e6:.0f} MB"


def test_shape_mismatch_is_clear() -> None:
    X, Y = _data()
    with pytest.raises(InvalidParameterError, match="same number of rows"):
        trustworthiness(X, Y[:10])
    with pytest.raises(InvalidParameterError, match="k must be < the number of points"):
        knn_preservation(X[:5], Y[:5], k=10)
