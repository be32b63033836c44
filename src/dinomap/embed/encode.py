"""The model on the device: precision and runtime choice, autocast, compile, OpenVINO.

:func:`iter_embeddings` runs the batches of :func:`dinomap.embed.loader.make_loader` through the
encoder and yields float32 embeddings with each batch's metadata and decoding errors;
:func:`encoder_from_run` re-creates a run's encoder and :func:`embed_files` embeds new files with
it, storing nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinomap._device import cpu_has_native_bf16, resolve_device
from dinomap._validation import check_choice
from dinomap.data.sources import ImageSource
from dinomap.embed import ov_runtime
from dinomap.embed.config import (
    COMPILE_MIN_IMAGES,
    DRIFT_CHECK_IMAGES,
    OPENVINO_MIN_IMAGES,
    PRECISIONS,
    RUNTIMES,
    EmbedConfig,
)
from dinomap.embed.loader import FileListSource, make_loader
from dinomap.embed.models import LoadedModel, create_encoder
from dinomap.embed.preprocess import Preprocess
from dinomap.exceptions import InvalidParameterError, SourceNotFoundError
from dinomap.store import RUN_FILE, read_run_info

__all__ = [
    "embed_files",
    "encoder_from_run",
    "iter_embeddings",
    "resolve_precision",
    "resolve_runtime",
]

logger = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(
    precision: str,
    device: torch.device,
    runtime: str = "auto",
    compile: bool | None = None,
    n_images: int | None = None,
) -> str:
    """What ``precision`` means here: ``"auto"`` is bf16 autocast on CUDA; on a CPU with
    native bf16 (``avx512_bf16`` or AMX) it is OpenVINO's bf16 for runs of at least
    :data:`OPENVINO_MIN_IMAGES` images (``n_images``, the source's count) when OpenVINO is
    installed and neither ``runtime="torch"`` nor ``compile`` is asked for; fp32 elsewhere.
    ``"int8"`` runs on the CPU only (OpenVINO + NNCF)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "int8" and device.type != "cpu":
        raise InvalidParameterError(
            f"precision='int8' runs on the CPU (OpenVINO); this run is on {device.type}. Use "
            "precision 'auto' or 'bf16' there."
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    if (
        device.type == "cpu"
        and runtime != "torch"
        and not compile
        and (n_images is None or n_images >= OPENVINO_MIN_IMAGES)
        and ov_runtime.available()
        and cpu_has_native_bf16()
    ):
        return "bf16"
    return "fp32"


def resolve_runtime(
    runtime: str, device: torch.device, precision: str, n_images: int, compile: bool | None
) -> str:
    """Which runtime runs the model: ``"torch"`` or ``"openvino"``.

    ``"auto"`` picks OpenVINO for CPU runs in fp32 of at least :data:`OPENVINO_MIN_IMAGES`
    images when it is installed and ``compile`` is not asked for (same output to ~1e-6,
    ~1.35x faster on the CPU measured here), for every CPU run in bf16 (its bf16 hint: ~2x
    fp32, where PyTorch's autocast is slower than fp32) or int8 (NNCF), and PyTorch otherwise.
    ``"openvino"`` insists: it is an error on another device or precision, or without the
    package. int8 needs OpenVINO.
    """
    check_choice("runtime", runtime, RUNTIMES)
    if precision == "int8" and (runtime == "torch" or compile or not ov_runtime.available()):
        raise InvalidParameterError(
            "precision='int8' runs with OpenVINO and NNCF (pip install \"dinomap[openvino]\"), "
            "without --runtime torch or --compile."
        )
    if runtime == "openvino":
        if device.type != "cpu" or precision not in ("fp32", "bf16", "int8"):
            raise InvalidParameterError(
                f"runtime='openvino' runs on the CPU in fp32, bf16 or int8; this run is on "
                f"{device.type} in {precision}. Use runtime 'auto' or 'torch' there."
            )
        if compile:
            raise InvalidParameterError("compile and runtime='openvino' exclude each other.")
        if not ov_runtime.available():
            raise InvalidParameterError(
                "runtime='openvino' needs OpenVINO: pip install \"dinomap[openvino]\"; "
                "or use runtime 'torch'."
            )
        return "openvino"
    if (
        runtime == "auto"
        and device.type == "cpu"
        and (precision in ("bf16", "int8") or n_images >= OPENVINO_MIN_IMAGES)
        and precision != "fp16"
        and not compile
        and ov_runtime.available()
    ):
        return "openvino"
    return "torch"


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_encode(
    loaded: LoadedModel,
    cfg: EmbedConfig,
    device: torch.device,
    precision: str,
    n_images: int,
    runtime: str = "torch",
    report: dict[str, Any] | None = None,
    sample: torch.Tensor | None = None,
    calibrated: str | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 pixels on the device -> float32 embeddings; compiled for one fixed batch shape when
    ``cfg.compile`` (default: on CUDA), with the short last batch padded to that shape; run by
    OpenVINO when ``runtime="openvino"``. ``report["runtime"]`` says what runs the model.

    ``sample``: uint8 images of the run. A reduced precision is checked against fp32 on its
    first :data:`DRIFT_CHECK_IMAGES` (:func:`dinomap.embed.drift.check_drift`, which stops a
    model that drifts too far); int8 is calibrated on up to ``cfg.calibration_size`` of them,
    or ``calibrated`` names the digest of a run's calibration (its cached int8 model)."""
    pre = Preprocess(loaded.input_size, loaded.mean, loaded.std, source_size=None).to(device)
    extractor = loaded.extractor.to(device)
    report = report if report is not None else {}
    report["runtime"] = "torch"

    def run_in(precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(pixels: torch.Tensor) -> torch.Tensor:
            x = pre(pixels)
            with _autocast(device, precision):
                return extractor(x).float()

        return run

    run = run_in(precision)
    if runtime == "openvino":
        encode = _openvino_encode(loaded, cfg, pre, precision, sample, report, calibrated)
        if encode is not None:
            _check_drift(precision, encode, run_in("fp32"), sample, report)
            return encode
    if precision == "int8":
        raise InvalidParameterError(f"precision='int8': {report.get('openvino_error')}")
    encode = _torch_encode(run, cfg, device, n_images)
    _check_drift(precision, encode, run_in("fp32"), sample, report)
    return encode


def _check_drift(
    precision: str,
    encode: Callable[[torch.Tensor], torch.Tensor],
    reference: Callable[[torch.Tensor], torch.Tensor],
    sample: torch.Tensor | None,
    report: dict[str, Any],
) -> None:
    """The drift gate of a reduced precision (nothing in fp32 or without a sample)."""
    if precision == "fp32" or sample is None or sample.shape[0] == 0:
        return
    from dinomap.embed.drift import check_drift

    check_drift(precision, encode, reference, sample[:DRIFT_CHECK_IMAGES], report)


def _openvino_encode(
    loaded: LoadedModel,
    cfg: EmbedConfig,
    pre: Preprocess,
    precision: str,
    sample: torch.Tensor | None,
    report: dict[str, Any],
    calibrated: str | None = None,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The OpenVINO encoder in ``precision`` (int8: calibrated on ``sample``), or ``None`` when
    OpenVINO cannot run it and PyTorch may (said in ``report``)."""
    calibration: torch.Tensor | str | None = None
    if precision == "int8" and calibrated is not None:
        calibration = calibrated
    elif precision == "int8":
        if sample is None or sample.shape[0] == 0:
            raise InvalidParameterError("precision='int8' needs images of the run to calibrate on.")
        with torch.inference_mode():
            calibration = pre(sample[: cfg.calibration_size].cpu())
    try:
        ov_run, details = ov_runtime.convert(loaded.extractor, loaded.input_size, precision,
                                             calibration)  # fmt: skip
    except ov_runtime.OpenVINOUnavailable as exc:
        if cfg.runtime == "openvino" or precision == "int8":
            raise InvalidParameterError(f"runtime='openvino': {exc}") from exc
        logger.warning("%s; the model runs in PyTorch instead", exc)
        report["openvino_error"] = str(exc)
        return None
    report.update(runtime="openvino", **details)
    return lambda pixels: ov_run(pre(pixels))


def _torch_encode(
    run: Callable[[torch.Tensor], torch.Tensor],
    cfg: EmbedConfig,
    device: torch.device,
    n_images: int,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``run``, compiled for one fixed batch shape when ``cfg.compile`` (default: on CUDA for
    large runs)."""

    use_compile = (
        cfg.compile
        if cfg.compile is not None
        else (device.type == "cuda" and n_images >= COMPILE_MIN_IMAGES)
    )
    if not use_compile:
        return run
    compiled = torch.compile(run, dynamic=False)
    state = {"ok": True}
    batch = cfg.batch_size

    def fixed(pixels: torch.Tensor) -> torch.Tensor:
        n = int(pixels.shape[0])
        if not state["ok"]:
            return run(pixels)
        if n < batch:
            pad = pixels.new_zeros((batch - n, *pixels.shape[1:]))
            pixels = torch.cat([pixels, pad])
        try:
            return compiled(pixels)[:n]
        except Exception as exc:  # a model torch.compile cannot handle still embeds
            logger.warning("torch.compile failed (%s); continuing without it", exc)
            state["ok"] = False
            return run(pixels[:n])

    return fixed


def iter_embeddings(
    source: ImageSource,
    indices: Sequence[int],
    loaded: LoadedModel,
    cfg: EmbedConfig,
    device: torch.device,
    precision: str,
    runtime: str = "torch",
    report: dict[str, Any] | None = None,
    calibrated: str | None = None,
    n_items: int | None = None,
) -> Iterator[tuple[np.ndarray, list[tuple[int, str, int, int]], list[tuple[int, str]]]]:
    """Yield ``(embeddings float32, [(index, sha, h, w)], [(index, reason)])`` per batch.

    A reduced precision is first checked (and int8 calibrated) on images of the run
    (:func:`run_sample`: of the first ``n_items`` of ``source``, default all); with ``calibrated`` (new images embedded like a run: the digest of
    its int8 calibration) the run's own int8 model is used and nothing is sampled."""
    if not len(indices):
        return
    use_sample = calibrated is None
    sample = run_sample(source, cfg, device, precision, n_items) if use_sample else None
    encode = make_encode(loaded, cfg, device, precision, len(indices), runtime, report, sample,
                          calibrated)  # fmt: skip
    loader = make_loader(source, indices, cfg, device)
    with torch.inference_mode():
        for pixels, meta, errors in loader:
            if pixels is None:
                yield np.zeros((0, loaded.embed_dim), np.float32), meta, errors
                continue
            feats = encode(pixels.to(device, non_blocking=True))
            yield feats.cpu().numpy(), meta, errors


def run_sample(
    source: ImageSource,
    cfg: EmbedConfig,
    device: torch.device,
    precision: str,
    n_items: int | None = None,
) -> torch.Tensor | None:
    """uint8 images spread evenly over the run's items, the first ``n_items`` of ``source``
    (default: all; so a resumed run gets the same ones):
    ``cfg.calibration_size`` for int8, :data:`DRIFT_CHECK_IMAGES` for another reduced precision,
    none for fp32. The check batch is the first :data:`DRIFT_CHECK_IMAGES` of them."""
    if precision == "fp32":
        return None
    want = (
        max(cfg.calibration_size, DRIFT_CHECK_IMAGES) if precision == "int8" else DRIFT_CHECK_IMAGES
    )
    n = len(source.items) if n_items is None else min(n_items, len(source.items))
    if n == 0:
        return None
    picks = np.unique(np.linspace(0, n - 1, num=min(want, n)).round().astype(np.int64)).tolist()
    batches = [pixels for pixels, _, _ in make_loader(source, picks, replace(cfg, num_workers=0),
                                                       device) if pixels is not None]  # fmt: skip
    if not batches:
        return None
    pixels = torch.cat(batches).to(device)
    # The check batch first, spread over the source too; then the rest of the calibration set.
    order = np.argsort(
        np.arange(len(pixels)) % max(1, len(pixels) // DRIFT_CHECK_IMAGES), kind="stable"
    )
    return pixels[torch.from_numpy(order)]


def encoder_from_run(run_dir: str | os.PathLike[str]) -> tuple[LoadedModel, Preprocess]:
    """Re-create a run's model, weights and preprocessing from its ``run.json``.

    The returned :class:`Preprocess` takes uint8 pixels of any size and applies the run's whole
    preprocessing (source-size bottleneck included).
    """
    return encoder_from_info(read_run_info(run_dir), where=f"{run_dir}/{RUN_FILE}")


def encoder_from_info(
    info: dict[str, Any], where: str = RUN_FILE
) -> tuple[LoadedModel, Preprocess]:
    """:func:`encoder_from_run` from a run's ``run.json`` record itself (``where``: named in
    errors): what a Ray worker on another machine gets, which cannot read the run's folder."""
    model, weights, prep = (
        info.get("model", {}),
        info.get("weights", {}),
        info.get("preprocessing", {}),
    )
    if not model or not weights:
        raise SourceNotFoundError(f"{where} lacks the model or weights section.")
    loaded = create_encoder(
        model["timm_name"],
        input_size=int(model.get("input_size", 224)),
        weights=weights.get("file") if weights.get("source") == "file" else None,
        random_init=bool(weights.get("random_init")),
        init_seed=int(weights.get("seed") or 0),
        model_kwargs=model.get("model_kwargs") or {},
    )
    loaded.name = model.get("name", loaded.name)
    pre = Preprocess(
        loaded.input_size, loaded.mean, loaded.std, source_size=prep.get("source_size")
    )
    return loaded, pre


def embed_files(
    paths: Sequence[str | os.PathLike[str]],
    like_run: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool | None = None,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Embed image files with a run's own model, weights and preprocessing, without storing them.

    ``progress``: a progress bar on stderr (default: when stderr is a terminal).
    Returns ``(X float32 (n_ok, dim), ok_paths, errors [(path, reason)])``.
    """
    import sys

    from tqdm.auto import tqdm

    from dinomap.data.sources import ArraySource

    info = read_run_info(like_run)
    loaded, _ = encoder_from_info(info, where=f"{like_run}/{RUN_FILE}")  # run.json read once
    prep = info.get("preprocessing", {})
    dev = resolve_device(device)
    precision = str(info.get("precision", "fp32"))
    if dev.type == "cpu" and precision == "fp16":
        precision = "fp32"
    calibrated = info.get("runtime", {}).get("calibration_sha256") if precision == "int8" else None
    if dev.type != "cpu" and precision == "int8":
        precision = "fp32"  # int8 is OpenVINO's, on the CPU; on a GPU the fp32 model
    src = (
        FileListSource([str(Path(p)) for p in paths])
        if paths
        else ArraySource(np.zeros((0, 1, 1), np.uint8), [])
    )
    cfg = EmbedConfig(source_size=prep.get("source_size"), input_size=loaded.input_size,
                      batch_size=batch_size, num_workers=0, device=device)  # fmt: skip
    runtime = resolve_runtime(cfg.runtime, dev, precision, len(paths), cfg.compile)
    feats_all: list[np.ndarray] = []
    ok: list[str] = []
    errors: list[tuple[str, str]] = []
    items = src.items
    batches = iter_embeddings(src, range(len(items)), loaded, cfg, dev, precision, runtime,
                              calibrated=calibrated)  # fmt: skip
    show = progress if progress is not None else sys.stderr.isatty()
    with tqdm(total=len(items), unit="img", disable=not show, desc="embedding new images",
              dynamic_ncols=True) as bar:  # fmt: skip
        for feats, meta, bad in batches:
            feats_all.append(feats)
            ok += [items[m[0]].path for m in meta]
            errors += [(items[i].path, reason) for i, reason in bad]
            bar.update(len(meta) + len(bad))
    X = np.concatenate(feats_all) if feats_all else np.zeros((0, loaded.embed_dim), np.float32)
    return X, ok, errors
