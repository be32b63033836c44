"""Batched, resumable embedding extraction into a run store.

Decoding runs in DataLoader workers (:mod:`dinomap.embed.loader`); the batch goes to the device
as uint8, where it is upsampled, normalised and encoded (:mod:`dinomap.embed.encode`). Finished
rows are flushed to atomic Parquet shards every ``shard_size`` images or ``flush_seconds``, so a
crash loses at most one unflushed shard, which a rerun embeds again (matched on path + content
hash).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinomap._device import thread_counts
from dinomap._validation import check_positive_int
from dinomap.data.open import open_source
from dinomap.data.sources import ImageSource, Item
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
    create_encoder,
)
from dinomap.embed.plan import ResumePlan, resume_plan
from dinomap.embed.ray_engine import embed_ray_run, engine_device, ray_hasher
from dinomap.embed.record import (
    check_same_config,
    config_fingerprint,
    new_run_info,
    now_iso,
    weights_identity,
    write_run_info,
)
from dinomap.exceptions import (
    InvalidParameterError,
    NoImagesError,
)
from dinomap.store import (
    RUN_FILE,
    read_run_info,
    stored_keys,
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

    def close(self, skipped: Sequence[tuple[str, str]] = ()) -> float:
        """Flush, wait for every shard write (a failed one raises); the loop's seconds.
        ``skipped``: the source's files that are no images, listed first among the errors."""
        self.flush()
        self.writer.shutdown(wait=True)
        for fut in self.writes:
            fut.result()  # a failed write (disk full...) is an error, not a silent loss
        self.errors[:0] = list(skipped)
        self.not_images = len(skipped)
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
    info["updated"] = now_iso()
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
        "failed": len(state.errors) - state.not_images,  # images that could not be embedded
        "stored": n_stored,
    }
    if state.not_images:  # files of the source that are no images (errors.csv says which)
        info["counts"]["not_images"] = state.not_images
    info["history"] = [
        *info["history"],
        {"finished": info["updated"], "status": status, **info["counts"]},
    ][-50:]


def _run_dir(out: str | os.PathLike[str]) -> Any:
    """The run directory: a Path, or a UrlPath on object storage (``s3://...``)."""
    run_dir = run_path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise InvalidParameterError(f"--out {run_dir} exists and is not a directory.")
    return run_dir


def _some_stored(
    n_stored: int, n_items: int, run_dir: Any, errors: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``errors``, once some image is stored; else the :class:`NoImagesError` that says why."""
    if n_stored == 0:
        raise NoImagesError(
            f"none of the {n_items} images could be embedded; reasons are in {run_dir / 'errors.csv'}"
            + (f" (first: {errors[0][0]}: {errors[0][1]})" if errors else "")
        )
    return errors


def _write_fields(run_dir: Path, src: ImageSource, items: list[Any]) -> None:
    """A manifest's other columns, for the report's inspect panel and filters."""
    fields = src.fields
    if fields:
        write_metadata(run_dir, [it.path for it in items],
                       {k: v[: len(items)] for k, v in fields.items()})  # fmt: skip


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


def _precision(
    cfg: EmbedConfig, device: torch.device, engine: str, run_dir: Path, n_images: int
) -> str:
    """The run's precision: ``cfg.precision`` resolved (:func:`resolve_precision`), except that
    ``"auto"`` keeps the precision a run directory already holds embeddings in (a run stays one
    precision; an explicit other one is refused by the fingerprint)."""
    if engine == "ray":  # the workers' CPUs are not this one: auto stays as before
        if cfg.precision == "int8":
            raise InvalidParameterError("precision='int8' runs with --engine local.")
        if cfg.precision == "auto":
            return "bf16" if device.type == "cuda" else "fp32"
    if cfg.precision == "auto" and (run_dir / RUN_FILE).is_file() and stored_keys(run_dir):
        held = read_run_info(run_dir).get("precision")
        if held in PRECISIONS and held != "auto":
            return str(held)
    return resolve_precision(cfg.precision, device, cfg.runtime, cfg.compile, n_images)


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
    batches = iter_embeddings(src, plan.indices, loaded, cfg, device, precision, runtime, report,
                              n_items=len(plan.items))  # fmt: skip
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
        Called with the source's image count before the model loads or an image is read.

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
    src = source if isinstance(source, ImageSource) else open_source(source, data_dir, split)
    if check is not None:
        check(len(src.items[:limit] if limit else src.items))
    run_dir = _run_dir(out)
    precision = _precision(
        cfg, device, engine, run_dir, len(src.items[:limit] if limit else src.items)
    )
    fingerprint = config_fingerprint(cfg, precision, weights_identity(cfg))
    previous = check_same_config(run_dir, fingerprint)

    loaded, t_model = _load_encoder(cfg)
    plan = resume_plan(src, run_dir, limit, ray_hasher(ray_options) if engine == "ray" else None)
    runtime = resolve_runtime(cfg.runtime, device, precision, len(plan.indices), cfg.compile)
    runtime_report: dict[str, Any] = {"requested": cfg.runtime, "runtime": runtime,
                                      "threads": thread_counts()}  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    info = new_run_info(
        source, src, limit, previous, loaded, cfg, precision, runtime_report, device, fingerprint
    )
    write_run_info(run_dir, info)

    _write_fields(run_dir, src, plan.items)
    show = progress if progress is not None else sys.stderr.isatty()
    state = _LoopState(run_dir, cfg.shard_size, cfg.flush_seconds)
    status = "interrupted"
    try:
        _embed_all(src, plan, loaded, cfg, (device, precision, runtime), runtime_report, state,
                   show, (engine, ray_options))  # fmt: skip
        status = "complete"
    finally:  # also on KeyboardInterrupt or an exception: nothing finished is lost
        t_embed = state.close(src.skipped)
        n_stored = len({path for path, _ in stored_keys(run_dir)})  # a changed file counts once
        write_errors(run_dir, state.errors)
        seconds = {"load_model_s": t_model, "plan_s": plan.seconds, "embed_s": t_embed,
                   "total_s": time.perf_counter() - t_start}  # fmt: skip
        _finish_info(info, state, status, plan, n_stored, seconds)
        write_run_info(run_dir, info)
    errors = _some_stored(n_stored, len(plan.items), run_dir, state.errors)
    return EmbedResult(run_dir, len(plan.items), state.n_new, plan.n_already,
                       len(errors) - state.not_images, errors,
                       time.perf_counter() - t_start, info)  # fmt: skip
