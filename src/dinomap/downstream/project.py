"""Place unseen images on the existing maps of a run.

New images are embedded with the run's own model, weights and preprocessing
(``dinomap.embed.embed_files(..., like_run=RUN)``), then every fitted mapper saved in
``RUN/mappers/<method>/`` places them with its ``transform``: PCA, openTSNE's and umap-learn's
``transform``, the parametric UMAP encoder and the t-SNE approximator.

Outputs in ``RUN/downstream/projected/``: ``projected.parquet`` and ``projected.csv`` (``path``,
then ``{method}_x``, ``{method}_y`` per map), ``{method}.png`` (the new points highlighted over the
old ones), ``errors.csv`` when some images could not be embedded, and ``projected.json``.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dinomap._validation import check_choice, check_embeddings
from dinomap.downstream.contact_sheet import RANDOM_INIT_STAMP
from dinomap.downstream.index import DOWNSTREAM_DIR
from dinomap.exceptions import DinomapError, InvalidParameterError, NoImagesError
from dinomap.store import (
    StoredEmbeddings,
    StoredMaps,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_maps,
    write_errors,
)
from dinomap.store.downstream import write_png
from dinomap.store.layout import (
    MAPPERS_DIR,
    PROJECTED_CSV,
    PROJECTED_DIR,
    PROJECTED_FILE,
    PROJECTED_INFO_FILE,
)
from dinomap.store.mappers import require_mappers as load_mappers

__all__ = [
    "MAPPERS_DIR",
    "PROJECTED_DIR",
    "ProjectionResult",
    "list_image_files",
    "load_mappers",
    "project_embeddings",
    "project_images",
]

logger = logging.getLogger(__name__)

#: Points of the run drawn under the new ones in a projection's plot, at most.
PLOT_MAX_OLD = 200_000


@dataclass(frozen=True)
class ProjectionResult:
    """Coordinates of new images on each map of a run.

    Attributes
    ----------
    paths : list of str
        The images placed (those that could be embedded), in order.
    coords : dict of str to ndarray of shape (n, 2)
        Coordinates per map method.
    errors : list of (path, reason)
        Images that could not be embedded.
    skipped : dict of str to str
        Methods that could not place points, with the reason.
    directory : Path or None
        Where the outputs were written.
    plots : dict of str to Path
        One PNG per map.
    """

    paths: list[str]
    coords: dict[str, np.ndarray]
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The coordinates as a table: ``path``, ``{method}_x``, ``{method}_y``."""
        data: dict[str, Any] = {"path": self.paths}
        for method, xy in self.coords.items():
            data[f"{method}_x"] = xy[:, 0].astype(np.float32)
            data[f"{method}_y"] = xy[:, 1].astype(np.float32)
        return pd.DataFrame(data)


