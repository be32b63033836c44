"""The fuzzy graph parametric UMAP trains on, the weighted edges drawn from it and the loss.

The graph is umap-learn's fuzzy simplicial set of the raw inputs, as ``umap.UMAP`` builds it:
exact neighbours up to :data:`EXACT_KNN_MAX` points, pynndescent above.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinomap._umap import import_umap
from dinomap.exceptions import InvalidParameterError

__all__ = [
    "EXACT_KNN_MAX",
    "Edges",
    "check_graph",
    "edge_batches",
    "fuzzy_graph",
    "graph_edges",
    "pca_target",
    "umap_loss",
]

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


def _dedup_batches(device: torch.device) -> bool:
    """Whether batches forward distinct points only (on the CPU, not on CUDA)."""
    return device.type == "cpu"


def edge_batches(
    edges: Edges,
    X_dev: torch.Tensor,
    gen: torch.Generator,
    device: torch.device,
    batch_size: int,
    neg_rate: int,
) -> Callable[[int], Iterator[tuple[torch.Tensor, ...]]]:
    """Per epoch, ``edges.per_epoch`` edges drawn by weight, in batches of ``batch_size``, each
    edge with ``neg_rate`` negatives paired inside its batch: ``(points, inv, neg)``."""
    heads = torch.from_numpy(edges.heads).to(device)
    tails = torch.from_numpy(edges.tails).to(device)
    cdf = torch.from_numpy(np.cumsum(edges.weights / edges.weights.sum())).to(device)
    per_epoch = edges.per_epoch
    dedup = _dedup_batches(device)
    arange2m = torch.arange(2 * batch_size, device=device)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        u = torch.rand(per_epoch, generator=gen, device=device, dtype=cdf.dtype)
        e_all = torch.searchsorted(cdf, u).clamp_(max=cdf.shape[0] - 1)
        for s in range(0, per_epoch, batch_size):
            e = e_all[s : s + batch_size]
            m = e.shape[0]
            neg = torch.randint(0, 2 * m, (m * neg_rate,), generator=gen, device=device)
            ends = torch.cat([heads[e], tails[e]])
            if dedup:
                # Forward each distinct point once: with few points, batches repeat them
                # a lot. (Skipped on CUDA, where unique() would sync every step.)
                uniq, inv = torch.unique(ends, return_inverse=True)
                yield X_dev[uniq], inv, neg
            else:
                yield X_dev[ends], arange2m[: 2 * m], neg

    return batches


def umap_loss(
    a: float, b: float, neg_rate: int
) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]:
    """UMAP's cross-entropy of a batch of :func:`_edge_batches`, per pair."""
    log_a = math.log(a)

    def loss_fn(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        points, inv, neg = batch
        m = inv.shape[0] // 2
        z = module(points)
        # index_select, not z[idx]: its backward (index_add_) sums a repeated point's
        # gradients in order; z[idx]'s (index_put_ with accumulate) adds them with CPU atomics,
        # in an order that changes from run to run with two or more threads.
        zh, zt = z.index_select(0, inv[:m]), z.index_select(0, inv[m:])
        d_pos = ((zh - zt) ** 2).sum(dim=1)
        d_neg = ((zh.repeat(neg_rate, 1) - z.index_select(0, inv[neg])) ** 2).sum(dim=1)
        # logit of q = 1 / (1 + a d^(2b)) is -(log a + b log d^2)
        logit_pos = -(log_a + b * torch.log(d_pos + 1e-6))
        logit_neg = -(log_a + b * torch.log(d_neg + 1e-6))
        total = F.softplus(-logit_pos).sum() + F.softplus(logit_neg).sum()
        return total / (m * (1 + neg_rate))

    return loss_fn


def pca_target(Xs: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """First principal components of ``Xs`` scaled into [-10, 10], with fixed signs."""
    from sklearn.decomposition import PCA

    k = min(n_components, Xs.shape[1], Xs.shape[0])
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed % (2**32))
    Z = pca.fit_transform(Xs)
    if k < n_components:
        Z = np.hstack([Z, np.zeros((Z.shape[0], n_components - k))])
    top = np.abs(Z).max()
    if top > 0:
        Z = Z * (10.0 / top)
    return Z.astype(np.float32)
