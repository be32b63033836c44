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
from dinomap.store import ERRORS_FILE, check_fresh, current_stamp, layout, read_run_info
from dinomap.store.layout import (
    ALL_MAPS_PLOT,
    EXPORT_DIR,
    MAPS_FILE,
    METRICS_FILE,
    PLOTS_DIR,
)
from dinomap.store.layout import EXPORT_METADATA_FILE as EXPORT_METADATA

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
#: The downstream outputs as paths relative to the run directory (the report links them).
CLUSTERS_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.CLUSTERS_FILE}"
CLUSTERS_INFO = f"{layout.DOWNSTREAM_DIR}/{layout.CLUSTERS_INFO_FILE}"
CLUSTERS_SHEET = f"{layout.DOWNSTREAM_DIR}/{layout.CLUSTERS_SHEET}"
OUTLIERS_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.OUTLIERS_FILE}"
OUTLIERS_INFO = f"{layout.DOWNSTREAM_DIR}/{layout.OUTLIERS_INFO_FILE}"
OUTLIERS_SHEET = f"{layout.DOWNSTREAM_DIR}/{layout.OUTLIERS_SHEET}"
DUPLICATES_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.DUPLICATES_FILE}"
DUPLICATES_INFO = f"{layout.DOWNSTREAM_DIR}/{layout.DUPLICATES_INFO_FILE}"


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
class DownstreamData:
    """What the downstream stage left in ``RUN/downstream`` (every piece optional).

    Attributes
    ----------
    clusters : ``clusters.json`` (None without it)
    outliers : ``outliers.json``; when only ``outliers.parquet`` exists, a summary rebuilt from it
        (``{"top": [...], "n_samples"}``)
    outlier_scores : outlier score of each map point (NaN where the point has none), or None
    duplicates : ``duplicates.json``; when only ``duplicates.csv`` exists, counts rebuilt from it
    files : ``{name: relative path}`` of the files found (``clusters_sheet``, ``outliers_sheet``,
        ``duplicates_csv``...)
    """

    clusters: dict[str, Any] | None = None
    outliers: dict[str, Any] | None = None
    outlier_scores: np.ndarray | None = None
    duplicates: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the run has no downstream results at all."""
        return (
            self.clusters is None
            and self.outliers is None
            and self.duplicates is None
            and not self.files
        )


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


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as fh:
            loaded = json.load(fh)
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None
    return loaded if isinstance(loaded, dict) else None


def _read_outlier_scores(path: Path) -> tuple[list[str], np.ndarray] | None:
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if not {"path", "score"} <= set(table.column_names):
        logger.warning("%s lacks the columns path, score; outliers are not shown", path)
        return None
    paths = [str(p) for p in table.column("path").to_pylist()]
    scores = table.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    return paths, scores


def _count_duplicate_groups(path: Path) -> dict[str, Any]:
    """Group counts from ``duplicates.csv`` alone (columns group, kind, path, ...)."""
    groups: dict[str, dict[str, str]] = {"exact": {}, "near": {}}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            kind = row.get("kind") or ""
            if kind in groups:
                groups[kind][row.get("path") or ""] = row.get("group") or ""
    return {
        "n_exact_groups": len(set(groups["exact"].values())),
        "n_exact_images": len(groups["exact"]),
        "n_near_groups": len(set(groups["near"].values())),
        "n_near_images": len(groups["near"]),
    }


def _read_downstream(
    run_dir: Path, paths: list[str], labels: list[str | None] | None
) -> DownstreamData:
    files = {
        name: rel
        for name, rel in (
            ("clusters_sheet", CLUSTERS_SHEET),
            ("outliers_sheet", OUTLIERS_SHEET),
            ("outliers_table", OUTLIERS_FILE),
            ("duplicates_csv", DUPLICATES_FILE),
        )
        if (run_dir / rel).is_file()
    }
    clusters = _read_json(run_dir / CLUSTERS_INFO)
    outliers = _read_json(run_dir / OUTLIERS_INFO)
    duplicates = _read_json(run_dir / DUPLICATES_INFO)
    if duplicates is None and "duplicates_csv" in files:
        duplicates = _count_duplicate_groups(run_dir / DUPLICATES_FILE)
    scored = _read_outlier_scores(run_dir / OUTLIERS_FILE)
    point_scores: np.ndarray | None = None
    if scored is not None:
        by_path = dict(zip(scored[0], scored[1], strict=True))
        if paths:
            point_scores = np.asarray([by_path.get(p, np.nan) for p in paths], dtype=np.float64)
            if not np.isfinite(point_scores).any():
                point_scores = None
        if outliers is None:  # rebuild the top list from the scores
            label_of = dict(zip(paths, labels, strict=True)) if labels is not None else {}
            order = np.argsort(-np.nan_to_num(scored[1], nan=-np.inf), kind="stable")[:50]
            outliers = {
                "n_samples": len(scored[0]),
                "top": [
                    {
                        "path": scored[0][i],
                        "score": float(scored[1][i]),
                        "label": label_of.get(scored[0][i]),
                    }
                    for i in order
                ],
            }
    return DownstreamData(
        clusters=clusters,
        outliers=outliers,
        outlier_scores=point_scores,
        duplicates=duplicates,
        files=files,
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


def _read_export(run_dir: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """The export section: ``run.json["export"]`` plus what the repository's metadata says."""
    export: dict[str, Any] = dict(info["export"]) if isinstance(info.get("export"), Mapping) else {}
    repo_hint = export.get("repository") or export.get("repository_path")
    repo = Path(str(repo_hint)) if repo_hint else run_dir / EXPORT_DIR
    if not repo.is_absolute() and not repo.exists():
        repo = run_dir / repo
    meta = _read_json(repo / EXPORT_METADATA)
    if meta is None:
        return export
    models = [m for m in meta.get("models") or [] if isinstance(m, Mapping)]
    export.setdefault("repository", str(repo.resolve()))
    for fmt in ("torchscript", "onnx"):
        found = [m for m in models if m.get("format") == fmt and m.get("file")]
        found.sort(key=lambda m: m.get("kind") != "features")  # the plain encoder first
        if found:
            export.setdefault(f"{fmt}_path", str((repo / str(found[0]["file"])).resolve()))
    if models:
        export.setdefault(
            "models",
            ", ".join(
                f"{m.get('name')} ({m.get('format')}"
                + (f", {m['method']}" if m.get("method") else "")
                + ")"
                for m in models
            ),
        )
    check = meta.get("verification")
    if isinstance(check, Mapping):
        diffs = [
            v for v in (check.get("max_abs_diff") or {}).values() if isinstance(v, int | float)
        ]
        export.setdefault("verified_against_eager", bool(check.get("passed")))
        if diffs:
            export.setdefault("max_abs_diff", max(diffs))
        if check.get("atol") is not None:
            export.setdefault("tolerance", check["atol"])
    return export


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
        export=_read_export(run, info),
        downstream=_read_downstream(run, paths, labels),
        stale=stale_outputs(run, metrics),
    )


def stale_outputs(run_dir: Path, metrics: Mapping[str, Any] | None = None) -> list[str]:
    """One line (also logged as a warning) per derived output made from other embeddings than
    the run stores now: maps and metrics, clusters, outliers, duplicates."""
    now = current_stamp(run_dir)
    if now is None:
        return []
    if metrics is None:
        metrics = _read_json(run_dir / METRICS_FILE) or {}
    checks: list[tuple[Any, str, str]] = [
        (metrics.get("embeddings"), f"{MAPS_FILE} / {METRICS_FILE}", "map"),
        ((_read_json(run_dir / CLUSTERS_INFO) or {}).get("embeddings"), CLUSTERS_FILE, "cluster"),
        ((_read_json(run_dir / OUTLIERS_INFO) or {}).get("embeddings"), OUTLIERS_FILE, "outliers"),
        ((_read_json(run_dir / DUPLICATES_INFO) or {}).get("embeddings"), DUPLICATES_FILE,
         "duplicates"),
    ]  # fmt: skip
    out = []
    for recorded, what, command in checks:
        msg = check_fresh(run_dir, recorded, what, f"dinomap {command} {run_dir}", current=now)
        if msg:
            out.append(msg)
    return out
