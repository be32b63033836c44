"""The run report: one offline HTML page per run (``RUN/report.html``).

The page holds the run summary, the metrics of every map, an interactive scatter of every map,
the static PNG maps and, when the downstream stage has run, its clusters, outliers and duplicates.
It needs no network: the styles, the script and the point data are inline, thumbnails are JPEG
sprite sheets in ``RUN/thumbs/`` and the static maps and contact sheets are the PNGs in
``RUN/plots/`` and ``RUN/downstream/`` (or all of it inline as ``data:`` URIs with
``self_contained=True``).

Why a small self-written WebGL page rather than Bokeh or Plotly: the whole viewer is ~20 KB of
inline script instead of a 1-4 MB library bundle per page, it draws 70,000 points in one
``drawArrays`` call, hit-tests hover with a uniform grid in microseconds, and loads thumbnails
lazily from sprite sheets: a point's thumbnail is a CSS crop of a sheet image, so 70,000
thumbnails cost nothing until hovered. Point data travel as quantised ``uint16`` coordinates
(base64), about 5.3 bytes per point and method, so a 70,000-point page with five maps stays a
few MB. No new dependency is needed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
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
from dinomap.store import ERRORS_FILE, atomic_write_text
from dinomap.store.layout import REPORT_FILE, THUMBS_DIR
from dinomap.viz._format import (
    flatten_timings,
    fmt_number,
    fmt_seconds,
    fmt_value,
    params_text,
)
from dinomap.viz._run_data import (
    DownstreamData,
    RunData,
    find_key,
    method_title,
    read_run_data,
)
from dinomap.viz._thumbs import ThumbSheets, make_thumbnail_loader, write_thumb_sheets

__all__ = ["REPORT_FILE", "THUMBS_DIR", "render_report_html", "write_report"]

logger = logging.getLogger(__name__)

NO_LABEL = "(unlabelled)"  # as in the static maps' legends
UNLABELLED_COLOUR = "#BBBBBB"
_QMAX = 65534  # quantised coordinates live in [0, 65534]; 65535 marks a point not placed

#: Rows of the outlier table (the full list is in ``downstream/outliers.json``).
OUTLIER_ROWS = 20
#: Outlier-score colouring of the map: quantile bins, lowest first, and their colours.
_OUTLIER_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)
_OUTLIER_BINS = ("lowest 50%", "50–75%", "75–90%", "90–95%", "95–99%", "top 1%")
_OUTLIER_COLOURS = ("#c6dbef", "#9ecae1", "#fdd49e", "#fc8d59", "#e34a33", "#990000")
NO_SCORE = "(no score)"

_METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trustworthiness", "Trustworthiness"),
    ("knn_preservation", "kNN preservation"),
    ("knn_accuracy", "kNN label accuracy"),
    ("agreement", "Agreement with exact map"),
    ("fit_seconds", "Fit time"),
)


# ----------------------------------------------------------------------------- formatting
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------- payload
def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(
        np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    ).decode("ascii")


def _quantise(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Quantise coordinates to uint16 with one scale for both axes (keeps the aspect ratio)."""
    ok = np.isfinite(xy).all(axis=1)
    qx = np.full(len(xy), 65535, dtype=np.uint16)
    qy = np.full(len(xy), 65535, dtype=np.uint16)
    if not ok.any():
        return qx, qy, [1.0, 1.0]
    pts = xy[ok].astype(np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1])) or 1.0
    q = np.rint((pts - lo) / span * _QMAX).astype(np.uint16)
    qx[ok], qy[ok] = q[:, 0], q[:, 1]
    extent = [float((hi[0] - lo[0]) / span), float((hi[1] - lo[1]) / span)]
    return qx, qy, extent


def _code_dtype(n_names: int) -> type[np.unsignedinteger[Any]]:
    return np.uint16 if n_names <= 65536 else np.uint32


