"""Read what the report and the slide deck show from a run directory (read-only, tolerant).

Every piece is optional except ``run.json``: a run that has only been embedded still gets a
report (summary, no maps), and a run without clusters or plots simply leaves those sections out.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dinomap.exceptions import DinomapError
from dinomap.store import ERRORS_FILE, current_stamp, read_run_info
from dinomap.store.layout import ALL_MAPS_PLOT, MAPS_FILE, METRICS_FILE, PLOTS_DIR
from dinomap.store.staleness import stale_outputs
from dinomap.viz._stage_records import (
    CLUSTERS_FILE,
    DownstreamData,
    read_downstream,
    read_export,
)

__all__ = [
    "METHOD_ORDER",
    "METHOD_PLOTS",
    "METHOD_TITLES",
    "DownstreamData",
    "RunData",
    "find_key",
    "read_run_data",
]

logger = logging.getLogger(__name__)

#: Display order of the 2-D map methods (unknown methods follow in alphabetical order).
METHOD_ORDER: tuple[str, ...] = ("pca", "tsne", "umap", "parametric_umap", "tsne_nn")
METHOD_TITLES: dict[str, str] = {
    "pca": "PCA",
    "tsne": "t-SNE",
    "umap": "UMAP",
    "parametric_umap": "Parametric UMAP",
    "tsne_nn": "t-SNE NN approximator",
}
#: The static plot file (under ``plots/``) of each method, as written by the maps stage.
METHOD_PLOTS: dict[str, str] = {
    "pca": "pca_embeddings.png",
    "tsne": "tsne_embeddings.png",
    "umap": "umap_embeddings.png",
    "parametric_umap": "parametric_umap_embeddings.png",
    "tsne_nn": "t-sne_nn_embeddings.png",
}


def method_title(method: str) -> str:
    """Human name of a map method (``"tsne"`` -> ``"t-SNE"``)."""
    return METHOD_TITLES.get(method, method.replace("_", " "))


def find_key(obj: Any, key: str) -> Any:
    """First value stored under ``key`` anywhere in nested dicts (depth-first), or None."""
    if isinstance(obj, Mapping):
        if key in obj and obj[key] is not None:
            return obj[key]
        for value in obj.values():
            found = find_key(value, key)
            if found is not None:
                return found
    return None


@dataclass
class RunData:
    """Everything a report or a deck shows about one run.

    Attributes
    ----------
    run_dir : the run directory
    info : ``run.json``
    paths : point paths, in ``maps.parquet`` order (empty without maps)
    labels : point labels (None entries allowed), or None when no point has a label
    coords : ``{method: float32 array (n, 2)}`` in display order; NaN rows are points the method
        did not place
    metrics : ``metrics.json`` (empty dict without it)
    clusters : cluster id of each point (int64, -1 for noise or unknown), or None
    n_failed : rows of ``errors.csv`` (None when the file is missing)
    plots : ``{name: relative path}`` of the static PNG maps found under ``plots/``
    export : what the export stage saved: ``run.json["export"]`` completed from the model
        repository's ``dinomap_export.json`` (empty when the run was not exported)
    downstream : clusters, outliers and duplicates found by the downstream stage
    stale : one line per output made from other embeddings than the run stores now, naming
        the command that refreshes it
    stamp : the stamp of the embeddings the run stores now (None without embeddings)
    """

    run_dir: Path
    info: dict[str, Any]
    paths: list[str] = field(default_factory=list)
    labels: list[str | None] | None = None
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    clusters: np.ndarray | None = None
    n_failed: int | None = None
    plots: dict[str, str] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    downstream: DownstreamData = field(default_factory=DownstreamData)
    stale: list[str] = field(default_factory=list)
    stamp: dict[str, Any] | None = None

    @property
    def n_points(self) -> int:
        """Number of points in the maps."""
        return len(self.paths)

    @property
    def methods(self) -> list[str]:
        """Methods with coordinates, in display order."""
        return list(self.coords)

    @property
    def random_init(self) -> bool:
        """True when the run's model had random (untrained) weights."""
        weights = self.info.get("weights") or {}
        return bool(weights.get("random_init", False)) or bool(
            self.metrics.get("random_init", False)
        )

    @property
    def n_embedded(self) -> int | None:
        """Images stored in the run (``counts.embedded`` or ``counts.stored``), else map points."""
        counts = self.info.get("counts") or {}
        for key in ("embedded", "stored"):
            if isinstance(counts.get(key), int):
                return int(counts[key])
        return self.n_points or None

    @property
    def n_total(self) -> int | None:
        """Images found in the source (``counts.total`` or ``counts.source_images``)."""
        counts = self.info.get("counts") or {}
        for key in ("total", "source_images"):
            if isinstance(counts.get(key), int):
                return int(counts[key])
        if self.n_embedded is not None and self.n_failed_images is not None:
            return self.n_embedded + self.n_failed_images
        return None

    @property
    def n_failed_images(self) -> int | None:
        """Images that could not be embedded (``counts.failed``, else rows of errors.csv)."""
        counts = self.info.get("counts") or {}
        if isinstance(counts.get("failed"), int):
            return int(counts["failed"])
        return self.n_failed

    @property
    def device_text(self) -> str | None:
        """The device as one phrase (``run.json`` stores a string or ``{"type", "name"}``)."""
        device = self.info.get("device")
        if isinstance(device, Mapping):
            kind, name = device.get("type"), device.get("name")
            if kind and name and str(name) != str(kind):
                return f"{name} ({kind})"
            return str(name or kind) if (name or kind) else None
        return None if device is None else str(device)

    def method_metrics(self, method: str) -> dict[str, Any]:
        """The ``metrics.json`` entry of one method (empty when absent)."""
        entry = (self.metrics.get("methods") or {}).get(method)
        return dict(entry) if isinstance(entry, Mapping) else {}

    def iter_plots(self) -> Iterator[tuple[str, str]]:
        """``(caption, relative path)`` of each static plot, per method then the overview."""
        for method in sorted(set(self.coords) | set(METHOD_PLOTS), key=_method_sort_key):
            rel = self.plots.get(method)
            if rel:
                yield method_title(method), rel
        for name, rel in self.plots.items():
            if name not in METHOD_PLOTS and name != "all_maps":
                yield name.replace("_", " "), rel
        if "all_maps" in self.plots:
            yield "All maps", self.plots["all_maps"]


