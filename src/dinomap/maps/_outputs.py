"""What :func:`dinomap.maps.make_maps` writes: maps.parquet, metrics.json, plots/, mappers/."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.maps.quality import fidelity_lines
from dinomap.reduce.registry import ReducerSpec, list_reducers, reducer_spec
from dinomap.store import read_maps, write_maps
from dinomap.store.layout import ALL_MAPS_PLOT, MAPPERS_DIR, MAPS_FILE, METRICS_FILE, PLOTS_DIR

__all__ = ["MapsResult", "format_metrics_table", "jsonable_key", "jsonable_params", "write_outputs"]

logger = logging.getLogger(__name__)


@dataclass
class MapsResult:
    """What :func:`make_maps` produced.

    Attributes
    ----------
    coords : dict of str to ndarray (n, 2)
        The map of each method made in this call.
    metrics : dict
        The ``metrics.json`` content (including methods kept from an earlier call).
    mappers : dict of str to estimator
        The fitted mappers of this call.
    paths : list of str
        One per point (``maps.parquet``'s ``path`` column).
    labels : list or None
    out_dir : Path or None
        Where the files were written (``None``: nothing written).
    files : dict of str to Path
        Every file written.
    """

    coords: dict[str, np.ndarray]
    metrics: dict[str, Any]
    mappers: dict[str, Any]
    paths: list[str]
    labels: list[str | None] | None
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def table(self) -> str:
        """The metrics as a plain-text table."""
        return format_metrics_table(self.metrics)

    def __repr__(self) -> str:
        return (
            f"MapsResult(methods={list(self.coords)}, n_samples={len(self.paths)}, "
            f"out_dir={str(self.out_dir) if self.out_dir else None!r})"
        )


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """The per-method metrics as a fixed-width text table.

    Examples
    --------
    >>> print(format_metrics_table({"methods": {"pca": {"fit_seconds": 0.1,
    ...     "trustworthiness": 0.8, "knn_preservation": 0.2, "knn_accuracy": None}}}))
    method  fit s  trustworthiness  kNN preservation  kNN accuracy  agreement
    pca       0.1            0.800             0.200             -          -
    """
    cols = ("fit s", "trustworthiness", "kNN preservation", "kNN accuracy", "agreement")
    keys = ("fit_seconds", "trustworthiness", "knn_preservation", "knn_accuracy", "agreement")
    methods = metrics.get("methods", {})
    width = max([len("method"), *(len(m) for m in methods)]) + 2
    lines = [f"{'method':<{width}}" + "  ".join(f"{c:>{max(len(c), 5)}}" for c in cols)]
    for name, entry in methods.items():
        cells = []
        for col, key in zip(cols, keys, strict=True):
            value = entry.get(key)
            if value is None:
                text = "-"
            elif key == "fit_seconds":
                text = f"{value:.1f}"
            else:
                text = f"{value:.3f}"
            cells.append(f"{text:>{max(len(col), 5)}}")
        lines.append(f"{name:<{width}}" + "  ".join(cells))
    if metrics.get("random_init"):
        lines.append("(random-init weights: these maps are not meaningful)")
    lines += fidelity_lines(metrics)
    return "\n".join(lines)


def jsonable_params(mapper: Any) -> dict[str, Any]:
    from dinomap.reduce._persist import jsonable

    params = mapper.get_params(deep=False) if hasattr(mapper, "get_params") else {}
    out: dict[str, Any] = jsonable(params)
    return out


def jsonable_key(params: Mapping[str, Any]) -> dict[str, Any]:
    from dinomap.reduce._persist import jsonable

    out: dict[str, Any] = jsonable(dict(params))
    return out


def _read_previous(out: Path, paths: list[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Maps and metrics of an earlier call on the same points (empty when none/different)."""
    metrics_file = out / METRICS_FILE
    try:
        stored = read_maps(out)
        if stored is None or not metrics_file.is_file():
            return {}, {}
        if stored.paths != paths:
            logger.info("existing %s is for other points; replacing it", out / MAPS_FILE)
            return {}, {}
        old_metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        coords = {k: v for k, v in stored.coords.items() if k in old_metrics.get("methods", {})}
        methods = {k: v for k, v in old_metrics.get("methods", {}).items() if k in coords}
        return coords, methods
    except Exception as exc:  # a broken earlier output is simply replaced
        logger.warning("cannot read the earlier maps in %s (%s); replacing them", out, exc)
        return {}, {}


def _title(spec: ReducerSpec, mapper: Any, entry: Mapping[str, Any]) -> str:
    from dinomap.viz.static import format_title

    key = mapper.key_params() if hasattr(mapper, "key_params") else _neural_key_params(spec, entry)
    return format_title(spec.label, key, entry)


def _neural_key_params(spec: ReducerSpec, entry: Mapping[str, Any]) -> dict[str, Any]:
    params = entry.get("params", {})
    keys = ("hidden", "n_neighbors", "min_dist", "backend")
    out = {k: params[k] for k in keys if k in params and params[k] is not None}
    if isinstance(out.get("hidden"), list):
        out["hidden"] = "-".join(str(h) for h in out["hidden"])
    return out


def write_outputs(result: MapsResult, *, save_mappers: bool, plots: bool) -> None:
    out = result.out_dir
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    old_coords, old_entries = _read_previous(out, result.paths)
    all_coords = {m: c for m, c in old_coords.items() if m not in result.coords}
    all_coords.update(result.coords)
    entries = {m: e for m, e in old_entries.items() if m not in result.coords}
    entries.update(result.metrics["methods"])
    order = [m for m in list_reducers() if m in all_coords]
    all_coords = {m: all_coords[m] for m in order}
    result.metrics["methods"] = {m: entries[m] for m in order if m in entries}

    result.files["maps"] = write_maps(out, result.paths, result.labels, all_coords)
    if save_mappers:
        for name, mapper in result.mappers.items():
            result.files[f"mapper:{name}"] = Path(mapper.save(out / MAPPERS_DIR / name))
    if plots:
        from dinomap.viz.static import save_all_maps, save_map

        random_init = bool(result.metrics["random_init"])
        titles: dict[str, str] = {}
        for name in order:
            spec = reducer_spec(name)
            entry = result.metrics["methods"].get(name, {})
            mapper = result.mappers.get(name)
            if mapper is not None:
                titles[name] = _title(spec, mapper, entry)
            else:
                from dinomap.viz.static import format_title

                titles[name] = format_title(spec.label, entry.get("key_params"), entry)
            if name in result.coords:
                result.files[f"plot:{name}"] = save_map(
                    out / PLOTS_DIR / f"{spec.plot_name}.png",
                    all_coords[name],
                    result.labels,
                    titles[name],
                    random_init=random_init,
                )
        result.files["plot:all"] = save_all_maps(
            out / PLOTS_DIR / ALL_MAPS_PLOT,
            all_coords,
            result.labels,
            titles,
            random_init=random_init,
        )
