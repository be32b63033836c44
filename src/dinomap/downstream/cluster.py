"""Clusters of a run: HDBSCAN (scikit-learn's) on a PCA-reduced copy of the L2-normalised
embeddings by default, k-means as an option; ARI and NMI against labels when labels exist.

Outputs in ``RUN/downstream``: ``clusters.parquet`` (``path``, ``cluster``; ``-1`` is HDBSCAN
noise) and ``clusters.json`` (method, parameters, sizes, scores, random-init flag).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dinomap._validation import check_choice, check_embeddings, check_positive_int
from dinomap.downstream.index import l2_normalize
from dinomap.exceptions import InvalidParameterError
from dinomap.store import Embeddings, load_embeddings
from dinomap.store.downstream import downstream_dir, write_downstream_table
from dinomap.store.layout import CLUSTERS_FILE, CLUSTERS_INFO_FILE, CLUSTERS_SHEET

__all__ = [
    "CLUSTERS_FILE",
    "CLUSTER_METHODS",
    "ClusterResult",
    "cluster_embeddings",
    "cluster_images",
    "cluster_scores",
]

logger = logging.getLogger(__name__)


def _default_min_cluster_size(n: int) -> int:
    # Small enough to keep a cluster of 0.5% of the images (200 equal clusters), capped so
    # large collections still find their smaller groups; under 15 images, a third of them
    # (at least 2), so a handful of images can still form clusters.
    return int(max(min(5, max(2, n // 3)), min(n // 200, 100)))


def _hdbscan(
    Z: np.ndarray, params: dict[str, Any], random_state: int
) -> tuple[np.ndarray, dict[str, Any]]:
    from sklearn.cluster import HDBSCAN

    n = Z.shape[0]
    mcs = params.get("min_cluster_size")
    mcs = (
        _default_min_cluster_size(n)
        if mcs is None
        else check_positive_int("min_cluster_size", mcs, 2)
    )
    min_samples = params.get("min_samples")
    if min_samples is None:
        min_samples = min(10, mcs, n)  # less noise and faster than sklearn's min_cluster_size
    min_samples = check_positive_int("min_samples", min_samples)
    model = HDBSCAN(min_cluster_size=min(mcs, n), min_samples=min_samples, copy=True)
    labels = model.fit_predict(Z)
    return labels.astype(np.int32), {"min_cluster_size": mcs, "min_samples": min_samples}


def _kmeans(
    Z: np.ndarray, params: dict[str, Any], random_state: int
) -> tuple[np.ndarray, dict[str, Any]]:
    from sklearn.cluster import KMeans

    n_clusters = params.get("n_clusters")
    if n_clusters is None:
        raise InvalidParameterError("k-means needs n_clusters (an integer >= 2); got None.")
    n_clusters = check_positive_int("n_clusters", n_clusters, minimum=2)
    if n_clusters > Z.shape[0]:
        raise InvalidParameterError(
            f"n_clusters must be <= the number of samples ({Z.shape[0]}); got {n_clusters}."
        )
    model = KMeans(n_clusters=n_clusters, n_init=4, random_state=random_state)
    labels = model.fit_predict(Z)
    return labels.astype(np.int32), {"n_clusters": n_clusters}


#: Registry of clustering methods: name -> fn(reduced X, params, random_state) -> labels, params.
CLUSTER_METHODS: dict[
    str, Callable[[np.ndarray, dict[str, Any], int], tuple[np.ndarray, dict[str, Any]]]
] = {"hdbscan": _hdbscan, "kmeans": _kmeans}


@dataclass(frozen=True)
class ClusterResult:
    """Cluster ids of a set of embeddings.

    Attributes
    ----------
    labels : ndarray of shape (n_samples,), int32
        Cluster id per row; ``-1`` is noise (HDBSCAN only).
    method : str
    params : dict
        Resolved parameters, PCA included.
    n_clusters : int
    sizes : dict
        Rows per cluster id (noise included under ``-1``).
    scores : dict
        ``ari`` and ``nmi`` against labels when labels were given.
    seconds : float
    table : Path or None
        ``clusters.parquet`` when written by :func:`cluster_images`.
    """

    labels: np.ndarray
    method: str
    params: dict[str, Any]
    n_clusters: int
    sizes: dict[int, int]
    scores: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    table: Path | None = None

    @property
    def noise_fraction(self) -> float:
        """Share of rows left out of every cluster."""
        return float(np.mean(self.labels < 0)) if self.labels.size else 0.0


def cluster_scores(
    clusters: np.ndarray, labels: Sequence[str | None] | None
) -> dict[str, float | None]:
    """Adjusted Rand index and normalised mutual information of ``clusters`` against ``labels``.

    Rows without a label are left out; noise (``-1``) counts as one more cluster. Both are
    ``None`` when fewer than two labelled rows exist.

    Examples
    --------
    >>> cluster_scores(np.array([0, 0, 1, 1]), ["a", "a", "b", "b"])
    {'ari': 1.0, 'nmi': 1.0, 'n_labelled': 4}
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if labels is None:
        return {"ari": None, "nmi": None, "n_labelled": 0}
    keep = np.array([lbl is not None for lbl in labels], dtype=bool)
    if keep.sum() < 2:
        return {"ari": None, "nmi": None, "n_labelled": int(keep.sum())}
    truth = [str(lbl) for lbl, k in zip(labels, keep, strict=True) if k]
    pred = np.asarray(clusters)[keep]
    return {
        "ari": round(float(adjusted_rand_score(truth, pred)), 6),
        "nmi": round(float(normalized_mutual_info_score(truth, pred)), 6),
        "n_labelled": int(keep.sum()),
    }


