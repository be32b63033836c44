"""The run report: one offline HTML page per run (``RUN/report.html``).

The page opens on the interactive map of every 2-D map, a workbench: lasso and box selection
(shift adds, alt removes, escape clears; one selection shared by every map and by the
side-by-side mode), a paged thumbnail grid of the selection, CSV manifest export and "copy
paths", a click-to-inspect panel with the point's 12 nearest neighbours from the run's kNN
graph, and filters and colourings by label, cluster, outlier and label-issue score. The run
summary, the metrics, the static PNG maps and the downstream results follow below. It needs
no network: the styles, the script and the point data are inline, thumbnails are JPEG sprite
sheets in ``RUN/thumbs/`` and the static maps and contact sheets are the PNGs in ``RUN/plots/``
and ``RUN/downstream/`` (or all of it inline as ``data:`` URIs with ``self_contained=True``).

Why a small self-written WebGL page rather than Bokeh, Plotly or regl-scatterplot: the whole
viewer is ~50 KB of inline script in five files (``templates/*.js``) instead of a library
bundle per page, it draws 70,000 points in one ``drawArrays`` call (1,000,000 too, with a
random sample while the map moves), hit-tests hover with a uniform grid in microseconds,
lassoes 35,000 points in a few ms and loads thumbnails lazily from sprite sheets. Point data
travel as quantised ``uint16`` coordinates and integer codes (base64, see ``_page_data.py``
and ``_workbench_data.py``). No new dependency is needed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
import os
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from dinomap._validation import check_positive_int
from dinomap._version import __version__
from dinomap.store import ERRORS_FILE, atomic_write_text
from dinomap.store.layout import REPORT_FILE, THUMBS_DIR
from dinomap.viz._downstream_sections import OUTLIER_ROWS, downstream_section
from dinomap.viz._format import fmt_number
from dinomap.viz._html import esc
from dinomap.viz._page_data import categories, json_for_script, page_payload
from dinomap.viz._report_sections import (
    banner_html,
    map_section,
    metrics_table,
    plots_section,
    summary_html,
)
from dinomap.viz._run_data import RunData, read_run_data
from dinomap.viz._thumbs import ThumbSheets, make_thumbnail_loader, write_thumb_sheets
from dinomap.viz._workbench_data import page_neighbors, workbench_payload

#: The page's script files, in order (one scope: they are joined inside one function).
_JS_FILES = ("report.js", "viewer.js", "select.js", "panels.js", "main.js")
#: Above this many points no thumbnail sheets are drawn (1,000,000 thumbnails of 48 px would
#: be about 450 MB of JPEG sheets); the tooltip and panels then show path and label only.
THUMB_LIMIT = 250_000

__all__ = ["OUTLIER_ROWS", "REPORT_FILE", "THUMBS_DIR", "render_report_html", "write_report"]

logger = logging.getLogger(__name__)


def _asset(name: str) -> str:
    return (files("dinomap.viz") / "templates" / name).read_text(encoding="utf-8")


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _rel(target: Path, start: Path) -> str:
    """Relative URL from the page's folder to a run file (``#``, ``%``, spaces escaped)."""
    return quote(Path(os.path.relpath(target, start)).as_posix(), safe="/")


def _links(data: RunData, base: Path, self_contained: bool) -> dict[str, str]:
    """``{run-relative path: URL}`` of the files the page links: errors.csv, the static maps and
    the downstream files (sheets inlined as ``data:`` URIs with ``self_contained``)."""
    href: dict[str, str] = {}
    if (data.run_dir / ERRORS_FILE).is_file():
        href["errors"] = _rel(data.run_dir / ERRORS_FILE, base)
    for _, rel in data.iter_plots():
        target = data.run_dir / rel
        href[rel] = _data_uri(target, "image/png") if self_contained else _rel(target, base)
    for key, rel in data.downstream.files.items():
        target = data.run_dir / rel
        inline = self_contained and key.endswith("_sheet")  # data files stay links
        href[rel] = _data_uri(target, "image/png") if inline else _rel(target, base)
    return href


