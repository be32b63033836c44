"""Export: a verified NVIDIA Triton model repository (TorchScript and ONNX) of the feature
extractor, the raw-pixel pipeline and the fitted 2-D mappers.

The modules: ``targets`` (what to export), ``writer`` (the files, ``config.pbtxt``, metadata,
README), ``repository`` (:func:`export_models`, :func:`export_encoder`), ``run``
(:func:`export_run`), ``triton`` / ``onnx`` / ``torchscript`` (the formats), ``verify``.

Examples
--------
>>> from dinomap.export import export_run
>>> result = export_run("runs/fm", "model_repository")  # doctest: +SKIP
>>> result.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap.export.repository import ExportResult, export_encoder, export_models
    from dinomap.export.run import export_run, load_run_mappers
    from dinomap.export.targets import (
        FORMATS,
        Chain,
        ExportedModel,
        PixelPipeline,
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ExportResult": "repository",
        "export_encoder": "repository",
        "export_models": "repository",
        "export_run": "run",
        "load_run_mappers": "run",
        "FORMATS": "targets",
        "Chain": "targets",
        "ExportedModel": "targets",
        "PixelPipeline": "targets",
        "parse_formats": "targets",
        "TensorSpec": "triton",
        "TritonModelConfig": "triton",
        "parse_config": "triton",
        "render_config": "triton",
        "VerificationError": "verify",
        "VerificationReport": "verify",
        "verify_models": "verify",
    },
)
