"""The cached index and neighbour graph of a run: ``RUN/downstream/index.faiss`` and ``knn.npz``.

:func:`run_index` loads the saved :class:`~dinomap.downstream.index.NeighborIndex` of a run, or
builds and saves it when missing or out of date (``index.json`` records what it was built on);
:func:`run_neighbors` computes every image's ``k`` nearest neighbours once through it and saves
them, so outliers and near-duplicates share one graph. Both stay importable from
:mod:`dinomap.downstream.index`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dinomap._validation import check_positive_int
from dinomap.downstream.index import (
    DEGENERATE_SPREAD,
    NeighborIndex,
    cosine_floor,
    embeddings_fingerprint,
)
from dinomap.store import Embeddings, load_embeddings
from dinomap.store.downstream import write_index, write_knn
from dinomap.store.layout import (
    DOWNSTREAM_DIR,
    INDEX_FILE,
    INDEX_INFO_FILE,
    KNN_FILE,
    KNN_INFO_FILE,
)

__all__ = ["run_index", "run_neighbors"]

logger = logging.getLogger("dinomap.downstream.index")  # the logger these always logged to


def _index_paths(run_dir: Path) -> tuple[Path, Path]:
    base = run_dir / DOWNSTREAM_DIR
    return base / INDEX_FILE, base / INDEX_INFO_FILE


_SAID: set[str] = set()


def warn_if_degenerate(emb: Embeddings, run_dir: str | os.PathLike[str]) -> bool:
    """Say once (per run and embeddings) when every pairwise cosine similarity of ``emb`` is
    within :data:`DEGENERATE_SPREAD` of 1: neighbours, similarities, outliers and duplicates of
    such embeddings carry no meaning. Returns whether they are degenerate."""
    floor = cosine_floor(emb.X)
    if floor < 1.0 - DEGENERATE_SPREAD:
        return False
    key = f"{Path(run_dir).resolve()}:{emb.stamp['keys_digest']}"
    if key not in _SAID:
        _SAID.add(key)
        why = " (random-init weights)" if emb.random_init else ""
        logger.warning("the embeddings of %s are degenerate%s: every pair of images has a cosine "
                       "similarity of at least %.8f, so similarities, neighbours, outliers and "
                       "duplicates carry no meaning", run_dir, why, floor)  # fmt: skip
    return True


def run_index(
    run_dir: str | os.PathLike[str],
    embeddings: Embeddings | None = None,
    *,
    kind: str = "auto",
    rebuild: bool = False,
    **params: Any,
) -> tuple[NeighborIndex, Embeddings]:
    """Load the saved index of a run, or build and save it when missing or out of date.

    Parameters
    ----------
    run_dir : path
        The run directory.
    embeddings : Embeddings or None
        The run's embeddings, when already loaded.
    kind : {"auto", "flat", "hnsw", "ivf"}
        Index kind; a saved index of another kind or with other parameters is rebuilt.
    rebuild : bool, default=False
        Rebuild even when the saved index is up to date.
    **params
        Other :class:`NeighborIndex` parameters.

    Returns
    -------
    index : NeighborIndex
    embeddings : Embeddings
        Row ``i`` of the index is ``embeddings.paths[i]``.

    Examples
    --------
    >>> index, emb = run_index("runs/fm")  # doctest: +SKIP
    >>> sims, ids = index.search(emb.X[:1], k=5)  # doctest: +SKIP
    """
    run = Path(run_dir)
    emb = embeddings if embeddings is not None else load_embeddings(run)
    warn_if_degenerate(emb, run_dir)
    wanted = NeighborIndex(kind=kind, **params)
    resolved = wanted.resolve_kind(len(emb))
    fingerprint = embeddings_fingerprint(emb.X, emb.paths)
    index_file, info_file = _index_paths(run)
    if not rebuild and index_file.is_file() and info_file.is_file():
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            info = {}
        same = (
            info.get("fingerprint") == fingerprint
            and info.get("kind") == resolved
            and info.get("params") == _relevant_params(wanted.get_params(), resolved)
        )
        if same:
            logger.info("reusing saved %s index of %s", resolved, run)
            loaded = NeighborIndex.from_bytes(
                index_file.read_bytes(),
                wanted.get_params(),
                kind=resolved,
                build_seconds=float(info.get("build_seconds", 0.0)),
            )
            if loaded.n_samples_ == len(emb):
                return loaded, emb
        logger.info("saved index of %s is out of date; rebuilding", run)
    index = wanted.fit(emb.X)
    write_index(
        run,
        index.to_bytes(),
        {
            "kind": index.kind_,
            "metric": "cosine (inner product of L2-normalised embeddings)",
            "params": _relevant_params(wanted.get_params(), index.kind_),
            "n_samples": index.n_samples_,
            "dim": index.n_features_in_,
            "row_order": "dinomap.store.load_embeddings order (sorted by path)",
            "first_path": emb.paths[0],
            "last_path": emb.paths[-1],
            "fingerprint": fingerprint,
            "build_seconds": round(index.build_seconds_, 4),
            "random_init": emb.random_init,
        },
    )
    return index, emb


def _relevant_params(params: dict[str, Any], kind: str) -> dict[str, Any]:
    """The parameters that change the content of an index of ``kind``."""
    keys = {
        "flat": (),
        "hnsw": ("hnsw_m", "ef_construction"),
        "ivf": ("n_lists", "random_state"),
    }[kind]
    return {key: params[key] for key in keys}


def run_neighbors(
    run_dir: str | os.PathLike[str],
    k: int,
    *,
    kind: str = "auto",
    rebuild: bool = False,
    embeddings: Embeddings | None = None,
    **params: Any,
) -> tuple[np.ndarray, np.ndarray, NeighborIndex, Embeddings]:
    """The ``k`` nearest neighbours of every image of a run (itself excluded), cached.

    The graph is computed once through the run's index and saved as ``downstream/knn.npz``;
    outliers and near-duplicates then share it, and a later call with the same or a smaller
    ``k`` on unchanged embeddings reads it back instead of searching again.

    Returns
    -------
    sims : ndarray of shape (n, k), float32
    ids : ndarray of shape (n, k), int64
    index : NeighborIndex
    embeddings : Embeddings

    Examples
    --------
    >>> sims, ids, index, emb = run_neighbors("runs/fm", k=10)  # doctest: +SKIP
    """
    k = check_positive_int("k", k)
    nn, emb = run_index(run_dir, embeddings, kind=kind, rebuild=rebuild, **params)
    k = min(k, max(1, len(emb) - 1))
    base = Path(run_dir) / DOWNSTREAM_DIR
    knn_file, info_file = base / KNN_FILE, base / KNN_INFO_FILE
    index_info = json.loads((base / INDEX_INFO_FILE).read_text(encoding="utf-8"))
    key = {
        "fingerprint": index_info.get("fingerprint"),
        "kind": nn.kind_,
        "params": index_info.get("params"),
        "ef_search": nn.ef_search if nn.kind_ == "hnsw" else None,
        "n_probe": int(nn.index_.nprobe) if nn.kind_ == "ivf" else None,
    }
    if not rebuild and knn_file.is_file() and info_file.is_file():
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
            if info.get("key") == key and int(info.get("k", 0)) >= k:
                with np.load(knn_file) as data:
                    sims, ids = data["sims"][:, :k], data["ids"][:, :k].astype(np.int64)
                if ids.shape[0] == len(emb):
                    logger.info("reusing the saved %d-NN graph of %s", info["k"], run_dir)
                    return sims, ids, nn, emb
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            logger.info("saved kNN graph unreadable (%s); recomputing", exc)
    start = time.perf_counter()
    sims, ids = nn.search(emb.X, k, exclude_self=True)
    seconds = time.perf_counter() - start
    write_knn(
        run_dir,
        {"sims": sims, "ids": ids.astype(np.int32 if len(emb) < 2**31 else np.int64)},
        {"k": k, "key": key, "seconds": round(seconds, 4), "random_init": emb.random_init},
    )
    logger.info("%d-NN graph of %d images in %.2fs", k, len(emb), seconds)
    return sims, ids, nn, emb
