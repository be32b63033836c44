"""The Ray engine: the same embedding stage spread over a Ray cluster with Ray Data.

The planned images (what the run does not store yet, matched on path + sha256) become a Ray
Dataset of small rows ``(index, path, label)``; then

1. CPU tasks read the bytes, hash them and decode + resize them to the source size with the
   local engine's own decoding code (:class:`dinomap.embed.loader.DecodeDataset`), so only
   ``source_size``² x 3 uint8 per image travels through the object store;
2. an actor pool (``ActorPoolStrategy``; one GPU per actor on GPU nodes, CPU actors otherwise)
   runs the local engine's encoder (:func:`dinomap.embed.encode.make_encode`);
3. tasks write each batch of ``shard_size`` rows as one shard of the run, through
   :func:`dinomap.store.write_shard` (atomic), named ``part-NNNNN-<digest of its keys>``: a retried
   task (worker or node lost) rewrites the same file instead of duplicating rows.

The driver only receives one small row per shard and per bad file (its reason goes to
``errors.csv``). Ray is imported inside the functions: ``pip install "dinomap[ray]"``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dinomap.data.sources import FolderSource, ImageSource, Item, read_image_path, sha256_path
from dinomap.embed.config import EmbedConfig
from dinomap.exceptions import InvalidParameterError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ENGINES",
    "RayOptions",
    "check_engine",
    "cluster_device",
    "embed_ray_run",
    "engine_device",
    "ray_hasher",
    "ray_session",
]

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
#: Object-store memory of a local Ray started by dinomap (bytes): the decoded 32x32 images of a
#: few thousand in-flight rows need a few MB; Ray's default (30 % of RAM) is far too greedy on a
#: shared machine. A cluster (``--address``) keeps its own setting.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2
#: Stored paths to check on a rerun from which the Ray engine hashes them on the cluster.
RAY_HASH_MIN = 2_000


def check_engine(engine: str) -> str:
    """``engine`` must be one of :data:`ENGINES`."""
    from dinomap._validation import check_choice

    check_choice("engine", engine, ENGINES)
    return engine


class RayOptions:
    """Where and how the Ray engine runs.

    Parameters
    ----------
    address : str, optional
        A running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); default: start a
        local Ray on this machine (or reuse the one this process already joined).
    num_actors : int, optional
        Encoder actors; default: one per GPU of the cluster, else one per 4 CPUs (at least 1).
    num_cpus : int, optional
        Logical CPUs of a local Ray (default: the machine's, at least 4: with fewer, the actors
        can hold every CPU and the read tasks never run).
    """

    def __init__(
        self,
        address: str | None = None,
        num_actors: int | None = None,
        num_cpus: int | None = None,
    ) -> None:
        self.address = address
        self.num_actors = num_actors
        self.num_cpus = num_cpus


def ray_session(options: RayOptions) -> Any:
    """Join (``address``) or start a local Ray; return the ``ray`` module."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the [ray] extra is installed in the tests
        raise InvalidParameterError(
            'engine="ray" needs Ray Data: pip install "dinomap[ray]"'
        ) from exc
    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=options.num_cpus or max(4, os.cpu_count() or 1),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
            )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    return ray


def cluster_device(device: str, options: RayOptions) -> Any:
    """The device the encoder actors will use: CUDA when the cluster has GPUs and ``device`` is
    ``auto``/``cuda`` (even when the driver has none), else what ``device`` resolves to here."""
    import torch

    from dinomap._device import resolve_device

    ray = ray_session(options)
    if device in ("auto", "cuda") and ray.cluster_resources().get("GPU", 0) > 0:
        return torch.device("cuda")
    return resolve_device(device)


def engine_device(engine: str, device: str, options: RayOptions | None) -> Any:
    """The device of the encoder: here (``local``), or the Ray workers' (:func:`cluster_device`)."""
    from dinomap._device import resolve_device

    check_engine(engine)
    return cluster_device(device, options or RayOptions()) if engine == "ray" else (
        resolve_device(device))  # fmt: skip


