"""``project --engine ray``: place many new images on a run's saved maps as Ray Data stages.

The same read tasks as the Ray embedding engine (:func:`dinomap.embed.ray_engine.decode_batch`)
feed an actor pool holding the *run's* encoder (:func:`dinomap.embed.encode.encoder_from_run`,
as ``embed_files`` uses it), then an actor pool holding the run's fitted mappers (PCA, the
neural mappers, openTSNE / umap-learn transforms: every one that ``project`` loads), each
placing a whole batch with ``transform``. Only paths and 2-D coordinates come back to the
driver, so 10M new points need no 10M-point t-SNE and no 10M x 384 array in one process.

The actors never read the run's folder: the driver sends its ``run.json`` record and the bytes
of the mapper folders (through Ray's object store), so the run may live on the driver's disk
(or its mirror of an ``s3://`` run) while the actors run on other machines. A ``--weights FILE``
run still needs that file at the same path on every node (as the Ray embedding engine does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dinomap.embed.ray_engine import RayOptions, decode_batch, ray_session, split_blocks

__all__ = ["project_ray"]


class _RunEncoder:
    """The run's own model, weights and preprocessing, once per actor."""

    def __init__(self, info: dict[str, Any], threads: int) -> None:
        import torch

        from dinomap._device import resolve_device
        from dinomap.embed.config import EmbedConfig
        from dinomap.embed.encode import encoder_from_info, make_encode

        if threads:
            torch.set_num_threads(threads)
        self.loaded, _ = encoder_from_info(info)
        self.device = resolve_device("auto")
        precision = str(info.get("precision", "fp32"))
        if self.device.type == "cpu" and precision == "fp16":
            precision = "fp32"  # as embed_files does
        cfg = EmbedConfig(input_size=self.loaded.input_size, compile=False)
        self.encode = make_encode(self.loaded, cfg, self.device, precision, 0, "torch")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = np.asarray([not e for e in batch["error"]], bool)
        emb = np.zeros((len(ok), self.loaded.embed_dim), np.float32)
        if ok.any():
            with torch.inference_mode():
                pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
                emb[ok] = self.encode(pixels.to(self.device)).cpu().numpy()
        return {"path": batch["path"], "error": batch["error"], "embedding": emb}


class _Placer:
    """The run's fitted mappers, once per actor: a batch of embeddings -> coordinates."""

    def __init__(
        self, files: dict[str, bytes], methods: Sequence[str] | None, threads: int
    ) -> None:
        import tempfile

        import torch

        from dinomap.store.mappers import require_mappers, write_mapper_files

        torch.set_num_threads(max(1, threads))
        self._dir = tempfile.TemporaryDirectory(prefix="dinomap-mappers-")  # this actor's copy
        root = write_mapper_files(self._dir.name, files)
        self.mappers, self.skipped = require_mappers(root, methods)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray([not e for e in batch["error"]], bool)
        X = np.ascontiguousarray(batch["embedding"][ok], dtype=np.float32)
        out: dict[str, np.ndarray] = {"path": batch["path"], "error": batch["error"]}
        for method, mapper in self.mappers.items():
            xy = np.full((len(ok), 2), np.nan, np.float32)
            try:
                if len(X):
                    xy[ok] = np.asarray(mapper.transform(X), np.float32)
            except Exception:  # the driver reports the method as skipped (NaN coordinates)
                pass
            out[f"{method}_x"], out[f"{method}_y"] = xy[:, 0], xy[:, 1]
        return out


def project_ray(
    run_dir: str | os.PathLike[str],
    files: Sequence[str],
    methods: Sequence[str] | None,
    options: RayOptions | None = None,
    batch_size: int = 256,
) -> tuple[list[str], dict[str, np.ndarray], list[tuple[str, str]]]:
    """Embed ``files`` with the run's model and place them with its mappers, on Ray.

    Returns ``(ok_paths, {method: (n_ok, 2) float32}, errors [(path, reason)])`` in the order of
    ``files``; a method whose ``transform`` failed has NaN coordinates (the caller skips it).
    """
    from dinomap.store import read_run_info
    from dinomap.store.mappers import mapper_files

    ray = ray_session(options or RayOptions())
    info = read_run_info(run_dir)
    source_size = info.get("preprocessing", {}).get("source_size")
    size = int(source_size or info.get("model", {}).get("input_size", 224))
    saved = mapper_files(run_dir, methods)  # Ray keeps large constructor arguments in its store
    import pyarrow as pa

    n = len(files)
    rows = pa.table({"index": pa.array(range(n), pa.int64()),
                     "path": pa.array([str(p) for p in files], pa.string()),
                     "label": pa.array([""] * n, pa.string())})  # fmt: skip
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    n_enc = (options.num_actors if options else None) or (gpus or max(1, cpus // 4))
    threads = 0 if gpus else max(1, (os.cpu_count() or 1) // max(n_enc, 1))
    ds = (
        ray.data.from_arrow(split_blocks(rows, max(1, min(n, 2 * cpus), -(-n // batch_size))))
        .map_batches(decode_batch, batch_format="numpy", batch_size=batch_size,
                     fn_kwargs={"source": None, "size": size, "area": source_size is None},
                     num_cpus=1)
        .map_batches(_RunEncoder, batch_format="numpy", batch_size=batch_size,
                     fn_constructor_kwargs={"info": info, "threads": threads},
                     compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_enc),
                     num_gpus=1.0 if gpus else 0.0, num_cpus=0.5 if gpus else 2)
        .map_batches(_Placer, batch_format="numpy", batch_size=batch_size,
                     fn_constructor_kwargs={"files": saved, "methods": methods,
                                            "threads": 1},
                     compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus // 4)),
                     num_cpus=1)  # 2 (encoder) + 1 leaves 1 of 4 CPUs to the reads
    )  # fmt: skip
    order = {str(p): i for i, p in enumerate(files)}
    frames = list(ds.iter_batches(batch_format="pandas", batch_size=None))
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"path": [], "error": []})  # fmt: skip
    frame = frame.assign(_order=frame["path"].map(order)).sort_values("_order")
    bad = frame["error"].astype(bool)
    errors = list(zip(frame.loc[bad, "path"], frame.loc[bad, "error"], strict=True))
    good = frame.loc[~bad]
    methods_done = [c[:-2] for c in good.columns if c.endswith("_x")]
    coords = {m: good[[f"{m}_x", f"{m}_y"]].to_numpy(np.float32) for m in methods_done}
    return list(good["path"]), coords, [(str(p), str(e)) for p, e in errors]
