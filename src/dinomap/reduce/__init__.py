"""2-D reducers with one scikit-learn style interface: PCA, t-SNE (openTSNE), UMAP (umap-learn).

Build one by name with :func:`get_reducer`; the registry also knows the neural mappers of
:mod:`dinomap.parametric` (``"parametric_umap"``, ``"tsne_nn"``).
"""

from __future__ import annotations

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
