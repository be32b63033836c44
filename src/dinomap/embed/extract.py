"""Batched, resumable embedding extraction into a run store.

Decoding runs in DataLoader workers (:mod:`dinomap.embed.loader`); the batch goes to the device
as uint8, where it is upsampled, normalised and encoded (:mod:`dinomap.embed.encode`). Finished
rows are flushed to atomic Parquet shards every ``shard_size`` images or ``flush_seconds``, so a
crash loses at most one unflushed shard, which a rerun embeds again (matched on path + content
hash).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dinomap._device import thread_counts
from dinomap._validation import check_positive_int
from dinomap.data.sources import ImageSource, Item, open_source
from dinomap.embed.config import PRECISIONS, EmbedConfig, EmbedResult
from dinomap.embed.encode import (
    embed_files,
    encoder_from_run,
    iter_embeddings,
    resolve_precision,
    resolve_runtime,
)
from dinomap.embed.models import (
    LoadedModel,
    WeightsInfo,
    _sha256_file,
    create_encoder,
    resolve_model_name,
)
from dinomap.embed.plan import ResumePlan, resume_plan
from dinomap.embed.ray_engine import embed_ray_run, engine_device, ray_hasher
from dinomap.exceptions import (
    ConfigMismatchError,
    InvalidParameterError,
    NoImagesError,
)
from dinomap.store import (
    RUN_FILE,
    read_run_info,
    stored_keys,
    update_run_info,
    write_errors,
    write_metadata,
    write_shard,
)
from dinomap.store._fs import run_path

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
    if device.type == "cuda":  # a CPU driver of a Ray GPU cluster has none itself
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "ray GPUs"
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _run_info(
    source: str | os.PathLike[str] | ImageSource,
    src: ImageSource,
    limit: int | None,
    previous: dict[str, Any] | None,
    loaded: LoadedModel,
    cfg: EmbedConfig,
    precision: str,
    runtime_report: dict[str, Any],
    device: torch.device,
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """The embedding stage's sections of run.json at the start of a run (status ``running``)."""
    source_entry = {
        **src.describe(),
        "spec": str(source) if not isinstance(source, ImageSource) else src.kind,
        "limit": limit,
    }
    return {
        "dinomap_version": _dinomap_version(),
        "created": (previous or {}).get("created", _now()),
        "updated": _now(),
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


def _pending() -> dict[str, list[Any]]:
    return {k: [] for k in ("path", "sha", "label", "h", "w", "emb")}


@dataclass
class _LoopState:
    """The embedding loop's rows not yet flushed, its errors and counts, and the shard writer."""

    run_dir: Path
    shard_size: int
    flush_seconds: float
    pending: dict[str, list[Any]] = field(default_factory=_pending)
    errors: list[tuple[str, str]] = field(default_factory=list)
    not_images: int = 0  # of ``errors``: files of the source that are no images
    n_new: int = 0
    t0: float = field(default_factory=time.perf_counter)
    last_flush: float = field(default_factory=time.perf_counter)
    first_batch: tuple[float, int] | None = None  # (seconds, images): start-up, compile included
    # shard writes overlap the model
    writer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    writes: list[Future[Path]] = field(default_factory=list)

    def add(
        self,
        items: list[Item],
        feats: np.ndarray,
        meta: list[tuple[int, str, int, int]],
        bad: list[tuple[int, str]],
    ) -> None:
        """Take one batch, and flush when a shard is full or ``flush_seconds`` have passed."""
        for index, sha, h, w in meta:
            self.pending["path"].append(items[index].path)
            self.pending["sha"].append(sha)
            self.pending["label"].append(items[index].label)
            self.pending["h"].append(h)
            self.pending["w"].append(w)
        if len(meta):
            self.pending["emb"].append(feats)
        self.errors += [(items[index].path, reason) for index, reason in bad]
        self.n_new += len(meta)
        if self.first_batch is None:
            self.first_batch = (time.perf_counter() - self.t0, len(meta))
        if (
            len(self.pending["path"]) >= self.shard_size
            or time.perf_counter() - self.last_flush > self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Hand the pending rows to the writer thread as one shard."""
        if self.pending["path"]:
            rows = {k: list(v) for k, v in self.pending.items()}
            self.writes.append(self.writer.submit(
                write_shard, self.run_dir, rows["path"], rows["sha"], rows["label"], rows["h"],
                rows["w"], np.concatenate(rows["emb"]),
            ))  # fmt: skip
            for v in self.pending.values():
                v.clear()
        self.last_flush = time.perf_counter()

    def close(self) -> float:
        """Flush, wait for every shard write (a failed one raises); the loop's seconds."""
        self.flush()
        self.writer.shutdown(wait=True)
        for fut in self.writes:
            fut.result()  # a failed write (disk full...) is an error, not a silent loss
        return time.perf_counter() - self.t0


def _finish_info(
    info: dict[str, Any],
    state: _LoopState,
    status: str,
    plan: ResumePlan,
    n_stored: int,
    seconds: dict[str, float],
) -> None:
    """Stamp the end of a run into ``info``: status, timings, counts and a history entry."""
    n_new, t_embed, first_batch = state.n_new, seconds["embed_s"], state.first_batch
    info["status"] = status
    info["updated"] = _now()
    info["timings"] = {
        **{k: round(v, 3) for k, v in seconds.items()},
        "images_per_s": round(n_new / t_embed, 2) if t_embed > 0 else None,
    }
    if first_batch is not None and n_new > first_batch[1] and t_embed > first_batch[0]:
        # throughput after the first batch: without worker start-up and compilation
        info["timings"]["first_batch_s"] = round(first_batch[0], 3)
        info["timings"]["steady_images_per_s"] = round(
            (n_new - first_batch[1]) / (t_embed - first_batch[0]), 2
        )
    info["counts"] = {
        "source_images": len(plan.items),
        "embedded_this_run": n_new,
        "already_stored": plan.n_already,
        "hashed_to_resume": plan.hashed,
        "hashed_on": plan.where,
        "failed": len(state.errors),
        "stored": n_stored,
    }
    if state.not_images:  # of the failed: files that are no images (errors.csv says which)
        info["counts"]["not_images"] = state.not_images
    info["history"] = [
        *info["history"],
        {"finished": info["updated"], "status": status, **info["counts"]},
    ][-50:]


def _load_encoder(cfg: EmbedConfig) -> tuple[LoadedModel, float]:
    """The run's model and the seconds its loading took; random-init weights are loud."""
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
    return loaded, t_model


def _consume(
    batches: Iterator[tuple[np.ndarray, list[tuple[int, str, int, int]], list[tuple[int, str]]]],
    state: _LoopState,
    plan: ResumePlan,
    show: bool,
) -> None:
    """Feed every batch into ``state`` behind a progress bar (closed however the loop ends)."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(plan.indices), unit="img", disable=not show, desc="embedding", dynamic_ncols=True
    )
    try:
        for feats, meta, bad in batches:
            state.add(plan.items, feats, meta, bad)
            bar.update(len(meta) + len(bad))
    finally:
        bar.close()


def _embed_all(
    src: ImageSource,
    plan: ResumePlan,
    loaded: LoadedModel,
    cfg: EmbedConfig,
    how: tuple[torch.device, str, str],
    report: dict[str, Any],
    state: _LoopState,
    show: bool,
    engine: tuple[str, Any],
) -> None:
    """Embed ``plan`` into ``state``: here (``local``) or on Ray (its workers write the shards)."""
    device, precision, runtime = how
    if engine[0] == "ray":
        report["engine"] = "ray"
        state.n_new, state.errors = embed_ray_run(src, plan.items, plan.indices, cfg, precision,
                                                  runtime, str(state.run_dir), engine[1])  # fmt: skip
        return
    batches = iter_embeddings(src, plan.indices, loaded, cfg, device, precision, runtime, report)
    _consume(batches, state, plan, show)


def embed(
    source: str | os.PathLike[str] | ImageSource,
    out: str | os.PathLike[str],
    config: EmbedConfig | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "all",
    limit: int | None = None,
    progress: bool | None = None,
    engine: str = "local",
    ray_options: Any = None,
    check: Callable[[int], None] | None = None,
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
    engine, ray_options : {"local", "ray"}, RayOptions
        ``"ray"``: the same stage on a Ray cluster (:mod:`dinomap.embed.ray_engine`).
    check : callable, optional
        Called with the number of images the run will hold once the source is listed, before
        the model is loaded or an image read: ``dinomap run`` checks its map parameters there.

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
    device = engine_device(engine, cfg.device, ray_options)  # ray: the workers' device
    precision = resolve_precision(cfg.precision, device)
    src = source if isinstance(source, ImageSource) else open_source(source, data_dir, split)
    if check is not None:
        check(len(src.items[:limit] if limit else src.items))
    run_dir = run_path(out)  # a Path, or a UrlPath on object storage (s3://...)
    if run_dir.exists() and not run_dir.is_dir():
        raise InvalidParameterError(f"--out {run_dir} exists and is not a directory.")
    fingerprint = _fingerprint(cfg, precision, _weights_identity(cfg))
    previous = _check_same_config(run_dir, fingerprint)

    loaded, t_model = _load_encoder(cfg)
    plan = resume_plan(src, run_dir, limit, ray_hasher(ray_options) if engine == "ray" else None)
    runtime = resolve_runtime(cfg.runtime, device, precision, len(plan.indices), cfg.compile)
    runtime_report: dict[str, Any] = {"requested": cfg.runtime, "runtime": runtime,
                                      "threads": thread_counts()}  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    info = _run_info(
        source, src, limit, previous, loaded, cfg, precision, runtime_report, device, fingerprint
    )
    _write_info(run_dir, info)

    fields = src.fields
    if fields:  # a manifest's other columns, for the report's inspect panel and filters
        n_listed = len(plan.items)
        write_metadata(run_dir, [it.path for it in plan.items],
                       {k: v[:n_listed] for k, v in fields.items()})  # fmt: skip
    show = progress if progress is not None else sys.stderr.isatty()
    state = _LoopState(run_dir, cfg.shard_size, cfg.flush_seconds)
    status = "interrupted"
    try:
        _embed_all(src, plan, loaded, cfg, (device, precision, runtime), runtime_report, state,
                   show, (engine, ray_options))  # fmt: skip
        status = "complete"
    finally:  # also on KeyboardInterrupt or an exception: nothing finished is lost
        t_embed = state.close()
        state.errors[:0] = src.skipped  # files of the source that are no images: said too
        state.not_images = len(src.skipped)
        n_stored = len({path for path, _ in stored_keys(run_dir)})  # a changed file counts once
        write_errors(run_dir, state.errors)
        seconds = {"load_model_s": t_model, "plan_s": plan.seconds, "embed_s": t_embed,
                   "total_s": time.perf_counter() - t_start}  # fmt: skip
        _finish_info(info, state, status, plan, n_stored, seconds)
        _write_info(run_dir, info)
    errors = state.errors
    if n_stored == 0:
        raise NoImagesError(
            f"none of the {len(plan.items)} images could be embedded; reasons are in {run_dir / 'errors.csv'}"
            + (f" (first: {errors[0][0]}: {errors[0][1]})" if errors else "")
        )
    return EmbedResult(run_dir, len(plan.items), state.n_new, plan.n_already, len(errors), errors,
                       time.perf_counter() - t_start, info)  # fmt: skip