def cluster_embeddings(
    X: np.ndarray,
    *,
    method: str = "hdbscan",
    n_components: int | None = 32,
    n_clusters: int | None = None,
    min_cluster_size: int | None = None,
    min_samples: int | None = None,
    labels: Sequence[str | None] | None = None,
    random_state: int = 0,
) -> ClusterResult:
    """Cluster embeddings (cosine geometry: rows are L2-normalised, then PCA-reduced).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    method : {"hdbscan", "kmeans"}, default="hdbscan"
    n_components : int or None, default=32
        PCA dimensions before clustering; ``None`` clusters the normalised embeddings as they are.
    n_clusters : int or None
        Number of clusters for ``kmeans`` (required there).
    min_cluster_size : int or None
        HDBSCAN's smallest cluster; ``None`` uses ``max(5, min(n // 200, 100))``, and under
        15 images a third of them (at least 2).
    min_samples : int or None
        HDBSCAN's density parameter (``None``: ``min(10, min_cluster_size, n)``).
    labels : sequence or None
        Known labels, to compute ARI and NMI.
    random_state : int, default=0
        Seed of PCA's randomised solver and of k-means.

    Returns
    -------
    ClusterResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(c, 0.1, size=(30, 8)) for c in (-1, 1)]).astype("float32")
    >>> cluster_embeddings(X, method="kmeans", n_clusters=2, n_components=None).n_clusters
    2
    """
    name = check_choice("method", method, CLUSTER_METHODS)
    Xc = check_embeddings(X, min_samples=2)
    start = time.perf_counter()
    Z = l2_normalize(Xc)
    used_components: int | None = None
    if n_components is not None:
        n_comp = check_positive_int("n_components", n_components)
        used_components = min(n_comp, Z.shape[1], Z.shape[0] - 1)
        if used_components < Z.shape[1]:
            from sklearn.decomposition import PCA

            Z = PCA(n_components=used_components, random_state=random_state).fit_transform(Z)
            Z = np.ascontiguousarray(Z, dtype=np.float32)
        else:
            used_components = None
    params_in = {
        "n_clusters": n_clusters,
        "min_cluster_size": min_cluster_size,
        "min_samples": min_samples,
    }
    cluster_ids, params = CLUSTER_METHODS[name](Z, params_in, random_state)
    seconds = time.perf_counter() - start
    ids, counts = np.unique(cluster_ids, return_counts=True)
    sizes = {int(i): int(c) for i, c in zip(ids, counts, strict=True)}
    n_found = int(np.sum(ids >= 0))
    params = {"pca_components": used_components, **params, "random_state": random_state}
    scores = cluster_scores(cluster_ids, labels)
    logger.info(
        "%s: %d clusters, %.1f%% noise in %.2fs",
        name,
        n_found,
        100 * float(np.mean(cluster_ids < 0)),
        seconds,
    )
    return ClusterResult(
        labels=cluster_ids,
        method=name,
        params=params,
        n_clusters=n_found,
        sizes=sizes,
        scores=scores,
        seconds=seconds,
    )


