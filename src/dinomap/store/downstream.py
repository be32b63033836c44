"""Writers of ``RUN/downstream/``: the tables, records and caches of the downstream stages.

The stages (:mod:`dinomap.downstream`) compute; these functions are the only ones that put
their results on disk, each file atomically (:mod:`dinomap.store._atomic`), the record (JSON)
after its table so that a record never describes a table that is not there.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dinomap.store._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from dinomap.store.layout import (
    DOWNSTREAM_DIR,
    INDEX_FILE,
    INDEX_INFO_FILE,
    KNN_FILE,
    KNN_INFO_FILE,
)

__all__ = [
    "downstream_dir",
    "write_downstream_table",
    "write_downstream_text",
    "write_index",
    "write_knn",
    "write_png",
]


def downstream_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN/downstream`` (not created: the writers create it on their first file)."""
    return Path(run_dir) / DOWNSTREAM_DIR


def write_downstream_table(
    run_dir: str | os.PathLike[str],
    file_name: str,
    columns: Mapping[str, Any],
    info_name: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``columns`` (name -> pyarrow array or sequence) as ``RUN/downstream/file_name``.

    When ``info_name`` is given, ``info`` is written next to it as JSON (after the table).
    Returns the table's path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = downstream_dir(run_dir)
    buf = io.BytesIO()
    pq.write_table(pa.table(dict(columns)), buf)
    out = atomic_write_bytes(base / file_name, buf.getvalue())
    if info_name is not None:
        atomic_write_json(base / info_name, dict(info or {}))
    return out


def write_downstream_text(
    run_dir: str | os.PathLike[str],
    file_name: str,
    text: str,
    info_name: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``text`` (a CSV, say) as ``RUN/downstream/file_name``, then its JSON record."""
    base = downstream_dir(run_dir)
    out = atomic_write_text(base / file_name, text)
    if info_name is not None:
        atomic_write_json(base / info_name, dict(info or {}))
    return out


def write_index(run_dir: str | os.PathLike[str], data: bytes, info: Mapping[str, Any]) -> Path:
    """Save a run's serialised neighbour index and what it was built on."""
    base = downstream_dir(run_dir)
    out = atomic_write_bytes(base / INDEX_FILE, data)
    atomic_write_json(base / INDEX_INFO_FILE, dict(info))
    return out


def write_knn(
    run_dir: str | os.PathLike[str], arrays: Mapping[str, Any], info: Mapping[str, Any]
) -> Path:
    """Save a run's kNN graph (``np.savez`` of ``arrays``) and its record."""
    import numpy as np

    base = downstream_dir(run_dir)
    buf = io.BytesIO()
    np.savez(buf, **dict(arrays))
    out = atomic_write_bytes(base / KNN_FILE, buf.getvalue())
    atomic_write_json(base / KNN_INFO_FILE, dict(info))
    return out


def write_png(path: str | os.PathLike[str], png: bytes) -> Path:
    """Write an encoded PNG (a contact sheet, a projection plot) atomically."""
    return atomic_write_bytes(path, png)
