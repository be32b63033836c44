"""Export a dinomap run directory: its model, preprocessing and fitted neural mappers.

:func:`export_run` reopens a few of the run's own images, checks that the exported raw-pixel
model reproduces the embeddings the run stored (:func:`_compare_with_stored`), exports with
:func:`~dinomap.export.repository.export_encoder` and records the outcome in ``run.json``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dinomap.exceptions import DinomapError
from dinomap.export.repository import ExportResult, demo_images, export_encoder
from dinomap.export.targets import FORMATS, check_name, parse_formats
from dinomap.export.verify import VerificationError, VerificationReport
from dinomap.export.writer import CONSISTENCY_MIN_CENTERED_COSINE
from dinomap.store.layout import EXPORT_DIR

__all__ = ["CONSISTENCY_MIN_CENTERED_COSINE", "export_run", "load_run_mappers"]

logger = logging.getLogger(__name__)


def load_run_mappers(run_dir: str | os.PathLike[str]) -> dict[str, nn.Module]:
    """The fitted neural mappers saved under ``RUN/mappers/<method>/``, as plain modules.

    Only PyTorch mappers (``"backend": "torch"`` in their ``config.json``: parametric UMAP, the
    t-SNE approximator) can be exported; classic ones (PCA, t-SNE, UMAP) are passed over. Returns
    an empty dict when the run has none; a mapper that cannot be loaded is skipped with a warning.
    """
    from dinomap.store.mappers import load_mappers

    mappers, _ = load_mappers(run_dir, backend="torch")  # classic ones cannot be exported
    found: dict[str, nn.Module] = {}
    for method, mapper in mappers.items():
        try:
            found[check_name("mapper", method)] = mapper.to_torch_module()
        except Exception as exc:  # one broken mapper must not stop the export
            logger.warning("skipping mapper %s: %s", method, exc)
    return found


def export_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    formats: str | Iterable[str] = FORMATS,
    verify: bool = True,
    device: str = "auto",
    max_batch_size: int = 64,
    include_mappers: bool = True,
    n_real: int = 4,
) -> ExportResult:
    """Export a run's model, preprocessing and fitted mappers as a verified Triton repository.

    Parameters
    ----------
    run_dir : path
        A dinomap run directory (``run.json``; ``mappers/`` when neural maps were fitted).
    out : path, optional
        Repository folder; ``RUN_DIR/model_repository`` by default.
    formats, verify, device, max_batch_size
        See :func:`export_models`.
    include_mappers : bool
        Also export the run's parametric UMAP / t-SNE approximator (and pixel -> 2-D models).
    n_real : int
        How many of the run's images (and embeddings) to verify with.

    Examples
    --------
    >>> res = export_run("runs/fm", "model_repository")  # doctest: +SKIP
    >>> [m.name for m in res.models][:2]  # doctest: +SKIP
    ['dino_model', 'dino_model_onnx']
    """
    from dinomap.embed import encoder_from_run
    from dinomap.store import load_embeddings, read_run_info

    run = Path(run_dir)
    info = read_run_info(run)
    encoder, preprocess = encoder_from_run(run)
    mappers = load_run_mappers(run) if include_mappers else {}
    stored = None
    try:
        stored = load_embeddings(run)
    except DinomapError as exc:
        logger.info("no stored embeddings to verify the mappers with (%s)", exc)
    if mappers and stored is not None:  # fitted with the maps: say so when images came since
        from dinomap.store.staleness import stale_outputs

        stale_outputs(run, now=stored.stamp)
    real_embeddings = stored.X[: max(n_real, 1) * 2] if stored is not None else None
    paths, real_images = _run_images(info, n_real)
    description: dict[str, Any] = {"source_run": str(run.resolve())}
    if stored is not None and real_images is not None and paths:
        description["consistency_with_run"] = _compare_with_stored(
            encoder.extractor, preprocess, real_images, paths, stored.paths, stored.X, info
        )
    repo = Path(out) if out is not None else run / EXPORT_DIR
    start = time.perf_counter()
    section: dict[str, Any] = {
        "repository": str(repo.resolve()),
        "formats": list(parse_formats(formats)),
        "embeddings": stored.stamp if stored is not None else None,
    }
    try:
        result = export_encoder(
            repo, encoder, preprocess=preprocess, mappers=mappers, real_images=real_images,
            real_embeddings=real_embeddings, description=description, formats=formats,
            verify=verify, device=device, max_batch_size=max_batch_size,
        )  # fmt: skip
    except VerificationError as exc:
        section.update(verified_against_eager=False, verification="failed")
        if exc.report is not None:
            section.update(_verification_section(exc.report))
        section["seconds"] = round(time.perf_counter() - start, 2)
        _record_in_run(run, section)
        raise
    section.update(_result_section(result, description.get("consistency_with_run")))
    section["seconds"] = round(time.perf_counter() - start, 2)
    _record_in_run(run, section)
    return result


def _result_section(result: ExportResult, cons: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``run.json``'s export section says about a finished export."""
    section: dict[str, Any] = {
        "models": [m.name for m in result.models],
        "random_init": result.random_init,
        "verified_against_eager": None,
        "verification": "not run",
    }
    if result.verification is not None:
        section.update(_verification_section(result.verification))
    section["consistent_with_run"] = cons.get("consistent") if cons else None
    return section


