"""dinomap: DINOv2 embeddings of any image collection, 2-D maps and what embeddings are for.

>>> import dinomap
>>> res = dinomap.embed_images("IMAGES/", "runs/x")  # doctest: +SKIP
>>> maps = dinomap.make_maps("runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports
from dinomap._version import __version__
from dinomap.exceptions import (
    ConfigMismatchError,
    DinomapError,
    InvalidParameterError,
    NoImagesError,
    SourceNotFoundError,
    WeightsUnavailableError,
)

#: Public name -> "module:attribute". Imported on first access (PEP 562), so that
#: ``import dinomap`` (and ``dinomap --help``) loads no torch, OpenCV, scikit-learn or FAISS.
_LAZY: dict[str, str] = {
    "NotFittedError": "dinomap.exceptions:NotFittedError",
    "cluster_images": "dinomap.downstream.cluster:cluster_images",
    "find_duplicates": "dinomap.downstream.duplicates:find_duplicates",
    "find_label_issues": "dinomap.downstream.label_issues:find_label_issues",
    "find_outliers": "dinomap.downstream.outliers:find_outliers",
    "project_images": "dinomap.downstream.project:project_images",
    "search_similar": "dinomap.downstream.search:search_similar",
    "EmbedConfig": "dinomap.embed.config:EmbedConfig",
    "EmbedResult": "dinomap.embed.config:EmbedResult",
    "embed_images": "dinomap.embed.extract:embed",
    "ExportResult": "dinomap.export:ExportResult",
    "export_encoder": "dinomap.export:export_encoder",
    "export_models": "dinomap.export:export_models",
    "export_run": "dinomap.export:export_run",
    "make_maps": "dinomap.maps:make_maps",
    "run_pipeline": "dinomap.pipeline:run_pipeline",
    "ParametricUMAP": "dinomap.parametric:ParametricUMAP",
    "TSNEApproximator": "dinomap.parametric:TSNEApproximator",
    "Embeddings": "dinomap.store:Embeddings",
    "load_embeddings": "dinomap.store:load_embeddings",
    "read_run_info": "dinomap.store:read_run_info",
    "write_report": "dinomap.viz.report:write_report",
    "write_slides": "dinomap.viz.slides:write_slides",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from dinomap.downstream.cluster import cluster_images
    from dinomap.downstream.duplicates import find_duplicates
    from dinomap.downstream.label_issues import find_label_issues
    from dinomap.downstream.outliers import find_outliers
    from dinomap.downstream.project import project_images
    from dinomap.downstream.search import search_similar
    from dinomap.embed.config import EmbedConfig, EmbedResult
    from dinomap.embed.extract import embed as embed_images
    from dinomap.exceptions import NotFittedError
    from dinomap.export import ExportResult, export_encoder, export_models, export_run
    from dinomap.maps import make_maps
    from dinomap.parametric import ParametricUMAP, TSNEApproximator
    from dinomap.pipeline import run_pipeline
    from dinomap.store import Embeddings, load_embeddings, read_run_info
    from dinomap.viz.report import write_report
    from dinomap.viz.slides import write_slides


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "ConfigMismatchError",
    "DinomapError",
    "EmbedConfig",
    "EmbedResult",
    "Embeddings",
    "ExportResult",
    "InvalidParameterError",
    "NoImagesError",
    "NotFittedError",
    "ParametricUMAP",
    "SourceNotFoundError",
    "TSNEApproximator",
    "WeightsUnavailableError",
    "__version__",
    "cluster_images",
    "embed_images",
    "export_encoder",
    "export_models",
    "export_run",
    "find_duplicates",
    "find_label_issues",
    "find_outliers",
    "load_embeddings",
    "make_maps",
    "project_images",
    "read_run_info",
    "run_pipeline",
    "search_similar",
    "write_report",
    "write_slides",
]
