"""Model registry, encoder, batched extraction into the run store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap._device import resolve_device
    from dinomap.embed.config import (
        DEFAULT_MODEL,
        MODEL_ALIASES,
        PRECISIONS,
        RUNTIMES,
        EmbedConfig,
        EmbedResult,
    )
    from dinomap.embed.encode import (
        embed_files,
        encoder_from_run,
        resolve_precision,
        resolve_runtime,
    )
    from dinomap.embed.extract import embed
    from dinomap.embed.models import (
        FeatureExtractor,
        LoadedModel,
        WeightsInfo,
        create_encoder,
        resolve_model_name,
    )
    from dinomap.embed.preprocess import Preprocess

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "PRECISIONS",
    "RUNTIMES",
    "EmbedConfig",
    "EmbedResult",
    "FeatureExtractor",
    "LoadedModel",
    "Preprocess",
    "WeightsInfo",
    "create_encoder",
    "embed",
    "embed_files",
    "encoder_from_run",
    "resolve_device",
    "resolve_model_name",
    "resolve_precision",
    "resolve_runtime",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "PRECISIONS": "config",
        "RUNTIMES": "config",
        "EmbedConfig": "config",
        "EmbedResult": "config",
        "embed": "extract",
        "embed_files": "encode",
        "encoder_from_run": "encode",
        "resolve_device": "dinomap._device",
        "resolve_precision": "encode",
        "resolve_runtime": "encode",
        "DEFAULT_MODEL": "config",
        "MODEL_ALIASES": "config",
        "FeatureExtractor": "models",
        "LoadedModel": "models",
        "WeightsInfo": "models",
        "create_encoder": "models",
        "resolve_model_name": "models",
        "Preprocess": "preprocess",
    },
)
