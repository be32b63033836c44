"""dinomap: DINOv2 embeddings of any image collection, 2-D maps and what embeddings are for.

>>> import dinomap
>>> res = dinomap.embed_images("IMAGES/", "runs/x")  # doctest: +SKIP
>>> maps = dinomap.make_maps("runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dinomap.downstream import (
    cluster_images,
    find_duplicates,
    find_outliers,
    project_images,
    search_similar,
)
from dinomap.embed import EmbedConfig, EmbedResult
from dinomap.embed import embed as embed_images
from dinomap.exceptions import (
    ConfigMismatchError,
    DinomapError,
    InvalidParameterError,
    NoImagesError,
    NotFittedError,
    SourceNotFoundError,
    WeightsUnavailableError,
)
from dinomap.export import ExportResult, export_encoder, export_models, export_run
from dinomap.maps import make_maps
from dinomap.parametric import ParametricUMAP, TSNEApproximator
from dinomap.store import Embeddings, load_embeddings, read_run_info
from dinomap.viz.report import write_report
from dinomap.viz.slides import write_slides

try:
    __version__ = version("dinomap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

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
    "find_outliers",
    "load_embeddings",
    "make_maps",
    "project_images",
    "read_run_info",
    "search_similar",
    "write_report",
    "write_slides",
]
