"""UMAP through TorchDR (pure PyTorch; runs on the CPU or a GPU): ``get_reducer("umap",
backend="torchdr")``.

TorchDR optimises the UMAP objective with PyTorch and finds the neighbours with FAISS when it is
installed. It has no out-of-sample ``transform``: a map made with this backend cannot place new
points (use the default ``umap-learn`` backend, or parametric UMAP, for that).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from dinomap._validation import check_positive_int
from dinomap.exceptions import InvalidParameterError
from dinomap.reduce.base import Reducer

__all__ = ["TorchDRUMAPReducer"]

logger = logging.getLogger(__name__)


class TorchDRUMAPReducer(Reducer):
    """UMAP map via ``torchdr.UMAP``.

    Parameters
    ----------
    n_components : int, default=2
    n_neighbors : int, default=15
        umap-learn's default (TorchDR's own is 30), so both backends build the same graph size.
    min_dist : float, default=0.1
    max_iter : int, default=500
        Optimisation steps (full-batch, with negative sampling).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``... (TorchDR's ``"auto"`` also works).
    n_jobs : int or None, default=None
        CPU threads of torch during the fit (``None``: torch's current setting); the many small
        steps of TorchDR's optimiser slow down badly on an oversubscribed machine.
    random_state : int or None, default=None
    verbose : bool, default=False

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
    >>> TorchDRUMAPReducer(max_iter=50, random_state=0).fit_transform(X).shape  # doctest: +SKIP
    (300, 2)
    """

    method: ClassVar[str] = "umap"
    backend_name: ClassVar[str] = "torchdr"
    display_name: ClassVar[str] = "UMAP (TorchDR)"
    min_samples: ClassVar[int] = 3

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        max_iter: int = 500,
        device: str = "cpu",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.max_iter = max_iter
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def key_params(self) -> dict[str, Any]:
        return {"n_neighbors": self.n_neighbors, "min_dist": self.min_dist, "backend": "torchdr"}

    def validate(self, n_samples: int) -> None:
        super().validate(n_samples)
        n_neighbors = check_positive_int("n_neighbors", self.n_neighbors, minimum=2)
        if n_neighbors >= n_samples:
            raise InvalidParameterError(
                f"n_neighbors={n_neighbors} is too large for {n_samples} points: UMAP needs "
                f"n_neighbors < n_samples (at most {n_samples - 1} here)."
            )
        check_positive_int("max_iter", self.max_iter)
        check_positive_int("n_components", self.n_components)
        md = self.min_dist
        if isinstance(md, bool) or not isinstance(md, int | float) or md < 0:
            raise InvalidParameterError(f"min_dist must be a number >= 0; got {md!r}.")

    def _fit(self, X: np.ndarray) -> np.ndarray:
        import importlib.util

        import torchdr

        self.validate(X.shape[0])
        seed = self.random_state if isinstance(self.random_state, int) else None
        backend = "faiss" if importlib.util.find_spec("faiss") is not None else None
        model = torchdr.UMAP(
            n_neighbors=int(self.n_neighbors),
            n_components=int(self.n_components),
            min_dist=float(self.min_dist),
            max_iter=int(self.max_iter),
            device=self.device,
            backend=backend,
            random_state=seed,
            verbose=bool(self.verbose),
        )
        import torch

        threads = torch.get_num_threads()
        if self.n_jobs is not None and self.n_jobs > 0:
            torch.set_num_threads(int(self.n_jobs))
        try:
            Y = model.fit_transform(np.ascontiguousarray(X, dtype=np.float32))
        finally:
            torch.set_num_threads(threads)
        if hasattr(Y, "detach"):
            Y = Y.detach().cpu().numpy()
        return np.asarray(Y, dtype=np.float32)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        raise InvalidParameterError(
            "the torchdr backend of UMAP cannot place new points (TorchDR has no transform); "
            "fit with backend='umap-learn' or use parametric_umap to map new points."
        )
