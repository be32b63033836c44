"""PCA to a few dimensions (scikit-learn), with deterministic component signs."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from dinomap._validation import check_positive_int
from dinomap.exceptions import InvalidParameterError
from dinomap.reduce.base import Reducer

__all__ = ["PCAReducer"]

logger = logging.getLogger(__name__)

#: Above this many features the exact covariance solver gets slow; use the randomized one.
_COVARIANCE_MAX_FEATURES = 2048


class PCAReducer(Reducer):
    """Principal component analysis to ``n_components`` dimensions.

    The components come from scikit-learn's ``PCA`` (exact ``covariance_eigh`` solver up to
    2,048 features, which is fast for many samples and needs only a features x features
    matrix). Each component's sign is then fixed so that its largest-magnitude loading is
    positive, so the same data always gives the same map, whatever the solver or platform.

    Parameters
    ----------
    n_components : int, default=2
        Dimensions of the output.
    random_state : int, Generator or None, default=None
        Used only by the randomized solver (more than 2,048 features).
    verbose : bool, default=False
        Unused; accepted for a uniform interface.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    components_ : ndarray of shape (n_components, n_features)
    explained_variance_ratio_ : ndarray of shape (n_components,)
    embedding_ : ndarray of shape (n_samples, n_components), float32

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 8))
    >>> PCAReducer(random_state=0).fit_transform(X).shape
    (100, 2)
    """

    method: ClassVar[str] = "pca"
    display_name: ClassVar[str] = "PCA"
    min_samples: ClassVar[int] = 2

    mean_: np.ndarray
    components_: np.ndarray
    explained_variance_ratio_: np.ndarray

    def __init__(
        self, n_components: int = 2, random_state: Any = None, verbose: bool = False
    ) -> None:
        self.n_components = n_components
        self.random_state = random_state
        self.verbose = verbose

    def key_params(self) -> dict[str, Any]:
        return {"n_components": self.n_components}

    def validate(self, n_samples: int) -> None:
        super().validate(n_samples)
        n_components = check_positive_int("n_components", self.n_components)
        if n_components > n_samples:
            raise InvalidParameterError(
                f"n_components must be <= the number of samples ({n_samples}); got {n_components}."
            )

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA

        n_components = check_positive_int("n_components", self.n_components)
        limit = min(X.shape)
        if n_components > limit:
            raise InvalidParameterError(
                f"n_components must be <= min(n_samples, n_features) = {limit} for data of "
                f"shape {X.shape}; got {n_components}."
            )
        solver = "covariance_eigh" if X.shape[1] <= _COVARIANCE_MAX_FEATURES else "randomized"
        pca = PCA(n_components=n_components, svd_solver=solver, random_state=self.random_state)
        pca.fit(X)
        components = np.asarray(pca.components_, dtype=np.float64)
        # Deterministic signs: the largest-magnitude loading of each component is positive.
        top = np.argmax(np.abs(components), axis=1)
        signs = np.sign(components[np.arange(components.shape[0]), top])
        signs[signs == 0] = 1.0
        self.components_ = (components * signs[:, None]).astype(np.float32)
        self.mean_ = np.asarray(pca.mean_, dtype=np.float32)
        self.explained_variance_ratio_ = np.asarray(pca.explained_variance_ratio_)
        return self._transform(X)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray((X - self.mean_) @ self.components_.T, dtype=np.float32)

    def inverse_transform(self, Y: Any) -> np.ndarray:
        """Map points of the PCA space back to embedding space (the closest reconstruction)."""
        self._check_fitted()
        Ya = np.asarray(Y, dtype=np.float32)
        if Ya.ndim != 2 or Ya.shape[1] != self.components_.shape[0]:
            raise InvalidParameterError(
                f"Y must have shape (n, {self.components_.shape[0]}); got {Ya.shape}."
            )
        return np.asarray(Ya @ self.components_ + self.mean_, dtype=np.float32)
