"""The large-data strategy of :func:`dinomap.maps.make_maps`: fit on a sample, place the rest.

Above :data:`LARGE_DATA_MIN_SAMPLES` points (``large_data="auto"``, the default), every method
whose :class:`~dinomap.reduce.registry.ReducerSpec` has ``large_data_sample`` (t-SNE, UMAP,
parametric UMAP, t-SNE NN) is fitted on one shared random sample of
:data:`LARGE_DATA_FIT_SAMPLES` points, and the other points are placed with the fitted mapper's
own ``transform`` (openTSNE's ``transform`` with :data:`TSNE_TRANSFORM_ITER` iterations, umap-learn's
``transform``, the neural mappers' forward pass), in chunks of :data:`TRANSFORM_CHUNK` rows, so
no intermediate is bigger than a chunk. PCA is fitted on all points. The sample is the same for
every method, so parametric UMAP still trains on UMAP's graph (of the sample) and the t-SNE
network on t-SNE's map of the sample. ``metrics.json`` says so under ``"large_data"`` and the
output prints one line.

Why these numbers (synthetic clusters, 384-d, 2-core machine; ``benchmarks/bench_maps.py``): at
200,000 points the full fits already take 431 s (t-SNE 249 s); t-SNE fitted on 50,000 points
with the other 200,000 placed by ``transform`` keeps trustworthiness 0.976 (0.985 for a full fit
at 70k) and UMAP 0.956 (0.960), within the 0.02 the issue allows, at a cost that grows
linearly with the placed points.

The t-SNE network's default training (:data:`LARGE_DATA_BUDGETS`) is the one measured at one
million points within the 30 minutes (10,000 regression + 2,000 t-SNE-loss steps); below the
threshold it trains longer (its own defaults, measured on Fashion-MNIST 70k). A value the user
set is kept. The budgets used are in the ``"large_data"`` section of ``metrics.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dinomap.exceptions import InvalidParameterError
from dinomap.maps.progress import progress_bar, stage
from dinomap.maps.quality import fill_budgets

__all__ = [
    "LARGE_DATA_BUDGETS",
    "LARGE_DATA_FIT_SAMPLES",
    "LARGE_DATA_MIN_SAMPLES",
    "LargeDataPlan",
    "large_data_params",
    "place_rest",
    "plan_large_data",
]

logger = logging.getLogger(__name__)

#: Above this many points the large-data strategy is on by default.
LARGE_DATA_MIN_SAMPLES = 200_000
#: Points the sampled methods are fitted on.
LARGE_DATA_FIT_SAMPLES = 100_000
#: openTSNE ``transform`` iterations for the placed points (its default is 250; 25-50 already
#: keep the trustworthiness of the median initialisation, measured at 250k points).
TSNE_TRANSFORM_ITER = 50
#: Rows placed per ``transform`` call.
TRANSFORM_CHUNK = 100_000
#: Labelled points the kNN accuracy is cross-validated on in large-data mode.
LARGE_DATA_ACCURACY_SAMPLES = 200_000
#: Training budgets that replace a method's *defaults* in large-data mode: the ones that keep
#: one million points within 30 minutes on 2 cores (docs/scale.md).
LARGE_DATA_BUDGETS: dict[str, dict[str, int]] = {
    "tsne_nn": {"max_steps": 10_000, "contrastive_steps": 2_000},
}


@dataclass(frozen=True)
class LargeDataPlan:
    """The shared fit sample of a large-data run (sorted row indices) and the rest."""

    n: int
    sample: np.ndarray
    rest: np.ndarray

    def info(self) -> dict[str, Any]:
        """The ``metrics.json`` section."""
        return {
            "active": True,
            "n_samples": self.n,
            "fit_samples": len(self.sample),
            "threshold": LARGE_DATA_MIN_SAMPLES,
            "strategy": "fit t-SNE, UMAP, parametric UMAP and t-SNE NN on one random sample, "
            "place the other points with each mapper's transform; PCA on all points; kNN "
            f"accuracy on at most {LARGE_DATA_ACCURACY_SAMPLES} labelled points",
            "tsne_transform_iter": TSNE_TRANSFORM_ITER,
        }


def large_data_params(
    params: Mapping[str, Mapping[str, Any]], names: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``params`` with :data:`LARGE_DATA_BUDGETS` for the keys the user did not set, and the
    budgets so applied per method (for ``metrics.json``)."""
    return fill_budgets(params, names, LARGE_DATA_BUDGETS)


def plan_large_data(
    n: int, large_data: bool | str | int, random_state: Any
) -> LargeDataPlan | None:
    """The plan for ``n`` points: ``"auto"`` (sample above the threshold), ``True`` (sample
    :data:`LARGE_DATA_FIT_SAMPLES`), ``False`` (fit every method on all points) or an int (the
    sample size, used when ``n`` is larger)."""
    if large_data == "auto":
        size = LARGE_DATA_FIT_SAMPLES if n > LARGE_DATA_MIN_SAMPLES else None
    elif large_data is True:
        size = LARGE_DATA_FIT_SAMPLES
    elif large_data is False or large_data is None:
        size = None
    elif isinstance(large_data, int) and not isinstance(large_data, bool) and large_data >= 100:
        size = large_data
    else:
        raise InvalidParameterError(
            f"large_data must be 'auto', True, False or a sample size >= 100; got {large_data!r}."
        )
    if size is None or n <= size:
        return None
    seed = random_state if isinstance(random_state, int) else 0
    perm = np.random.default_rng(seed).permutation(n)
    sample, rest = np.sort(perm[:size]), np.sort(perm[size:])
    logger.warning(
        "large data: %d points > %d; t-SNE, UMAP and the neural mappers are fitted on a "
        "random sample of %d points and place the other %d with their transform "
        "(large_data=False to fit on all points)",
        n, LARGE_DATA_MIN_SAMPLES if large_data == "auto" else size, size, n - size,
    )  # fmt: skip
    return LargeDataPlan(n, sample, rest)


def place_rest(
    name: str, mapper: Any, X: np.ndarray, plan: LargeDataPlan, Y_sample: np.ndarray
) -> np.ndarray:
    """The full map: ``Y_sample`` at the sample's rows, the rest placed with ``mapper``."""
    Y = np.empty((plan.n, Y_sample.shape[1]), dtype=np.float32)
    Y[plan.sample] = Y_sample
    if hasattr(mapper, "transform_n_iter"):
        mapper.transform_n_iter = TSNE_TRANSFORM_ITER
    with (
        stage(f"{name}: place the other points"),
        progress_bar(f"{name}: placing points", total=len(plan.rest), unit="pt") as bar,
    ):
        for start in range(0, len(plan.rest), TRANSFORM_CHUNK):
            rows = plan.rest[start : start + TRANSFORM_CHUNK]
            Y[rows] = mapper.transform(X[rows])
            bar.update(len(rows))
    if hasattr(mapper, "transform_n_iter"):
        del mapper.transform_n_iter  # back to the class default for later new points
    return Y
