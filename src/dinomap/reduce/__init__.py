"""2-D reducers with one scikit-learn style interface: PCA, t-SNE (openTSNE), UMAP (umap-learn).

Build one by name with :func:`get_reducer`; the registry also knows the neural mappers of
:mod:`dinomap.parametric` (``"parametric_umap"``, ``"tsne_nn"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap.reduce.base import Reducer
    from dinomap.reduce.pca import PCAReducer
    from dinomap.reduce.registry import (
        CAPABILITIES,
        ReducerSpec,
        available_reducers,
        get_reducer,
        list_reducers,
        load_reducer,
        reducer_spec,
        reducers_supporting,
        register_reducer,
        require_capability,
    )
    from dinomap.reduce.tsne import TSNEReducer, max_perplexity
    from dinomap.reduce.umap import UMAPReducer

__all__ = [
    "CAPABILITIES",
    "PCAReducer",
    "Reducer",
    "ReducerSpec",
    "TSNEReducer",
    "UMAPReducer",
    "available_reducers",
    "get_reducer",
    "list_reducers",
    "load_reducer",
    "max_perplexity",
    "reducer_spec",
    "reducers_supporting",
    "register_reducer",
    "require_capability",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Reducer": "base",
        "PCAReducer": "pca",
        "CAPABILITIES": "registry",
        "ReducerSpec": "registry",
        "available_reducers": "registry",
        "get_reducer": "registry",
        "list_reducers": "registry",
        "load_reducer": "registry",
        "reducer_spec": "registry",
        "reducers_supporting": "registry",
        "register_reducer": "registry",
        "require_capability": "registry",
        "TSNEReducer": "tsne",
        "max_perplexity": "tsne",
        "UMAPReducer": "umap",
    },
)
