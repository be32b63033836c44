"""Cosine nearest-neighbour index over L2-normalised embeddings, backed by FAISS.

An exact ``IndexFlatIP`` is used by default; an approximate HNSW (or IVF) index when asked, or
when the collection is larger than ``approximate_above``. The index of a run is built once and
saved in ``RUN/downstream/index.faiss`` next to ``index.json``, which records what it was built
on (a fingerprint of the embeddings and of the row order, the kind and its parameters); a later
call reuses it while the embeddings are unchanged and rebuilds it otherwise (that caching, and
the run's saved neighbour graph, is :mod:`dinomap.downstream.neighbors`).

FAISS is an optional dependency: ``pip install "dinomap[search]"``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np

from dinomap._validation import check_choice, check_embeddings, check_positive_int
from dinomap.exceptions import InvalidParameterError, MissingDependencyError
from dinomap.metrics import drop_self
from dinomap.store.layout import (
    DOWNSTREAM_DIR,
    INDEX_FILE,
    INDEX_INFO_FILE,
)

__all__ = [
    "DEGENERATE_SPREAD",
    "DOWNSTREAM_DIR",
    "INDEX_FILE",
    "INDEX_INFO_FILE",
    "INDEX_KINDS",
    "NeighborIndex",
    "cosine_floor",
    "embeddings_fingerprint",
    "exact_row_neighbors",
    "import_faiss",
    "l2_normalize",
]

logger = logging.getLogger(__name__)

#: Sub-directory of a run that holds every downstream output.
#: Index kinds: ``auto`` is exact up to ``approximate_above`` rows and HNSW above.
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")


def import_faiss() -> Any:
    """Import FAISS lazily, failing with an install hint when it is missing."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            'Similarity search needs FAISS: pip install "dinomap[search]" (faiss-cpu).'
        ) from exc
    return faiss


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Return a float32 copy of ``X`` with unit-length rows (zero rows stay zero)."""
    Y = np.array(X, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(Y, axis=1, keepdims=True)
    np.divide(Y, norms, out=Y, where=norms > 0)
    return Y


#: Rows normalised at a time by :func:`cosine_floor`.
_FLOOR_CHUNK = 65_536
#: Every pairwise cosine within this of 1: the embeddings cannot tell images apart.
DEGENERATE_SPREAD = 1e-5


def cosine_floor(X: np.ndarray) -> float:
    """A lower bound of the cosine similarity of every pair of rows of ``X``, in ``O(n d)``:
    ``cos(2 * theta)``, ``theta`` the largest angle of a row to the rows' mean direction
    (``-1`` when they have none). Near 1: all rows point the same way (collapsed embeddings,
    such as a random-init model's), and any threshold below it links every pair.

    Examples
    --------
    >>> import numpy as np
    >>> round(cosine_floor(np.array([[1.0, 0.0], [0.0, 1.0]])), 6) + 0.0
    0.0
    """
    n = X.shape[0]
    if n < 2:
        return 1.0
    chunks = range(0, n, _FLOOR_CHUNK)  # rows a chunk at a time: no copy of all of X
    total = np.zeros(X.shape[1], dtype=np.float64)
    for start in chunks:
        total += l2_normalize(X[start : start + _FLOOR_CHUNK]).sum(axis=0, dtype=np.float64)
    norm = float(np.linalg.norm(total))
    if norm == 0.0:
        return -1.0
    direction = total / norm  # float64: near-identical rows differ beyond float32's digits
    lowest = min(float((l2_normalize(X[s : s + _FLOOR_CHUNK]).astype(np.float64) @ direction).min())
                 for s in chunks)  # fmt: skip
    theta = float(np.arccos(np.clip(lowest, -1.0, 1.0)))
    return float(np.cos(min(2.0 * theta, np.pi)))


def embeddings_fingerprint(X: np.ndarray, paths: list[str] | None = None) -> str:
    """SHA-256 of the embedding bytes and of the row order (paths), to detect a changed run."""
    h = hashlib.sha256()
    arr = np.ascontiguousarray(X, dtype=np.float32)
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    if paths is not None:
        h.update("\n".join(paths).encode("utf-8"))
    return h.hexdigest()


class NeighborIndex:
    """Cosine-similarity nearest neighbours with FAISS (exact, HNSW or IVF).

    Parameters
    ----------
    kind : {"auto", "flat", "hnsw", "ivf"}, default="auto"
        ``flat`` is exact (``IndexFlatIP``); ``hnsw`` and ``ivf`` are approximate. ``auto`` picks
        ``flat`` up to ``approximate_above`` rows and ``hnsw`` above.
    approximate_above : int, default=50_000
        Size above which ``auto`` switches to HNSW.
    hnsw_m : int, default=32
        Links per node of the HNSW graph.
    ef_construction : int, default=100
        Breadth of the HNSW search while building.
    ef_search : int, default=64
        Breadth of the HNSW search at query time (raised to ``k`` when smaller).
    n_lists : int or None, default=None
        IVF cells; ``None`` uses ``sqrt(n)`` (at most ``n / 39``).
    n_probe : int or None, default=None
        IVF cells visited per query; ``None`` uses ``max(16, n_lists // 8)``. IVF recall depends
        more on the data than HNSW's: check it with ``benchmarks/bench_downstream.py``.
    random_state : int, default=0
        Seed of the IVF training sample. HNSW is built with several threads, so its graph (and
        so its rare misses) may differ slightly between builds; exact search is deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 8)).astype("float32")
    >>> index = NeighborIndex().fit(X)
    >>> sims, ids = index.search(X[:2], k=3)
    >>> ids[:, 0].tolist()
    [0, 1]
    """

    def __init__(
        self,
        kind: str = "auto",
        *,
        approximate_above: int = 50_000,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 64,
        n_lists: int | None = None,
        n_probe: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.kind = kind
        self.approximate_above = approximate_above
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.n_lists = n_lists
        self.n_probe = n_probe
        self.random_state = random_state

    # -- parameters -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, as a dict."""
        return {
            "kind": self.kind,
            "approximate_above": self.approximate_above,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "n_lists": self.n_lists,
            "n_probe": self.n_probe,
            "random_state": self.random_state,
        }

    def resolve_kind(self, n_samples: int) -> str:
        """The concrete kind (``flat``, ``hnsw`` or ``ivf``) used for ``n_samples`` rows."""
        kind = check_choice("kind", self.kind, INDEX_KINDS)
        if kind == "auto":
            limit = check_positive_int("approximate_above", self.approximate_above)
            return "hnsw" if n_samples > limit else "flat"
        return kind

    def _check_fitted(self) -> None:
        if not hasattr(self, "index_"):
            from dinomap.exceptions import NotFittedError  # made on first use (scikit-learn's)

            raise NotFittedError("This NeighborIndex is not fitted yet; call fit(X) first.")

    # -- building ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray) -> NeighborIndex:
        """Build the index on the L2-normalised rows of ``X``; return ``self``."""
        faiss = import_faiss()
        Xn = l2_normalize(check_embeddings(X, min_samples=1))
        n, d = Xn.shape
        kind = self.resolve_kind(n)
        start = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            m = check_positive_int("hnsw_m", self.hnsw_m, minimum=2)
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = check_positive_int("ef_construction", self.ef_construction)
            index.hnsw.efSearch = check_positive_int("ef_search", self.ef_search)
        else:
            n_lists = self._n_lists(n)
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, n_lists, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(self.random_state)
            n_train = min(n, max(39 * n_lists, 10_000))
            sample = Xn[np.sort(rng.choice(n, size=n_train, replace=False))]
            index.cp.seed = int(self.random_state)
            index.train(sample)
            index.nprobe = self._n_probe(n_lists)
        index.add(Xn)
        self.index_ = index
        self.kind_ = kind
        self.n_samples_ = n
        self.n_features_in_ = d
        self.build_seconds_ = time.perf_counter() - start
        logger.info("built %s index on %d x %d in %.2fs", kind, n, d, self.build_seconds_)
        return self

    def _n_lists(self, n: int) -> int:
        if self.n_lists is not None:
            value = check_positive_int("n_lists", self.n_lists)
            if value > n:
                raise InvalidParameterError(
                    f"n_lists must be <= the number of samples ({n}); got {value}."
                )
            return value
        return int(max(1, min(int(np.sqrt(n)), n // 39 or 1)))

    def _n_probe(self, n_lists: int) -> int:
        if self.n_probe is not None:
            return min(check_positive_int("n_probe", self.n_probe), n_lists)
        return int(min(n_lists, max(16, n_lists // 8)))

    # -- querying ---------------------------------------------------------------------------
    def search(
        self, Q: np.ndarray, k: int, *, exclude_self: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` most similar indexed rows of each query row.

        Parameters
        ----------
        Q : array of shape (n_queries, n_features)
            Query embeddings (normalised here).
        k : int
            Number of neighbours.
        exclude_self : bool, default=False
            When the queries are the indexed rows themselves (``Q`` is ``X`` in the same order),
            drop each row from its own neighbour list.

        Returns
        -------
        sims : ndarray of shape (n_queries, k), float32
            Cosine similarities, most similar first.
        ids : ndarray of shape (n_queries, k), int64
            Row numbers of the neighbours (``-1`` where fewer than ``k`` were found).
        """
        self._check_fitted()
        k = check_positive_int("k", k)
        Qn = l2_normalize(check_embeddings(Q, name="Q"))
        if Qn.shape[1] != self.n_features_in_:
            raise InvalidParameterError(
                f"Q must have {self.n_features_in_} features like the index; got {Qn.shape[1]}."
            )
        if exclude_self and Qn.shape[0] != self.n_samples_:
            raise InvalidParameterError(
                "exclude_self=True needs the indexed rows as queries "
                f"({self.n_samples_} rows); got {Qn.shape[0]}."
            )
        k_eff = min(k + int(exclude_self), self.n_samples_)
        if self.kind_ == "hnsw":
            self.index_.hnsw.efSearch = max(int(self.ef_search), k_eff)
        sims, ids = self.index_.search(Qn, k_eff)
        if exclude_self:
            if self.kind_ != "flat":
                sims, ids = self._repair_lost_rows(Qn, sims, ids, k_eff)
            sims, ids = _drop_self(sims, ids)
        if ids.shape[1] < k:  # fewer rows than asked: pad like FAISS does
            pad = k - ids.shape[1]
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return sims.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def _repair_lost_rows(
        self, Xn: np.ndarray, sims: np.ndarray, ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Redo exactly the rows whose approximate search did not even find the row itself.

        An indexed row that is not among its own results shows the search got lost (an HNSW
        graph between well-separated clusters, an IVF probe that missed its cell); its
        neighbours would be wrong and, for outlier scores, look far away. Those few rows are
        searched again by brute force (``faiss.knn``), which also covers a row with more than
        ``k`` exact copies of itself.
        """
        lost = np.flatnonzero(~(ids == np.arange(ids.shape[0])[:, None]).any(axis=1))
        self.repaired_rows_ = int(lost.size)
        if not lost.size:
            return sims, ids
        sims, ids = sims.copy(), ids.copy()
        sims[lost], ids[lost] = _exact_knn(Xn, lost, k)
        logger.info(
            "%d of %d rows were lost by the %s search; searched again exactly",
            lost.size,
            ids.shape[0],
            self.kind_,
        )
        return sims, ids

    def range_pairs(
        self,
        X: np.ndarray,
        threshold: float,
        *,
        neighbors: tuple[np.ndarray, np.ndarray] | None = None,
        max_neighbors: int = 512,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(i, j)``, ``i < j``, of indexed rows with cosine similarity >= ``threshold``.

        ``X`` must be the indexed rows in order. Found through the index by k-nearest-neighbour
        queries whose ``k`` doubles only for the rows whose ``k``-th neighbour is still above the
        threshold, so no ``N x N`` matrix is ever formed.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        threshold : float
        neighbors : (sims, ids) or None
            The rows' own nearest neighbours (self excluded, as from
            ``search(X, k, exclude_self=True)`` or :func:`~dinomap.downstream.neighbors.run_neighbors`), used as the first
            round instead of a fresh search.
        max_neighbors : int, default=512
            Most neighbours looked at per row. A row with more than this many rows above the
            threshold (a huge group, or collapsed random-init embeddings) keeps its
            ``max_neighbors`` most similar ones, with a warning: the group stays connected
            while the work stays ``O(n * max_neighbors)``.
        """
        self._check_fitted()
        n = self.n_samples_
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        Xn = l2_normalize(check_embeddings(X))
        todo = np.arange(n)
        empty = np.empty(0, dtype=np.int64)
        if n < 2:
            return empty, empty
        cap = check_positive_int("max_neighbors", max_neighbors)
        if neighbors is not None:
            sims, ids = neighbors
            k = int(ids.shape[1])
            if ids.shape[0] != n:
                raise InvalidParameterError(
                    f"neighbors must hold one row per indexed sample ({n}); got {ids.shape[0]}."
                )
        else:
            k = min(16, n - 1)
            sims, ids = self.search(Xn, k, exclude_self=True)
        while todo.size and k >= 1:
            keep = (sims >= threshold) & (ids >= 0) & (ids != todo[:, None])
            r, c = np.nonzero(keep)
            rows.append(todo[r])
            cols.append(ids[r, c])
            full = keep.sum(axis=1) >= k  # every neighbour was above: there may be more
            if k >= n - 1:
                break
            todo = todo[full]
            if k >= cap:
                if todo.size:
                    logger.warning(
                        "%d rows have more than %d neighbours with cosine >= %.10g; their "
                        "groups are built from their %d most similar (raise the threshold?)",
                        todo.size,
                        cap,
                        threshold,
                        cap,
                    )
                break
            k = min(2 * k, n - 1, cap)
            if todo.size:
                sims, ids = self.search(Xn[todo], k + 1)  # self is masked out above
        if not rows:
            return empty, empty
        a = np.concatenate(rows).astype(np.int64)
        b = np.concatenate(cols).astype(np.int64)
        if a.size == 0:
            return a, b
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        pairs = np.unique(np.stack([lo, hi], axis=1), axis=0)
        return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)

    # -- persistence ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise the FAISS index (the parameters are saved separately by :func:`~dinomap.downstream.neighbors.run_index`)."""
        self._check_fitted()
        faiss = import_faiss()
        return bytes(faiss.serialize_index(self.index_).tobytes())

    @classmethod
    def from_bytes(
        cls, data: bytes, params: dict[str, Any], *, kind: str, build_seconds: float = 0.0
    ) -> NeighborIndex:
        """Rebuild a fitted index from :meth:`to_bytes` output and its parameters."""
        faiss = import_faiss()
        self = cls(**params)
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        self.index_ = index
        self.kind_ = kind
        self.n_samples_ = int(index.ntotal)
        self.n_features_in_ = int(index.d)
        self.build_seconds_ = build_seconds
        if kind == "ivf":
            index.nprobe = self._n_probe(int(index.nlist))
        return self


def _drop_self(
    sims: np.ndarray, ids: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id from its neighbour list (:func:`dinomap.metrics.drop_self`).

    ``rows`` are the ids of the query rows (default ``0 .. n-1``, all indexed rows in order).
    """
    own = np.arange(ids.shape[0]) if rows is None else np.asarray(rows)
    ids_k, sims_k = drop_self(ids, own, sims)
    return sims_k, ids_k


def exact_row_neighbors(
    Xn: np.ndarray, rows: np.ndarray, k: int, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of rows ``rows`` of ``Xn`` among all its rows (each row
    itself excluded), by brute force in chunks of queries (``faiss.knn``, no ``N x N`` matrix).

    ``Xn`` must already be L2-normalised (see :func:`l2_normalize`).
    """
    rows = np.asarray(rows, dtype=np.int64)
    sims, ids = _exact_knn(Xn, rows, min(k + 1, Xn.shape[0]), chunk)
    return _drop_self(sims, ids, rows)


def _exact_knn(
    Xn: np.ndarray, rows: np.ndarray, k: int, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest rows of ``Xn`` (inner product) for rows ``rows``, the row itself
    included: brute force (``faiss.knn``) over ``chunk`` queries at a time."""
    faiss = import_faiss()
    sims = np.empty((rows.size, k), dtype=np.float32)
    ids = np.empty((rows.size, k), dtype=np.int64)
    for start in range(0, rows.size, chunk):
        part = rows[start : start + chunk]
        d, i = faiss.knn(Xn[part], Xn, k, metric=faiss.METRIC_INNER_PRODUCT)
        sims[start : start + part.size], ids[start : start + part.size] = d, i
    return sims, ids
