"""The whole pipeline as one call: embed -> maps -> (stale downstream outputs refreshed) ->
export -> report. ``dinomap run`` / ``dinomap demo`` and :func:`dinomap.run_pipeline` use it.

Examples
--------
>>> from dinomap.embed import EmbedConfig
>>> stages = run_pipeline("photos/", "runs/p", EmbedConfig())  # doctest: +SKIP
>>> stages["maps"]["result"].metrics["methods"]["tsne"]["trustworthiness"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dinomap.embed.config import EmbedConfig

__all__ = ["refresh_stale_downstream", "run_pipeline"]

logger = logging.getLogger(__name__)

#: Called after each stage with its name and its entry in the returned dict.
StageHook = Callable[[str, dict[str, Any]], None]


def _export_device(device: str) -> str:
    """The export's device (Triton instance kind) for the run's ``--device``."""
    if device == "auto":
        return "auto"
    return "cuda" if device.startswith("cuda") else "cpu"


def run_pipeline(
    source: str,
    out: str | Path,
    config: EmbedConfig,
    *,
    methods: str | None = None,
    seed: int = 0,
    export: bool = True,
    verify: bool = True,
    report: bool = True,
    data_dir: str | None = None,
    split: str = "all",
    limit: int | None = None,
    quiet: bool = False,
    on_stage: StageHook | None = None,
) -> dict[str, Any]:
    """Embed, map, export and report; return what each stage wrote and how long it took.

    Downstream outputs (clusters, outliers, duplicates) that an earlier command wrote and that
    the new embeddings made stale are recomputed with their recorded settings.
    """

    def done(name: str, entry: dict[str, Any]) -> None:
        stages[name] = entry
        if on_stage is not None:
            on_stage(name, entry)

    out = Path(out)
    stages: dict[str, Any] = {}
    if (methods is None or "umap" in methods) and config.device != "cpu":
        import torch

        if torch.cuda.is_available():  # idle CPU cores while the GPU embeds: compile UMAP now
            from dinomap.reduce.umap import start_warm_up

            start_warm_up()
    from dinomap.embed.extract import embed

    t0 = time.perf_counter()
    res = embed(source, out, config, data_dir=data_dir, split=split, limit=limit,
                progress=False if quiet else None)  # fmt: skip
    done("embed", {"seconds": round(time.perf_counter() - t0, 2), "result": res})

    from dinomap.maps import make_maps

    t0 = time.perf_counter()
    maps = make_maps(out, methods=methods, random_state=seed, device=config.device,
                     verbose=not quiet)  # fmt: skip
    done("maps", {"seconds": round(time.perf_counter() - t0, 2), "result": maps})
    refreshed = refresh_stale_downstream(out)
    if refreshed:
        done("downstream", {"refreshed": refreshed})

    if export:
        from dinomap.export import export_run

        t0 = time.perf_counter()
        exp = export_run(out, None, verify=verify,
                         device=_export_device(config.device))  # fmt: skip
        done("export", {"seconds": round(time.perf_counter() - t0, 2), "result": exp})
    if report:
        from dinomap.viz.report import write_report
        from dinomap.viz.slides import write_slides

        t0 = time.perf_counter()
        page = write_report(out)
        slides = write_slides(out)
        done("report", {"seconds": round(time.perf_counter() - t0, 2), "page": page,
                        "slides": slides})  # fmt: skip
    return stages


def refresh_stale_downstream(run_dir: str | Path) -> list[str]:
    """Recompute the downstream outputs (clusters, outliers, duplicates) that exist and were made
    from other embeddings than the run stores now, with their recorded settings; return their
    names."""
    from dinomap.store import current_stamp, is_stale
    from dinomap.store.info import read_json_record
    from dinomap.store.layout import (
        CLUSTERS_INFO_FILE,
        DOWNSTREAM_DIR,
        DUPLICATES_INFO_FILE,
        OUTLIERS_INFO_FILE,
    )

    run = Path(run_dir)
    now = current_stamp(run)
    if now is None:
        return []

    def recorded(name: str) -> dict[str, Any] | None:
        info = read_json_record(run / DOWNSTREAM_DIR / name)
        return info if info is not None and is_stale(info.get("embeddings"), now) else None

    refreshed = []
    if (info := recorded(CLUSTERS_INFO_FILE)) is not None:
        from dinomap.downstream.cluster import cluster_images

        params = info.get("params") or {}
        kwargs: dict[str, Any] = {"method": info.get("method", "hdbscan")}
        if kwargs["method"] == "kmeans" and params.get("n_clusters"):
            kwargs["n_clusters"] = int(params["n_clusters"])
        cluster_images(run, **kwargs)
        refreshed.append("clusters")
    if (info := recorded(OUTLIERS_INFO_FILE)) is not None:
        from dinomap.downstream.outliers import find_outliers

        top = len(info.get("top") or []) or 50
        find_outliers(run, method=info.get("method", "knn"), k=int(info.get("k", 10)), top=top)
        refreshed.append("outliers")
    if (info := recorded(DUPLICATES_INFO_FILE)) is not None:
        from dinomap.downstream.duplicates import find_duplicates

        find_duplicates(run, threshold=float(info.get("threshold", 0.95)))
        refreshed.append("duplicates")
    for name in refreshed:
        logger.warning("%s were stale (made from other embeddings): recomputed", name)
    return refreshed
