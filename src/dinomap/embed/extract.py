"""Batched, resumable embedding extraction into a run store.

Decoding and the per-image resize to the source size (32x32) run in DataLoader workers; the
batch goes to the device as uint8, where it is upsampled, normalised and encoded. Finished rows
are flushed to atomic Parquet shards every ``shard_size`` images or ``flush_seconds``, so a crash
loses at most one unflushed shard, which a rerun embeds again (matched on path + content hash).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dinomap._device import resolve_device
from dinomap._validation import check_choice, check_positive_int
from dinomap.data.decode import DecodeError, resize_rgb
from dinomap.data.sources import ImageSource, Item, open_source
from dinomap.embed import ov_runtime
from dinomap.embed.config import (
    COMPILE_MIN_IMAGES,
    OPENVINO_MIN_IMAGES,
    PRECISIONS,
    RUNTIMES,
    EmbedConfig,
    EmbedResult,
)
from dinomap.embed.models import (
    LoadedModel,
    WeightsInfo,
    _sha256_file,
    create_encoder,
    resolve_model_name,
)
from dinomap.embed.preprocess import Preprocess
from dinomap.exceptions import (
    ConfigMismatchError,
    InvalidParameterError,
    NoImagesError,
    SourceNotFoundError,
)
from dinomap.store import (
    RUN_FILE,
    read_run_info,
    stored_keys,
    update_run_info,
    write_errors,
    write_shard,
)

__all__ = [
    "PRECISIONS",
    "EmbedConfig",
    "EmbedResult",
    "embed",
    "embed_files",
    "encoder_from_run",
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


class _DecodeDataset(Dataset[tuple[int, np.ndarray | None, str, int, int, str | None]]):
    """Loads item ``indices[i]`` of a source, resized to the size the batch needs."""

    def __init__(self, source: ImageSource, indices: Sequence[int], size: int, area: bool) -> None:
        self.source = source
        self.indices = list(indices)
        self.size = size
        self.area = area  # straight to the model size: INTER_AREA when shrinking photos

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str, int, int, str | None]:
        index = self.indices[i]
        try:
            rgb, sha = self.source.load(index)
            h, w = int(rgb.shape[0]), int(rgb.shape[1])
            if self.area and (h > self.size or w > self.size):
                rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
            else:
                rgb = resize_rgb(rgb, self.size)
            return index, rgb, sha, h, w, None
        except DecodeError as exc:
            return index, None, "", 0, 0, str(exc)
        except Exception as exc:  # a bad file must never stop the run
            return index, None, "", 0, 0, f"{type(exc).__name__}: {exc}"


def _collate(
    batch: list[tuple[int, np.ndarray | None, str, int, int, str | None]],
) -> tuple[torch.Tensor | None, list[tuple[int, str, int, int]], list[tuple[int, str]]]:
    ok = [b for b in batch if b[1] is not None]
    pixels = torch.from_numpy(np.stack([b[1] for b in ok])) if ok else None  # type: ignore[misc]
    meta = [(b[0], b[2], b[3], b[4]) for b in ok]
    errors = [(b[0], str(b[5])) for b in batch if b[1] is None]
    return pixels, meta, errors


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    if device.type == "cuda":  # decoding must keep up with thousands of images/s
        return max(1, min(cpus - 1, 16))
    return min(2, cpus)


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


def _iter_batches(
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
    size = cfg.source_size or cfg.input_size
    workers = cfg.num_workers if cfg.num_workers is not None else _default_workers(device)
    workers = min(workers, max(1, len(indices) // max(cfg.batch_size, 1))) if workers else 0
    loader = DataLoader(
        _DecodeDataset(source, indices, size, area=cfg.source_size is None),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    encode = _make_encode(loaded, cfg, device, precision, len(indices), runtime, report)
    with torch.inference_mode():
        for pixels, meta, errors in loader:
            if pixels is None:
                yield np.zeros((0, loaded.embed_dim), np.float32), meta, errors
                continue
            feats = encode(pixels.to(device, non_blocking=True))
            yield feats.cpu().numpy(), meta, errors


def _dinomap_version() -> str:
    from dinomap import __version__  # at call time: dinomap/__init__ imports this module

    return __version__


def _versions() -> dict[str, str]:
    import timm

    return {
        "dinomap": _dinomap_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _fingerprint(cfg: EmbedConfig, precision: str, weights_identity: str) -> dict[str, Any]:
    return {
        "model": resolve_model_name(cfg.model),
        "model_kwargs": json.loads(json.dumps(dict(cfg.model_kwargs), default=str)),
        "weights": weights_identity,
        "source_size": cfg.source_size,
        "input_size": cfg.input_size,
        "precision": precision,
    }


def _weights_identity(cfg: EmbedConfig) -> str:
    if cfg.random_init:
        return WeightsInfo("random-init", True, seed=cfg.init_seed).identity()
    if cfg.weights is not None:
        path = Path(cfg.weights)
        if not path.is_file():
            from dinomap.exceptions import WeightsUnavailableError

            raise WeightsUnavailableError(f"weights file {path} does not exist.")
        return WeightsInfo("file", False, sha256=_sha256_file(path)).identity()
    return "hub"


def _merge_sources(sources: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Every source that fed the run, in order of first use; ``new`` replaces its older self."""
    key = (new.get("kind"), new.get("spec"))
    kept = [s for s in sources if (s.get("kind"), s.get("spec")) != key]
    return [*kept, new]


