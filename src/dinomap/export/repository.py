"""Build a verified Triton model repository: feature extractor, raw-pixel pipeline, mappers.

What :func:`export_models` writes (``_onnx`` folders only with the ``onnx`` format)::

    model_repository/
      dino_model/            float32 [N, 3, S, S] normalised  -> float32 [N, D]  (CLS token)
      preprocess/            uint8 [N, H, W, 3] RGB pixels     -> float32 [N, 3, S, S]
      <method>/              float32 [N, D] embeddings         -> float32 [N, 2]  (mappers)
      dino_pipeline/         ensemble: preprocess -> dino_model           (no weights of its own)
      dino_pipeline_<method>/  ensemble: preprocess -> dino_model -> <method>
      dino_model_onnx/ ...   the same models for onnxruntime (ensembles of the _onnx members)
      dinomap_export.json    members, ensembles, weights (random_init!), verification
      verification.json      per model and input: max |exported - eager|
      README.md              the same for humans

The ViT is written once per format (``dino_model``); the raw-pixel models are Triton ensembles
(``platform: "ensemble"``) that chain the members, so the repository holds one copy of the
weights per format.

This module orchestrates: :mod:`dinomap.export.targets` says what to export,
:mod:`dinomap.export.writer` writes the files, :mod:`dinomap.export.verify` checks them, and
:mod:`dinomap.export.run` exports a run directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dinomap._validation import check_choice, check_positive_int
from dinomap.export.targets import (
    FORMATS,
    INPUT_NAME,
    OUTPUT_NAME,
    Chain,
    EnsembleTarget,
    ExportedModel,
    PixelPipeline,
    Target,
    build_targets,
    eager_output,
    on_cpu,
    parse_formats,
    same_size_batch,
)
from dinomap.export.verify import (
    DEFAULT_ATOL,
    ModelCheck,
    VerificationCase,
    VerificationError,
    VerificationReport,
    verify_models,
)
from dinomap.export.writer import (
    METADATA_FILE,
    VERIFICATION_FILE,
    common_parameters,
    export_metadata,
    write_ensemble,
    write_model,
    write_repository_files,
)

if TYPE_CHECKING:
    from dinomap.embed.models import LoadedModel

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "METADATA_FILE",
    "OUTPUT_NAME",
    "VERIFICATION_FILE",
    "Chain",
    "ExportResult",
    "ExportedModel",
    "PixelPipeline",
    "export_encoder",
    "export_models",
    "parse_formats",
]

logger = logging.getLogger(__name__)

RANDOM_INIT_WAIVER = (
    "waived: random-init embeddings are nearly identical, so the mapper's input "
    "standardisation divides by a tiny spread and amplifies float32 rounding; with trained "
    "weights this check is strict"
)


@dataclass
class ExportResult:
    """What :func:`export_models` wrote and how verification went.

    Attributes
    ----------
    repository : Path
    models : list of ExportedModel
    random_init : bool
        The weights are random (untrained); stamped in every file of the repository.
    verification : VerificationReport or None
        None when verification was switched off.
    metadata : dict
        The content of ``dinomap_export.json``.
    """

    repository: Path
    models: list[ExportedModel]
    random_init: bool
    verification: VerificationReport | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        """True/False after verification, None when it was not run. True also when a
        random-init mapper's failure was waived: ``verification.status`` tells."""
        return None if self.verification is None else self.verification.passed

    def model(self, name: str) -> ExportedModel:
        """The exported model called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        check_choice("name", name, [m.name for m in self.models])
        raise AssertionError  # pragma: no cover - check_choice raised


def _resolve_device(device: str) -> str:
    check_choice("device", device, ["auto", "cpu", "cuda"])
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def export_models(
    out: str | os.PathLike[str],
    extractor: nn.Module,
    *,
    input_size: int = 224,
    preprocess: nn.Module | None = None,
    source_size: int = 32,
    mappers: Mapping[str, nn.Module] | None = None,
    formats: str | Iterable[str] = FORMATS,
    verify: bool = True,
    device: str = "auto",
    max_batch_size: int = 64,
    random_init: bool = False,
    description: Mapping[str, Any] | None = None,
    real_images: np.ndarray | Sequence[np.ndarray] | None = None,
    real_embeddings: np.ndarray | None = None,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> ExportResult:
    """Export a feature extractor (and optionally preprocessing and mappers) as a Triton repository.

    Parameters
    ----------
    out : path
        The model repository folder (created; existing model files are replaced atomically).
    extractor : nn.Module
        Normalised float32 ``[N, 3, S, S]`` -> float32 ``[N, D]`` (e.g. ``LoadedModel.extractor``).
    input_size : int
        ``S``.
    preprocess : nn.Module, optional
        uint8 ``[N, H, W, 3]`` -> normalised ``[N, 3, S, S]`` (:class:`dinomap.embed.preprocess.Preprocess`);
        with it the ``preprocess`` member and the raw-pixel ensembles ``dino_pipeline`` (and
        ``dino_pipeline_<method>`` per mapper) are exported.
    source_size : int
        The preprocessing's bottleneck size (32), used for test inputs only; 0 when none.
    mappers : mapping of str to nn.Module, optional
        ``{method: module}`` of fitted 2-D mappers (``D -> 2``), e.g. from ``to_torch_module()``.
    formats : str or iterable of str
        ``"torchscript"``, ``"onnx"`` or both (``"torchscript,onnx"``).
    verify : bool
        Check every exported file, and every ensemble as its members' files chained the way
        its ``config.pbtxt`` wires them, in a fresh process (see :mod:`dinomap.export.verify`);
        a failure raises
        :class:`VerificationError` after ``verification.json`` and ``dinomap_export.json``
        record it. With ``random_init`` a mapper that runs but differs beyond ``atol`` is
        waived instead (recorded as such, ``status: "passed_with_waivers"``).
    device : {"auto", "cpu", "cuda"}
        Device Triton should run the models on (``instance_group`` kind). Export runs on the CPU.
    max_batch_size : int
        Triton's ``max_batch_size``; dynamic batching is switched on.
    random_init : bool
        The weights are random: stamped in the metadata, README, and every ``config.pbtxt``.
    description : mapping, optional
        Extra metadata (``model``, ``weights``, ``preprocessing``, ``source_run``...).
    real_images : uint8 array (n, H, W, 3) or list of them, optional
        Real images for verification (up to 4 of the first image's size are used).
    real_embeddings : float32 array (n, D), optional
        Real embeddings for verifying the mappers (default: the eager pipeline on ``real_images``).
    atol : float
        Verification tolerance (max abs difference from eager).
    seed : int
        Seed of the random test inputs.

    Returns
    -------
    ExportResult

    Examples
    --------
    >>> from dinomap.embed.models import create_encoder
    >>> enc = create_encoder("dinov2-s14", random_init=True, model_kwargs={"depth": 1})
    >>> res = export_models("model_repository", enc.extractor, random_init=True)  # doctest: +SKIP
    >>> res.passed  # doctest: +SKIP
    True
    """
    fmts, dev = parse_formats(formats), _resolve_device(device)
    root, extractor, preprocess, images = _prepare(
        out, extractor, preprocess, real_images, input_size, max_batch_size, random_init
    )
    desc = dict(description or {})
    targets, ensembles, embed_dim = build_targets(
        extractor, input_size, preprocess, int(source_size), dict(mappers or {}), images,
        real_embeddings, seed,
    )  # fmt: skip
    common = common_parameters(desc, extractor, random_init)
    exported, checks = _write_targets(root, targets, fmts, dev, max_batch_size, common, verify)
    more, ens_checks = _write_ensembles(root, ensembles, fmts, exported, max_batch_size, common,
                                        verify)  # fmt: skip
    exported, checks = exported + more, checks + ens_checks
    report = _verify(root, checks, exported, atol, random_init) if verify else None
    meta = export_metadata(
        root, exported, report, desc, random_init=random_init, embed_dim=embed_dim,
        input_size=input_size, device=dev, max_batch_size=max_batch_size,
    )  # fmt: skip
    write_repository_files(root, exported, meta, report)
    if report is not None and not report.passed:
        raise _verification_error(report, root, atol)
    return ExportResult(root, exported, bool(random_init), report, meta)


def _prepare(
    out: str | os.PathLike[str],
    extractor: nn.Module,
    preprocess: nn.Module | None,
    real_images: np.ndarray | Sequence[np.ndarray] | None,
    input_size: int,
    max_batch_size: int,
    random_init: bool,
) -> tuple[Path, nn.Module, nn.Module | None, np.ndarray | None]:
    """Check the sizes, create the repository folder, move the modules to the CPU (eval mode)
    and stack up to 4 real images of one size; warn about random-init weights."""
    check_positive_int("input_size", input_size, minimum=1)
    check_positive_int("max_batch_size", max_batch_size)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    extractor = on_cpu(extractor)
    preprocess = on_cpu(preprocess) if preprocess is not None else None
    images = same_size_batch(real_images, 4) if real_images is not None else None
    if random_init:
        logger.warning(
            "exporting RANDOM-INIT weights to %s: the models are marked as such everywhere", root
        )
    return root, extractor, preprocess, images


def _write_targets(
    root: Path,
    targets: Sequence[Target],
    fmts: Sequence[str],
    device: str,
    max_batch_size: int,
    common: Mapping[str, Any],
    verify: bool,
) -> tuple[list[ExportedModel], list[ModelCheck]]:
    """Write every target in every format; with ``verify`` also the check of each file."""
    exported: list[ExportedModel] = []
    checks: list[ModelCheck] = []
    for target in targets:
        expected_cache: dict[int, np.ndarray] = {}
        probe = eager_output(target.module, target.example.numpy()[:1])
        for fmt in fmts:
            model = write_model(
                root, target, fmt, output_dims=tuple(probe.shape[1:]), device=device,
                max_batch_size=max_batch_size, common=common,
            )  # fmt: skip
            exported.append(model)
            if verify:
                checks.append(_model_check(target, model, expected_cache))
    return exported, checks


def _write_ensembles(
    root: Path,
    ensembles: Sequence[EnsembleTarget],
    fmts: Sequence[str],
    members: Sequence[ExportedModel],
    max_batch_size: int,
    common: Mapping[str, Any],
    verify: bool,
) -> tuple[list[ExportedModel], list[ModelCheck]]:
    """Write every ensemble over the members of each format; with ``verify`` also its check:
    the members' files chained as the written ``config.pbtxt`` wires them."""
    from dinomap.export.ensemble import chain_from_config

    by_name = {m.name: m for m in members}
    exported: list[ExportedModel] = []
    checks: list[ModelCheck] = []
    for target in ensembles:
        expected_cache: dict[int, np.ndarray] = {}
        for fmt in fmts:
            model = write_ensemble(
                root, target, fmt, by_name, max_batch_size=max_batch_size, common=common
            )
            exported.append(model)
            if verify:
                check = _model_check(target, model, expected_cache)
                input_name, output_name, steps = chain_from_config(model.config_path)
                checks.append(replace(check, input_name=input_name, output_name=output_name,
                                      steps=steps))  # fmt: skip
    return exported, checks


def _model_check(
    target: Target | EnsembleTarget, model: ExportedModel, expected_cache: dict[int, np.ndarray]
) -> ModelCheck:
    """The check of ``model`` on the cases of ``target`` its input fits (eager outputs cached
    per case in ``expected_cache``, shared by the formats of one target)."""
    cases = []
    for i, (label, x) in enumerate(target.cases):
        if not model.inputs[0].matches(x):
            logger.info("skipping check %r of %s: input does not fit %s", label, model.name,
                        model.inputs[0].dims)  # fmt: skip
            continue
        if i not in expected_cache:
            expected_cache[i] = eager_output(target.module, x)
        cases.append(VerificationCase(label, x, expected_cache[i]))
    return ModelCheck(model.name, model.format, model.path, INPUT_NAME, OUTPUT_NAME, tuple(cases))


def _verify(
    root: Path,
    checks: list[ModelCheck],
    exported: Sequence[ExportedModel],
    atol: float,
    random_init: bool,
) -> VerificationReport:
    """Verify the written members and ensembles in a fresh process; waive random-init
    mappers. (``preprocess`` is a member of its own now, checked like any other model at the
    sizes with rounding ties, so no separate preprocessing diagnostic is needed.)"""
    report = verify_models(checks, atol=atol)
    if random_init:
        _waive_random_init_mappers(report, exported)
    for name in report.failed:
        logger.error("exported model %s differs from eager PyTorch; see %s", name,
                     root / VERIFICATION_FILE)  # fmt: skip
    return report


def _verification_error(report: VerificationReport, root: Path, atol: float) -> VerificationError:
    detail = report.worker.get("error") or ", ".join(report.failed)
    return VerificationError(
        f"exported models do not match the eager model within {atol:g}: {detail}. "
        f"See {root / VERIFICATION_FILE} (the files stay in {root} for inspection; "
        f"{METADATA_FILE} records the export as failed).",
        report=report,
    )


def _waive_random_init_mappers(
    report: VerificationReport, exported: Sequence[ExportedModel]
) -> None:
    """On a random-init export, a mapper (or pixels -> map chain) beyond tolerance does not fail
    the export: it is kept as ``passed: false`` with the reason in ``waived``, and logged. Only a
    difference is waived (a model that did not load, crashed, gave the wrong shape or a
    non-finite value still fails); the extractor, raw-pixel models and diagnostics stay strict."""
    kinds = {m.name: m.kind for m in exported}
    waived = [
        m["name"]
        for m in report.models
        if not m.get("passed")
        and kinds.get(m["name"]) in {"mapper", "pixels_to_map"}
        and "error" not in m
        and m.get("cases")
        and all(c.get("passed") or (c.get("finite") and "error" not in c) for c in m["cases"])
    ]
    if waived:
        logger.warning(
            "verification beyond tolerance for %s (%s)", ", ".join(waived), RANDOM_INIT_WAIVER
        )
        report.waive(waived, RANDOM_INIT_WAIVER)


def demo_images(n: int) -> np.ndarray | None:
    """A few real images from the built-in demo set, for verification (None if unavailable)."""
    try:
        from dinomap.data import demo_source

        source = demo_source()
        return np.stack([source.load(i)[0] for i in range(min(n, len(source)))])
    except Exception as exc:  # the demo set is optional for export
        logger.info("no demo images for verification (%s)", exc)
        return None


def export_encoder(
    out: str | os.PathLike[str],
    encoder: LoadedModel,
    *,
    preprocess: nn.Module | None = None,
    source_size: int = 32,
    mappers: Mapping[str, nn.Module] | None = None,
    real_images: np.ndarray | Sequence[np.ndarray] | None = None,
    description: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ExportResult:
    """Export a :class:`~dinomap.embed.models.LoadedModel` (see :func:`export_models`).

    ``preprocess`` defaults to the original pipeline's (``source_size`` bottleneck, then the
    encoder's input size, mean and std); ``real_images`` to a few built-in demo images.

    Examples
    --------
    >>> from dinomap.embed.models import create_encoder
    >>> enc = create_encoder("dinov2-s14", random_init=True)
    >>> export_encoder("model_repository", enc, formats="torchscript")  # doctest: +SKIP
    """
    from dinomap.embed.preprocess import Preprocess

    if preprocess is None:
        preprocess = Preprocess(
            encoder.input_size, encoder.mean, encoder.std, source_size=source_size
        )
    if real_images is None:
        real_images = demo_images(4)
    desc: dict[str, Any] = {
        "model": encoder.describe(),
        "weights": encoder.weights_dict(),
        "preprocessing": {
            "source_size": int(getattr(preprocess, "source_size", source_size)),
            "input_size": encoder.input_size,
            "mean": list(encoder.mean),
            "std": list(encoder.std),
        },
        **dict(description or {}),
    }
    return export_models(
        out,
        encoder.extractor,
        input_size=encoder.input_size,
        preprocess=preprocess,
        source_size=int(getattr(preprocess, "source_size", source_size)),
        mappers=mappers,
        random_init=encoder.weights.random_init,
        description=desc,
        real_images=real_images,
        **kwargs,
    )
