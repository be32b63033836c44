"""t-SNE and UMAP on an NVIDIA GPU through RAPIDS cuML: ``get_reducer("tsne", backend="cuml")``,
``get_reducer("umap", backend="cuml")``.

cuML is imported only when one of these is built (the registry checks first that the package is
installed and otherwise names what to install); it is measured in the GPU issue, not here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dinomap.reduce.base import Reducer

__all__ = ["CumlTSNEReducer", "CumlUMAPReducer"]


def _to_numpy(Y: Any) -> np.ndarray:
    if hasattr(Y, "get"):  # cupy
        Y = Y.get()
    elif hasattr(Y, "to_numpy"):  # cudf
        Y = Y.to_numpy()
    return np.asarray(Y, dtype=np.float32)


class CumlTSNEReducer(Reducer):
    """t-SNE via ``cuml.manifold.TSNE`` (Barnes-Hut or FFT on the GPU); no ``transform``."""

    method: ClassVar[str] = "tsne"
    backend_name: ClassVar[str] = "cuml"
    display_name: ClassVar[str] = "t-SNE (cuML)"

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        n_iter: int = 1000,
        gradient_method: str = "fft",
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.gradient_method = gradient_method
        self.random_state = random_state
        self.verbose = verbose

    def key_params(self) -> dict[str, Any]:
        return {"perplexity": self.perplexity, "backend": "cuml"}

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from cuml.manifold import TSNE

        model = TSNE(n_components=self.n_components, perplexity=self.perplexity,
                     n_iter=self.n_iter, method=self.gradient_method, random_state=self.random_state,
                     verbose=bool(self.verbose))  # fmt: skip
        return _to_numpy(model.fit_transform(X))

    def _transform(self, X: np.ndarray) -> np.ndarray:
        from dinomap.exceptions import InvalidParameterError

        raise InvalidParameterError(
            "cuML's t-SNE cannot place new points; fit with backend='opentsne' or use tsne_nn."
        )


class CumlUMAPReducer(Reducer):
    """UMAP via ``cuml.manifold.UMAP``, with ``transform`` for new points."""

    method: ClassVar[str] = "umap"
    backend_name: ClassVar[str] = "cuml"
    display_name: ClassVar[str] = "UMAP (cuML)"

    umap_: Any

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        n_epochs: int | None = None,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.verbose = verbose

    def key_params(self) -> dict[str, Any]:
        return {"n_neighbors": self.n_neighbors, "min_dist": self.min_dist, "backend": "cuml"}

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from cuml.manifold import UMAP

        self.umap_ = UMAP(n_components=self.n_components, n_neighbors=self.n_neighbors,
                          min_dist=self.min_dist, n_epochs=self.n_epochs,
                          random_state=self.random_state, verbose=bool(self.verbose))  # fmt: skip
        return _to_numpy(self.umap_.fit_transform(X))

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return _to_numpy(self.umap_.transform(X))