def _write_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Write the embedding stage's sections of run.json; later stages' sections survive."""

    def change(current: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in current.items() if k not in info}, **info}

    update_run_info(run_dir, change, create=True)


def _check_same_config(run_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not (run_dir / RUN_FILE).is_file():
        return None
    old = read_run_info(run_dir)
    previous = old.get("fingerprint")
    if previous is not None and previous != fingerprint:
        diffs = [
            f"{k}: stored {previous.get(k)!r}, asked {fingerprint.get(k)!r}"
            for k in sorted(set(previous) | set(fingerprint))
            if previous.get(k) != fingerprint.get(k)
        ]
        raise ConfigMismatchError(
            f"{run_dir} holds embeddings made with another configuration ({'; '.join(diffs)}). "
            "Use a new --out directory, or repeat the original options to resume."
        )
    return old


def embed(
    source: str | os.PathLike[str] | ImageSource,
    out: str | os.PathLike[str],
    config: EmbedConfig | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "all",
    limit: int | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> EmbedResult:
    """Embed every image of ``source`` into the run directory ``out`` (resumable).

    Parameters
    ----------
    source : str, path or ImageSource
        A folder, a CSV/Parquet manifest, ``"demo"``, ``"fashion-mnist"`` or ``"cifar10"``.
    out : path
        Run directory; created if needed. Rerunning embeds only what is missing.
    config : EmbedConfig, optional
        Model, weights and preprocessing; keyword ``overrides`` replace its fields.
    data_dir, split : optional
        Where the data-set sources live, and which split (``all``, ``train``, ``test``).
    limit : int, optional
        Embed only the first ``limit`` images of the source (deterministic order).
    progress : bool, optional
        Progress bar with images/s; default: only when stderr is a terminal.

    Returns
    -------
    EmbedResult

    Raises
    ------
    WeightsUnavailableError
        Before any image is read, when the weights cannot be had.
    ConfigMismatchError
        When ``out`` holds embeddings of another model or preprocessing.
    NoImagesError
        When not a single image could be embedded.

    Examples
    --------
    >>> res = embed("demo", "runs/demo", random_init=True, limit=8)  # doctest: +SKIP
    >>> res.n_embedded
    8
    """
    t_start = time.perf_counter()
    cfg = replace(config or EmbedConfig(), **overrides).validate()
    if limit is not None:
        check_positive_int("limit", limit)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    src = source if isinstance(source, ImageSource) else open_source(source, data_dir, split)
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise InvalidParameterError(f"--out {run_dir} exists and is not a directory.")
    fingerprint = _fingerprint(cfg, precision, _weights_identity(cfg))
    previous = _check_same_config(run_dir, fingerprint)

    t0 = time.perf_counter()
    loaded = create_encoder(
        cfg.model, input_size=cfg.input_size, weights=cfg.weights, random_init=cfg.random_init,
        init_seed=cfg.init_seed, model_kwargs=cfg.model_kwargs,
    )  # fmt: skip
    t_model = time.perf_counter() - t0
    if loaded.weights.random_init:
        logger.warning(
            "RANDOM-INIT WEIGHTS: embeddings carry no learned meaning (stamped in run.json)"
        )

    items: list[Item] = src.items[:limit] if limit else src.items
    indices = list(range(len(items)))
    t0 = time.perf_counter()
    done = stored_keys(run_dir)
    if done:
        stored_paths = {p for p, _ in done}
        candidates = [i for i in indices if items[i].path in stored_paths]
        with ThreadPoolExecutor(max_workers=8) as pool:
            hashes = dict(zip(candidates, pool.map(src.sha256, candidates), strict=True))
        indices = [i for i in indices if (items[i].path, hashes.get(i, "")) not in done]
    t_plan = time.perf_counter() - t0
    n_already = len(items) - len(indices)
    runtime = resolve_runtime(cfg.runtime, device, precision, len(indices), cfg.compile)
    runtime_report: dict[str, Any] = {"requested": cfg.runtime, "runtime": runtime}

    run_dir.mkdir(parents=True, exist_ok=True)
    source_entry = {
        **src.describe(),
        "spec": str(source) if not isinstance(source, ImageSource) else src.kind,
        "limit": limit,
    }
    info: dict[str, Any] = {
        "dinomap_version": _dinomap_version(),
        "created": (previous or {}).get("created", datetime.now(UTC).isoformat(timespec="seconds")),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "running",
        "source": source_entry,
        "sources": _merge_sources(
            (previous or {}).get("sources")
            or ([previous["source"]] if previous and previous.get("source") else []),
            source_entry,
        ),
        "model": loaded.describe(),
        "weights": loaded.weights_dict(),
        "preprocessing": {
            "source_size": cfg.source_size,
            "source_resize": "cv2.resize INTER_LINEAR"
            if cfg.source_size
            else "cv2 INTER_AREA to input size",
            "input_size": cfg.input_size,
            "upsample": "bilinear (torch, on the batch)",
            "mean": list(loaded.mean),
            "std": list(loaded.std),
            "batch_size": cfg.batch_size,
        },
        "precision": precision,
        "runtime": runtime_report,
        "device": {"type": device.type, "name": _device_name(device)},
        "fingerprint": fingerprint,
        "versions": _versions(),
        "config": {k: v for k, v in asdict(cfg).items() if k != "model_kwargs"},
        "timings": {},
        "counts": {},
        "history": (previous or {}).get("history", []),
    }
    _write_info(run_dir, info)

    show = progress if progress is not None else sys.stderr.isatty()
    errors: list[tuple[str, str]] = []
    n_new = 0
    pending: dict[str, list[Any]] = {k: [] for k in ("path", "sha", "label", "h", "w", "emb")}
    last_flush = time.perf_counter()

    writer = ThreadPoolExecutor(max_workers=1)  # shard writes overlap the model
    writes: list[Future[Path]] = []

    def flush() -> None:
        nonlocal last_flush
        if pending["path"]:
            rows = {k: list(v) for k, v in pending.items()}
            writes.append(writer.submit(
                write_shard, run_dir, rows["path"], rows["sha"], rows["label"], rows["h"],
                rows["w"], np.concatenate(rows["emb"]),
            ))  # fmt: skip
            for v in pending.values():
                v.clear()
        last_flush = time.perf_counter()

    t0 = time.perf_counter()
    first_batch: tuple[float, int] | None = None  # (seconds, images): start-up, compile included
    status = "interrupted"
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(indices), unit="img", disable=not show, desc="embedding", dynamic_ncols=True
    )
    try:
        batches = _iter_batches(
            src, indices, loaded, cfg, device, precision, runtime, runtime_report
        )
        for feats, meta, bad in batches:
            for index, sha, h, w in meta:
                pending["path"].append(items[index].path)
                pending["sha"].append(sha)
                pending["label"].append(items[index].label)
                pending["h"].append(h)
                pending["w"].append(w)
            if len(meta):
                pending["emb"].append(feats)
            errors += [(items[index].path, reason) for index, reason in bad]
            n_new += len(meta)
            if first_batch is None:
                first_batch = (time.perf_counter() - t0, len(meta))
            bar.update(len(meta) + len(bad))
            if (
                len(pending["path"]) >= cfg.shard_size
                or time.perf_counter() - last_flush > cfg.flush_seconds
            ):
                flush()
        status = "complete"
    finally:
        bar.close()
        flush()  # also on KeyboardInterrupt or an exception: nothing finished is lost
        writer.shutdown(wait=True)
        for fut in writes:
            fut.result()  # a failed write (disk full...) is an error, not a silent loss
        t_embed = time.perf_counter() - t0
        n_stored = len({path for path, _ in stored_keys(run_dir)})  # a changed file counts once
        write_errors(run_dir, errors)
        info["status"] = status
        info["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        info["timings"] = {
            "load_model_s": round(t_model, 3),
            "plan_s": round(t_plan, 3),
            "embed_s": round(t_embed, 3),
            "total_s": round(time.perf_counter() - t_start, 3),
            "images_per_s": round(n_new / t_embed, 2) if t_embed > 0 else None,
        }
        if first_batch is not None and n_new > first_batch[1] and t_embed > first_batch[0]:
            # throughput after the first batch: without worker start-up and compilation
            info["timings"]["first_batch_s"] = round(first_batch[0], 3)
            info["timings"]["steady_images_per_s"] = round(
                (n_new - first_batch[1]) / (t_embed - first_batch[0]), 2
            )
        info["counts"] = {
            "source_images": len(items),
            "embedded_this_run": n_new,
            "already_stored": n_already,
            "failed": len(errors),
            "stored": n_stored,
        }
        info["history"] = [
            *info["history"],
            {"finished": info["updated"], "status": status, **info["counts"]},
        ][-50:]
        _write_info(run_dir, info)
    if n_stored == 0:
        raise NoImagesError(
            f"none of the {len(items)} images could be embedded; reasons are in {run_dir / 'errors.csv'}"
            + (f" (first: {errors[0][0]}: {errors[0][1]})" if errors else "")
        )
    return EmbedResult(run_dir, len(items), n_new, n_already, len(errors), errors,
                       time.perf_counter() - t_start, info)  # fmt: skip


def encoder_from_run(run_dir: str | os.PathLike[str]) -> tuple[LoadedModel, Preprocess]:
    """Re-create a run's model, weights and preprocessing from its ``run.json``.

    The returned :class:`Preprocess` takes uint8 pixels of any size and applies the run's whole
    preprocessing (source-size bottleneck included).
    """
    info = read_run_info(run_dir)
    model, weights, prep = (
        info.get("model", {}),
        info.get("weights", {}),
        info.get("preprocessing", {}),
    )
    if not model or not weights:
        raise SourceNotFoundError(f"{run_dir}/{RUN_FILE} lacks the model or weights section.")
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
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Embed image files with a run's own model, weights and preprocessing, without storing them.

    Returns ``(X float32 (n_ok, dim), ok_paths, errors [(path, reason)])``.
    """
    from dinomap.data.sources import ArraySource

    info = read_run_info(like_run)
    loaded, _ = encoder_from_run(like_run)
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
    batches = _iter_batches(src, range(len(items)), loaded, cfg, dev, precision, runtime)
    for feats, meta, bad in batches:
        feats_all.append(feats)
        ok += [items[m[0]].path for m in meta]
        errors += [(items[i].path, reason) for i, reason in bad]
    X = np.concatenate(feats_all) if feats_all else np.zeros((0, loaded.embed_dim), np.float32)
    return X, ok, errors


class _FileListSource(ImageSource):
    """An explicit list of image files (used to embed query and new images)."""

    kind = "files"

    def __init__(self, paths: list[str]) -> None:
        self._items = [Item(str(Path(p).resolve()), None) for p in paths]

    @property
    def items(self) -> list[Item]:
        return self._items

    def load(self, index: int) -> tuple[np.ndarray, str]:
        from dinomap.data.decode import read_image_file

        return read_image_file(self._items[index].path)

    def sha256(self, index: int) -> str:  # pragma: no cover - never planned
        return self.load(index)[1]
