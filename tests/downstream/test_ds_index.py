"""NeighborIndex and the run's saved index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dinomap.downstream.index import NeighborIndex, l2_normalize
from dinomap.downstream.neighbors import run_index
from dinomap.exceptions import InvalidParameterError, NotFittedError


def _brute_topk(X: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    sims = l2_normalize(Q) @ l2_normalize(X).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_flat_search_matches_brute_force_cosine(planted):
    X = planted.X
    Q = X[:20] * 3.0  # scaling must not matter: cosine
    sims, ids = NeighborIndex(kind="flat").fit(X).search(Q, k=5)
    expected = _brute_topk(X, Q, 5)
    assert (ids == expected).mean() > 0.99
    direct = np.einsum("ij,ij->i", l2_normalize(Q), l2_normalize(X[ids[:, 1]]))
    np.testing.assert_allclose(sims[:, 1], direct, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # most similar first


def _clustered(n: int, dim: int = 128, n_clusters: int = 20, intrinsic: int = 16,
               seed: int = 0) -> np.ndarray:  # fmt: skip
    """Overlapping clusters with intrinsic structure, like image embeddings: per cluster a centre
    plus a random ``intrinsic``-dimensional linear patch plus isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = 0.3 * rng.normal(size=(n_clusters, dim))
    bases = rng.normal(size=(n_clusters, intrinsic, dim)) / np.sqrt(intrinsic)
    cluster = rng.integers(0, n_clusters, n)
    patch = np.einsum("ni,nid->nd", rng.normal(size=(n, intrinsic)), bases[cluster])
    return (centres[cluster] + patch + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)]))