def _cluster_sheet(
    emb: Embeddings, labels: np.ndarray, out: Path, rows: int = 12, per_row: int = 8
) -> Path:
    """Contact sheet: one row per cluster (largest first), its most typical members."""
    from dinomap.downstream.contact_sheet import run_thumbnail_loader, write_contact_sheet

    Xn = l2_normalize(emb.X)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")][:rows]
    paths: list[str] = []
    captions: list[str] = []
    for c in order:
        members = np.flatnonzero(labels == c)
        centre = Xn[members].mean(axis=0)
        typical = members[np.argsort(-(Xn[members] @ centre), kind="stable")[:per_row]]
        for j, i in enumerate(typical):
            paths.append(emb.paths[i])
            label = emb.labels[i] if emb.labels is not None else None
            captions.append(f"#{c} n={members.size}" if j == 0 else (label or ""))
        pad = per_row - typical.size
        paths += [""] * pad
        captions += [""] * pad
    return write_contact_sheet(
        paths,
        out,
        captions=captions,
        columns=per_row,
        tile=80,
        title=f"{len(order)} largest clusters: most typical images",
        random_init=emb.random_init,
        loader=run_thumbnail_loader(emb.info),
    )


def cluster_images(
    run_dir: str | os.PathLike[str],
    *,
    method: str = "hdbscan",
    n_components: int | None = 32,
    n_clusters: int | None = None,
    min_cluster_size: int | None = None,
    min_samples: int | None = None,
    random_state: int = 0,
    write: bool = True,
    sheet: bool = True,
) -> ClusterResult:
    """Cluster the images of a run; write ``downstream/clusters.parquet`` and ``clusters.json``.

    Parameters are those of :func:`cluster_embeddings`; the run's labels (when any) are used for
    ARI and NMI. With ``sheet``, ``clusters.png`` shows the most typical images of the largest
    clusters (one row each: the members closest to the cluster's mean direction).

    Examples
    --------
    >>> result = cluster_images("runs/fm")  # doctest: +SKIP
    >>> result.n_clusters, result.scores["ari"]  # doctest: +SKIP
    """
    emb = load_embeddings(run_dir)
    result = cluster_embeddings(
        emb.X,
        method=method,
        n_components=n_components,
        n_clusters=n_clusters,
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        labels=emb.labels,
        random_state=random_state,
    )
    if not write:
        return result
    info: dict[str, Any] = {
        "method": result.method,
        "params": result.params,
        "n_samples": len(emb),
        "n_clusters": result.n_clusters,
        "noise_fraction": round(result.noise_fraction, 6),
        "sizes": {str(k): v for k, v in result.sizes.items()},
        **result.scores,
        "seconds": round(result.seconds, 4),
        "random_init": emb.random_init,
        "embeddings": emb.stamp,
    }
    if emb.random_init:
        info["warning"] = "random-init weights: clusters of these embeddings are not meaningful"
    out = write_downstream_table(
        run_dir,
        CLUSTERS_FILE,
        {
            "path": pa.array(emb.paths, pa.string()),
            "cluster": pa.array(result.labels, pa.int32()),
        },
        CLUSTERS_INFO_FILE,
        info,
    )
    if sheet:
        _cluster_sheet(emb, result.labels, downstream_dir(run_dir) / CLUSTERS_SHEET)
    return ClusterResult(
        labels=result.labels,
        method=result.method,
        params=result.params,
        n_clusters=result.n_clusters,
        sizes=result.sizes,
        scores=result.scores,
        seconds=result.seconds,
        table=out,
    )