# ---------------------------------------------------------------- stage 1: read + decode (CPU)


class _PathSource(ImageSource):
    """The rows' own paths (local files or fsspec URLs): tasks need no copy of the source."""

    kind = "paths"

    def __init__(self, paths: Sequence[str]) -> None:
        self._items = [Item(str(p), None) for p in paths]

    @property
    def items(self) -> list[Item]:
        return self._items

    def load(self, index: int) -> tuple[np.ndarray, str]:
        return read_image_path(self._items[index].path)

    def sha256(self, index: int) -> str:
        return sha256_path(self._items[index].path)


def decode_batch(
    batch: dict[str, np.ndarray], source: ImageSource | None, size: int, area: bool
) -> dict[str, Any]:
    """Rows ``(index, path, label)`` -> sha256, original size, uint8 pixels or an error."""
    import cv2

    from dinomap.embed.loader import DecodeDataset

    cv2.setNumThreads(1)
    paths = [str(p) for p in batch["path"]]
    indices = [int(i) for i in batch["index"]]
    if source is None:
        data = DecodeDataset(_PathSource(paths), range(len(paths)), size, area)
    else:
        data = DecodeDataset(source, indices, size, area)
    n = len(paths)
    pixels = np.zeros((n, size, size, 3), np.uint8)
    sha, err = np.full(n, "", object), np.full(n, "", object)  # "": no error (None would
    hw = np.zeros((n, 2), np.int32)  # come back as NaN from an all-null column)
    for i in range(n):
        _, rgb, sha[i], hw[i, 0], hw[i, 1], reason = data[i]
        if rgb is not None:
            pixels[i] = rgb
        else:
            err[i] = reason or "unknown error"
    return {"index": batch["index"], "path": batch["path"], "label": batch["label"],
            "sha256": sha, "height": hw[:, 0], "width": hw[:, 1], "error": err,
            "pixels": pixels}  # fmt: skip


def _hash_batch(batch: dict[str, np.ndarray], source: ImageSource | None) -> dict[str, Any]:
    """Rows ``(index, path)`` -> their sha256 (the resume plan's check of stored paths)."""
    paths = [str(p) for p in batch["path"]]
    if source is None:
        src: ImageSource = _PathSource(paths)
        hashes = [src.sha256(i) for i in range(len(paths))]
    else:
        hashes = [source.sha256(int(i)) for i in batch["index"]]
    return {"index": batch["index"], "sha256": np.asarray(hashes, dtype=object)}


