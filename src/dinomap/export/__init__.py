"""Export: a verified NVIDIA Triton model repository (TorchScript and ONNX) of the feature
extractor, the preprocessing and the fitted 2-D mappers (members), and the raw-pixel models as
Triton ensembles that chain them (one copy of the ViT per format).

The modules: ``targets`` (what to export), ``writer`` (the files, ``config.pbtxt``, metadata,
README), ``repository`` (:func:`export_models`, :func:`export_encoder`), ``run``
(:func:`export_run`), ``triton`` / ``onnx`` / ``torchscript`` (the formats), ``ensemble`` (an
ensemble's wiring read back from its ``config.pbtxt``), ``verify``.

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
    from dinomap.export.ensemble import chain_from_config
    from dinomap.export.repository import ExportResult, export_encoder, export_models
    from dinomap.export.run import export_run, load_run_mappers
    from dinomap.export.targets import (
        FORMATS,
        Chain,
        ExportedModel,
        PixelPipeline,
        parse_formats,
    )
    from dinomap.export.triton import (
        EnsembleStep,
        TensorSpec,
        TritonEnsembleConfig,
        TritonModelConfig,
        parse_config,
        render_config,
        render_ensemble_config,
    )
    from dinomap.export.verify import VerificationError, VerificationReport, verify_models

__all__ = [
    "FORMATS",
    "Chain",
    "EnsembleStep",
    "ExportResult",
    "ExportedModel",
    "PixelPipeline",
    "TensorSpec",
    "TritonEnsembleConfig",
    "TritonModelConfig",
    "VerificationError",
    "VerificationReport",
    "chain_from_config",
    "export_encoder",
    "export_models",
    "export_run",
    "load_run_mappers",
    "parse_config",
    "parse_formats",
    "render_config",
    "render_ensemble_config",
    "verify_models",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "chain_from_config": "ensemble",
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
        "EnsembleStep": "triton",
        "TensorSpec": "triton",
        "TritonEnsembleConfig": "triton",
        "TritonModelConfig": "triton",
        "parse_config": "triton",
        "render_config": "triton",
        "render_ensemble_config": "triton",
        "VerificationError": "verify",
        "VerificationReport": "verify",
        "verify_models": "verify",
    },
)
