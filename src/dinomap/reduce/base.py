"""The common interface of the 2-D reducers: ``fit`` / ``transform`` / ``fit_transform``.

Every reducer is a scikit-learn style estimator: ``__init__`` stores keyword arguments only,
``fit`` validates its input and returns ``self``, fitted state ends in ``_`` and ``transform``
starts with a fitted check. Subclasses implement :meth:`Reducer._fit` and
:meth:`Reducer._transform` on validated float32 arrays and list how they persist.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from sklearn.base import BaseEstimator

from dinomap._validation import check_embeddings, check_n_features
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.reduce._persist import (
    CONFIG_FILE,
    FORMAT_VERSION,
    jsonable,
    not_fitted,
    read_mapper_config,
)

__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "STATE_FILE", "Reducer", "read_mapper_config"]

logger = logging.getLogger(__name__)

#: The pickled state of a saved reducer directory (beside ``config.json``).
STATE_FILE = "state.pkl"

R = TypeVar("R", bound="Reducer")


class Reducer(BaseEstimator):
    """Base class of the 2-D reducers (PCA, t-SNE, UMAP).

    Attributes set by ``fit``
    -------------------------
    embedding_ : ndarray of shape (n_samples, n_components), float32
        The map of the training points.
    n_features_in_ : int
        Width of the training embeddings; ``transform`` requires the same.
    fit_seconds_ : float
        Wall time of ``fit``.
    """

    #: Registry name of the method (``"pca"``, ``"tsne"``...).
    method: ClassVar[str] = ""
    #: Implementation of the method (``"opentsne"``, ``"umap-learn"``, ``"torchdr"``...).
    backend_name: ClassVar[str] = ""
    #: Name shown in plots and tables.
    display_name: ClassVar[str] = ""
    #: Fewest training points the method accepts.
    min_samples: ClassVar[int] = 3

    embedding_: np.ndarray
    n_features_in_: int
    fit_seconds_: float

    # ----------------------------------------------------------------- to implement
    def _fit(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Fit on validated float32 ``X`` and return the training map."""
        raise NotImplementedError

    def _transform(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Map validated float32 ``X`` (same width as the training data)."""
        raise NotImplementedError

    def key_params(self) -> dict[str, Any]:
        """The parameters worth showing in a plot title or a metrics table."""
        return {}

    def validate(self, n_samples: int) -> None:
        """Check the parameters against a data set of ``n_samples`` points, before any work.

        Raises :class:`~dinomap.exceptions.InvalidParameterError` with what is allowed.
        """
        if n_samples < self.min_samples:
            raise InvalidParameterError(
                f"{self.display_name or type(self).__name__} needs at least {self.min_samples} "
                f"points; got {n_samples}."
            )

    # ----------------------------------------------------------------- public API
    def fit(self: R, X: Any, y: Any = None) -> R:
        """Fit the reducer on ``X`` of shape (n_samples, n_features); ``y`` is ignored."""
        Xa = check_embeddings(X, name="X", min_samples=self.min_samples)
        self.validate(Xa.shape[0])
        start = time.perf_counter()
        emb = self._fit(Xa)
        self.embedding_ = np.ascontiguousarray(emb, dtype=np.float32)
        self.n_features_in_ = int(Xa.shape[1])
        self.fit_seconds_ = time.perf_counter() - start
        logger.info(
            "%s: fitted %d x %d in %.1f s",
            self.display_name or type(self).__name__,
            Xa.shape[0],
            Xa.shape[1],
            self.fit_seconds_,
        )
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on ``X`` and return its map, shape (n_samples, n_components), float32."""
        return self.fit(X, y).embedding_

    def transform(self, X: Any) -> np.ndarray:
        """Place new points ``X`` on the fitted map; returns float32 (n_samples, n_components)."""
        self._check_fitted()
        Xa = check_n_features(check_embeddings(X, name="X"), self.n_features_in_, self)
        return np.ascontiguousarray(self._transform(Xa), dtype=np.float32)

    def inverse_transform(self, Y: Any) -> np.ndarray:
        """Map 2-D points back to embedding space (only methods that support it)."""
        from dinomap.reduce.registry import require_capability

        require_capability(self.method, "inverse_transform")
        raise NotImplementedError  # pragma: no cover - overridden where supported

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` has run."""
        return hasattr(self, "embedding_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise not_fitted(self)

    # ----------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        """Fitted state to persist (picklable); the default keeps every attribute ending in _."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _set_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the fitted reducer to ``directory`` (``config.json`` + ``state.pkl``).

        ``state.pkl`` is a pickle of the fitted state (openTSNE / umap-learn objects for t-SNE
        and UMAP, arrays for PCA); it reloads in another process with the same library
        versions, which ``config.json`` records. Load only directories you trust: unpickling
        runs code. Both files are written atomically.
        """
        self._check_fitted()
        from dinomap.store.mappers import write_mapper

        buf = io.BytesIO()
        pickle.dump(self._state(), buf, protocol=pickle.HIGHEST_PROTOCOL)
        config = {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "method": self.method,
            "backend": "pickle",
            "params": jsonable(self.get_params(deep=False)),
            "fitted": {
                "n_features_in_": int(self.n_features_in_),
                "n_samples": int(self.embedding_.shape[0]),
            },
            "versions": _versions(),
        }
        out = write_mapper(directory, {STATE_FILE: buf.getvalue()}, config)
        logger.info("saved %s to %s", type(self).__name__, out)
        return out

    @classmethod
    def _before_unpickle(cls) -> None:
        """Import what the pickled state needs in a particular way (a hook; nothing here)."""

    @classmethod
    def load(cls: type[R], directory: str | os.PathLike[str]) -> R:
        """Restore a reducer written by :meth:`save`, ready to ``transform``."""
        config = read_mapper_config(directory)
        if config.get("class") != cls.__name__:
            raise DinomapError(
                f"{directory} holds a {config.get('class')!r}, not a {cls.__name__!r}; "
                "load it with dinomap.reduce.load_reducer(directory)."
            )
        state_file = Path(directory) / STATE_FILE
        if not state_file.is_file():
            raise DinomapError(f"{state_file} is missing; the saved reducer is incomplete.")
        reducer = cls(**config["params"])
        cls._before_unpickle()
        with state_file.open("rb") as fh:
            state = pickle.load(fh)
        reducer._set_state(state)
        return reducer


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("dinomap", "numpy", "scikit-learn", "openTSNE", "umap-learn", "pynndescent"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out