def _thumbs_payload(
    sheets: ThumbSheets | None, base: Path, self_contained: bool
) -> dict[str, Any] | None:
    """The page's view of the thumbnail sprite sheets (None without sheets)."""
    if sheets is None or not sheets.files:
        return None
    urls = [
        _data_uri(sheets.directory / f, "image/jpeg")
        if self_contained
        else _rel(sheets.directory / f, base)
        for f in sheets.files
    ]
    missing = None
    if not sheets.available.all():
        missing = base64.b64encode(np.packbits(~sheets.available).tobytes()).decode("ascii")
    return {"size": sheets.size, "cols": sheets.cols, "sheets": urls, "missing": missing}


def _subtitle_parts(data: RunData) -> list[str]:
    """Points mapped, model, source, device and the random-init warning, for the subtitle."""
    info = data.info
    model = info.get("model") or {}
    src = info.get("source") or {}
    src_name = (
        src.get("kind") or src.get("name") or src.get("root") if isinstance(src, Mapping) else src
    )
    subtitle_parts = [
        f"{fmt_number(data.n_points)} images mapped" if data.n_points else "no maps yet",
        f"model {model.get('name') or model.get('timm_name') or 'unknown'}",
    ]
    if src_name:
        subtitle_parts.append(f"source {src_name}")
    if data.device_text:
        subtitle_parts.append(f"device {data.device_text}")
    if data.random_init:
        subtitle_parts.append("RANDOM-INIT WEIGHTS")
    return subtitle_parts


def _fill_markers(page: str, replacements: Mapping[str, str]) -> str:
    """Substitute in one pass so that no inserted text is scanned for later markers."""
    out, pos = [], 0
    pattern = re.compile("|".join(re.escape(k) for k in replacements))
    for match in pattern.finditer(page):
        out.append(page[pos : match.start()])
        out.append(replacements[match.group(0)])
        pos = match.end()
    out.append(page[pos:])
    return "".join(out)


