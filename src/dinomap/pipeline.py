"""The whole pipeline as one call: embed -> maps -> (stale downstream outputs refreshed) ->
export -> report. ``dinomap run`` / ``dinomap demo`` and :func:`dinomap.run_pipeline` use it.

Examples
--------
>>> from dinomap.embed import EmbedConfig
>>> stages = run_pipeline("photos/", "runs/p", EmbedConfig())  # doctest: +SKIP
>>> stages["maps"]["result"].metrics["methods"]["tsne"]["trustworthiness"]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dinomap.embed.config import EmbedConfig

__all__ = ["label_issues_if_labelled", "refresh_stale_downstream", "run_pipeline"]

logger = logging.getLogger(__name__)

#: Called after each stage with its name and its entry in the returned dict.
StageHook = Callable[[str, dict[str, Any]], None]


def _export_device(device: str) -> str:
    """The export's device (Triton instance kind) for the run's ``--device``."""
    if device == "auto":
        return "auto"
    return "cuda" if device.startswith("cuda") else "cpu"


def _check_maps(
    out: Path,
    methods: str | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    seed: int,
    device: str,
    n: int,
) -> None:
    """Every map parameter checked once the source's ``n`` images are listed, before the first
    is read; the maps will hold them and, at most, what the run stores already."""
    from dinomap.maps.fit import check_map_request
    from dinomap.store.embeddings import stored_rows

    n_points = n + (stored_rows(out) if out.is_dir() else 0)
    check_map_request(methods, params, n_points, random_state=seed, device=device)


def run_pipeline(
    source: str,
    out: str | Path,
    config: EmbedConfig,
    *,
    methods: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    quality: str = "fast",
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

    ``params`` are per-method map parameters (``{"tsne": {"perplexity": 5}}``, as
    ``--param tsne.perplexity=5``) and ``quality`` the neural maps' training preset
    (:mod:`dinomap.maps.quality`); defaults that depend on the number of images adapt to small
    collections (:mod:`dinomap.maps.small_n`). Downstream outputs (clusters, outliers,
    duplicates, label issues) that an earlier command wrote and that the new embeddings made
    stale are recomputed with their recorded settings; a labelled run gets its label issues.
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
    check = functools.partial(_check_maps, out, methods, params, seed, config.device)
    res = embed(source, out, config, data_dir=data_dir, split=split, limit=limit,
                progress=False if quiet else None, check=check)  # fmt: skip
    done("embed", {"seconds": round(time.perf_counter() - t0, 2), "result": res})

    from dinomap.maps import make_maps
    from dinomap.maps.small_n import TooFewPointsError

    t0 = time.perf_counter()
    try:
        maps = make_maps(out, methods=methods, random_state=seed, device=config.device,
                         params=params, quality=quality, verbose=not quiet)  # fmt: skip
    except TooFewPointsError as exc:  # one image: embedded, but no map can say anything
        if on_stage is None:
            logger.warning("no maps: %s", exc)
        _record_no_maps(out, str(exc))
        done("maps", {"seconds": round(time.perf_counter() - t0, 2), "result": None,
                      "skipped": str(exc)})  # fmt: skip
    else:
        from dinomap.store.info import read_run_info, update_run_info

        if "maps" in read_run_info(out):  # an earlier run had too few images for a map
            update_run_info(out, lambda info: info.pop("maps", None) and None)
        done("maps", {"seconds": round(time.perf_counter() - t0, 2), "result": maps})
    refreshed = refresh_stale_downstream(out)
    if refreshed:
        done("downstream", {"refreshed": refreshed})
    if "label_issues" not in refreshed:
        t0 = time.perf_counter()
        issues = label_issues_if_labelled(out)
        if issues is not None:
            done("label_issues", {"seconds": round(time.perf_counter() - t0, 2),
                                  "result": issues})  # fmt: skip

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


def _record_no_maps(run_dir: Path, reason: str) -> None:
    """Say in run.json (``"maps": {"skipped": ...}``) why the run has no maps, so the report
    can show it; a later run with maps drops it."""
    from dinomap.store.info import update_run_info

    update_run_info(run_dir, lambda info: info.update(maps={"skipped": reason}))


def refresh_stale_downstream(run_dir: str | Path) -> list[str]:
    """Recompute the downstream outputs (clusters, outliers, duplicates, label issues) that exist
    and were made
    from other embeddings than the run stores now, with their recorded settings; return their
    names."""
    from dinomap.store import current_stamp, is_stale
    from dinomap.store.info import read_json_record
    from dinomap.store.layout import (
        CLUSTERS_INFO_FILE,
        DOWNSTREAM_DIR,
        DUPLICATES_INFO_FILE,
        LABEL_ISSUES_INFO_FILE,
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
    if (info := recorded(LABEL_ISSUES_INFO_FILE)) is not None:
        from dinomap.downstream.label_issues import label_issues_run

        top = len(info.get("top") or []) or 50
        label_issues_run(run, k=int(info.get("k", 15)), top=top)
        refreshed.append("label_issues")
    for name in refreshed:
        logger.warning("%s were stale (made from other embeddings): recomputed", name)
    return refreshed


def label_issues_if_labelled(run_dir: str | Path, top: int = 50) -> Any:
    """Find the label issues of a run whose images carry at least two labels (so ``run``'s
    report can show them); ``None`` (and nothing written) for an unlabelled run, one image, or
    when ``downstream/label_issues.json`` is already up to date."""
    from dinomap.store import current_stamp, is_stale, load_embeddings
    from dinomap.store.info import read_json_record
    from dinomap.store.layout import DOWNSTREAM_DIR, LABEL_ISSUES_INFO_FILE

    run = Path(run_dir)
    info = read_json_record(run / DOWNSTREAM_DIR / LABEL_ISSUES_INFO_FILE)
    if info is not None and not is_stale(info.get("embeddings"), current_stamp(run)):
        return None
    emb = load_embeddings(run)
    if emb.labels is None or len(emb) < 2 or len({x for x in emb.labels if x is not None}) < 2:
        return None
    from dinomap.downstream.label_issues import label_issues_run

    return label_issues_run(run, top=top)