def list_image_files(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[str]:
    """Image files from a folder (recursive, sorted), a single file, or a list of files."""
    from dinomap.data.sources import FolderSource
    from dinomap.exceptions import SourceNotFoundError

    items = [images] if isinstance(images, str | os.PathLike) else list(images)
    out: list[str] = []
    from dinomap.store._fs import is_url

    for item in items:
        if is_url(item):  # a bucket prefix: the same listing as `dinomap embed s3://...`
            from dinomap.data.sources import UrlFolderSource

            out += [it.path for it in UrlFolderSource(os.fspath(item)).items]
            continue
        path = Path(item)
        if path.is_dir():  # the same walk, filter and order as `dinomap embed FOLDER`
            out += [it.path for it in FolderSource(path).items]
        elif path.is_file():
            out.append(str(path))
        else:
            raise SourceNotFoundError(f"{path} is neither an image file nor a folder.")
    return out


def _old_points(
    stored: StoredMaps | None, emb: StoredEmbeddings, method: str, mapper: Any
) -> tuple[np.ndarray, list[str | None] | None]:
    """The existing map of ``method``: from ``maps.parquet``, else from the mapper (which needs
    the run's embeddings)."""
    if stored is not None and method in stored.coords:
        return stored.coords[method], stored.labels
    full = emb.load()
    embedding = getattr(mapper, "embedding_", None)
    if embedding is not None and len(embedding) == len(full):
        return np.asarray(embedding, dtype=np.float32), full.labels
    return np.asarray(mapper.transform(full.X), dtype=np.float32), full.labels


def _drawn(
    old: np.ndarray, labels: list[str | None] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """At most :data:`PLOT_MAX_OLD` of the run's points (a fixed uniform random sample), and
    their labels as an array ("" for none): a plot of 10M dots shows no more than one of
    200,000."""
    keep = None
    if len(old) > PLOT_MAX_OLD:
        keep = np.sort(np.random.default_rng(0).choice(len(old), PLOT_MAX_OLD, replace=False))
        old = old[keep]
    if labels is None:
        return old, None
    picked = labels if keep is None else [labels[i] for i in keep]
    return old, np.asarray(["" if v is None else str(v) for v in picked])


def _plot(
    method: str,
    old_points: tuple[np.ndarray, list[str | None] | None],
    new: np.ndarray,
    new_names: list[str],
    out: Path,
    random_init: bool,
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_run = len(old_points[0])
    old, old_labels = _drawn(*old_points)
    fig = Figure(figsize=(7, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = [] if old_labels is None else sorted(set(old_labels.tolist()) - {""})
    if names:
        import matplotlib

        palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
        for i, name in enumerate(names):
            sel = old_labels == name
            ax.scatter(old[sel, 0], old[sel, 1], s=4, alpha=0.35, color=palette(i % palette.N),
                       label=name, linewidths=0)  # fmt: skip
    else:
        ax.scatter(old[:, 0], old[:, 1], s=4, alpha=0.35, color="0.55", linewidths=0, label="run")
    ax.scatter(
        new[:, 0],
        new[:, 1],
        s=90,
        marker="*",
        color="red",
        edgecolors="black",
        linewidths=0.6,
        label=f"new ({len(new)})",
        zorder=5,
    )
    if len(new) <= 20:
        for (x, y), name in zip(new, new_names, strict=True):
            ax.annotate(
                Path(name).name, (x, y), fontsize=6, xytext=(4, 4), textcoords="offset points"
            )
    try:
        from dinomap.reduce import reducer_spec

        name = reducer_spec(method).label
    except Exception:  # a mapper saved under a name the registry does not know
        name = method
    drawn = f" ({len(old):,} drawn)" if len(old) < n_run else ""
    ax.set_title(f"{name}: {len(new):,} new images over {n_run:,} of the run{drawn}")
    ax.set_xticks([])
    ax.set_yticks([])
    legend = ax.legend(loc="best", fontsize=7, framealpha=0.8)
    for handle in legend.legend_handles[:-1]:  # old points: readable dots in the legend
        handle.set_sizes([20])  # type: ignore[union-attr]
        handle.set_alpha(0.8)  # type: ignore[union-attr]
    if random_init:
        fig.text(0.5, 0.5, "RANDOM-INIT", fontsize=60, color="red", alpha=0.15, ha="center",
                 va="center", rotation=30)  # fmt: skip
        fig.text(0.5, 0.01, RANDOM_INIT_STAMP, fontsize=9, color="red", ha="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_png(out, buf.getvalue())


def project_embeddings(
    run_dir: str | os.PathLike[str],
    X_new: np.ndarray,
    paths: Sequence[str],
    *,
    methods: Sequence[str] | None = None,
    write: bool = True,
    out_dir: str | os.PathLike[str] | None = None,
    errors: Sequence[tuple[str, str]] = (),
    embeddings_at: str | None = None,
) -> ProjectionResult:
    """Place already-embedded new points on every saved map of a run.

    Parameters
    ----------
    run_dir : path
    X_new : array of shape (n_new, dim)
        Embeddings made with the run's model (see :func:`project_images` for image files).
    paths : sequence of str
        A name per row (written with the coordinates).
    methods : sequence of str or None
        Maps to place on (default: every saved mapper).
    write : bool, default=True
    out_dir : path or None
        Default ``RUN/downstream/projected``.
    errors : sequence of (path, reason)
        Embedding failures to record alongside.
    embeddings_at : str or None
        Where the run's embedding shards are when ``run_dir`` lacks them (the remote run of a
        mirror that did not pull them): their key columns are read for the stamp, every row
        only to draw a map that ``maps.parquet`` lacks.

    Returns
    -------
    ProjectionResult
    """
    run = Path(run_dir)
    X = check_embeddings(X_new, name="X_new")
    if len(paths) != X.shape[0]:
        raise InvalidParameterError(
            f"paths must have one entry per row of X_new ({X.shape[0]}); got {len(paths)}."
        )
    emb = StoredEmbeddings(run, at=embeddings_at)
    if X.shape[1] != emb.dim:
        raise InvalidParameterError(
            f"X_new has {X.shape[1]} features but the run's embeddings have {emb.dim}; "
            "embed the new images with the run's own model (project_images does)."
        )
    from dinomap.store.staleness import stale_outputs

    stale_outputs(run, now=emb.stamp)  # the saved maps may predate images embedded since: say so
    mappers, skipped = load_mappers(run, methods)
    coords, seconds = _transform_all(mappers, X, skipped)
    return _finish(run, emb, mappers, coords, seconds, list(paths), errors, skipped, write,
                   out_dir)  # fmt: skip


def _finish(
    run: Path,
    emb: StoredEmbeddings,
    mappers: dict[str, Any],
    coords: dict[str, np.ndarray],
    seconds: dict[str, float],
    paths: list[str],
    errors: Sequence[tuple[str, str]],
    skipped: dict[str, str],
    write: bool,
    out_dir: str | os.PathLike[str] | None,
) -> ProjectionResult:
    """The result of a projection, written to ``out_dir`` (default RUN/downstream/projected)."""
    result = ProjectionResult(
        paths=list(paths), coords=coords, errors=list(errors), skipped=skipped
    )
    if not write:
        return result
    target = Path(out_dir) if out_dir is not None else run / DOWNSTREAM_DIR / PROJECTED_DIR
    plots = _write_projection(result, target, run, emb, mappers, seconds)
    return ProjectionResult(
        paths=result.paths,
        coords=coords,
        errors=result.errors,
        skipped=skipped,
        directory=target,
        plots=plots,
    )


def _transform_all(
    mappers: dict[str, Any], X: np.ndarray, skipped: dict[str, str]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Place ``X`` with every mapper: coordinates and seconds per method.

    A method that fails is logged and added to ``skipped``; none succeeding is an error.
    """
    coords: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for method, mapper in mappers.items():
        start = time.perf_counter()
        try:
            coords[method] = np.asarray(mapper.transform(X), dtype=np.float32)
        except Exception as exc:  # a method that cannot place points is reported, not fatal
            logger.warning("%s cannot place new points: %s", method, exc)
            skipped[method] = str(exc)
            continue
        seconds[method] = round(time.perf_counter() - start, 4)
    if not coords:
        raise DinomapError(
            "no map could place the new points: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return coords, seconds


def _write_projection(
    result: ProjectionResult,
    target: Path,
    run: Path,
    emb: StoredEmbeddings,
    mappers: dict[str, Any],
    seconds: dict[str, float],
) -> dict[str, Path]:
    """Write the coordinates, errors, one plot per map and ``projected.json``; return the plots."""
    frame = result.frame()
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    atomic_write_bytes(target / PROJECTED_FILE, buf.getvalue())
    atomic_write_text(target / PROJECTED_CSV, frame.to_csv(index=False))
    if result.errors:
        write_errors(target, result.errors)
    plots: dict[str, Path] = {}
    stored, random_init = read_maps(run), emb.random_init  # each read once
    for method, xy in result.coords.items():
        old = _old_points(stored, emb, method, mappers[method])
        plots[method] = _plot(method, old, xy, result.paths, target / f"{method}.png", random_init)
    atomic_write_json(
        target / PROJECTED_INFO_FILE,
        {
            "n_new": len(result.paths),
            "n_failed": len(result.errors),
            "methods": sorted(result.coords),
            "transform_seconds": seconds,
            "skipped": result.skipped,
            "random_init": random_init,
        },
    )
    return plots


def project_images(
    run_dir: str | os.PathLike[str],
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    methods: Sequence[str] | None = None,
    write: bool = True,
    out_dir: str | os.PathLike[str] | None = None,
    engine: str = "local",
    ray_options: Any = None,
    progress: bool | None = None,
    embeddings_at: str | None = None,
) -> ProjectionResult:
    """Embed new image files with the run's model and place them on the run's maps.

    Parameters
    ----------
    run_dir : path
        A run with fitted mappers in ``mappers/`` (saved by the maps stage).
    images : path or sequence of paths
        A folder (searched recursively), an image file, or a list of files.
    methods : sequence of str or None
        Maps to place on (default: every saved mapper).
    write : bool, default=True
        Write coordinates and one PNG per map into ``out_dir``.
    out_dir : path or None
        Default ``RUN/downstream/projected``.
    engine : {"local", "ray"}
        ``"ray"``: embedding and placing run as Ray Data stages (``ray_options``: a
        :class:`dinomap.embed.ray_engine.RayOptions`), for millions of new images.
    progress : bool or None
        A progress bar while the local engine embeds (default: when stderr is a terminal).
    embeddings_at : str or None
        See :func:`project_embeddings`.

    Examples
    --------
    >>> result = project_images("runs/fm", "new_images/")  # doctest: +SKIP
    >>> result.coords["umap"].shape  # doctest: +SKIP
    (12, 2)
    """
    from dinomap.downstream.search import embed_new_images
    from dinomap.store.mappers import saved_mappers

    saved = [s.method for s in saved_mappers(run_dir)]  # names checked before an image is read
    if not saved:
        load_mappers(run_dir, methods)  # says what is missing
    for method in methods or ():
        check_choice("method", method, saved)
    files = list_image_files(images)
    if engine == "ray":
        return _project_on_ray(run_dir, files, methods, (write, out_dir), ray_options,
                               embeddings_at)  # fmt: skip
    X_new, ok, errors = embed_new_images(files, run_dir, progress=progress)
    for path, reason in errors:
        logger.warning("could not embed %s: %s", path, reason)
    if not ok:
        raise NoImagesError(f"none of the {len(files)} new images could be embedded.")
    return project_embeddings(run_dir, X_new, ok, methods=methods, write=write, out_dir=out_dir,
                              errors=errors, embeddings_at=embeddings_at)  # fmt: skip


def _project_on_ray(
    run_dir: str | os.PathLike[str],
    files: list[str],
    methods: Sequence[str] | None,
    output: tuple[bool, str | os.PathLike[str] | None],
    ray_options: Any,
    embeddings_at: str | None,
) -> ProjectionResult:
    """:func:`project_images` with the embedding and the mappers as Ray Data stages
    (``output``: ``(write, out_dir)``)."""
    from dinomap.embed.ray_project import project_ray

    run = Path(run_dir)
    emb = StoredEmbeddings(run, at=embeddings_at).require()  # before any Ray work
    mappers, skipped = load_mappers(run, methods)  # checked here first, then once per actor
    start = time.perf_counter()
    ok, coords, errors = project_ray(run, files, list(mappers), ray_options)
    if not ok:
        raise NoImagesError(f"none of the {len(files)} new images could be embedded.")
    for method in [m for m, xy in coords.items() if np.isnan(xy).any()]:
        skipped[method] = "its transform failed on the Ray workers"
        del coords[method]
    if not coords:
        raise DinomapError("no map could place the new points: " + "; ".join(skipped))
    seconds = {m: round((time.perf_counter() - start) / len(coords), 4) for m in coords}
    return _finish(run, emb, {m: mappers[m] for m in coords}, coords, seconds, ok, errors,
                   skipped, *output)  # fmt: skip
