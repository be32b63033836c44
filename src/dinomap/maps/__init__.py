"""From stored embeddings to 2-D maps, their metrics, plots and saved mappers.

:func:`make_maps` fits each requested method (``pca``, ``tsne``, ``umap``, ``parametric_umap``,
``tsne_nn``), scores every map with :class:`dinomap.metrics.MapEvaluator` and, given an output
directory, writes the contract files of a run directory:

``maps.parquet``
    one row per image: ``path``, ``label``, ``{method}_x``, ``{method}_y`` (float32).
``metrics.json``
    ``{"n_samples", "random_init", "methods": {method: {"params", "fit_seconds",
    "trustworthiness", "knn_preservation", "knn_accuracy", "agreement"?...}}}``.
``plots/``
    ``pca_embeddings.png``, ``tsne_embeddings.png``, ``umap_embeddings.png``,
    ``parametric_umap_embeddings.png``, ``t-sne_nn_embeddings.png`` and ``all_maps.png``.
``mappers/<method>/``
    each fitted mapper's ``save`` directory (``config.json`` + state), reloadable with
    :func:`dinomap.reduce.load_reducer`.

Running a subset of methods on a run that already has maps keeps the other methods' columns,
metrics and plots (when the points are the same). Every file is written atomically.
"""

from __future__ import annotations

from dinomap.maps._inputs import ALL_METHODS, resolve_methods
from dinomap.maps._outputs import MapsResult, format_metrics_table
from dinomap.maps.fit import make_maps
from dinomap.store.layout import MAPPERS_DIR, MAPS_FILE, METRICS_FILE, PLOTS_DIR

__all__ = [
    "ALL_METHODS",
    "MAPPERS_DIR",
    "MAPS_FILE",
    "METRICS_FILE",
    "PLOTS_DIR",
    "MapsResult",
    "format_metrics_table",
    "make_maps",
    "resolve_methods",
]