def _verification_section(report: VerificationReport) -> dict[str, Any]:
    """What ``run.json``'s export section says about verification.

    ``verified_against_eager`` is True only when every exported model and diagnostic passed;
    with a waiver it is False, ``verification`` is ``"passed_with_waivers"``, ``max_abs_diff``
    covers the verified models only and ``waived`` lists the others with their difference and
    reason.
    """
    diffs = [d for d in report.verified_max_abs_diff().values() if d is not None]
    out: dict[str, Any] = {
        "verified_against_eager": report.status == "passed",
        "verification": report.status,
        "max_abs_diff": max(diffs, default=None),
        "tolerance": report.atol,
    }
    if report.waived:
        out["waived"] = report.waived
    if report.failed:
        out["failed"] = report.failed
    return out


def _record_in_run(run: Path, section: Mapping[str, Any]) -> None:
    """Write the export section into the run's ``run.json`` (read fresh, written atomically)."""
    from dinomap.store import update_run_info

    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    update_run_info(run, lambda info: info.update(export={**dict(section), "created": created}))


def _run_images(info: Mapping[str, Any], n: int) -> tuple[list[str], np.ndarray | None]:
    """A few images of the run's own source with their stored paths, else demo images."""
    source_info = info.get("source") or {}
    spec = source_info.get("spec") or source_info.get("root") or source_info.get("manifest")
    spec = spec or source_info.get("kind")
    if spec:
        try:
            from dinomap.data import open_source

            source = open_source(
                spec, data_dir=source_info.get("data_dir"), split=source_info.get("split", "all")
            )
            items = source.items
            picked: list[tuple[str, np.ndarray]] = []
            for i in range(len(items)):
                try:
                    rgb = source.load(i)[0]
                except Exception:  # a bad image: take the next one
                    continue
                if not picked or rgb.shape == picked[0][1].shape:
                    picked.append((items[i].path, rgb))
                if len(picked) >= n:
                    break
            if picked:
                return [p for p, _ in picked], np.stack([im for _, im in picked])
        except Exception as exc:
            logger.info("cannot reopen the run's source %r for verification (%s)", spec, exc)
    return [], demo_images(n)


def _cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``u`` and ``v`` (0 where a row is zero)."""
    den = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    return np.asarray((u * v).sum(1) / np.where(den > 0, den, np.inf))


def _compare_with_stored(
    extractor: nn.Module,
    preprocess: nn.Module,
    images: np.ndarray,
    paths: Sequence[str],
    stored_paths: Sequence[str],
    stored_X: np.ndarray,
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """How closely the raw-pixel model (eager) reproduces the run's stored embeddings.

    The plain cosine says little: random-init embeddings are nearly collinear, so an export that
    skips the 32x32 bottleneck or normalises with other statistics still scores above 0.99999.
    The verdict (``consistent``) uses the cosine *after centering*: the mean of all the run's
    stored embeddings is taken off both sides, so only what tells images apart is compared
    (on the tests' random-init model: other weights give about -0.1, swapped colour channels,
    a missing bottleneck or another mean/std 0.37 - 0.85, the run's own weights and
    preprocessing 0.998).
    Not consistent is logged as a warning and recorded, and does not stop the export: a run
    embedded in bf16 on a GPU cannot be reproduced to the precision that separates random-init
    embeddings.
    """
    index = {p: i for i, p in enumerate(stored_paths)}
    rows = [(k, index[p]) for k, p in enumerate(paths) if p in index]
    if not rows:
        return {"n_images": 0, "consistent": None}
    with torch.no_grad():
        ours = extractor(preprocess(torch.from_numpy(images))).numpy()
    a = ours[[k for k, _ in rows]].astype(np.float64)
    b = stored_X[[i for _, i in rows]].astype(np.float64)
    centered: float | None = None
    if len(stored_X) > 1:
        mean = np.asarray(stored_X.mean(axis=0, dtype=np.float64))
        if np.linalg.norm(b - mean, axis=1).min() > 0:
            centered = float(_cosine(a - mean, b - mean).min())
    info = run_info or {}
    device = info.get("device")
    out: dict[str, Any] = {
        "n_images": len(rows),
        "consistent": None if centered is None else centered >= CONSISTENCY_MIN_CENTERED_COSINE,
        "min_centered_cosine": centered,
        "threshold": CONSISTENCY_MIN_CENTERED_COSINE,
        "max_abs_diff": float(np.abs(a - b).max()),
        "max_relative_error": float(
            (np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)).max()
        ),
        "min_cosine": float(_cosine(a, b).min()),
        "run_precision": info.get("precision"),
        "run_device": device.get("type") if isinstance(device, Mapping) else device,
        "note": "exported raw-pixel model (eager, fp32, CPU) vs the embeddings stored by the run; "
        "consistent when the cosine after taking off the mean of the stored embeddings is >= "
        f"{CONSISTENCY_MIN_CENTERED_COSINE} for every image (the plain cosine, min_cosine, is "
        "near 1 for any random-init embeddings)",
    }
    if out["consistent"] is False:
        logger.warning(
            "the exported raw-pixel model does not reproduce the run's stored embeddings "
            "(min cosine after centering %.4f < %s over %d images; the run embedded with %s on "
            "%s): check the weights and preprocessing",
            centered, CONSISTENCY_MIN_CENTERED_COSINE, len(rows), out["run_precision"],
            out["run_device"],
        )  # fmt: skip
    return out
