"""UMAP through umap-learn, with ``transform`` for new points and a numba warm-up.

umap-learn compiles its nearest-neighbour descent with numba the first time a process fits
more than 4,096 points (30-45 s on a 2-core machine); those functions take a distance function
as an argument, so numba cannot cache them on disk. :func:`start_warm_up` compiles them in a
background thread on a tiny synthetic data set, so :func:`dinomap.maps.make_maps` can overlap
the compilation with PCA and t-SNE instead of making the user wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any, ClassVar

import numpy as np

from dinomap._umap import import_umap
from dinomap._validation import check_positive_int
from dinomap.exceptions import InvalidParameterError
from dinomap.reduce.base import Reducer

__all__ = ["NNDESCENT_MIN_SAMPLES", "UMAPReducer", "start_warm_up", "warm_up"]

logger = logging.getLogger(__name__)

#: umap-learn switches from exact neighbours to NN-descent (the slow-to-compile path) at 4,096.
NNDESCENT_MIN_SAMPLES = 4096

_warm_lock = threading.Lock()
_warm_done: set[tuple[Any, ...]] = set()


class UMAPReducer(Reducer):
    """UMAP map via umap-learn, with ``transform`` for new points.

    Parameters
    ----------
    n_components : int, default=2
    n_neighbors : int, default=15
    min_dist : float, default=0.1
    metric : str, default="euclidean"
    n_epochs : int or None, default=None
        umap-learn's default: 200 epochs above 10,000 points, 500 below.
    low_memory : bool, default=True
        NN-descent's low-memory mode (umap-learn's default); memory stays linear in n.
    n_jobs : int, default=-1
        Threads; umap-learn runs single-threaded whenever ``random_state`` is set.
    random_state : int or None, default=None
        With a seed, umap-learn is reproducible but single-threaded (its own trade-off).
    verbose : bool, default=False

    Attributes
    ----------
    umap_ : umap.UMAP
        The fitted umap-learn model.
    graph_ : scipy.sparse.csr_matrix
        The fuzzy simplicial set (reusable by :class:`dinomap.parametric.ParametricUMAP`).
    embedding_ : ndarray of shape (n_samples, n_components), float32

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 16))
    >>> UMAPReducer(random_state=0, n_epochs=20).fit_transform(X).shape  # doctest: +SKIP
    (200, 2)
    """

    method: ClassVar[str] = "umap"
    backend_name: ClassVar[str] = "umap-learn"
    display_name: ClassVar[str] = "UMAP"
    min_samples: ClassVar[int] = 3

    umap_: Any

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "euclidean",
        n_epochs: int | None = None,
        low_memory: bool = True,
        n_jobs: int = -1,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.low_memory = low_memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @classmethod
    def _before_unpickle(cls) -> None:
        import_umap()  # the pickle names umap.umap_; keep TensorFlow out of that import

    def key_params(self) -> dict[str, Any]:
        return {"n_neighbors": self.n_neighbors, "min_dist": self.min_dist}

    @property
    def graph_(self) -> Any:
        """The fuzzy graph of the training points (a scipy sparse matrix)."""
        self._check_fitted()
        return self.umap_.graph_

    def validate(self, n_samples: int) -> None:
        super().validate(n_samples)
        self._make_umap(n_samples, build=False)

    def _make_umap(self, n_samples: int, build: bool = True) -> Any:
        n_neighbors = check_positive_int("n_neighbors", self.n_neighbors, minimum=2)
        if n_neighbors >= n_samples:
            raise InvalidParameterError(
                f"n_neighbors={n_neighbors} is too large for {n_samples} points: UMAP needs "
                f"n_neighbors < n_samples (at most {n_samples - 1} here). Lower n_neighbors or "
                "map more points."
            )
        min_dist = self.min_dist
        if isinstance(min_dist, bool) or not isinstance(min_dist, int | float) or min_dist < 0:
            raise InvalidParameterError(f"min_dist must be a number >= 0; got {min_dist!r}.")
        if self.n_epochs is not None:
            check_positive_int("n_epochs", self.n_epochs)
        n_components = check_positive_int("n_components", self.n_components)
        if not build:
            return None
        umap = import_umap()
        return umap.UMAP(
            n_components=n_components,
            n_neighbors=n_neighbors,
            min_dist=float(min_dist),
            metric=self.metric,
            n_epochs=self.n_epochs,
            low_memory=bool(self.low_memory),
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            verbose=bool(self.verbose),
            tqdm_kwds=_tqdm_kwds(),
        )

    def _fit(self, X: np.ndarray) -> np.ndarray:
        model = self._make_umap(X.shape[0])
        if self.random_state is not None:
            logger.info("UMAP: random_state is set, so umap-learn runs single-threaded")
        with warnings.catch_warnings():
            # umap-learn warns that a seed disables parallelism (logged above) and, for small
            # data sets, that spectral initialisation fell back; neither needs the user.
            warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            self.umap_ = model.fit(X)
        return np.asarray(self.umap_.embedding_)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        # the bar follows this call's progress setting, not the one the model was fitted (and
        # pickled) with: a map made in a terminal must not draw bars into a redirected stderr
        self.umap_.tqdm_kwds = {**(getattr(self.umap_, "tqdm_kwds", None) or {}), **_tqdm_kwds()}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            return np.asarray(self.umap_.transform(X))


def _tqdm_kwds() -> dict[str, Any]:
    from dinomap.maps.progress import umap_tqdm_kwds

    return umap_tqdm_kwds("UMAP: epochs")


def _warm_key(low_memory: bool, seeded: bool) -> tuple[Any, ...]:
    return (bool(low_memory), bool(seeded))


def warm_up(low_memory: bool = True, seeded: bool = True) -> float:
    """Compile umap-learn's NN-descent path now, on tiny synthetic data; return the seconds.

    The compiled code lives in this process, so a later :class:`UMAPReducer` fit of more than
    4,096 points starts at once. ``seeded`` selects the single-threaded variant that umap-learn
    uses when ``random_state`` is set. Calling it again is free.
    """
    key = _warm_key(low_memory, seeded)
    with _warm_lock:
        if key in _warm_done:
            return 0.0
        start = time.perf_counter()
        X = np.random.default_rng(0).normal(size=(NNDESCENT_MIN_SAMPLES + 64, 4))
        reducer = UMAPReducer(
            n_neighbors=5,
            n_epochs=1,
            low_memory=low_memory,
            random_state=0 if seeded else None,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reducer.fit(X.astype(np.float32))
        _warm_done.add(key)
        seconds = time.perf_counter() - start
    logger.info("UMAP: numba warm-up took %.1f s", seconds)
    return seconds


def start_warm_up(low_memory: bool = True, seeded: bool = True) -> threading.Thread:
    """Run :func:`warm_up` in a daemon thread and return the (started) thread."""
    thread = threading.Thread(
        target=_warm_up_quietly,
        args=(low_memory, seeded),
        name="dinomap-umap-warm-up",
        daemon=True,
    )
    thread.start()
    return thread


def _warm_up_quietly(low_memory: bool, seeded: bool) -> None:
    try:
        warm_up(low_memory=low_memory, seeded=seeded)
    except Exception:  # pragma: no cover - a failed warm-up only costs the time it saves
        logger.debug("UMAP warm-up failed", exc_info=True)
