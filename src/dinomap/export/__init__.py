"""Export: a verified NVIDIA Triton model repository (TorchScript and ONNX) of the feature
extractor, the raw-pixel pipeline and the fitted 2-D mappers.

Examples
--------
>>> from dinomap.export import export_run
>>> result = export_run("runs/fm", "model_repository")  # doctest: +SKIP
>>> result.passed  # doctest: +SKIP
True
"""

from dinomap.export.repository import (
    FORMATS,
    Chain,
    ExportedModel,
    ExportResult,
    PixelPipeline,
    export_encoder,
    export_models,
    export_run,
    load_run_mappers,
    parse_formats,
)
from dinomap.export.triton import TensorSpec, TritonModelConfig, parse_config, render_config
from dinomap.export.verify import VerificationError, VerificationReport, verify_models

__all__ = [
    "FORMATS",
    "Chain",
    "ExportResult",
    "ExportedModel",
    "PixelPipeline",
    "TensorSpec",
    "TritonModelConfig",
    "VerificationError",
    "VerificationReport",
    "export_encoder",
    "export_models",
    "export_run",
    "load_run_mappers",
    "parse_config",
    "parse_formats",
    "render_config",
    "verify_models",
]