def _method_sort_key(method: str) -> tuple[int, str]:
    try:
        return (METHOD_ORDER.index(method), method)
    except ValueError:
        return (len(METHOD_ORDER), method)


def _read_maps(run_dir: Path) -> tuple[list[str], list[str | None] | None, dict[str, np.ndarray]]:
    path = run_dir / MAPS_FILE
    if not path.is_file():
        return [], None, {}
    table = pq.read_table(path)
    names = set(table.column_names)
    if "path" not in names:
        raise DinomapError(f"{path} has no 'path' column; columns are {sorted(names)}.")
    paths = [str(p) for p in table.column("path").to_pylist()]
    labels: list[str | None] | None = None
    if "label" in names:
        raw = table.column("label").to_pylist()
        labels = [None if v is None else str(v) for v in raw]
        if all(v is None for v in labels):
            labels = None
    methods = sorted(
        (c[:-2] for c in names if c.endswith("_x") and f"{c[:-2]}_y" in names),
        key=_method_sort_key,
    )
    coords: dict[str, np.ndarray] = {}
    for method in methods:
        x = table.column(f"{method}_x").to_numpy(zero_copy_only=False)
        y = table.column(f"{method}_y").to_numpy(zero_copy_only=False)
        xy = np.column_stack([x, y]).astype(np.float32)
        xy[~np.isfinite(xy).all(axis=1)] = np.nan
        coords[method] = xy
    return paths, labels, coords


def _read_clusters(run_dir: Path, paths: list[str]) -> np.ndarray | None:
    path = run_dir / CLUSTERS_FILE
    if not path.is_file() or not paths:
        return None
    table = pq.read_table(path)
    if not {"path", "cluster"} <= set(table.column_names):
        logger.warning("%s lacks the columns path, cluster; clusters are not shown", path)
        return None
    by_path = {
        str(p): c
        for p, c in zip(
            table.column("path").to_pylist(), table.column("cluster").to_pylist(), strict=True
        )
    }
    return np.asarray(
        [int(by_path[p]) if by_path.get(p) is not None else -1 for p in paths], dtype=np.int64
    )


def _count_errors(run_dir: Path) -> int | None:
    path = run_dir / ERRORS_FILE
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return max(len(rows) - 1, 0) if rows and rows[0][:1] == ["path"] else len(rows)


def _find_plots(run_dir: Path) -> dict[str, str]:
    plots_dir = run_dir / PLOTS_DIR
    if not plots_dir.is_dir():
        return {}
    found: dict[str, str] = {}
    by_file = {v: k for k, v in METHOD_PLOTS.items()}
    by_file[ALL_MAPS_PLOT] = "all_maps"
    for png in sorted(plots_dir.glob("*.png")):
        name = by_file.get(png.name, png.stem)
        found[name] = f"plots/{png.name}"
    return found


def read_run_data(run_dir: str | os.PathLike[str]) -> RunData:
    """Read a run directory for the report and the slides.

    Parameters
    ----------
    run_dir : str or Path
        A run directory holding at least ``run.json``.

    Returns
    -------
    RunData

    Examples
    --------
    >>> data = read_run_data("runs/fm")  # doctest: +SKIP
    >>> data.methods
    ['pca', 'tsne', 'umap']
    """
    run = Path(run_dir)
    info = read_run_info(run)
    stamp = current_stamp(run)
    paths, labels, coords = _read_maps(run)
    metrics: dict[str, Any] = {}
    metrics_path = run / METRICS_FILE
    if metrics_path.is_file():
        with metrics_path.open(encoding="utf-8") as fh:
            loaded = json.load(fh)
        metrics = loaded if isinstance(loaded, dict) else {}
    return RunData(
        run_dir=run,
        info=info,
        paths=paths,
        labels=labels,
        coords=coords,
        metrics=metrics,
        clusters=_read_clusters(run, paths),
        n_failed=_count_errors(run),
        plots=_find_plots(run),
        export=read_export(run, info),
        downstream=read_downstream(run, paths, labels),
        stamp=stamp,
        stale=stale_outputs(run, metrics, now=stamp),
    )