def ray_hasher(options: RayOptions | None) -> Any:
    """A :data:`dinomap.embed.plan.Hasher` that hashes the stored paths in Ray tasks on the
    cluster, where the images are read anyway, instead of reading them all on the driver (a
    rerun over millions of stored images); fewer than :data:`RAY_HASH_MIN` are hashed here."""
    from dinomap.embed.plan import hash_here

    def hasher(src: ImageSource, items: list[Item], candidates: Sequence[int]
               ) -> tuple[list[str], str]:  # fmt: skip
        if len(candidates) < RAY_HASH_MIN:
            return hash_here(src, items, candidates)
        import pyarrow as pa

        ray = ray_session(options or RayOptions())
        rows = pa.table(
            {
                "index": pa.array(list(candidates), pa.int64()),
                "path": pa.array([items[i].path for i in candidates], pa.string()),
            }
        )
        n_cpus = int(ray.cluster_resources().get("CPU", 1))
        ds = ray.data.from_arrow(split_blocks(rows, max(4 * n_cpus, len(rows) // 10_000))).map_batches(
            _hash_batch, batch_format="numpy", batch_size=1024, num_cpus=1,
            fn_kwargs={"source": None if _path_based(src) else src})  # fmt: skip
        found: dict[int, str] = {}
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            found.update(zip(batch.column("index").to_pylist(),
                             batch.column("sha256").to_pylist(), strict=True))  # fmt: skip
        return [found[i] for i in candidates], "ray"

    return hasher


def split_blocks(rows: pa.Table, n_blocks: int) -> list[pa.Table]:
    """``rows`` in ``n_blocks`` slices: Ray Data blocks, read in parallel (one task each)."""
    step = max(1, math.ceil(rows.num_rows / max(1, n_blocks)))
    return [rows.slice(i, step) for i in range(0, rows.num_rows, step)]


# ---------------------------------------------------------------- stage 2: encode (actor pool)


class _Encoder:
    """One model per actor: the local engine's encoder, on the actor's GPU or CPU."""

    def __init__(
        self, cfg: EmbedConfig, precision: str, runtime: str, threads: int, n_images: int
    ) -> None:
        import torch

        from dinomap._device import resolve_device
        from dinomap.embed.encode import make_encode
        from dinomap.embed.models import create_encoder

        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(cfg.device)
        self.loaded = create_encoder(
            cfg.model, input_size=cfg.input_size, weights=cfg.weights,
            random_init=cfg.random_init, init_seed=cfg.init_seed, model_kwargs=cfg.model_kwargs,
        )  # fmt: skip
        self.encode = make_encode(self.loaded, cfg, self.device, precision, n_images, runtime)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import pyarrow as pa
        import torch

        ok = np.asarray([not e for e in batch["error"]], bool)
        dim = self.loaded.embed_dim
        emb = np.zeros((len(ok), dim), np.float32)
        if ok.any():
            with torch.inference_mode():
                pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
                emb[ok] = self.encode(pixels.to(self.device)).cpu().numpy()
        values = pa.array(emb.reshape(-1), pa.float32())
        return pa.table({
            "path": pa.array([str(p) for p in batch["path"]], pa.string()),
            "sha256": pa.array([str(s or "") for s in batch["sha256"]], pa.string()),
            "label": pa.array([str(v) if v else None for v in batch["label"]], pa.string()),
            "height": pa.array(batch["height"], pa.int32()),
            "width": pa.array(batch["width"], pa.int32()),
            "error": pa.array([str(e) if e else None for e in batch["error"]], pa.string()),
            # a FixedSizeListArray, not numpy: numpy would become Ray's tensor extension type
            "embedding": pa.FixedSizeListArray.from_arrays(values, dim),
        })  # fmt: skip


# ---------------------------------------------------------------- stage 3: shards (tasks)


def write_shard_batch(table: pa.Table, run_dir: str, index: int) -> pa.Table:
    """Write the good rows of ``table`` as one shard; return a row per shard and per bad file."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dinomap.store import write_shard

    bad = table.filter(pc.is_valid(table.column("error")))
    good = table.filter(pc.is_null(table.column("error")))
    rows: dict[str, list[Any]] = {
        "path": bad.column("path").to_pylist(), "error": bad.column("error").to_pylist(),
        "n": [0] * bad.num_rows,
    }  # fmt: skip
    if good.num_rows:
        paths, sha = good.column("path").to_pylist(), good.column("sha256").to_pylist()
        digest = hashlib.sha256("\n".join(f"{p}\t{s}" for p, s in zip(paths, sha, strict=True))
                                .encode()).hexdigest()[:16]  # fmt: skip
        emb = good.column("embedding").combine_chunks()
        X = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, emb.type.list_size)
        name = f"part-{index:05d}-{digest}.parquet"
        write_shard(run_dir, paths, sha, good.column("label").to_pylist(),
                    good.column("height").to_pylist(), good.column("width").to_pylist(), X,
                    name=name)  # fmt: skip
        rows["path"].append(name)
        rows["error"].append(None)
        rows["n"].append(good.num_rows)
    return pa.table({"path": pa.array(rows["path"], pa.string()),
                     "error": pa.array(rows["error"], pa.string()),
                     "n": pa.array(rows["n"], pa.int64())})  # fmt: skip


# ---------------------------------------------------------------- the driver


def _path_based(src: ImageSource) -> bool:
    """Whether each item's path is all a task needs to read it (no copy of the source)."""
    from dinomap.embed.loader import FileListSource

    return isinstance(src, FolderSource | FileListSource) or getattr(src, "by_path", False)


def _actor_plan(ray: Any, cfg: EmbedConfig, options: RayOptions) -> tuple[int, float, int]:
    """``(actors, GPUs per actor, torch threads per actor)`` for this cluster."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    use_gpu = gpus > 0 and cfg.device in ("auto", "cuda")
    default = gpus if use_gpu else max(1, cpus // 4)
    n = options.num_actors or default
    threads = 0 if use_gpu else max(1, (os.cpu_count() or 1) // n)
    return n, (1.0 if use_gpu else 0.0), threads


def embed_ray_run(
    src: ImageSource,
    items: list[Item],
    indices: Sequence[int],
    cfg: EmbedConfig,
    precision: str,
    runtime: str,
    run_dir: str,
    options: RayOptions | None = None,
    progress: Any = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Embed ``items[indices]`` into ``run_dir`` on Ray; return ``(n_embedded, errors)``.

    ``progress`` (optional) is called with the number of images each finished shard covered.
    """
    from dinomap.store.embeddings import next_shard_index

    options = options or RayOptions()
    ray = ray_session(options)
    if not indices:
        return 0, []
    size = cfg.source_size or cfg.input_size
    import pyarrow as pa

    rows = pa.table({  # columns, not 10M Python dicts; "": no label (never a source's label)
        "index": pa.array(list(indices), pa.int64()),
        "path": pa.array([items[i].path for i in indices], pa.string()),
        "label": pa.array([items[i].label or "" for i in indices], pa.string()),
    })  # fmt: skip
    n_cpus = int(ray.cluster_resources().get("CPU", 1))
    # blocks: one per shard at most, and enough for every CPU to read (never one block)
    blocks = split_blocks(
        rows, max(math.ceil(len(rows) / cfg.shard_size), min(len(rows), 2 * n_cpus))
    )
    source = None if _path_based(src) else src  # in memory: Ray ships it once per worker
    n_actors, gpus, threads = _actor_plan(ray, cfg, options)
    ds = (
        ray.data.from_arrow(blocks)
        .map_batches(decode_batch, batch_format="numpy", batch_size=cfg.batch_size,
                     fn_kwargs={"source": source, "size": size, "area": cfg.source_size is None},
                     num_cpus=1)
        .map_batches(_Encoder, batch_format="numpy", batch_size=cfg.batch_size,
                     fn_constructor_kwargs={"cfg": cfg, "precision": precision,
                                            "runtime": runtime, "threads": threads,
                                            "n_images": len(rows)},
                     compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors),
                     num_gpus=gpus, num_cpus=0.5 if gpus else 2)  # != the read tasks' 1 CPU:
        # other resources keep Ray from fusing the reads into the actors (CPU tasks stay tasks)
        .map_batches(write_shard_batch, batch_format="pyarrow", batch_size=cfg.shard_size,
                     fn_kwargs={"run_dir": str(run_dir), "index": next_shard_index(run_dir)},
                     num_cpus=0.5)
    )  # fmt: skip
    n_new, errors = 0, []
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for path, error, n in zip(batch.column("path").to_pylist(), batch.column("error")
                                  .to_pylist(), batch.column("n").to_pylist(), strict=True):  # fmt: skip
            if error is not None:
                errors.append((path, error))
            n_new += n
            if progress is not None:
                progress(n if error is None else 1)
    order = {items[i].path: i for i in indices}
    errors.sort(key=lambda e: order.get(e[0], -1))  # the local engine's order: the plan's
    return n_new, errors
