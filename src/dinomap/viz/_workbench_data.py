"""The workbench's data in the report page: neighbours, label issues, duplicate groups, paths.

Everything travels as compact binary arrays (base64) rather than JSON lists:

- the 12 nearest neighbours of every point from the run's cached kNN graph
  (``downstream/knn.npz``, computed through :func:`dinomap.downstream.neighbors.run_neighbors`
  when missing): ids in map order as 3-byte little-endian integers (``0xFFFFFF``: none) and
  cosine similarities in one byte each, ``q = round(255 * sqrt((1 - s) / 2))`` (finest near
  ``s = 1``, where near-duplicates are told apart: 0.0016 steps at 0.99, 0.008 at 0.5), 48
  bytes per point (64 as base64), left out above :data:`NEIGHBOR_LIMIT` points (the page
  says so);
- the label-issue score (``float32``) and suggested label (a code into the label names) of
  ``downstream/label_issues.parquet`` when the label-issues stage has run;
- the duplicate group of each point from ``downstream/duplicates.csv``;
- which paths were made relative to the run (a bit per point) so that the exported manifest
  can hold absolute paths again;
- the source's extra columns (a manifest's ``split``, ``source``...; ``metadata.parquet``), each
  as its distinct values and a code per point: shown in the inspect panel, and, with at most
  :data:`FIELD_FILTER_MAX` values, a "colour by" choice whose legend filters.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.store import layout
from dinomap.viz._page_data import NO_LABEL, b64, code_dtype, outlier_coloring

__all__: list[str] = []

logger = logging.getLogger(__name__)

#: Neighbours shown in the inspect panel.
PAGE_NEIGHBORS = 12
#: Above this many points the page stores no neighbours (64 bytes a point: 16 MB at 250,000).
NEIGHBOR_LIMIT = 250_000
LABEL_ISSUES_FILE = layout.LABEL_ISSUES_FILE
#: What the page shows for a point without a value in a source column.
NO_VALUE = "(none)"


def page_neighbors(
    run_dir: Path, paths: Sequence[str], k: int = PAGE_NEIGHBORS
) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` nearest neighbours of every map point, as map-order ids (-1 where a neighbour
    is not on the map) and cosine similarities; None without embeddings or faiss, or above
    :data:`NEIGHBOR_LIMIT` points. Computes and caches ``knn.npz`` when missing."""
    n = len(paths)
    if n < 2 or n > NEIGHBOR_LIMIT:
        if n > NEIGHBOR_LIMIT:
            logger.info("%d points: the page stores no neighbours (limit %d)", n, NEIGHBOR_LIMIT)
        return None
    try:
        from dinomap.downstream.neighbors import run_neighbors

        sims, ids, _, emb = run_neighbors(run_dir, k)
    except Exception as exc:
        logger.warning("no neighbours in the report (%s: %s)", type(exc).__name__, exc)
        return None
    pos = {p: i for i, p in enumerate(paths)}
    to_map = np.asarray([pos.get(p, -1) for p in emb.paths], dtype=np.int64)
    rows = np.full((n, ids.shape[1]), -1, dtype=np.int32)
    vals = np.zeros((n, ids.shape[1]), dtype=np.float32)
    have = to_map >= 0
    mapped = np.where(ids >= 0, to_map[np.clip(ids, 0, len(to_map) - 1)], -1)
    rows[to_map[have]] = mapped[have]
    vals[to_map[have]] = sims[have]
    return rows, vals


def quantise_similarity(sims: np.ndarray) -> np.ndarray:
    """Cosine similarities as one byte each: ``round(255 * sqrt((1 - s) / 2))``; the page
    reads ``s = 1 - 2 * (q / 255) ** 2``."""
    s = np.clip(np.nan_to_num(np.asarray(sims, np.float64), nan=-1.0), -1.0, 1.0)
    return np.rint(255 * np.sqrt((1 - s) / 2)).astype(np.uint8)


def _uint24(ids: np.ndarray) -> np.ndarray:
    """Ids (< 2**24 - 1; -1 for none) as 3 little-endian bytes each, ``0xFFFFFF`` for none."""
    flat = np.where(ids < 0, 0xFFFFFF, ids).astype("<u4").ravel()
    return flat.view(np.uint8).reshape(-1, 4)[:, :3].copy()


def _read_label_issues(run_dir: Path, paths: Sequence[str]) -> dict[str, Any] | None:
    target = run_dir / layout.DOWNSTREAM_DIR / LABEL_ISSUES_FILE
    if not target.is_file():
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(target)
    need = {"path", "label_issue_score"}
    if not need <= set(table.column_names):
        logger.warning("%s lacks the columns %s; label issues are not shown", target, need)
        return None
    score_of = dict(
        zip(
            (str(p) for p in table.column("path").to_pylist()),
            table.column("label_issue_score").to_numpy(zero_copy_only=False).astype(np.float64),
            strict=True,
        )
    )
    suggested: dict[str, Any] = {}
    if "suggested_label" in table.column_names:
        suggested = dict(
            zip(
                (str(p) for p in table.column("path").to_pylist()),
                table.column("suggested_label").to_pylist(),
                strict=True,
            )
        )
    scores = np.asarray([score_of.get(p, np.nan) for p in paths], dtype=np.float64)
    return {"scores": scores, "suggested": [suggested.get(p) for p in paths]}


