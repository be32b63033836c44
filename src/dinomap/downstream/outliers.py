"""Outlier scores: how far each image lies from its nearest neighbours.

``knn`` (default): the mean cosine distance (``1 - similarity``) to the ``k`` nearest neighbours,
found through the FAISS index. ``lof``: scikit-learn's Local Outlier Factor computed on the same
sparse ``k``-nearest-neighbour graph (``metric="precomputed"``), so neither method ever forms an
``N x N`` matrix. Higher scores are stranger.

Outputs in ``RUN/downstream``: ``outliers.parquet`` (``path``, ``score``; run order),
``outliers.json`` (method, parameters, top paths) and ``outliers.png`` (contact sheet of the top N).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dinomap._validation import check_choice, check_embeddings, check_positive_int
from dinomap.downstream.contact_sheet import run_thumbnail_loader, write_contact_sheet
from dinomap.downstream.index import (
    NeighborIndex,
    exact_row_neighbors,
    l2_normalize,
)
from dinomap.downstream.neighbors import run_neighbors
from dinomap.exceptions import InvalidParameterError
from dinomap.store.downstream import downstream_dir, write_downstream_table
from dinomap.store.layout import OUTLIERS_FILE, OUTLIERS_INFO_FILE, OUTLIERS_SHEET

__all__ = [
    "OUTLIERS_FILE",
    "OUTLIER_METHODS",
    "OutlierReport",
    "find_outliers",
    "outlier_scores",
    "refine_top_outliers",
]

logger = logging.getLogger(__name__)


def _knn_score(sims: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    dist = np.clip(1.0 - sims[:, :k].astype(np.float64), 0.0, 2.0)  # rounding: never < 0
    dist[ids[:, :k] < 0] = np.nan
    return np.nanmean(dist, axis=1).astype(np.float32)


def _lof_score(sims: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import LocalOutlierFactor

    n = ids.shape[0]
    # scikit-learn asks a precomputed training graph for k + 1 neighbours (self included), then
    # drops self (or the last one when self is absent): give it k + 1 true neighbours.
    k_graph = min(k + 1, n - 1, ids.shape[1])
    sims, ids = sims[:, :k_graph], ids[:, :k_graph]
    dist = np.clip(1.0 - sims.astype(np.float64), 0.0, None)
    valid = ids >= 0
    counts = valid.sum(axis=1)
    if (counts < k_graph).any():
        raise InvalidParameterError(
            f"LOF needs {k_graph} neighbours for every row; the index found fewer for "
            f"{int((counts < k_graph).sum())} row(s). Use index='flat' or a larger ef_search."
        )
    indptr = np.concatenate([[0], np.cumsum(counts)])
    graph = csr_matrix((dist[valid], ids[valid], indptr), shape=(n, n))
    n_neighbors = k if k_graph > k else k - 1  # k == n - 1: one neighbour fewer for LOF
    if n_neighbors < 1:
        raise InvalidParameterError(f"LOF needs at least 3 samples; got {n}.")
    lof = LocalOutlierFactor(n_neighbors=n_neighbors, metric="precomputed")
    lof.fit(graph)
    return (-lof.negative_outlier_factor_).astype(np.float32)


#: Registry of outlier scoring methods: name -> fn(sims, ids, k) -> scores, where ``sims`` and
#: ``ids`` are each row's nearest neighbours (self excluded, at least ``k + 1`` columns).
OUTLIER_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "knn": _knn_score,
    "lof": _lof_score,
}


def outlier_scores(
    X: np.ndarray,
    *,
    method: str = "knn",
    k: int = 10,
    index: NeighborIndex | None = None,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Outlier score of every row of ``X`` (higher is stranger).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    method : {"knn", "lof"}, default="knn"
        ``knn``: mean cosine distance to the ``k`` nearest neighbours. ``lof``: Local Outlier
        Factor on the ``k``-nearest-neighbour graph.
    k : int, default=10
        Neighbours per row (itself excluded); capped at ``n_samples - 1``.
    index : NeighborIndex or None
        A fitted index over ``X`` (same rows, same order); an exact one is built when ``None``.
    neighbors : (sims, ids) or None
        Precomputed nearest neighbours of the rows (self excluded, at least ``k + 1`` columns,
        e.g. from :func:`~dinomap.downstream.neighbors.run_neighbors`); no search is run then.

    Returns
    -------
    ndarray of shape (n_samples,), float32

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 4)).astype("float32")
    >>> X[0] = [40, -40, 40, -40]
    >>> int(np.argmax(outlier_scores(X, k=5)))
    0
    """
    name = check_choice("method", method, OUTLIER_METHODS)
    Xc = check_embeddings(X, min_samples=2)
    k = min(check_positive_int("k", k), Xc.shape[0] - 1)
    k_graph = min(k + 1, Xc.shape[0] - 1)
    if neighbors is None:
        nn = index if index is not None else NeighborIndex(kind="flat").fit(Xc)
        neighbors = nn.search(Xc, k_graph, exclude_self=True)
    sims, ids = neighbors
    if ids.shape != (Xc.shape[0], ids.shape[1]) or ids.shape[1] < k_graph:
        raise InvalidParameterError(
            f"neighbors must have {Xc.shape[0]} rows and at least {k_graph} columns; "
            f"got {ids.shape}."
        )
    return OUTLIER_METHODS[name](sims, ids, k)