def _class_sort_key(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then names: the order of the static maps' legends."""
    if name == NO_LABEL:
        return (2, 0.0, name)
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _categories(
    values: Sequence[Any], order: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Category names and integer codes; ``order`` fixes the order of known names, the others
    follow in the static maps' order (numbers numerically, then names, unlabelled last)."""
    texts = [NO_LABEL if v is None else str(v) for v in values]
    present = set(texts)
    names = [n for n in (order or []) if n in present]
    names += sorted(present - set(names), key=_class_sort_key)
    lookup = {n: k for k, n in enumerate(names)}
    return names, np.asarray([lookup[t] for t in texts], dtype=_code_dtype(len(names)))


def _label_colours(names: Sequence[str]) -> list[str] | None:
    """The static maps' colour of each class (same palette, same order), so the interactive map
    and the PNGs agree; None (the page's own palette) past the static palettes' 10 colours."""
    classes = [n for n in names if n != NO_LABEL]
    if len(classes) > 10:
        return None
    try:
        from dinomap.viz.static import class_styles
    except ImportError:  # pragma: no cover - part of the package
        return None
    styles = class_styles(classes)
    return [UNLABELLED_COLOUR if n == NO_LABEL else styles[n][0] for n in names]


def _path_table(paths: Sequence[str]) -> dict[str, Any]:
    """Factor the common directories out of the paths (they repeat for every image)."""
    dirs: dict[str, int] = {}
    idx = np.empty(len(paths), dtype=np.uint32)
    names = []
    for i, p in enumerate(paths):
        head, sep, tail = p.rpartition("/")
        if not sep:
            head, tail = "", p
        idx[i] = dirs.setdefault(head, len(dirs))
        names.append(tail)
    return {"dirs": list(dirs), "dir_index": _b64(idx), "names": names}


def _method_info(data: RunData, method: str) -> str:
    m = data.method_metrics(method)
    parts = []
    if isinstance(m.get("params"), Mapping) and m["params"]:
        parts.append(params_text(m["params"]))
    for key, title in _METRIC_COLUMNS:
        if m.get(key) is not None:
            value = fmt_seconds(m[key]) if key == "fit_seconds" else fmt_number(m[key], 3)
            parts.append(f"{title.lower()} {value}")
    return " · ".join(parts)


def _default_point_size(n: int) -> float:
    return 7.0 if n <= 1_000 else 5.0 if n <= 5_000 else 4.0 if n <= 20_000 else 3.0


def _outlier_coloring(scores: np.ndarray) -> dict[str, Any] | None:
    """Quantile bins of the outlier scores as a categorical colouring (empty bins left out),
    plus the scores themselves (float32) for the tooltip."""
    finite = np.isfinite(scores)
    if not finite.any():
        return None
    edges = np.quantile(scores[finite], _OUTLIER_QUANTILES)
    bins = np.searchsorted(edges, scores, side="right")
    bins[~finite] = len(_OUTLIER_BINS)
    names: list[str] = []
    colors: list[str] = []
    lookup = np.full(len(_OUTLIER_BINS) + 1, -1, dtype=np.int64)
    for b in range(len(_OUTLIER_BINS) + 1):
        members = bins == b
        if not members.any():
            continue
        lookup[b] = len(names)
        if b == len(_OUTLIER_BINS):
            names.append(NO_SCORE)
            colors.append(UNLABELLED_COLOUR)
            continue
        lo, hi = float(scores[members].min()), float(scores[members].max())
        names.append(f"{_OUTLIER_BINS[b]} ({fmt_number(lo, 3)}–{fmt_number(hi, 3)})")
        colors.append(_OUTLIER_COLOURS[b])
    codes = lookup[bins].astype(_code_dtype(len(names)))
    return {
        "names": names,
        "codes": _b64(codes),
        "bytes": codes.itemsize,
        "colors": colors,
        "scores": _b64(scores.astype(np.float32)),
    }


def _payload(data: RunData, thumbs: dict[str, Any] | None) -> dict[str, Any]:
    n = data.n_points
    methods = []
    for method, xy in data.coords.items():
        qx, qy, extent = _quantise(xy)
        methods.append(
            {
                "name": method,
                "title": method_title(method),
                "x": _b64(qx),
                "y": _b64(qy),
                "extent": extent,
                "info": _method_info(data, method),
            }
        )
    labels = None
    if data.labels is not None:
        names, codes = _categories(data.labels)
        labels = {
            "names": names,
            "codes": _b64(codes),
            "bytes": codes.itemsize,
            "colors": _label_colours(names),
        }
    clusters = None
    if data.clusters is not None:
        ids = sorted({int(c) for c in data.clusters})
        names = ["noise" if c < 0 else f"cluster {c}" for c in ids]
        lookup = {c: k for k, c in enumerate(ids)}
        codes = np.asarray([lookup[int(c)] for c in data.clusters], dtype=_code_dtype(len(names)))
        clusters = {
            "names": names,
            "codes": _b64(codes),
            "bytes": codes.itemsize,
            "grey": lookup.get(-1, -1),
        }
    scores = data.downstream.outlier_scores
    outliers = _outlier_coloring(scores) if scores is not None and n else None
    return {
        "n": n,
        "methods": methods,
        "labels": labels,
        "clusters": clusters,
        "outliers": outliers,
        "default_color": "cluster" if clusters and not labels else "label" if labels else "none",
        "paths": _path_table(data.paths),
        "thumbs": thumbs,
        "point_size": _default_point_size(n),
        "alpha": 210 if n <= 5_000 else 170 if n <= 30_000 else 140,
        "random_init": data.random_init,
    }


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


# ----------------------------------------------------------------------------- sections
def _card(title: str, body: str) -> str:
    return f'<div class="dm-card"><h3>{_esc(title)}</h3>{body}</div>'


def _rows(
    section: Mapping[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """``(name, escaped value)`` rows of a run.json section, leaving out unset (None) values."""
    return [
        (str(k).replace("_", " "), _esc(fmt_value(v)))
        for k, v in section.items()
        if v is not None and k not in skip
    ]


def _metric_text(key: str, value: Any) -> str:
    if value is not None and key.endswith("_seconds"):
        return fmt_seconds(value)
    return fmt_number(value)


def _dl(rows: Sequence[tuple[str, str]]) -> str:
    """Definition list; values are HTML already."""
    if not rows:
        return '<p class="dm-empty">not recorded</p>'
    items = "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>"


def _banner(data: RunData) -> str:
    stale = "".join(
        f'<div class="dm-banner-stale" role="alert">⚠ {html.escape(line)}</div>'
        for line in data.stale
    )
    if not data.random_init:
        return stale
    return stale + (
        '<div class="dm-banner-random" id="random-init-banner" role="alert">'
        "⚠ RANDOM-INIT WEIGHTS — this run did not use trained DINOv2 weights"
        "<small>The model's weights were randomly initialised, so the embeddings and every map "
        "below carry no learned semantics. Use them to test the pipeline only, never to judge "
        "the data.</small></div>"
    )


def _summary(data: RunData, href: dict[str, str]) -> str:
    info = data.info
    counts = info.get("counts") or {}
    embedded, failed, total = data.n_embedded, data.n_failed_images, data.n_total
    img_rows = [
        (
            "embedded",
            f'<span class="dm-big" id="count-embedded">{_esc(fmt_number(embedded))}</span>',
        )
    ]
    failed_html = f'<span id="count-failed">{_esc(fmt_number(failed))}</span>'
    if "errors" in href:
        failed_html += f' — <a href="{_esc(href["errors"])}">error list ({ERRORS_FILE})</a>'
    img_rows.append(("failed", failed_html))
    if total is not None:
        img_rows.append(("total found", _esc(fmt_number(total))))
    shown = {"embedded", "stored", "failed", "total", "source_images"}
    for key, value in counts.items():
        if key not in shown:
            img_rows.append((key.replace("_", " "), _esc(fmt_value(value))))
    if data.n_points:
        img_rows.append(("points in maps", _esc(fmt_number(data.n_points))))

    model = info.get("model") or {}
    model_rows = _rows(model)
    weights = info.get("weights") or {}
    source = weights.get("source", "unknown")
    if data.random_init:
        badge = '<span class="dm-badge danger" id="weights-badge">RANDOM-INIT (untrained)</span>'
    else:
        badge = f'<span class="dm-badge ok" id="weights-badge">{_esc(source)}</span>'
    weight_rows = [("source", badge)]
    weight_rows += _rows(weights, skip={"source"})
    prep = info.get("preprocessing") or {}
    prep_rows = _rows(prep)
    batch = find_key(info, "batch_size")
    if batch is not None and "batch_size" not in prep:
        prep_rows.append(("batch size", fmt_number(batch)))
    device_rows = []
    if data.device_text:
        device_rows.append(("device", _esc(data.device_text)))
    if info.get("precision") is not None:
        device_rows.append(("precision", _esc(fmt_value(info["precision"]))))
    versions = info.get("versions")
    if isinstance(versions, Mapping):
        device_rows += [(str(k), _esc(fmt_value(v))) for k, v in versions.items()]
    src = info.get("source") or {}
    src_rows = _rows(src) if isinstance(src, Mapping) else [("source", _esc(src))]

    cards = [
        _card("Images", _dl(img_rows)),
        _card("Model", _dl(model_rows)),
        _card("Weights", _dl(weight_rows)),
        _card("Preprocessing", _dl(prep_rows)),
        _card("Device", _dl(device_rows)),
        _card("Source", _dl(src_rows)),
    ]
    export = data.export
    if export:
        rows = []
        for k, v in export.items():
            text = _esc(fmt_value(v))
            if isinstance(v, str) and ("path" in k or "dir" in k or "repo" in k):
                text = f"<code>{text}</code>"
            rows.append((k.replace("_", " "), text))
        cards.append(_card("Export", _dl(rows)))

    timing_rows = [
        f"<tr><td>{_esc(name)}</td><td class='num'>{fmt_seconds(sec)}</td></tr>"
        for name, sec in flatten_timings(info.get("timings"))
    ]
    for method in data.methods or list(data.metrics.get("methods") or {}):
        fit = data.method_metrics(method).get("fit_seconds")
        if fit is not None:
            timing_rows.append(
                f"<tr><td>map: {_esc(method_title(method))}</td><td class='num'>{fmt_seconds(fit)}</td></tr>"
            )
    timings = (
        "<table class='dm-table' id='timings'><thead><tr><th>Stage</th><th>Time</th></tr></thead>"
        f"<tbody>{''.join(timing_rows)}</tbody></table>"
        if timing_rows
        else '<p class="dm-empty">No timings recorded.</p>'
    )
    return (
        '<section id="summary"><h2>Run summary</h2>'
        f'<div class="dm-cards">{"".join(cards)}</div>'
        f'<h3 style="margin:16px 0 6px;font-size:15px">Time per stage</h3>{timings}</section>'
    )


def _metrics_table(data: RunData) -> str:
    methods = list(data.methods)
    for m in data.metrics.get("methods") or {}:
        if m not in methods:
            methods.append(m)
    if not methods:
        return '<section id="metrics"><h2>Metrics</h2><p class="dm-empty">No maps in this run yet.</p></section>'
    columns = [
        (key, title)
        for key, title in _METRIC_COLUMNS
        if any(data.method_metrics(m).get(key) is not None for m in methods)
    ]
    extra_keys = sorted(
        {
            k
            for m in methods
            for k, v in data.method_metrics(m).items()
            if k not in {c[0] for c in _METRIC_COLUMNS} | {"params"}
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }
    )
    head = "".join(f"<th>{_esc(t)}</th>" for _, t in columns)
    head += "".join(
        f"<th>{_esc(k.replace('_seconds', ' time').replace('_', ' '))}</th>" for k in extra_keys
    )
    rows = []
    for m in methods:
        entry = data.method_metrics(m)
        cells = []
        for key, _ in columns:
            v = entry.get(key)
            text = fmt_seconds(v) if key == "fit_seconds" and v is not None else fmt_number(v)
            cells.append(f"<td class='num' data-key='{key}'>{_esc(text)}</td>")
        cells += [f"<td class='num'>{_esc(_metric_text(k, entry.get(k)))}</td>" for k in extra_keys]
        params = entry.get("params")
        ptxt = params_text(params) if isinstance(params, Mapping) else ""
        rows.append(
            f"<tr data-method='{_esc(m)}'><th>{_esc(method_title(m))}</th>{''.join(cells)}"
            f"<td class='params'>{_esc(ptxt)}</td></tr>"
        )
    n = data.metrics.get("n_samples")
    note = f"<p>Computed on {_esc(fmt_number(n))} samples.</p>" if n is not None else ""
    if data.metrics.get("random_init") or data.random_init:
        note += '<p><span class="dm-badge danger">random-init weights: metrics describe an untrained model</span></p>'
    return (
        '<section id="metrics"><h2>Metrics</h2>'
        f"<table class='dm-table' id='metrics-table'><thead><tr><th>Method</th>{head}<th>Parameters</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
        "<p class='dm-methodinfo'>Trustworthiness: are the map's neighbours true neighbours (1 is best). "
        "kNN preservation: share of each point's nearest neighbours in the embedding space kept on "
        "the map. kNN label accuracy: a k-nearest-neighbour classifier on the 2-D map.</p></section>"
    )


def _map_section(data: RunData) -> str:
    if not data.methods:
        return (
            '<section id="map"><h2>Interactive map</h2><p class="dm-empty">No 2-D maps in this run '
            "yet: run the maps stage, then the report again.</p></section>"
        )
    tabs = "".join(
        f'<button type="button" data-method="{_esc(m)}" aria-pressed="false">{_esc(method_title(m))}</button>'
        for m in data.methods
    )
    options = []
    if data.labels is not None:
        options.append('<option value="label">label</option>')
    if data.clusters is not None:
        options.append('<option value="cluster">cluster</option>')
    if data.downstream.outlier_scores is not None:
        options.append('<option value="outlier">outlier score</option>')
    options.append('<option value="none">none</option>')
    watermark = (
        '<div class="dm-watermark" id="dm-watermark">RANDOM-INIT WEIGHTS<br>not a trained map</div>'
        if data.random_init
        else ""
    )
    return f"""<section id="map"><h2>Interactive map</h2>
<div class="dm-toolbar">
  <div class="dm-tabs" id="dm-tabs" role="group" aria-label="map method">{tabs}</div>
  <label>colour by <select id="dm-colorby">{"".join(options)}</select></label>
  <label>point size <input id="dm-size" type="range" min="1" max="16" step="0.5"></label>
  <button type="button" class="dm-reset" id="dm-reset">reset view</button>
</div>
<div class="dm-mapwrap">
  <div class="dm-plot" id="dm-plot">
    <canvas id="dm-canvas"></canvas><canvas id="dm-overlay"></canvas>{watermark}
    <div class="dm-status" id="dm-status"></div>
  </div>
  <div class="dm-legend" id="dm-legend"></div>
</div>
<p class="dm-methodinfo" id="dm-methodinfo"></p>
<div class="dm-tip" id="dm-tip" data-index="-1">
  <div class="dm-thumb" id="dm-tip-thumb"><img id="dm-tip-img" alt="thumbnail"><div class="dm-nothumb" id="dm-tip-nothumb">no thumbnail</div></div>
  <div class="dm-tipinfo"><div class="p" id="dm-tip-path"></div><div class="l" id="dm-tip-label"></div><div class="c" id="dm-tip-extra"></div></div>
</div>
</section>"""


def _plots_section(data: RunData, href: dict[str, str]) -> str:
    figs = []
    for caption, rel in data.iter_plots():
        src = href.get(rel, rel)
        figs.append(
            f'<figure><img src="{_esc(src)}" alt="{_esc(caption)} map" loading="lazy">'
            f"<figcaption>{_esc(caption)} — <code>{_esc(rel)}</code></figcaption></figure>"
        )
    body = (
        f'<div class="dm-plots">{"".join(figs)}</div>'
        if figs
        else '<p class="dm-empty">No static maps in plots/ yet.</p>'
    )
    return f'<section id="plots"><h2>Static maps</h2>{body}</section>'


def _pct(value: Any) -> str:
    try:
        return f"{100 * float(value):.1f}%"
    except (TypeError, ValueError):
        return "—"


def _ds_figure(key: str, caption: str, ds: DownstreamData, href: dict[str, str]) -> str:
    rel = ds.files.get(key)
    if rel is None:
        return ""
    return (
        f'<figure class="dm-ds-fig" id="fig-{_esc(key.replace("_", "-"))}">'
        f'<img src="{_esc(href.get(rel, rel))}" alt="{_esc(caption)}" loading="lazy">'
        f"<figcaption>{_esc(caption)} — <code>{_esc(rel)}</code></figcaption></figure>"
    )


def _ds_block(block_id: str, title: str, card: str, extra: str = "") -> str:
    return (
        f'<div class="dm-ds" id="{block_id}"><h3>{_esc(title)}</h3>'
        f'<div class="dm-ds-body"><div class="dm-card">{card}</div>{extra}</div></div>'
    )


def _clusters_block(data: RunData, href: dict[str, str]) -> str:
    ds = data.downstream
    info = ds.clusters
    if info is None and data.clusters is None and "clusters_sheet" not in ds.files:
        return ""
    rows: list[tuple[str, str]] = []
    if info is not None:
        n_clusters, noise = info.get("n_clusters"), info.get("noise_fraction")
        if info.get("method") is not None:
            rows.append(("method", _esc(info["method"])))
    elif data.clusters is not None:  # only clusters.parquet: count on the map points
        n_clusters = int(np.unique(data.clusters[data.clusters >= 0]).size)
        noise = float(np.mean(data.clusters < 0)) if data.clusters.size else 0.0
    else:
        n_clusters = noise = None
    rows.append(
        (
            "clusters",
            f'<span class="dm-big" id="ds-n-clusters">{_esc(fmt_number(n_clusters))}</span>',
        )
    )
    rows.append(("noise share", f'<span id="ds-noise">{_esc(_pct(noise))}</span>'))
    if info is not None:
        for key, title in (("ari", "ARI vs labels"), ("nmi", "NMI vs labels")):
            if info.get(key) is not None:
                rows.append((title, f'<span id="ds-{key}">{_esc(fmt_number(info[key], 3))}</span>'))
        if info.get("ari") is None and info.get("nmi") is None:
            rows.append(("ARI / NMI", "no labels"))
        elif info.get("n_labelled") is not None:
            rows.append(("labelled images", _esc(fmt_number(info["n_labelled"]))))
        if isinstance(info.get("params"), Mapping):
            rows.append(("parameters", _esc(params_text(info["params"]))))
        if info.get("seconds") is not None:
            rows.append(("time", _esc(fmt_seconds(info["seconds"]))))
    else:
        rows.append(("source", "<code>downstream/clusters.parquet</code> (no clusters.json)"))
    sheet = _ds_figure("clusters_sheet", "Most typical images of the largest clusters", ds, href)
    return _ds_block("ds-clusters", "Clusters", _dl(rows), sheet)


def _outliers_block(data: RunData, href: dict[str, str]) -> str:
    ds = data.downstream
    info = ds.outliers
    if info is None and "outliers_sheet" not in ds.files:
        return ""
    info = info or {}
    top = [t for t in info.get("top") or [] if isinstance(t, Mapping)]
    rows: list[tuple[str, str]] = []
    for key in ("method", "k", "index"):
        if info.get(key) is not None:
            rows.append((key, _esc(fmt_value(info[key]))))
    if info.get("n_samples") is not None:
        rows.append(("images scored", _esc(fmt_number(info["n_samples"]))))
    rows.append(("top listed", f'<span id="ds-outliers-top">{len(top)}</span>'))
    if info.get("seconds") is not None:
        rows.append(("time", _esc(fmt_seconds(info["seconds"]))))
    if "outliers_table" in ds.files:
        link = _esc(href.get(ds.files["outliers_table"], ds.files["outliers_table"]))
        rows.append(("all scores", f'<a href="{link}">outliers.parquet</a>'))
    table = ""
    if top:
        body = "".join(
            f"<tr><td class='num'>{r}</td><td><code>{_esc(t.get('path'))}</code></td>"
            f"<td>{_esc(t.get('label') if t.get('label') is not None else '—')}</td>"
            f"<td class='num'>{_esc(fmt_number(t.get('score'), 3))}</td></tr>"
            for r, t in enumerate(top[:OUTLIER_ROWS], start=1)
        )
        more = (
            f"<p class='dm-methodinfo'>{OUTLIER_ROWS} of the {len(top)} listed in "
            "<code>downstream/outliers.json</code>.</p>"
            if len(top) > OUTLIER_ROWS
            else ""
        )
        table = (
            "<div class='dm-ds-table'><table class='dm-table' id='outliers-table'><thead><tr>"
            "<th>#</th><th>Path</th><th>Label</th><th>Score</th></tr></thead>"
            f"<tbody>{body}</tbody></table>{more}</div>"
        )
    sheet = _ds_figure("outliers_sheet", "The strangest images, strangest first", ds, href)
    return _ds_block("ds-outliers", "Outliers", _dl(rows), table + sheet)


def _duplicates_block(data: RunData, href: dict[str, str]) -> str:
    ds = data.downstream
    info = ds.duplicates
    if info is None:
        return ""
    rows: list[tuple[str, str]] = []
    for kind, title in (("exact", "exact groups"), ("near", "near-duplicate groups")):
        groups, images = info.get(f"n_{kind}_groups"), info.get(f"n_{kind}_images")
        text = f'<span id="ds-{kind}-groups">{_esc(fmt_number(groups))}</span>'
        if images is not None:
            text += f' <span class="dm-muted">({_esc(fmt_number(images))} images)</span>'
        rows.append((title, text))
    if info.get("threshold") is not None:
        rows.append(
            (
                "cosine threshold",
                f'<span id="ds-threshold">{_esc(fmt_number(info["threshold"], 3))}</span>',
            )
        )
    for key in ("index", "n_samples"):
        if info.get(key) is not None:
            rows.append((key.replace("n_samples", "images searched"), _esc(fmt_value(info[key]))))
    if info.get("seconds") is not None:
        rows.append(("time", _esc(fmt_seconds(info["seconds"]))))
    if "duplicates_csv" in ds.files:
        link = _esc(href.get(ds.files["duplicates_csv"], ds.files["duplicates_csv"]))
        rows.append(("groups", f'<a href="{link}" id="ds-duplicates-csv">duplicates.csv</a>'))
    return _ds_block("ds-duplicates", "Duplicates", _dl(rows))


def _downstream_section(data: RunData, href: dict[str, str]) -> str:
    """Clusters, outliers and duplicates; empty when the downstream stage has not run."""
    blocks = [
        _clusters_block(data, href),
        _outliers_block(data, href),
        _duplicates_block(data, href),
    ]
    if not any(blocks):
        return ""
    ds = data.downstream
    stamped = data.random_init or any(
        bool((d or {}).get("random_init")) for d in (ds.clusters, ds.outliers, ds.duplicates)
    )
    note = (
        '<p><span class="dm-badge danger" id="ds-random-init">random-init weights: clusters, '
        "outliers and duplicates of these embeddings carry no learned meaning</span></p>"
        if stamped
        else ""
    )
    return f'<section id="downstream"><h2>Downstream</h2>{note}{"".join(blocks)}</section>'


def _asset(name: str) -> str:
    return (files("dinomap.viz") / "templates" / name).read_text(encoding="utf-8")


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _rel(target: Path, start: Path) -> str:
    """Relative URL from the page's folder to a run file (``#``, ``%``, spaces escaped)."""
    return quote(Path(os.path.relpath(target, start)).as_posix(), safe="/")


def render_report_html(
    data: RunData,
    sheets: ThumbSheets | None = None,
    *,
    page_dir: str | os.PathLike[str] | None = None,
    self_contained: bool = False,
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

    Returns
    -------
    str
    """
    base = Path(page_dir) if page_dir is not None else data.run_dir
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
    thumbs = None
    if sheets is not None and sheets.files:
        urls = [
            _data_uri(sheets.directory / f, "image/jpeg")
            if self_contained
            else _rel(sheets.directory / f, base)
            for f in sheets.files
        ]
        missing = None
        if not sheets.available.all():
            missing = base64.b64encode(np.packbits(~sheets.available).tobytes()).decode("ascii")
        thumbs = {"size": sheets.size, "cols": sheets.cols, "sheets": urls, "missing": missing}
    payload = _payload(data, thumbs)

    info = data.info
    model = info.get("model") or {}
    src = info.get("source") or {}
    src_name = (
        src.get("kind") or src.get("name") or src.get("root") if isinstance(src, Mapping) else src
    )
    title = f"dinomap report — {data.run_dir.resolve().name}"
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
    downstream = _downstream_section(data, href)
    body = "\n".join(
        [
            _summary(data, href),
            _map_section(data),
            _metrics_table(data),
            _plots_section(data, href),
            downstream,
        ]
    )
    try:
        from dinomap import __version__
    except ImportError:  # pragma: no cover
        __version__ = "unknown"
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = (
        f"Written by dinomap {_esc(__version__)} on {now} from <code>{_esc(data.run_dir)}</code>. "
        "Works offline: no script, style or font is fetched from the network."
    )
    page = _asset("report.html")
    replacements = {
        "<!--@VERSION-->": _esc(__version__),
        "<!--@TITLE-->": _esc(title),
        "<!--@SUBTITLE-->": _esc(" · ".join(str(p) for p in subtitle_parts)),
        "<!--@RANDOM_INIT-->": "true" if data.random_init else "false",
        "<!--@BANNER-->": _banner(data),
        "<!--@NAV-->": '<a href="#downstream">Downstream</a>' if downstream else "",
        "<!--@BODY-->": body,
        "<!--@FOOTER-->": footer,
        "/*@CSS*/": _asset("report.css"),
        "/*@JS*/": _asset("report.js").replace("</script", "<\\/script"),
        "<!--@DATA-->": _json_for_script(payload),
    }
    # Substitute in one pass so that no inserted text is scanned for later markers.
    out, pos = [], 0
    pattern = re.compile("|".join(re.escape(k) for k in replacements))
    for match in pattern.finditer(page):
        out.append(page[pos : match.start()])
        out.append(replacements[match.group(0)])
        pos = match.end()
    out.append(page[pos:])
    return "".join(out)


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
    if thumbnails and data.n_points:
        loader = make_thumbnail_loader(data.info, size)
        size = _thumb_side(data.paths, loader, size)
        sheets = write_thumb_sheets(data.paths, run / THUMBS_DIR, loader, size=size)
    page = render_report_html(data, sheets, page_dir=target.parent, self_contained=self_contained)
    atomic_write_text(target, page)
    logger.info("report written to %s (%.1f KB)", target, len(page) / 1024)
    return target
