"""The fuzzy graph parametric UMAP trains on, and the weighted edges drawn from it.

The graph is umap-learn's fuzzy simplicial set of the raw inputs, as ``umap.UMAP`` builds it:
exact neighbours up to :data:`EXACT_KNN_MAX` points, pynndescent above.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dinomap._umap import import_umap
from dinomap.exceptions import InvalidParameterError

__all__ = ["EXACT_KNN_MAX", "Edges", "check_graph", "fuzzy_graph", "graph_edges"]

logger = logging.getLogger("dinomap.parametric.umap")  # the logger these always logged to

EXACT_KNN_MAX = 4096


def fuzzy_graph(
    X: np.ndarray,
    n_neighbors: int,
    seed: int,
    *,
    deterministic: bool = True,
    verbose: bool = False,
) -> Any:
    """Return umap-learn's fuzzy simplicial set of ``X`` as a ``scipy.sparse`` COO matrix.

    Neighbours are exact (scikit-learn, chunked, no N x N matrix) up to 4,096 points and come
    from pynndescent above, as in ``umap.UMAP``. With ``deterministic`` pynndescent runs on one
    thread (its parallel updates race), as ``umap.UMAP`` does when given a ``random_state``.
    """
    import_umap()
    from umap.umap_ import fuzzy_simplicial_set, nearest_neighbors

    n = X.shape[0]
    t0 = time.perf_counter()
    if n <= EXACT_KNN_MAX:
        from sklearn.neighbors import NearestNeighbors

        dists, idx = NearestNeighbors(n_neighbors=n_neighbors).fit(X).kneighbors(X)
        # Duplicates can push a point out of its own list; UMAP expects itself first.
        idx[:, 0] = np.arange(n)
        dists[:, 0] = 0.0
    else:
        idx, dists, _ = nearest_neighbors(
            X,
            n_neighbors,
            "euclidean",
            {},
            False,
            np.random.RandomState(seed % (2**32)),
            n_jobs=1 if deterministic else -1,
            verbose=verbose,
        )
        if deterministic:
            logger.info("nearest neighbours on one thread so that random_state fixes them")
    t1 = time.perf_counter()
    graph, _, _ = fuzzy_simplicial_set(
        X,
        n_neighbors,
        np.random.RandomState(seed % (2**32)),
        "euclidean",
        knn_indices=idx,
        knn_dists=dists.astype(np.float32),
    )
    logger.info(
        "fuzzy graph: %d points, %d edges (neighbours %.1f s, graph %.1f s)",
        n,
        graph.nnz,
        t1 - t0,
        time.perf_counter() - t1,
    )
    return graph.tocoo()


def check_graph(graph: Any, n: int) -> Any:
    """A graph given to ``fit``, checked to be a sparse ``(n, n)`` matrix, as COO."""
    import scipy.sparse

    if not scipy.sparse.issparse(graph) or graph.shape != (n, n):
        shape = getattr(graph, "shape", None)
        raise InvalidParameterError(
            f"graph must be a scipy.sparse matrix of shape ({n}, {n}); got {type(graph).__name__}"
            f" of shape {shape}."
        )
    return graph.tocoo()


@dataclass(frozen=True)
class Edges:
    """The graph's edges of positive weight; an epoch draws ``per_epoch`` of them by weight."""

    heads: np.ndarray  # int64
    tails: np.ndarray  # int64
    weights: np.ndarray  # float64
    per_epoch: int  # the edges classic UMAP visits per epoch: total weight / largest weight


def graph_edges(coo: Any) -> Edges:
    """The :class:`Edges` of a COO fuzzy graph; an error when it has none."""
    weights = coo.data.astype(np.float64)
    keep = weights > 0
    heads = coo.row[keep].astype(np.int64)
    tails = coo.col[keep].astype(np.int64)
    weights = weights[keep]
    if weights.size == 0:
        raise InvalidParameterError("the fuzzy graph has no edges; are all points identical?")
    per_epoch = max(1, math.ceil(weights.sum() / weights.max()))
    return Edges(heads, tails, weights, per_epoch)
