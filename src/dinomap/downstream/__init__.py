"""What embeddings are for: similar-image search, clusters, outliers, near-duplicates, and
placing new images on existing maps.

Every function works on a run directory and writes its outputs into ``RUN/downstream``; the
array-level functions (:func:`cluster_embeddings`, :func:`outlier_scores`,
:func:`near_duplicate_groups`) work on plain arrays. FAISS is optional:
``pip install "dinomap[search]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap.downstream.cluster import (
        CLUSTER_METHODS,
        ClusterResult,
        cluster_embeddings,
        cluster_images,
        cluster_scores,
    )
    from dinomap.downstream.contact_sheet import (
        RANDOM_INIT_STAMP,
        contact_sheet,
        run_thumbnail_loader,
        write_contact_sheet,
    )
    from dinomap.downstream.duplicates import (
        DuplicateReport,
        exact_duplicate_groups,
        find_duplicates,
        near_duplicate_groups,
    )
    from dinomap.downstream.index import (
        DOWNSTREAM_DIR,
        INDEX_KINDS,
        NeighborIndex,
    )
    from dinomap.downstream.label_issues import (
        LabelIssuesReport,
        find_label_issues,
        label_issues_run,
    )
    from dinomap.downstream.neighbors import run_index
    from dinomap.downstream.outliers import (
        OUTLIER_METHODS,
        OutlierReport,
        find_outliers,
        outlier_scores,
    )
    from dinomap.downstream.project import (
        ProjectionResult,
        load_mappers,
        project_embeddings,
        project_images,
    )
    from dinomap.downstream.search import SearchHit, SearchResult, search_similar
    from dinomap.exceptions import MissingDependencyError

__all__ = [
    "CLUSTER_METHODS",
    "DOWNSTREAM_DIR",
    "INDEX_KINDS",
    "OUTLIER_METHODS",
    "RANDOM_INIT_STAMP",
    "ClusterResult",
    "DuplicateReport",
    "LabelIssuesReport",
    "MissingDependencyError",
    "NeighborIndex",
    "OutlierReport",
    "ProjectionResult",
    "SearchHit",
    "SearchResult",
    "cluster_embeddings",
    "cluster_images",
    "cluster_scores",
    "contact_sheet",
    "exact_duplicate_groups",
    "find_duplicates",
    "find_label_issues",
    "find_outliers",
    "label_issues_run",
    "load_mappers",
    "near_duplicate_groups",
    "outlier_scores",
    "project_embeddings",
    "project_images",
    "run_index",
    "run_thumbnail_loader",
    "search_similar",
    "write_contact_sheet",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CLUSTER_METHODS": "cluster",
        "ClusterResult": "cluster",
        "cluster_embeddings": "cluster",
        "cluster_images": "cluster",
        "cluster_scores": "cluster",
        "RANDOM_INIT_STAMP": "contact_sheet",
        "contact_sheet": "contact_sheet",
        "run_thumbnail_loader": "contact_sheet",
        "write_contact_sheet": "contact_sheet",
        "DuplicateReport": "duplicates",
        "exact_duplicate_groups": "duplicates",
        "find_duplicates": "duplicates",
        "near_duplicate_groups": "duplicates",
        "LabelIssuesReport": "label_issues",
        "find_label_issues": "label_issues",
        "label_issues_run": "label_issues",
        "DOWNSTREAM_DIR": "index",
        "INDEX_KINDS": "index",
        "MissingDependencyError": "dinomap.exceptions",
        "NeighborIndex": "index",
        "run_index": "neighbors",
        "OUTLIER_METHODS": "outliers",
        "OutlierReport": "outliers",
        "find_outliers": "outliers",
        "outlier_scores": "outliers",
        "ProjectionResult": "project",
        "load_mappers": "project",
        "project_embeddings": "project",
        "project_images": "project",
        "SearchHit": "search",
        "SearchResult": "search",
        "search_similar": "search",
    },
)
