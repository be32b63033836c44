"""How far a neural mapper agrees with the map it imitates, on points it never saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dinomap.metrics import map_agreement

__all__ = [
    "PARAMETRIC_HELDOUT_FRACTION",
    "fit_takes",
    "fit_with_holdout",
    "reported_agreement",
    "same_graph",
]


#: Share of the points held out of parametric UMAP's training to measure its agreement with UMAP.
PARAMETRIC_HELDOUT_FRACTION = 0.1


def fit_with_holdout(
    mapper: Any,
    X: np.ndarray,
    reference_mapper: Any,
    reference_coords: np.ndarray,
    reuse_graph: bool,
    random_state: Any,
    reference: str = "umap",
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Fit a neural mapper (parametric UMAP) on 90% of the points, place the other 10% with its
    encoder (as new points), and measure how well they agree with the ``reference`` map it
    imitates. With ``reuse_graph`` it trains on the reference's fuzzy graph. Below 100 points
    everything is used for training and no agreement is reported."""
    n = len(X)
    graph = reference_mapper.graph_ if reuse_graph else None
    init = fit_takes(mapper, "init_coords")
    if n < 100:
        mapper.fit(X, graph=graph, **({"init_coords": reference_coords} if init else {}))
        return mapper.transform(X), None
    seed = random_state if isinstance(random_state, int) else 0
    perm = np.random.default_rng(seed).permutation(n)
    n_held = max(10, round(n * PARAMETRIC_HELDOUT_FRACTION))
    held, train = np.sort(perm[:n_held]), np.sort(perm[n_held:])
    sub_graph = graph.tocsr()[train][:, train] if graph is not None else None
    # it may start from the reference map of its training points (never of the held-out ones)
    mapper.fit(X[train], graph=sub_graph,
               **({"init_coords": reference_coords[train]} if init else {}))  # fmt: skip
    Y = mapper.transform(X)
    info = {
        "reference": reference,
        "n_heldout": int(n_held),
        "knn_agreement": map_agreement(reference_coords, Y, train=train, queries=held),
        "k": 10,
        "rows": held,  # popped by make_maps (the fidelity check), not written
    }
    return Y, info


def fit_takes(mapper: Any, keyword: str) -> bool:
    """Whether ``mapper.fit`` accepts ``keyword`` (what the map it imitates can hand it)."""
    import inspect

    return keyword in inspect.signature(mapper.fit).parameters


def reported_agreement(mapper: Any) -> tuple[float | None, dict[str, Any] | None]:
    """Held-out agreement of a neural mapper with the map it imitates, when it reports one."""
    held = getattr(mapper, "heldout_metrics_", None)
    if isinstance(held, Mapping):
        value = held.get("knn_agreement", held.get("agreement"))
        return (float(value) if value is not None else None), {
            k: (float(v) if isinstance(v, int | float | np.number) else v) for k, v in held.items()
        }
    value = getattr(mapper, "heldout_agreement_", None)
    return (float(value) if value is not None else None), None


def same_graph(mappers: Mapping[str, Any], a: str, b: str) -> bool:
    """Whether method ``b`` can reuse the fuzzy graph of ``a`` (same neighbourhood size)."""
    na = getattr(mappers[a], "n_neighbors", None)
    nb = getattr(mappers[b], "n_neighbors", None)
    backend = getattr(mappers[b], "backend", "torch")
    has_graph = hasattr(type(mappers[a]), "graph_")  # TorchDR's UMAP exposes no graph
    return na is not None and na == nb and backend == "torch" and has_graph
