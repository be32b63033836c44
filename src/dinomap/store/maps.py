"""``maps.parquet``: the x/y of every map, one row per point, joinable on ``path``.

Columns: ``path``, ``label``, then ``<method>_x``, ``<method>_y`` (float32) per method. A point a
method did not place has non-finite coordinates (read back as NaN).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.exceptions import DinomapError
from dinomap.store._atomic import atomic_write_bytes
from dinomap.store.layout import MAPS_FILE

__all__ = ["StoredMaps", "read_maps", "write_maps"]


@dataclass(frozen=True)
class StoredMaps:
    """What ``maps.parquet`` holds: paths, labels (None when no point has one), coordinates."""

    paths: list[str]
    labels: list[str | None] | None
    coords: dict[str, np.ndarray] = field(default_factory=dict)


def read_maps(run_dir: str | os.PathLike[str]) -> StoredMaps | None:
    """Read a run's ``maps.parquet`` (None when there is none), methods in column order."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / MAPS_FILE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    names = table.column_names
    if "path" not in names:
        raise DinomapError(f"{path} has no 'path' column; columns are {sorted(names)}.")
    labels: list[str | None] | None = None
    if "label" in names:
        labels = [None if v is None else str(v) for v in table.column("label").to_pylist()]
        if all(v is None for v in labels):
            labels = None
    coords: dict[str, np.ndarray] = {}
    for col in names:
        method = col[:-2]
        if col.endswith("_x") and f"{method}_y" in names:
            xy = np.column_stack(
                [
                    table.column(col).to_numpy(zero_copy_only=False),
                    table.column(f"{method}_y").to_numpy(zero_copy_only=False),
                ]
            ).astype(np.float32)
            xy[~np.isfinite(xy).all(axis=1)] = np.nan
            coords[method] = xy
    return StoredMaps([str(p) for p in table.column("path").to_pylist()], labels, coords)


def write_maps(
    run_dir: str | os.PathLike[str],
    paths: Sequence[str],
    labels: Sequence[Any] | None,
    coords: Mapping[str, np.ndarray],
) -> Path:
    """Write ``maps.parquet`` atomically (zstd); return its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(paths)
    columns: dict[str, Any] = {
        "path": pa.array(list(paths), pa.string()),
        "label": pa.array(list(labels) if labels is not None else [None] * n, pa.string()),
    }
    for name, Y in coords.items():
        columns[f"{name}_x"] = pa.array(np.asarray(Y[:, 0], dtype=np.float32), pa.float32())
        columns[f"{name}_y"] = pa.array(np.asarray(Y[:, 1], dtype=np.float32), pa.float32())
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, compression="zstd")
    return atomic_write_bytes(Path(run_dir) / MAPS_FILE, buf.getvalue())