@pytest.fixture(scope="module")
def clustered_20k() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20,000 indexed points, 1,000 held-out queries of the same clusters, their exact 10-NN."""
    X = _clustered(21_000)
    base, queries = X[:20_000], X[20_000:]
    exact = NeighborIndex(kind="flat").fit(base).search(queries, 10)[1]
    return base, queries, exact


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_have_high_recall_at_default_settings(clustered_20k, kind):
    base, queries, exact = clustered_20k
    index = NeighborIndex(kind=kind).fit(base)  # default hnsw_m/ef_* and n_lists/n_probe
    recall = _recall(index.search(queries, 10)[1], exact)
    assert recall >= 0.9, f"{kind} recall@10 {recall:.3f} at default settings"
    # The data are hard enough that the search really is approximate: a deliberately weak
    # index of the same kind misses many neighbours (a 321-point set could not show that).
    weak = {"hnsw": {"hnsw_m": 4, "ef_search": 10}, "ivf": {"n_probe": 1}}[kind]
    weak_recall = _recall(NeighborIndex(kind=kind, **weak).fit(base).search(queries, 10)[1], exact)
    assert weak_recall < 0.85, f"weak {kind} recall {weak_recall:.3f}: the data are too easy"


def test_auto_is_exact_up_to_50000_rows_and_hnsw_above():
    index = NeighborIndex()  # the default approximate_above
    assert index.resolve_kind(1) == "flat"
    assert index.resolve_kind(50_000) == "flat"
    assert index.resolve_kind(50_001) == "hnsw"
    X = np.random.default_rng(0).normal(size=(50_001, 8)).astype(np.float32)
    assert NeighborIndex().fit(X[:50_000]).kind_ == "flat"
    auto = NeighborIndex().fit(X)  # a real HNSW build on 50,001 rows (about 1 s)
    assert auto.kind_ == "hnsw" and auto.index_.ntotal == 50_001
    queries = X[::500]
    exact = NeighborIndex(kind="flat").fit(X).search(queries, 10)[1]
    assert _recall(auto.search(queries, 10)[1], exact) >= 0.9


def test_auto_switches_to_hnsw_above_threshold(planted):
    assert NeighborIndex(approximate_above=1000).fit(planted.X).kind_ == "flat"
    assert NeighborIndex(approximate_above=100).fit(planted.X).kind_ == "hnsw"


def test_exclude_self_drops_each_row(planted):
    X = planted.X
    _, ids = NeighborIndex(kind="flat").fit(X).search(X, 4, exclude_self=True)
    assert ids.shape == (X.shape[0], 4)
    assert not (ids == np.arange(X.shape[0])[:, None]).any()


def test_range_pairs_equal_brute_force_pairs(planted):
    X = planted.X
    index = NeighborIndex(kind="flat").fit(X)
    a, b = index.range_pairs(X, 0.6)
    sims = l2_normalize(X) @ l2_normalize(X).T
    ii, jj = np.nonzero(np.triu(sims >= 0.6, k=1))
    assert {(int(i), int(j)) for i, j in zip(a, b, strict=True)} == set(
        zip(ii.tolist(), jj.tolist(), strict=True)
    )
    # 0.6 links many rows of one blob together: the k-doubling path was exercised.
    assert np.bincount(a).max() > 16


def test_errors_name_parameter_and_choices(planted):
    with pytest.raises(InvalidParameterError, match=r"kind must be one of.*Did you mean 'hnsw'"):
        NeighborIndex(kind="hnws").fit(planted.X)
    with pytest.raises(NotFittedError):
        NeighborIndex().search(planted.X, 3)
    with pytest.raises(InvalidParameterError, match="features"):
        NeighborIndex().fit(planted.X).search(planted.X[:, :10], 3)


def test_run_index_is_saved_reused_and_rebuilt(planted_run, tmp_path):
    run, planted = planted_run
    index, emb = run_index(run)
    index_file = Path(run) / "downstream" / "index.faiss"
    info = json.loads((Path(run) / "downstream" / "index.json").read_text())
    assert info["kind"] == "flat" and info["n_samples"] == len(planted.paths)
    assert info["random_init"] is False
    stamp = index_file.stat().st_mtime_ns
    again, _ = run_index(run)
    assert index_file.stat().st_mtime_ns == stamp  # reused, not rewritten
    np.testing.assert_array_equal(again.search(emb.X[:5], 3)[1], index.search(emb.X[:5], 3)[1])
    hnsw, _ = run_index(run, kind="hnsw")  # another kind: rebuilt
    assert hnsw.kind_ == "hnsw"
    assert json.loads((Path(run) / "downstream" / "index.json").read_text())["kind"] == "hnsw"
    # Changed embeddings (a new shard) make the saved index stale.
    from dinomap.store import write_shard

    write_shard(run, ["zzz_new.png"], ["f" * 64], [None], [32], [32], planted.X[:1] + 1.0)
    fresh, emb2 = run_index(run, kind="hnsw")
    assert fresh.n_samples_ == len(emb2) == len(planted.paths) + 1


def test_neighbour_graph_is_cached_and_shared(planted_run):
    from dinomap.downstream import find_duplicates, find_outliers
    from dinomap.downstream.neighbors import run_neighbors

    run, planted = planted_run
    find_outliers(run, k=10)  # computes and saves a 16-NN graph
    knn = Path(run) / "downstream" / "knn.npz"
    stamp = knn.stat().st_mtime_ns
    assert json.loads((knn.parent / "knn.json").read_text())["k"] == 16
    find_duplicates(run)  # reuses it
    sims, ids, _, _ = run_neighbors(run, 5)
    assert knn.stat().st_mtime_ns == stamp and ids.shape == (len(planted.paths), 5)
    exact_sims, _ = (
        NeighborIndex(kind="flat").fit(planted.X).search(planted.X, 5, exclude_self=True)
    )
    np.testing.assert_allclose(sims, exact_sims, atol=1e-5)
    run_neighbors(run, 20)  # more neighbours than saved: recomputed
    assert json.loads((knn.parent / "knn.json").read_text())["k"] == 20
    run_neighbors(run, 5, kind="hnsw")  # another index: recomputed with it
    assert json.loads((knn.parent / "knn.json").read_text())["key"]["kind"] == "hnsw"


def test_range_pairs_from_given_neighbours_match_a_fresh_search(planted):
    X = planted.X
    index = NeighborIndex(kind="flat").fit(X)
    fresh = index.range_pairs(X, 0.6)
    given = index.range_pairs(X, 0.6, neighbors=index.search(X, 4, exclude_self=True))
    np.testing.assert_array_equal(fresh[0], given[0])
    np.testing.assert_array_equal(fresh[1], given[1])


def test_rows_lost_by_an_approximate_search_are_redone_exactly(planted):
    X = planted.X
    index = NeighborIndex(kind="hnsw").fit(X)
    real = index.index_

    class LosesFirstRows:
        """Wraps the FAISS index and sends rows 0-4 to wrong neighbours, like a lost search."""

        hnsw = real.hnsw

        def search(self, Q, k):
            sims, ids = real.search(Q, k)
            ids[:5] = np.arange(100, 100 + k)
            sims[:5] = 0.0
            return sims, ids

    index.index_ = LosesFirstRows()
    sims, ids = index.search(X, 5, exclude_self=True)
    assert index.repaired_rows_ == 5
    exact_sims, exact_ids = NeighborIndex(kind="flat").fit(X).search(X, 5, exclude_self=True)
    np.testing.assert_allclose(sims[:5], exact_sims[:5], atol=1e-5)
    assert (ids[:5] == exact_ids[:5]).mean() > 0.95


def test_missing_faiss_gives_an_install_hint(monkeypatch, planted):
    import sys

    from dinomap.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(MissingDependencyError, match=r'pip install "dinomap\[search\]"'):
        NeighborIndex().fit(planted.X)
