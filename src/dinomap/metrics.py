"""How far a 2-D map can be trusted: trustworthiness, kNN preservation, kNN label accuracy.

None of these builds an N x N matrix on the full data:

- **trustworthiness** (k=10) is computed on a fixed random subsample of at most 5,000 points
  (the same subsample for every map of a data set), with distances evaluated in row chunks;
- **kNN preservation** (k=10) is the share of each point's 10 nearest neighbours in embedding
  space that are also among its 10 nearest on the map, averaged over a fixed random sample of at
  most 5,000 query points whose neighbours are searched among *all* points (an unbiased
  estimate of the all-points mean; pass ``max_queries=None`` to use every point);
- **kNN accuracy** is the 5-fold cross-validated accuracy of a 10-nearest-neighbour classifier
  on the 2-D coordinates (KD-tree searches), over the points that have a label.

:class:`MapEvaluator` computes the embedding-space neighbours once and scores any number of
maps of the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from dinomap._validation import check_embeddings, check_positive_int
from dinomap.exceptions import InvalidParameterError

__all__ = [
    "MapEvaluator",
    "drop_self",
    "knn_accuracy",
    "knn_preservation",
    "map_agreement",
    "trustworthiness",
]

logger = logging.getLogger(__name__)

#: Seed of the fixed subsamples, independent of any method's random_state.
SUBSAMPLE_SEED = 0
_CHUNK = 256
#: Floats of one block of query-to-all distances in the embedding-space kNN search (32 MiB;
#: argpartition adds twice that in int64 indices).
_KNN_BLOCK_FLOATS = 8 * 1024 * 1024


def _subsample(n: int, size: int | None, seed: int = SUBSAMPLE_SEED) -> np.ndarray:
    if size is None or n <= size:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))


def drop_self(indices: np.ndarray, rows: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """From ``k + 1`` neighbours per query row, drop the row itself - its first appearance, or
    the farthest neighbour where it is absent (exact duplicates) - and the same entries of
    ``others`` (similarities, distances). Returns ``[indices, *others]`` with ``k`` columns."""
    n, k1 = indices.shape
    is_self = indices == np.asarray(rows)[:, None]
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    first = np.argmax(is_self, axis=1)
    keep = np.ones_like(is_self)
    keep[np.arange(n), first] = False
    return [a[keep].reshape(n, k1 - 1) for a in (indices, *others)]


def _knn_2d(Y: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="kd_tree").fit(Y)
    idx = nn.kneighbors(Y[queries], return_distance=False)
    return drop_self(idx, queries)[0]


def _knn_highdim(X: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact ``k`` nearest neighbours (self excluded) of ``X[queries]`` among all rows of ``X``.

    Brute force in blocks of query rows (one float32 GEMM each), so memory stays at
    ``block x n`` floats; no N x N matrix. The rows are centred first (distances do not change):
    the expansion ``|x|^2 - 2 x.y + |y|^2`` in float32 otherwise cancels away every distance
    that is small next to the norms (near-duplicates, the nearly equal embeddings of a
    random-init model), and the neighbours become rounding noise.
    """
    Xf = np.asarray(X, dtype=np.float32)
    Xf = Xf - Xf.mean(axis=0, dtype=np.float64).astype(np.float32)
    sq = np.einsum("ij,ij->i", Xf, Xf)
    n = Xf.shape[0]
    block = max(1, min(len(queries), _KNN_BLOCK_FLOATS // max(n, 1)))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        D = Xf[rows] @ Xf.T  # in place from here: one block-sized buffer
        D *= -2.0
        D += sq[rows, None]
        D += sq[None, :]
        D[np.arange(len(rows)), rows] = np.inf
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(D, part, axis=1), axis=1, kind="stable")
        out[start : start + len(rows)] = np.take_along_axis(part, order, axis=1)
    return out


def _check_k(k: int, n: int, what: str = "points") -> int:
    k = check_positive_int("k", k)
    if k >= n:
        raise InvalidParameterError(f"k must be < the number of {what} ({n}); got {k}.")
    return k


def _check_pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    Xa = check_embeddings(X, name="X", min_samples=3)
    Ya = check_embeddings(Y, name="Y", min_samples=3)
    if Xa.shape[0] != Ya.shape[0]:
        raise InvalidParameterError(
            f"X and Y must have the same number of rows; got {Xa.shape[0]} and {Ya.shape[0]}."
        )
    return Xa, Ya


class _TrustSubsample:
    """Embedding-space data of the trustworthiness subsample (float64 for exact ranks)."""

    def __init__(self, X: np.ndarray, idx: np.ndarray) -> None:
        self.idx = idx
        self.X = np.asarray(X[idx], dtype=np.float64)
        self.sq = np.einsum("ij,ij->i", self.X, self.X)

    def score(self, Y: np.ndarray, k: int) -> float:
        m = len(self.idx)
        k = _check_k(k, m, "subsampled points")
        if 2 * m - 3 * k - 1 <= 0:
            raise InvalidParameterError(
                f"k={k} is too large for trustworthiness on {m} points (needs 3k + 1 < 2n)."
            )
        Ys = np.asarray(Y[self.idx], dtype=np.float64)
        low = _knn_2d(Ys, np.arange(m), k)  # (m, k) neighbours on the map
        penalty = 0.0
        for start in range(0, m, _CHUNK):
            rows = np.arange(start, min(start + _CHUNK, m))
            # squared distances of the chunk to the whole subsample (chunk x m)
            D = self.X[rows] @ self.X.T
            D *= -2.0
            D += self.sq[rows, None]
            D += self.sq[None, :]
            D[np.arange(len(rows)), rows] = np.inf  # a point is not its own neighbour
            cand = np.take_along_axis(D, low[rows], axis=1)  # (chunk, k)
            # 1-based rank of each map neighbour in embedding space
            ranks = (D[:, None, :] < cand[:, :, None]).sum(axis=2) + 1
            penalty += float(np.maximum(ranks - k, 0).sum())
        return 1.0 - penalty * 2.0 / (m * k * (2.0 * m - 3.0 * k - 1.0))


def trustworthiness(
    X: Any, Y: Any, k: int = 10, max_samples: int | None = 5000, random_state: int = SUBSAMPLE_SEED
) -> float:
    """Trustworthiness of map ``Y`` of ``X`` (Venna & Kaski), on a fixed subsample.

    Equals :func:`sklearn.manifold.trustworthiness` on the subsample, without its
    subsample x subsample rank matrix.

    Parameters
    ----------
    X : array of shape (n, d)
        Embeddings.
    Y : array of shape (n, 2)
        Their map.
    k : int, default=10
    max_samples : int or None, default=5000
        Size of the random subsample (``None`` = all points; memory stays ``O(chunk * n)``).
    random_state : int, default=0
        Seed of the subsample.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 5))
    >>> round(trustworthiness(X, X[:, :2], k=5), 2) < 1.0
    True
    """
    Xa, Ya = _check_pair(X, Y)
    idx = _subsample(Xa.shape[0], max_samples, random_state)
    return _TrustSubsample(Xa, idx).score(Ya, k)


def knn_preservation(
    X: Any,
    Y: Any,
    k: int = 10,
    max_queries: int | None = 5000,
    random_state: int = SUBSAMPLE_SEED,
) -> float:
    """Mean share of each point's ``k`` nearest neighbours in ``X`` kept among its ``k`` on ``Y``.

    Neighbours are searched among all points; the mean runs over a fixed random sample of at
    most ``max_queries`` points (``None`` = all).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> knn_preservation(X, X, k=5)
    1.0
    """
    Xa, Ya = _check_pair(X, Y)
    k = _check_k(k, Xa.shape[0])
    queries = _subsample(Xa.shape[0], max_queries, random_state)
    return _preservation(_knn_highdim(Xa, queries, k), _knn_2d(Ya, queries, k), k)


def map_agreement(
    reference: Any,
    predicted: Any,
    k: int = 10,
    *,
    train: np.ndarray | None = None,
    queries: np.ndarray | None = None,
) -> float:
    """Share of each query point's ``k`` nearest neighbours in map ``reference`` that are also
    among its ``k`` nearest in map ``predicted`` (the same points, in the same order).

    Without ``train``, every point is a query and its neighbours are all the other points;
    with ``train`` (and ``queries``, typically held-out points), the neighbours of each query
    are searched among the training points only. ``k`` is clipped to what the points allow.
    KD-tree searches; no N x N matrix.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(20, dtype=float).reshape(10, 2)
    >>> map_agreement(a, 2 * a, k=3)
    1.0
    """
    A = np.asarray(reference)
    B = np.asarray(predicted)
    if train is None:
        k = min(int(k), A.shape[0] - 1)
        if k < 1:
            return float("nan")
        rows = np.arange(A.shape[0]) if queries is None else np.asarray(queries)
        return _preservation(_knn_2d(A, rows, k), _knn_2d(B, rows, k), k)
    from sklearn.neighbors import NearestNeighbors

    held = np.asarray(queries)
    k = min(int(k), len(train))
    a = NearestNeighbors(n_neighbors=k).fit(A[train]).kneighbors(A[held], return_distance=False)
    b = NearestNeighbors(n_neighbors=k).fit(B[train]).kneighbors(B[held], return_distance=False)
    return _preservation(a, b, k)


def _preservation(high: np.ndarray, low: np.ndarray, k: int) -> float:
    hs = np.sort(high, axis=1)
    ls = np.sort(low, axis=1)
    # per row, |high ∩ low| via a merge of two sorted rows (vectorised with searchsorted)
    offsets = (np.arange(len(hs), dtype=np.int64) * (int(max(hs.max(), ls.max())) + 1))[:, None]
    common = np.isin(ls + offsets, hs + offsets, assume_unique=True)
    return float(common.sum() / (len(hs) * k))


def _label_array(labels: Sequence[Any] | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (codes of labelled rows, mask of labelled rows); None/NaN/'' mean unlabelled."""
    lab = list(labels)
    if len(lab) != n:
        raise InvalidParameterError(
            f"labels must have {n} entries (one per point); got {len(lab)}."
        )
    mask = np.array(
        [v is not None and not (isinstance(v, float) and np.isnan(v)) and v != "" for v in lab],
        dtype=bool,
    )
    kept = [str(v) for v, m in zip(lab, mask, strict=True) if m]
    _, codes = np.unique(np.asarray(kept, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64), mask


def knn_accuracy(
    Y: Any,
    labels: Sequence[Any] | np.ndarray,
    k: int = 10,
    n_folds: int = 5,
    random_state: int = SUBSAMPLE_SEED,
) -> float | None:
    """Cross-validated accuracy of a ``k``-NN classifier on the map ``Y`` (labelled points only).

    Returns ``None`` when fewer than two classes or too few labelled points exist. Folds are
    stratified when every class has at least ``n_folds`` members.

    Examples
    --------
    >>> import numpy as np
    >>> Y = np.r_[np.zeros((50, 2)), np.ones((50, 2))] + np.random.default_rng(0).normal(0, .1, (100, 2))
    >>> knn_accuracy(Y, ["a"] * 50 + ["b"] * 50, k=5)
    1.0
    """
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    Ya = check_embeddings(Y, name="Y", min_samples=1)
    codes, mask = _label_array(labels, Ya.shape[0])
    k = check_positive_int("k", k)
    n_folds = check_positive_int("n_folds", n_folds, minimum=2)
    n = int(mask.sum())
    if n < max(2 * n_folds, k + 1) or len(np.unique(codes)) < 2:
        logger.info("kNN accuracy skipped: %d labelled points, %d classes", n, len(set(codes)))
        return None
    counts = np.bincount(codes)
    if counts.min() >= n_folds:
        cv: Any = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    else:
        cv = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    k_eff = min(k, n - n // n_folds - 1)
    clf = KNeighborsClassifier(n_neighbors=k_eff, algorithm="kd_tree")
    scores = cross_val_score(clf, Ya[mask], codes, cv=cv)
    return float(np.mean(scores))


class MapEvaluator:
    """Score maps of one data set; the embedding-space neighbours are computed once.

    Parameters
    ----------
    X : array of shape (n, d)
        Embeddings.
    labels : sequence or None
        Class of each point (``None`` entries are unlabelled); enables ``knn_accuracy``.
    k : int, default=10
    max_trust_samples : int or None, default=5000
    max_queries : int or None, default=5000
    n_folds : int, default=5
    max_accuracy_samples : int or None, default=None
        Cross-validate the kNN accuracy on a fixed random subsample of this many points
        (``None``: all; the large-data strategy of :mod:`dinomap.maps.large` sets it).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 8))
    >>> sorted(MapEvaluator(X).evaluate(X[:, :2]))
    ['knn_accuracy', 'knn_preservation', 'trustworthiness']
    """

    def __init__(
        self,
        X: Any,
        labels: Sequence[Any] | np.ndarray | None = None,
        k: int = 10,
        max_trust_samples: int | None = 5000,
        max_queries: int | None = 5000,
        n_folds: int = 5,
        max_accuracy_samples: int | None = None,
    ) -> None:
        self.X = check_embeddings(X, name="X", min_samples=3)
        n = self.X.shape[0]
        k = check_positive_int("k", k)
        # a small collection still gets its metrics: k shrinks to what n allows (3k + 1 < 2n)
        k_max = max(1, (2 * n - 2) // 3)
        if k > k_max:
            logger.warning("metrics: k=%d is too large for %d points; using k=%d", k, n, k_max)
            k = k_max
        self.k = _check_k(k, n)
        self.labels = labels
        self.n_folds = n_folds
        self._trust = _TrustSubsample(self.X, _subsample(n, max_trust_samples))
        self.queries = _subsample(n, max_queries)
        self.max_accuracy_samples = max_accuracy_samples
        self._acc_rows = _subsample(n, max_accuracy_samples) if max_accuracy_samples else None
        self._high: np.ndarray | None = None

    @property
    def info(self) -> dict[str, Any]:
        """How the metrics were computed (for metrics.json)."""
        return {
            "k": self.k,
            "trustworthiness_samples": len(self._trust.idx),
            "knn_preservation_queries": len(self.queries),
            "knn_accuracy_folds": self.n_folds,
            "subsample_seed": SUBSAMPLE_SEED,
            **({"knn_accuracy_samples": len(self._acc_rows)} if self._acc_rows is not None else {}),
        }

    def high_neighbors(self) -> np.ndarray:
        """Embedding-space ``k`` nearest neighbours of the query points (computed once)."""
        if self._high is None:
            self._high = _knn_highdim(self.X, self.queries, self.k)
        return self._high

    def evaluate(self, Y: Any) -> dict[str, float | None]:
        """Return ``trustworthiness``, ``knn_preservation`` and ``knn_accuracy`` of map ``Y``."""
        Ya = check_embeddings(Y, name="Y", min_samples=3)
        if Ya.shape[0] != self.X.shape[0]:
            raise InvalidParameterError(
                f"Y must have {self.X.shape[0]} rows (one per embedding); got {Ya.shape[0]}."
            )
        low = _knn_2d(Ya, self.queries, self.k)
        acc = None
        if self.labels is not None:
            if self._acc_rows is None:
                acc = knn_accuracy(Ya, self.labels, k=self.k, n_folds=self.n_folds)
            else:
                rows = self._acc_rows
                sub = [self.labels[int(i)] for i in rows]
                acc = knn_accuracy(Ya[rows], sub, k=self.k, n_folds=self.n_folds)
        return {
            "trustworthiness": self._trust.score(Ya, self.k),
            "knn_preservation": _preservation(self.high_neighbors(), low, self.k),
            "knn_accuracy": acc,
        }