def refine_top_outliers(
    X: np.ndarray, sims: np.ndarray, ids: np.ndarray, method: str, k: int, top: int
) -> tuple[np.ndarray, int]:
    """Scores from an approximate neighbour graph, with the strangest rows made exact.

    An approximate search only ever misses neighbours, so it can only overestimate a ``knn``
    score: each row's approximate score bounds its exact one from above. The highest-scoring
    rows are rescored with exact neighbours, doubling their number until the exact top ``top``
    all beat the highest approximate score left, which makes the top ``top`` exact. (For
    ``lof`` the bound does not hold; the same rows are refined, three rounds at most.)
    """
    n = X.shape[0]
    Xn = l2_normalize(X)
    sims, ids = sims.copy(), ids.copy()
    exact = np.zeros(n, dtype=bool)
    m = min(n, max(2 * top, 100))
    for round_ in range(32):
        scores = OUTLIER_METHODS[method](sims, ids, k)
        order = np.argsort(-scores, kind="stable")
        todo = order[:m][~exact[order[:m]]]
        if todo.size:
            sims[todo], ids[todo] = exact_row_neighbors(Xn, todo, ids.shape[1])
            exact[todo] = True
            scores = OUTLIER_METHODS[method](sims, ids, k)
        best = np.argsort(-scores, kind="stable")[:top]
        rest = ~exact
        done = bool(exact[best].all()) and (
            not rest.any() or float(scores[rest].max()) <= float(scores[best].min())
        )
        if done or m >= n or (method != "knn" and round_ >= 2):
            break
        m = min(n, 2 * m)
    return scores, int(exact.sum())


@dataclass(frozen=True)
class OutlierReport:
    """Outlier scores of a run.

    Attributes
    ----------
    paths : list of str
        Run order.
    scores : ndarray of shape (n_samples,)
    top : list of (path, score)
        The ``top`` highest scores, strangest first.
    method, k : the scoring method and its neighbour count
    table, sheet : written files (``None`` when not written)
    """

    paths: list[str]
    scores: np.ndarray
    top: list[tuple[str, float]]
    method: str
    k: int
    table: Path | None = None
    sheet: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def find_outliers(
    run_dir: str | os.PathLike[str],
    *,
    method: str = "knn",
    k: int = 10,
    top: int = 50,
    index: str = "auto",
    rebuild: bool = False,
    write: bool = True,
    **index_params: Any,
) -> OutlierReport:
    """Score every image of a run and write ``downstream/outliers.parquet`` and a top-N sheet.

    Parameters
    ----------
    run_dir : path
    method : {"knn", "lof"}, default="knn"
    k : int, default=10
    top : int, default=50
        How many of the strangest images to list and show.
    index : {"auto", "flat", "hnsw", "ivf"}, default="auto"
    rebuild : bool, default=False
    write : bool, default=True
    **index_params
        Other :class:`~dinomap.downstream.index.NeighborIndex` parameters.

    Examples
    --------
    >>> report = find_outliers("runs/fm", top=50)  # doctest: +SKIP
    >>> report.top[0]  # doctest: +SKIP
    """
    name = check_choice("method", method, OUTLIER_METHODS)
    top = check_positive_int("top", top)
    start = time.perf_counter()
    k = check_positive_int("k", k)
    # One cached neighbour graph serves outliers and near-duplicates (which start at 16).
    sims, ids, nn, emb = run_neighbors(
        run_dir, max(k + 1, 16), kind=index, rebuild=rebuild, **index_params
    )
    k_eff = min(k, max(1, len(emb) - 1))
    refined = 0
    if nn.kind_ == "flat":
        scores = outlier_scores(emb.X, method=name, k=k_eff, neighbors=(sims, ids))
    else:
        scores, refined = refine_top_outliers(emb.X, sims, ids, name, k_eff, top)
    seconds = time.perf_counter() - start
    order = np.argsort(-scores, kind="stable")[:top]
    top_list = [(emb.paths[i], float(scores[i])) for i in order]
    info: dict[str, Any] = {
        "method": name,
        "k": k_eff,
        "index": nn.kind_,
        "rows_rescored_exactly": refined,
        "n_samples": len(emb),
        "seconds": round(seconds, 4),
        "random_init": emb.random_init,
        "embeddings": emb.stamp,
        "top": [
            {
                "path": p,
                "score": s,
                "label": emb.labels[i] if emb.labels is not None else None,
            }
            for (p, s), i in zip(top_list, order, strict=True)
        ],
    }
    table: Path | None = None
    sheet: Path | None = None
    if write:
        table = write_downstream_table(
            run_dir,
            OUTLIERS_FILE,
            {
                "path": pa.array(emb.paths, pa.string()),
                "score": pa.array(scores, pa.float32()),
            },
            OUTLIERS_INFO_FILE,
            info,
        )
        sheet = write_contact_sheet(
            [p for p, _ in top_list],
            downstream_dir(run_dir) / OUTLIERS_SHEET,
            captions=[f"#{r} {s:.3f}" for r, (_, s) in enumerate(top_list, start=1)],
            title=f"top {len(top_list)} outliers ({name}, k={k_eff})",
            random_init=emb.random_init,
            loader=run_thumbnail_loader(emb.info),
        )
    return OutlierReport(
        paths=emb.paths,
        scores=scores,
        top=top_list,
        method=name,
        k=k_eff,
        table=table,
        sheet=sheet,
        info=info,
    )
