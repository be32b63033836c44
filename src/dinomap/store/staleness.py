"""Which derived outputs of a run were made from other embeddings than the run stores now.

Each output records the stamp of the embeddings it was made from (``"embeddings"`` in
``metrics.json`` and in the downstream records); :func:`stale_outputs` compares them with the
current stamp and returns (and logs, once) one line per stale output, naming the command that
refreshes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dinomap.store.embeddings import check_fresh, current_stamp
from dinomap.store.info import read_json_record
from dinomap.store.layout import (
    CLUSTERS_FILE,
    CLUSTERS_INFO_FILE,
    DOWNSTREAM_DIR,
    DUPLICATES_FILE,
    DUPLICATES_INFO_FILE,
    LABEL_ISSUES_FILE,
    LABEL_ISSUES_INFO_FILE,
    MAPS_FILE,
    METRICS_FILE,
    OUTLIERS_FILE,
    OUTLIERS_INFO_FILE,
)

__all__ = ["stale_outputs"]


def _recorded(path: Path) -> Any:
    """The ``"embeddings"`` stamp an output's JSON record holds (None when there is none)."""
    return (read_json_record(path) or {}).get("embeddings")


def stale_outputs(
    run_dir: str | os.PathLike[str],
    metrics: Mapping[str, Any] | None = None,
    now: dict[str, Any] | None = None,
) -> list[str]:
    """One line (also logged as a warning, once) per derived output made from other embeddings
    than the run stores now (``now``: its stamp, read when not given): maps and metrics,
    clusters, outliers, duplicates, label issues."""
    run = Path(run_dir)
    now = now if now is not None else current_stamp(run)
    if now is None:
        return []
    ds = run / DOWNSTREAM_DIR
    maps_stamp = metrics.get("embeddings") if metrics is not None else _recorded(run / METRICS_FILE)
    checks: list[tuple[Any, str, str]] = [
        (maps_stamp, f"{MAPS_FILE} / {METRICS_FILE}", "map"),
        (_recorded(ds / CLUSTERS_INFO_FILE), f"{DOWNSTREAM_DIR}/{CLUSTERS_FILE}", "cluster"),
        (_recorded(ds / OUTLIERS_INFO_FILE), f"{DOWNSTREAM_DIR}/{OUTLIERS_FILE}", "outliers"),
        (_recorded(ds / DUPLICATES_INFO_FILE), f"{DOWNSTREAM_DIR}/{DUPLICATES_FILE}", "duplicates"),
        (
            _recorded(ds / LABEL_ISSUES_INFO_FILE),
            f"{DOWNSTREAM_DIR}/{LABEL_ISSUES_FILE}",
            "label-issues",
        ),
    ]
    out = []
    for recorded, what, command in checks:
        msg = check_fresh(run, recorded, what, f"dinomap {command} {run_dir}", current=now)
        if msg:
            out.append(msg)
    return out
