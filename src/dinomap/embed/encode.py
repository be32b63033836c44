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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinomap._device import resolve_device
from dinomap._validation import check_choice
from dinomap.data.sources import ImageSource
from dinomap.embed import ov_runtime
from dinomap.embed.config import (
    COMPILE_MIN_IMAGES,
    OPENVINO_MIN_IMAGES,
    PRECISIONS,
    RUNTIMES,
    EmbedConfig,
)
from dinomap.embed.loader import _FileListSource, make_loader
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


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast on CUDA and fp32 elsewhere."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_runtime(
    runtime: str, device: torch.device, precision: str, n_images: int, compile: bool | None
) -> str:
    """Which runtime runs the model: ``"torch"`` or ``"openvino"``.

    ``"auto"`` picks OpenVINO for CPU runs in fp32 of at least :data:`OPENVINO_MIN_IMAGES`
    images when it is installed and ``compile`` is not asked for (same output to ~1e-6,
    ~1.35x faster on the CPU measured here), and PyTorch otherwise. ``"openvino"`` insists:
    it is an error on another device or precision, or without the package.
    """
    check_choice("runtime", runtime, RUNTIMES)
    if runtime == "openvino":
        if device.type != "cpu" or precision != "fp32":
            raise InvalidParameterError(
                f"runtime='openvino' runs on the CPU in fp32; this run is on {device.type} in "
                f"{precision}. Use runtime 'auto' or 'torch' there."
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
        and precision == "fp32"
        and not compile
        and n_images >= OPENVINO_MIN_IMAGES
        and ov_runtime.available()
    ):
        return "openvino"
    return "torch"


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def _make_encode(
    loaded: LoadedModel,
    cfg: EmbedConfig,
    device: torch.device,
    precision: str,
    n_images: int,
    runtime: str = "torch",
    report: dict[str, Any] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 pixels on the device -> float32 embeddings; compiled for one fixed batch shape when
    ``cfg.compile`` (default: on CUDA), with the short last batch padded to that shape; run by
    OpenVINO when ``runtime="openvino"``. ``report["runtime"]`` says what runs the model."""
    pre = Preprocess(loaded.input_size, loaded.mean, loaded.std, source_size=None).to(device)
    extractor = loaded.extractor.to(device)
    report = report if report is not None else {}
    report["runtime"] = "torch"

    def run(pixels: torch.Tensor) -> torch.Tensor:
        x = pre(pixels)
        with _autocast(device, precision):
            return extractor(x).float()

    if runtime == "openvino":
        try:
            ov_run, details = ov_runtime.convert(extractor, loaded.input_size)
        except ov_runtime.OpenVINOUnavailable as exc:
            if cfg.runtime == "openvino":
                raise InvalidParameterError(f"runtime='openvino': {exc}") from exc
            logger.warning("%s; the model runs in PyTorch instead", exc)
            report["openvino_error"] = str(exc)
        else:
            report.update(runtime="openvino", **details)
            return lambda pixels: ov_run(pre(pixels))

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
) -> Iterator[tuple[np.ndarray, list[tuple[int, str, int, int]], list[tuple[int, str]]]]:
    """Yield ``(embeddings float32, [(index, sha, h, w)], [(index, reason)])`` per batch."""
    loader = make_loader(source, indices, cfg, device)
    encode = _make_encode(loaded, cfg, device, precision, len(indices), runtime, report)
    with torch.inference_mode():
        for pixels, meta, errors in loader:
            if pixels is None:
                yield np.zeros((0, loaded.embed_dim), np.float32), meta, errors
                continue
            feats = encode(pixels.to(device, non_blocking=True))
            yield feats.cpu().numpy(), meta, errors


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
    if precision != "fp32" and dev.type == "cpu" and precision == "fp16":
        precision = "fp32"
    src = (
        _FileListSource([str(Path(p)) for p in paths])
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
    batches = iter_embeddings(src, range(len(items)), loaded, cfg, dev, precision, runtime)
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