def _read_duplicate_groups(run_dir: Path, paths: Sequence[str]) -> dict[str, Any] | None:
    target = run_dir / layout.DOWNSTREAM_DIR / layout.DUPLICATES_FILE
    if not target.is_file():
        return None
    group_of: dict[str, str] = {}
    with target.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            name = f"{row.get('kind') or 'duplicate'} group {row.get('group') or '?'}"
            group_of.setdefault(row.get("path") or "", name)
    names = sorted(set(group_of.values()))
    lookup = {g: k for k, g in enumerate(names)}
    codes = np.asarray([lookup.get(group_of.get(p, ""), -1) for p in paths], dtype=np.int32)
    if not (codes >= 0).any():
        return None
    return {"names": names, "codes": b64(codes)}


#: A field with more distinct values than this stays in metadata.parquet, out of the page.
FIELD_VALUES_MAX = 100_000
#: A field with at most this many distinct values (and fewer than the points) is a colouring
#: and a legend filter too.
FIELD_FILTER_MAX = 50


def _read_fields(run_dir: Path, paths: Sequence[str]) -> list[dict[str, Any]] | None:
    """The run's extra source columns (``metadata.parquet``) by map point: each as its distinct
    values (``names``; ``(none)`` for a missing one) and a code per point; ``filter``: few
    enough values to colour and filter by."""
    from dinomap.store import read_metadata

    try:
        meta = read_metadata(run_dir)
    except Exception as exc:  # an unreadable optional file: the page goes on without it
        logger.warning("the report shows no source columns (%s: %s)", type(exc).__name__, exc)
        return None
    if meta is None or not len(paths):
        return None
    import pandas as pd

    meta = meta.drop_duplicates("path", keep="last").set_index("path")
    out = []
    for column in meta.columns:
        values = meta[column].reindex(list(paths)).fillna(NO_VALUE).astype(str)
        codes_raw, uniques = pd.factorize(values, sort=True)
        if len(uniques) > FIELD_VALUES_MAX:  # captions, ids: not carried into every page
            logger.info("source column %r has %d values: not in the report", column, len(uniques))
            continue
        names = [str(u) for u in uniques]
        if NO_VALUE in names:  # the missing ones last, as the legends put "no label"
            order = sorted(range(len(names)), key=lambda k: (names[k] == NO_VALUE, names[k]))
            remap = np.empty(len(names), dtype=np.int64)
            remap[order] = np.arange(len(names))
            codes_raw, names = remap[codes_raw], [names[k] for k in order]
        codes = np.asarray(codes_raw, dtype=code_dtype(len(names)))
        out.append({"name": str(column), "names": names, "codes": b64(codes),
                    "bytes": codes.itemsize,  # one value per point (an id) is no class
                    "filter": len(names) <= min(FIELD_FILTER_MAX, len(values) - 1)})  # fmt: skip
    return out or None


def workbench_payload(
    run_dir: Path,
    paths: Sequence[str],
    label_names: Sequence[str] | None,
    neighbors: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """The page's ``neighbors``, ``label_issues`` and ``duplicates`` entries."""
    out: dict[str, Any] = {"neighbors": None, "label_issues": None, "duplicates": None}
    if neighbors is not None:
        ids, sims = neighbors
        out["neighbors"] = {
            "k": int(ids.shape[1]),
            "ids": b64(_uint24(ids)),
            "sims_q8": b64(quantise_similarity(sims)),
        }
    elif len(paths) > NEIGHBOR_LIMIT:
        out["neighbors_note"] = (
            f"neighbours are not stored in pages of more than {NEIGHBOR_LIMIT:,} points"
        )
    issues = _read_label_issues(run_dir, paths) if paths else None
    if issues is not None:
        coloring = outlier_coloring(issues["scores"])
        if coloring is not None:
            names = list(label_names or [])
            lookup = {n: k for k, n in enumerate(names)}
            sugg = []
            for s in issues["suggested"]:
                text = NO_LABEL if s is None else str(s)
                if text not in lookup:
                    lookup[text] = len(names)
                    names.append(text)
                sugg.append(lookup[text])
            codes = np.asarray(sugg, dtype=code_dtype(len(names)))
            coloring["suggested"] = {"names": names, "codes": b64(codes), "bytes": codes.itemsize}
            out["label_issues"] = coloring
    out["duplicates"] = _read_duplicate_groups(run_dir, paths) if paths else None
    out["fields"] = _read_fields(run_dir, paths)
    return out
