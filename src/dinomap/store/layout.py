"""Every path of a run directory, named in one place.

::

    run.json            model, weights (random_init!), sources, preprocessing, versions, timings
    embeddings/         part-NNNNN.parquet: one row per image
    errors.csv          images that could not be embedded (path, reason)
    metadata.parquet    a manifest's other columns (split, source...), as text, by path
    maps.parquet        x/y of every map, joinable on ``path``
    metrics.json        per map: fit time, trustworthiness, kNN preservation, kNN accuracy
    plots/              one PNG per map and all_maps.png
    mappers/<method>/   fitted mappers (config.json + state.pkl or model.pt)
    model_repository/   Triton model repository (dinomap_export.json, verification.json)
    downstream/         index, neighbour graph, clusters, outliers, label issues, duplicates,
                        search, projected
    thumbs/             the report's thumbnail sprite sheets
    report.html, slides.md
    .dinomap.lock       (remote run directories only) the lock of the command writing there
    .dinomap-writer.lock  (local run directories) the OS file lock of the command writing there

A remote run directory (``s3://...``) is worked on through a local mirror
(:mod:`dinomap.store.mirror`): ``<mirror root>/<digest of the URL>/<run name>/`` next to the
mirror's own record ``mirror.json`` (what was synced: sizes, ETags, local stats).

Only names and path arithmetic here: no I/O, no third-party import, so any module (and the CLI's
``--help``) can use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ALL_MAPS_PLOT",
    "CLUSTERS_FILE",
    "CLUSTERS_INFO_FILE",
    "CLUSTERS_SHEET",
    "DOWNSTREAM_DIR",
    "DUPLICATES_FILE",
    "DUPLICATES_INFO_FILE",
    "EMBEDDINGS_DIR",
    "ERRORS_FILE",
    "EXPORT_DIR",
    "EXPORT_METADATA_FILE",
    "EXPORT_README_FILE",
    "INDEX_FILE",
    "INDEX_INFO_FILE",
    "KNN_FILE",
    "KNN_INFO_FILE",
    "LABEL_ISSUES_FILE",
    "LABEL_ISSUES_INFO_FILE",
    "LABEL_ISSUES_SHEET",
    "MAPPERS_DIR",
    "MAPS_FILE",
    "METADATA_FILE",
    "METRICS_FILE",
    "MIRROR_RUNS_DIR",
    "MIRROR_STATE_FILE",
    "OUTLIERS_FILE",
    "OUTLIERS_INFO_FILE",
    "OUTLIERS_SHEET",
    "PLOTS_DIR",
    "PROJECTED_CSV",
    "PROJECTED_DIR",
    "PROJECTED_FILE",
    "PROJECTED_INFO_FILE",
    "REMOTE_LOCK_FILE",
    "REMOTE_PUSH_FILE",
    "REPORT_FILE",
    "RUN_FILE",
    "SEARCH_DIR",
    "SLIDES_FILE",
    "THUMBS_DIR",
    "THUMBS_INDEX_FILE",
    "VERIFICATION_FILE",
    "WRITER_LOCK_FILE",
    "RunLayout",
]

RUN_FILE = "run.json"
EMBEDDINGS_DIR = "embeddings"
ERRORS_FILE = "errors.csv"
MAPS_FILE = "maps.parquet"
METADATA_FILE = "metadata.parquet"
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"
ALL_MAPS_PLOT = "all_maps.png"
MAPPERS_DIR = "mappers"
EXPORT_DIR = "model_repository"
EXPORT_METADATA_FILE = "dinomap_export.json"
VERIFICATION_FILE = "verification.json"
EXPORT_README_FILE = "README.md"
DOWNSTREAM_DIR = "downstream"
INDEX_FILE = "index.faiss"
INDEX_INFO_FILE = "index.json"
KNN_FILE = "knn.npz"
KNN_INFO_FILE = "knn.json"
CLUSTERS_FILE = "clusters.parquet"
CLUSTERS_INFO_FILE = "clusters.json"
CLUSTERS_SHEET = "clusters.png"
OUTLIERS_FILE = "outliers.parquet"
OUTLIERS_INFO_FILE = "outliers.json"
OUTLIERS_SHEET = "outliers.png"
LABEL_ISSUES_FILE = "label_issues.parquet"
LABEL_ISSUES_INFO_FILE = "label_issues.json"
LABEL_ISSUES_SHEET = "label_issues.png"
DUPLICATES_FILE = "duplicates.csv"
DUPLICATES_INFO_FILE = "duplicates.json"
SEARCH_DIR = "search"
PROJECTED_DIR = "projected"
PROJECTED_FILE = "projected.parquet"  # inside PROJECTED_DIR (or project --out)
PROJECTED_CSV = "projected.csv"
PROJECTED_INFO_FILE = "projected.json"
REPORT_FILE = "report.html"
SLIDES_FILE = "slides.md"
THUMBS_DIR = "thumbs"
THUMBS_INDEX_FILE = "index.json"  # inside THUMBS_DIR
REMOTE_LOCK_FILE = ".dinomap.lock"  # in a remote run directory, while a command writes there
WRITER_LOCK_FILE = ".dinomap-writer.lock"  # flock of the command writing a local run (run_lock)
REMOTE_PUSH_FILE = ".dinomap.push"  # in a remote run directory, while a push has not finished
MIRROR_RUNS_DIR = "runs"  # inside the cache folder: the local mirrors of remote runs
MIRROR_STATE_FILE = "mirror.json"  # next to a mirrored run: what the last sync saw


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory.

    Examples
    --------
    >>> RunLayout("runs/fm").maps.as_posix()
    'runs/fm/maps.parquet'
    >>> RunLayout("runs/fm").mapper("tsne").as_posix()
    'runs/fm/mappers/tsne'
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def run_info(self) -> Path:
        return self.root / RUN_FILE

    @property
    def embeddings(self) -> Path:
        return self.root / EMBEDDINGS_DIR

    @property
    def errors(self) -> Path:
        return self.root / ERRORS_FILE

    @property
    def maps(self) -> Path:
        return self.root / MAPS_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def plots(self) -> Path:
        return self.root / PLOTS_DIR

    @property
    def mappers(self) -> Path:
        return self.root / MAPPERS_DIR

    def mapper(self, method: str) -> Path:
        return self.root / MAPPERS_DIR / method

    @property
    def export(self) -> Path:
        return self.root / EXPORT_DIR

    @property
    def downstream(self) -> Path:
        return self.root / DOWNSTREAM_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def slides(self) -> Path:
        return self.root / SLIDES_FILE

    @property
    def thumbs(self) -> Path:
        return self.root / THUMBS_DIR
