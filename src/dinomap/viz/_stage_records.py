"""Read what the downstream and export stages recorded in a run directory, and which derived
outputs are stale (read-only, tolerant: a missing or unreadable file is left out)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dinomap.store import layout
from dinomap.store.info import read_json_record
from dinomap.store.layout import EXPORT_DIR
from dinomap.store.layout import EXPORT_METADATA_FILE as EXPORT_METADATA

__all__ = ["DownstreamData"]

logger = logging.getLogger(__name__)

#: The downstream outputs as paths relative to the run directory (the report links them).
CLUSTERS_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.CLUSTERS_FILE}"
CLUSTERS_INFO = f"{layout.DOWNSTREAM_DIR}/{layout.CLUSTERS_INFO_FILE}"
CLUSTERS_SHEET = f"{layout.DOWNSTREAM_DIR}/{layout.CLUSTERS_SHEET}"
OUTLIERS_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.OUTLIERS_FILE}"
OUTLIERS_INFO = f"{layout.DOWNSTREAM_DIR}/{layout.OUTLIERS_INFO_FILE}"
OUTLIERS_SHEET = f"{layout.DOWNSTREAM_DIR}/{layout.OUTLIERS_SHEET}"
DUPLICATES_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.DUPLICATES_FILE}"
DUPLICATES_INFO = f"{layout.DOWNSTREAM_DIR}/{layout.DUPLICATES_INFO_FILE}"
LABEL_ISSUES_FILE = f"{layout.DOWNSTREAM_DIR}/{layout.LABEL_ISSUES_FILE}"
LABEL_ISSUES_SHEET = f"{layout.DOWNSTREAM_DIR}/{layout.LABEL_ISSUES_SHEET}"


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


def read_downstream(
    run_dir: Path, paths: list[str], labels: list[str | None] | None
) -> DownstreamData:
    files = {
        name: rel
        for name, rel in (
            ("clusters_sheet", CLUSTERS_SHEET),
            ("outliers_sheet", OUTLIERS_SHEET),
            ("outliers_table", OUTLIERS_FILE),
            ("duplicates_csv", DUPLICATES_FILE),
            ("label_issues_table", LABEL_ISSUES_FILE),
            ("label_issues_sheet", LABEL_ISSUES_SHEET),
        )
        if (run_dir / rel).is_file()
    }
    clusters = read_json_record(run_dir / CLUSTERS_INFO)
    outliers = read_json_record(run_dir / OUTLIERS_INFO)
    duplicates = read_json_record(run_dir / DUPLICATES_INFO)
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


def read_export(run_dir: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """The export section: ``run.json["export"]`` plus what the repository's metadata says."""
    export: dict[str, Any] = dict(info["export"]) if isinstance(info.get("export"), Mapping) else {}
    repo_hint = export.get("repository") or export.get("repository_path")
    repo = Path(str(repo_hint)) if repo_hint else run_dir / EXPORT_DIR
    if not repo.is_absolute() and not repo.exists():
        repo = run_dir / repo
    meta = read_json_record(repo / EXPORT_METADATA)
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
