"""Exact duplicates (same content hash) and near-duplicates (connected groups of image pairs whose
cosine similarity is above a threshold, found through the nearest-neighbour index, never through
an ``N x N`` matrix).

``RUN/downstream/duplicates.csv`` lists one row per image of a group: ``group`` (an id), ``kind``
(``exact`` or ``near``), ``size``, ``path``, ``sha256``, ``similarity`` (for ``near``: the highest
similarity of that image to another member; for ``exact``: 1.0), ``label``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dinomap._validation import check_embeddings
from dinomap.downstream.index import (
    DEGENERATE_SPREAD,
    NeighborIndex,
    cosine_floor,
    l2_normalize,
)
from dinomap.downstream.neighbors import run_neighbors
from dinomap.exceptions import InvalidParameterError
from dinomap.store.downstream import write_downstream_text
from dinomap.store.layout import DUPLICATES_FILE, DUPLICATES_INFO_FILE

__all__ = [
    "DUPLICATES_FILE",
    "DuplicateReport",
    "exact_duplicate_groups",
    "find_duplicates",
    "near_duplicate_groups",
]

logger = logging.getLogger(__name__)

#: Pairs whose similarity is computed at once (their rows are gathered: 16k x d floats).
_PAIR_CHUNK = 16_384


def exact_duplicate_groups(hashes: Sequence[str]) -> list[list[int]]:
    """Groups (of two rows or more) sharing a content hash, each sorted, largest first.

    Examples
    --------
    >>> exact_duplicate_groups(["a", "b", "a", "c", "b", "a"])
    [[0, 2, 5], [1, 4]]
    """
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h and h != "unreadable":  # the data layer's marker for a file it could not read
            by_hash[h].append(i)
    groups = [rows for rows in by_hash.values() if len(rows) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not -1.0 <= float(threshold) <= 1.0:
        raise InvalidParameterError(
            f"threshold must be a cosine similarity in [-1, 1]; got {threshold!r}."
        )
    return float(threshold)


def near_duplicate_groups(
    X: np.ndarray,
    threshold: float = 0.95,
    *,
    index: NeighborIndex | None = None,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[list[int]], np.ndarray]:
    """Connected groups of rows linked by pairs with cosine similarity >= ``threshold``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    threshold : float, default=0.95
    index : NeighborIndex or None
        A fitted index over ``X`` (same rows, same order); an exact one is built when ``None``.
    neighbors : (sims, ids) or None
        Precomputed nearest neighbours of the rows (self excluded), used as the first round of
        the search (see :meth:`~dinomap.downstream.index.NeighborIndex.range_pairs`).

    Returns
    -------
    groups : list of list of int
        Groups of two rows or more, each sorted, largest group first.
    best : ndarray of shape (n_samples,), float32
        Highest similarity of each row to another row of its group (``nan`` outside groups).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 0], [0.999, 0.01], [0, 1]], dtype="float32")
    >>> near_duplicate_groups(X, 0.99)[0]
    [[0, 1]]
    """
    Xc = check_embeddings(X)
    t = _check_threshold(threshold)
    n = Xc.shape[0]
    floor = cosine_floor(Xc)
    if n > 2 and t <= floor:
        collapsed = floor >= 1 - DEGENERATE_SPREAD
        raise InvalidParameterError(
            f"threshold {t:.10g} links every pair of the {n:,} images (every cosine similarity "
            f"here is at least {floor:.10g}), so it would report them all as one group of "
            "near-duplicates; choose a threshold above that"
            + (", or embeddings that tell the images apart." if collapsed else ".")
        )
    nn = index if index is not None else NeighborIndex(kind="flat").fit(Xc)
    a, b = nn.range_pairs(Xc, t, neighbors=neighbors)
    best = np.full(n, np.nan, dtype=np.float32)
    if a.size == 0:
        return [], best
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    _, comp = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for row in np.unique(np.concatenate([a, b])):
        members[int(comp[row])].append(int(row))
    groups = sorted(
        (sorted(g) for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0])
    )
    # Best partner similarity per row, from the pairs themselves (no extra search).
    Xn = l2_normalize(Xc)
    for start in range(0, a.size, _PAIR_CHUNK):  # memory O(chunk * d), not O(pairs * d)
        pa, pb = a[start : start + _PAIR_CHUNK], b[start : start + _PAIR_CHUNK]
        sims = np.minimum(np.einsum("ij,ij->i", Xn[pa], Xn[pb]), 1.0).astype(np.float32)
        np.fmax.at(best, pa, sims)
        np.fmax.at(best, pb, sims)
    return groups, best


@dataclass(frozen=True)
class DuplicateReport:
    """Duplicate groups of a run.

    Attributes
    ----------
    exact : list of list of str
        Paths sharing a content hash.
    near : list of list of str
        Connected groups of near-duplicates that are not just one exact group.
    threshold : float
    csv : Path or None
        ``duplicates.csv`` when written.
    seconds : float
    """

    exact: list[list[str]]
    near: list[list[str]]
    threshold: float
    csv: Path | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def find_duplicates(
    run_dir: str | os.PathLike[str],
    *,
    threshold: float = 0.95,
    index: str = "auto",
    rebuild: bool = False,
    write: bool = True,
    **index_params: Any,
) -> DuplicateReport:
    """Find exact and near-duplicate images of a run and write ``downstream/duplicates.csv``.

    Parameters
    ----------
    run_dir : path
    threshold : float, default=0.95
        Cosine similarity above which two images are near-duplicates.
    index : {"auto", "flat", "hnsw", "ivf"}, default="auto"
        Index used to find the pairs (the run's saved index is reused).
    rebuild : bool, default=False
    write : bool, default=True
        Write ``duplicates.csv`` and ``duplicates.json`` into ``RUN/downstream``.
    **index_params
        Other :class:`~dinomap.downstream.index.NeighborIndex` parameters.

    Examples
    --------
    >>> report = find_duplicates("runs/fm", threshold=0.95)  # doctest: +SKIP
    >>> len(report.near), len(report.exact)  # doctest: +SKIP
    """
    t = _check_threshold(threshold)
    start = time.perf_counter()
    sims, ids, nn, emb = run_neighbors(run_dir, 16, kind=index, rebuild=rebuild, **index_params)
    exact_rows = exact_duplicate_groups(emb.sha256)
    near_rows_all, best = near_duplicate_groups(emb.X, t, index=nn, neighbors=(sims, ids))
    sha = emb.sha256
    near_rows = [g for g in near_rows_all if len({sha[i] for i in g}) > 1]
    seconds = time.perf_counter() - start
    exact = [[emb.paths[i] for i in g] for g in exact_rows]
    near = [[emb.paths[i] for i in g] for g in near_rows]
    info = {
        "threshold": t,
        "index": nn.kind_,
        "n_samples": len(emb),
        "n_exact_groups": len(exact),
        "n_exact_images": sum(len(g) for g in exact),
        "n_near_groups": len(near),
        "n_near_images": sum(len(g) for g in near),
        "seconds": round(seconds, 4),
        "random_init": emb.random_init,
        "embeddings": emb.stamp,
    }
    if emb.random_init:
        info["warning"] = "random-init weights: near-duplicates by embedding are not meaningful"
    out: Path | None = None
    if write:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["group", "kind", "size", "path", "sha256", "similarity", "label"])
        gid = 0
        for kind, rows_list in (("exact", exact_rows), ("near", near_rows)):
            for g in rows_list:
                for i in g:
                    sim = 1.0 if kind == "exact" else float(best[i])
                    label = emb.labels[i] if emb.labels is not None else None
                    writer.writerow(
                        [gid, kind, len(g), emb.paths[i], sha[i], f"{sim:.6f}", label or ""]
                    )
                gid += 1
        out = write_downstream_text(
            run_dir, DUPLICATES_FILE, buf.getvalue(), DUPLICATES_INFO_FILE, info
        )
    logger.info(
        "%d exact groups, %d near-duplicate groups (threshold %.10g) in %.2fs",
        len(exact),
        len(near),
        t,
        seconds,
    )
    return DuplicateReport(exact=exact, near=near, threshold=t, csv=out, seconds=seconds, info=info)
