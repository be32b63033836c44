"""References for map-quality tests: baselines that keep the clusters and lose the rest.

A map that only separates the clusters of :func:`dinomap.data.synthetic.make_clusters` data and
scatters each cluster's points at random scores a trustworthiness that looks good in absolute
terms (about 0.89 on the data of ``tests/maps/test_quality_structured.py``; 0.955 on isotropic
blobs, where it cannot be told from a good map). So the quality tests compare every map with
references computed in the same test:

- :func:`within_cluster_shuffle` of the map itself: the same positions and the same clusters,
  no local structure;
- :func:`clusterwise_pca`: each cluster drawn by its own 2-D PCA, clusters far apart, i.e. the
  best *linear* view of every cluster. It needs neither openTSNE nor umap-learn, so it still
  stands when a library's output has lost its local structure and the peer call with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.decomposition import PCA


def within_cluster_shuffle(Y: np.ndarray, labels: Any, seed: int = 0) -> np.ndarray:
    """``Y`` with its rows permuted among the points of the same cluster (``labels``)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = np.array(Y, copy=True)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        out[rows] = Y[rng.permutation(rows)]
    return out


def clusterwise_pca(X: np.ndarray, labels: Any, gap: float = 1e3) -> np.ndarray:
    """A 2-D map placing each cluster's own 2-D PCA ``gap`` apart from the next one."""
    labels = np.asarray(labels)
    Y = np.zeros((X.shape[0], 2), dtype=np.float64)
    for i, c in enumerate(np.unique(labels)):
        rows = np.flatnonzero(labels == c)
        Y[rows] = PCA(n_components=2).fit_transform(X[rows])
        Y[rows, 0] += gap * i
    return Y


def assert_at_least(value: float, floors: dict[str, float], what: str = "trustworthiness") -> None:
    """Assert ``value >= floor`` for every named floor; the message names each one missed."""
    missed = {name: round(floor, 4) for name, floor in floors.items() if not value >= floor}
    shown = {name: round(floor, 4) for name, floor in floors.items()}
    assert not missed, f"{what} {value:.4f} is below {missed} (floors: {shown})"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch thread: on a shared 2-core machine two were 6-10x slower.

    Set around each fit rather than once: a umap-learn fit (numba) resets torch's thread count
    to the number of cores in this process.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
