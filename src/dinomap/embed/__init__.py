"""Model registry, encoder, batched extraction into the run store."""

from dinomap.embed.extract import (
    PRECISIONS,
    RUNTIMES,
    EmbedConfig,
    EmbedResult,
    embed,
    embed_files,
    encoder_from_run,
    resolve_device,
    resolve_precision,
    resolve_runtime,
)
from dinomap.embed.models import (
    DEFAULT_MODEL,
    MODEL_ALIASES,
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