def render_report_html(
    data: RunData,
    sheets: ThumbSheets | None = None,
    *,
    page_dir: str | os.PathLike[str] | None = None,
    self_contained: bool = False,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> str:
    """Render the report page of a run as an HTML string.

    Parameters
    ----------
    data : RunData
        What :func:`dinomap.viz._run_data.read_run_data` read from the run.
    sheets : ThumbSheets, optional
        Thumbnail sprite sheets; without them the tooltip shows no image.
    page_dir : path, optional
        Folder the page will be saved in (links to run files are relative to it); the run
        directory by default.
    self_contained : bool
        Inline the thumbnails and static maps as ``data:`` URIs (a single portable file).
    neighbors : (ids, sims), optional
        The nearest neighbours of every map point (map-order ids, cosine similarities) for the
        inspect panel, as :func:`dinomap.viz._workbench_data.page_neighbors` returns them.

    Returns
    -------
    str
    """
    base = Path(page_dir) if page_dir is not None else data.run_dir
    href = _links(data, base, self_contained)
    label_names = categories(data.labels)[0] if data.labels is not None else None
    extra = workbench_payload(data.run_dir, data.paths, label_names, neighbors)
    payload = page_payload(data, _thumbs_payload(sheets, base, self_contained), extra)
    title = f"dinomap report — {data.run_dir.resolve().name}"
    downstream = downstream_section(data, href)
    body = "\n".join(
        [
            map_section(data),
            summary_html(data, href),
            metrics_table(data),
            plots_section(data, href),
            downstream,
        ]
    )
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = (
        f"Written by dinomap {esc(__version__)} on {now} from <code>{esc(data.run_dir)}</code>. "
        "Works offline: no script, style or font is fetched from the network."
    )
    page = _asset("report.html")
    replacements = {
        "<!--@VERSION-->": esc(__version__),
        "<!--@TITLE-->": esc(title),
        "<!--@SUBTITLE-->": esc(" · ".join(str(p) for p in _subtitle_parts(data))),
        "<!--@RANDOM_INIT-->": "true" if data.random_init else "false",
        "<!--@BANNER-->": banner_html(data),
        "<!--@NAV-->": '<a href="#downstream">Downstream</a>' if downstream else "",
        "<!--@BODY-->": body,
        "<!--@FOOTER-->": footer,
        "/*@CSS*/": _asset("report.css"),
        "/*@JS*/": _script(),
        "<!--@DATA-->": json_for_script(payload),
    }
    return _fill_markers(page, replacements)


def _script() -> str:
    """The page's script files joined in one strict-mode scope."""
    body = "\n".join(_asset(name) for name in _JS_FILES)
    return ('(function () {\n"use strict";\n' + body + "\n})();").replace("</script", "<\\/script")


def _thumb_side(paths: Sequence[str], loader: Any, limit: int, sample: int = 16) -> int:
    """Thumbnail side: ``limit``, or less when the images are smaller (28 px Fashion-MNIST
    images are stored at 28 px, not upscaled: a third of the bytes; the page scales them)."""
    step = max(1, len(paths) // sample)
    sides = []
    for path in list(paths)[::step][:sample]:
        img = loader(path)
        if img is not None and getattr(img, "ndim", 0) >= 2:
            sides.append(max(int(img.shape[0]), int(img.shape[1])))
    return max(8, min(limit, max(sides))) if sides else limit


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    thumbnails: bool = True,
    thumb_size: int = 48,
    self_contained: bool = False,
) -> Path:
    """Write the offline HTML report of a run (``RUN/report.html`` by default).

    Parameters
    ----------
    run_dir : path
        The run directory (``run.json``; ``maps.parquet``, ``metrics.json``, ``plots/``,
        ``errors.csv`` and the downstream stage's ``downstream/`` files when present).
    out : path, optional
        Where to write the page; ``RUN/report.html`` by default.
    thumbnails : bool
        Draw thumbnail sprite sheets into ``RUN/thumbs/`` for the hover tooltips.
    thumb_size : int
        Largest side of a thumbnail in pixels (smaller images are kept at their own size).
    self_contained : bool
        Inline thumbnails and static maps so the page is a single portable file (larger).

    Returns
    -------
    Path
        The written page.

    Examples
    --------
    >>> write_report("runs/fm")  # doctest: +SKIP
    PosixPath('runs/fm/report.html')
    """
    size = check_positive_int("thumb_size", thumb_size, minimum=8)
    run = Path(run_dir)
    data = read_run_data(run)
    target = Path(out) if out is not None else run / REPORT_FILE
    sheets = None
    if thumbnails and data.n_points > THUMB_LIMIT:
        logger.info("%d points: no thumbnails above %d points", data.n_points, THUMB_LIMIT)
    elif thumbnails and data.n_points:
        loader = make_thumbnail_loader(data.info, size)
        size = _thumb_side(data.paths, loader, size)
        sheets = write_thumb_sheets(data.paths, run / THUMBS_DIR, loader, size=size)
    neighbors = page_neighbors(run, data.paths) if data.n_points else None
    page = render_report_html(
        data, sheets, page_dir=target.parent, self_contained=self_contained, neighbors=neighbors
    )
    atomic_write_text(target, page)
    _record_report(run, target, data)
    logger.info("report written to %s (%.1f KB)", target, len(page) / 1024)
    return target


def _record_report(run: Path, target: Path, data: RunData) -> None:
    """run.json's report section: the page, the embeddings it shows, the outputs it found stale."""
    from dinomap.store import update_run_info

    section = {
        "page": str(target.resolve()),
        "embeddings": data.stamp,
        "n_points": data.n_points,
        "stale": list(data.stale),
    }
    update_run_info(run, lambda info: info.update(report=section))
