"""Synthetic clustered embeddings with structure inside each cluster (no I/O).

Isotropic Gaussian blobs are a weak test of a map: a map that only separates the blobs and
scatters the points of each blob at random scores almost as well as a good one, since inside a
blob no neighbourhood is more real than another. :func:`make_clusters` instead puts each
cluster on its own low-dimensional linear patch (plus a little isotropic noise), so the points
of a cluster have true neighbours that a faithful map must keep together. It is the generator
of ``benchmarks/bench_maps.py`` and of the map-quality tests.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_clusters"]


def make_clusters(
    n: int, dim: int, clusters: int, intrinsic: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered synthetic embeddings: per cluster a centre, a low-dimensional patch, noise.

    Each cluster ``c`` has a centre ``mu_c ~ N(0, I_dim)`` and a random linear basis
    ``B_c`` of shape ``(intrinsic, dim)`` with entries ``N(0, 1 / intrinsic)``; a point of it is
    ``mu_c + z @ B_c + e`` with ``z ~ N(0, I_intrinsic)`` and ``e ~ N(0, 0.25 I_dim)``. Labels
    are drawn uniformly, so cluster sizes vary a little.

    Parameters
    ----------
    n : int
        Number of points.
    dim : int
        Dimension of the embeddings.
    clusters : int
        Number of clusters.
    intrinsic : int
        Dimension of each cluster's patch (the structure inside a cluster).
    seed : int
        Seed of the generator; the same arguments always give the same arrays.

    Returns
    -------
    X : ndarray of shape (n, dim), float32
        The embeddings.
    y : ndarray of shape (n,), int64
        The cluster of each point, in ``[0, clusters)``.

    Examples
    --------
    >>> X, y = make_clusters(500, 32, clusters=5, intrinsic=8, seed=0)
    >>> X.shape, X.dtype, y.shape, int(y.max())
    ((500, 32), dtype('float32'), (500,), 4)
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.0, size=(clusters, dim)).astype(np.float32)
    bases = rng.normal(scale=1.0 / np.sqrt(intrinsic), size=(clusters, intrinsic, dim))
    y = rng.integers(0, clusters, size=n)
    X = np.empty((n, dim), dtype=np.float32)
    for c in range(clusters):
        rows = np.flatnonzero(y == c)
        z = rng.normal(size=(rows.size, intrinsic))
        X[rows] = centres[c] + (z @ bases[c]).astype(np.float32)
    X += rng.normal(scale=0.5, size=(n, dim)).astype(np.float32)
    return X, y
