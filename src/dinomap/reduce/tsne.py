"""t-SNE through openTSNE: FFT-accelerated gradients, PCA-50 input, PCA initialisation.

The schedule is openTSNE's two-phase one with 1,000 iterations in total by default:
``early_exaggeration_iter=250`` iterations with exaggeration 12 (clusters form), then
``n_iter=750`` iterations without exaggeration (the map relaxes). Neighbours are searched with
Annoy (exact below 1,000 points), affinities use ``3 * perplexity`` neighbours per point and
the negative gradient is interpolated on a grid with FFTs, so memory grows linearly with the
number of points; no N x N matrix is ever built.

Threads: ``n_jobs=1`` by default. On the 2-core reference machine, with other processes
competing for the cores, one thread was 2-4x faster than two (10,000 points, 100 FFT iterations:
2.3 s with one thread, 4.3-9.4 s with two): every iteration has several parallel sections and
each waits for its slowest thread. One thread also leaves a core to umap-learn's numba
compilation, which :func:`dinomap.maps.make_maps` runs in the background meanwhile. Pass
``n_jobs=-1`` on a machine with idle cores.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from dinomap._validation import check_choice, check_positive_int
from dinomap.exceptions import InvalidParameterError
from dinomap.reduce.base import Reducer
from dinomap.reduce.pca import PCAReducer

__all__ = ["TSNEReducer", "max_perplexity"]

logger = logging.getLogger(__name__)

GRADIENT_METHODS = ("auto", "fft", "bh")
#: From this many points on, "auto" uses FFT-interpolated gradients (as openTSNE's own "auto").
FFT_MIN_SAMPLES = 10_000


def max_perplexity(n_samples: int) -> float:
    """Largest perplexity t-SNE accepts for ``n_samples`` points: ``(n_samples - 1) / 3``.

    Each point's affinities are calibrated on its ``3 * perplexity`` nearest neighbours, so there
    must be that many other points.

    Examples
    --------
    >>> max_perplexity(91)
    30.0
    """
    return (n_samples - 1) / 3.0


class TSNEReducer(Reducer):
    """t-SNE map via openTSNE, with ``transform`` for new points.

    Parameters
    ----------
    n_components : int, default=2
    perplexity : float, default=30
        Effective number of neighbours; must satisfy ``3 * perplexity <= n_samples - 1``.
    n_iter : int, default=750
        Iterations after the early-exaggeration phase.
    early_exaggeration_iter : int, default=250
        Iterations of the early-exaggeration phase (total 1,000 with the defaults).
    early_exaggeration : float or "auto", default="auto"
        Exaggeration of the first phase (openTSNE's "auto" is 12).
    pca_components : int or None, default=50
        The input is first reduced to this many principal components (deterministic signs);
        ``None`` feeds the raw embeddings.
    learning_rate : float or "auto", default="auto"
        openTSNE's "auto" is ``max(n_samples / early_exaggeration, 200)``.
    negative_gradient_method : {"fft", "bh", "auto"}, default="fft"
        FFT-interpolated gradients (linear in n; 2x faster than Barnes-Hut at 5,000 points and
        3x at 10,000 here). "auto" follows openTSNE's rule (Barnes-Hut below 10,000 points).
        The choice made is kept in ``gradient_method_``.
    ints_in_interval : float, default=2
        Width of an FFT interpolation interval in map units. openTSNE's default, 1, makes the
        interpolation grid grow with the map's span, which dominates late iterations; 2 gave the
        same map quality 3.2x faster (10,000 points: 18 s instead of 59 s, trustworthiness
        0.9892 vs 0.9893, kNN preservation 0.364 vs 0.372). Use 1 for openTSNE's exact grid.
    n_jobs : int, default=1
        Threads for neighbour search and gradients (-1 = all cores); see the module notes.
    random_state : int, Generator or None, default=None
        Seed of the neighbour search and the PCA; the same seed gives the same map.
    verbose : bool, default=False
        Print openTSNE's progress.

    Attributes
    ----------
    pca_ : PCAReducer or None
        The input PCA (applied again by ``transform``).
    tsne_embedding_ : openTSNE.TSNEEmbedding
        openTSNE's embedding, which places new points.
    embedding_ : ndarray of shape (n_samples, n_components), float32

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 16))
    >>> TSNEReducer(n_iter=50, early_exaggeration_iter=50, random_state=0).fit_transform(X).shape
    (200, 2)
    """

    method: ClassVar[str] = "tsne"
    backend_name: ClassVar[str] = "opentsne"
    display_name: ClassVar[str] = "t-SNE"
    min_samples: ClassVar[int] = 3

    #: openTSNE ``transform`` iterations for new points (its default); the large-data strategy
    #: of :mod:`dinomap.maps.large` lowers it on the instance while it places the rest.
    transform_n_iter: int = 250

    pca_: PCAReducer | None
    gradient_method_: str
    tsne_embedding_: Any
    n_iter_total_: int

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        n_iter: int = 750,
        early_exaggeration_iter: int = 250,
        early_exaggeration: float | str = "auto",
        pca_components: int | None = 50,
        learning_rate: float | str = "auto",
        negative_gradient_method: str = "fft",
        ints_in_interval: float = 2.0,
        n_jobs: int = 1,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.early_exaggeration = early_exaggeration
        self.pca_components = pca_components
        self.learning_rate = learning_rate
        self.negative_gradient_method = negative_gradient_method
        self.ints_in_interval = ints_in_interval
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def key_params(self) -> dict[str, Any]:
        return {
            "perplexity": self.perplexity,
            "iterations": f"{self.early_exaggeration_iter}+{self.n_iter}",
        }

    def validate(self, n_samples: int) -> None:
        super().validate(n_samples)
        self._check_params(n_samples)

    def _check_params(self, n_samples: int) -> tuple[float, int, int, str]:
        perplexity = self.perplexity
        if (
            isinstance(perplexity, bool)
            or not isinstance(perplexity, int | float | np.integer | np.floating)
            or not np.isfinite(perplexity)
            or perplexity <= 0
        ):
            raise InvalidParameterError(f"perplexity must be a number > 0; got {perplexity!r}.")
        if 3 * perplexity > n_samples - 1:
            raise InvalidParameterError(
                f"perplexity={perplexity:g} is too large for {n_samples} points: t-SNE needs "
                f"3 * perplexity <= n_samples - 1, so at most {max_perplexity(n_samples):.4g} "
                "here. Lower perplexity or map more points."
            )
        n_iter = check_positive_int("n_iter", self.n_iter, minimum=0)
        ee_iter = check_positive_int("early_exaggeration_iter", self.early_exaggeration_iter, 0)
        method = check_choice(
            "negative_gradient_method", self.negative_gradient_method, GRADIENT_METHODS
        )
        if method == "auto":
            method = "fft" if n_samples >= FFT_MIN_SAMPLES else "bh"
        if self.pca_components is not None:
            check_positive_int("pca_components", self.pca_components)
        check_positive_int("n_components", self.n_components)
        iii = self.ints_in_interval
        if isinstance(iii, bool) or not isinstance(iii, int | float) or not iii > 0:
            raise InvalidParameterError(f"ints_in_interval must be a number > 0; got {iii!r}.")
        return float(perplexity), n_iter, ee_iter, method

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from openTSNE import TSNE

        n = X.shape[0]
        perplexity, n_iter, ee_iter, self.gradient_method_ = self._check_params(n)
        Xp = self._fit_pca(X)
        tsne = TSNE(
            n_components=check_positive_int("n_components", self.n_components),
            perplexity=perplexity,
            initialization="pca",
            metric="euclidean",
            n_iter=n_iter,
            early_exaggeration_iter=ee_iter,
            early_exaggeration=self.early_exaggeration,
            learning_rate=self.learning_rate,
            negative_gradient_method=self.gradient_method_,
            ints_in_interval=self.ints_in_interval,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            verbose=bool(self.verbose),
        )
        logger.info(
            "t-SNE: %d points, input %d-d, perplexity %g, %s gradients, "
            "%d early-exaggeration + %d iterations",
            n,
            Xp.shape[1],
            perplexity,
            self.gradient_method_,
            ee_iter,
            n_iter,
        )
        self.tsne_embedding_ = _fit_with_progress(tsne, Xp, ee_iter + n_iter)
        self.n_iter_total_ = ee_iter + n_iter
        return np.asarray(self.tsne_embedding_)

    def _fit_pca(self, X: np.ndarray) -> np.ndarray:
        self.pca_ = None
        if self.pca_components is None:
            return X
        n_pca = min(int(self.pca_components), X.shape[0], X.shape[1])
        if n_pca >= X.shape[1]:
            return X  # nothing to reduce
        self.pca_ = PCAReducer(n_components=n_pca, random_state=self.random_state)
        Xp = self.pca_.fit_transform(X)
        self.pca_.embedding_ = Xp[:0]  # the inner PCA keeps no copy of its training output
        return Xp

    def _transform(self, X: np.ndarray) -> np.ndarray:
        Xp = self.pca_.transform(X) if self.pca_ is not None else X
        return np.asarray(self.tsne_embedding_.transform(Xp, n_iter=int(self.transform_n_iter)))

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        # Placing new points needs the kNN index of the training points and their map, not the
        # training affinities: openTSNE computes new affinities from the index. Dropping P and
        # the training kNN graph makes the saved mapper about half as big (70,000 points:
        # ~90 MB instead of ~190 MB).
        full = self.tsne_embedding_
        affinities = getattr(full, "affinities", None)
        if affinities is not None:
            import copy

            slim_affinities = copy.copy(affinities)
            for key in list(vars(slim_affinities)):
                if key == "P" or key.endswith(("__neighbors", "__distances")):
                    setattr(slim_affinities, key, None)
            slim = full.view(type(full))  # same coordinates, own attribute dict
            slim.__dict__.update(full.__dict__)
            slim.affinities = slim_affinities
            state["tsne_embedding_"] = slim
        return state


def _fit_with_progress(tsne: Any, Xp: np.ndarray, total: int) -> Any:
    """``tsne.fit(Xp)`` with an iteration bar (when progress is on); the callback is removed
    from the fitted embedding again, so it pickles."""
    from dinomap.maps.progress import progress_bar, progress_enabled, stage

    if not progress_enabled():
        with stage("tsne: affinities + optimisation"):
            return tsne.fit(Xp)
    every = 10
    with (
        stage("tsne: affinities + optimisation"),
        progress_bar("t-SNE: iterations", total=total, unit="it") as bar,
    ):

        def tick(iteration: int, error: float, embedding: Any) -> None:
            bar.update(every)
            bar.set_postfix(kl=f"{error:.3f}")

        tsne.callbacks = (tick,)
        tsne.callbacks_every_iters = every
        try:
            embedding = tsne.fit(Xp)
        finally:
            tsne.callbacks = None
    params = getattr(embedding, "gradient_descent_params", None)
    if isinstance(params, dict):
        params.pop("callbacks", None)
        params["use_callbacks"] = False
    return embedding
