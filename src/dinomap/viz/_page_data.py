"""The point data of the report's WebGL page: quantised coordinates, category codes, colours.

Point data travel as quantised ``uint16`` coordinates (base64), about 5.3 bytes per point and
method; labels, clusters and outlier bins as integer codes; paths with their directories
factored out. The page's script (``templates/*.js``) decodes them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.viz._format import fmt_number, fmt_seconds, params_text
from dinomap.viz._html import METRIC_COLUMNS
from dinomap.viz._run_data import RunData, method_title

__all__: list[str] = []

NO_LABEL = "(unlabelled)"  # as in the static maps' legends
UNLABELLED_COLOUR = "#BBBBBB"
_QMAX = 65534  # quantised coordinates live in [0, 65534]; 65535 marks a point not placed

#: Outlier-score colouring of the map: quantile bins, lowest first, and their colours.
_OUTLIER_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)
_OUTLIER_BINS = ("lowest 50%", "50–75%", "75–90%", "90–95%", "95–99%", "top 1%")
_OUTLIER_COLOURS = ("#c6dbef", "#9ecae1", "#fdd49e", "#fc8d59", "#e34a33", "#990000")
NO_SCORE = "(no score)"


def b64(arr: np.ndarray) -> str:
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


def code_dtype(n_names: int) -> type[np.unsignedinteger[Any]]:
    return np.uint16 if n_names <= 65536 else np.uint32


def _class_sort_key(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then names: the order of the static maps' legends."""
    if name == NO_LABEL:
        return (2, 0.0, name)
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def categories(
    values: Sequence[Any], order: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Category names and integer codes; ``order`` fixes the order of known names, the others
    follow in the static maps' order (numbers numerically, then names, unlabelled last)."""
    texts = [NO_LABEL if v is None else str(v) for v in values]
    present = set(texts)
    names = [n for n in (order or []) if n in present]
    names += sorted(present - set(names), key=_class_sort_key)
    lookup = {n: k for k, n in enumerate(names)}
    return names, np.asarray([lookup[t] for t in texts], dtype=code_dtype(len(names)))


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
    return {"dirs": list(dirs), "dir_index": b64(idx), "names": names}


def _method_info(data: RunData, method: str) -> str:
    m = data.method_metrics(method)
    parts = []
    if isinstance(m.get("params"), Mapping) and m["params"]:
        parts.append(params_text(m["params"]))
    for key, title in METRIC_COLUMNS:
        if m.get(key) is not None:
            value = fmt_seconds(m[key]) if key == "fit_seconds" else fmt_number(m[key], 3)
            parts.append(f"{title.lower()} {value}")
    return " · ".join(parts)


def _default_point_size(n: int) -> float:
    return 7.0 if n <= 1_000 else 5.0 if n <= 5_000 else 4.0 if n <= 20_000 else 3.0


def outlier_coloring(scores: np.ndarray) -> dict[str, Any] | None:
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
    codes = lookup[bins].astype(code_dtype(len(names)))
    return {
        "names": names,
        "codes": b64(codes),
        "bytes": codes.itemsize,
        "colors": colors,
        "scores": b64(scores.astype(np.float32)),
    }


def display_paths(paths: Sequence[str], run_dir: Path) -> tuple[list[str], np.ndarray]:
    """Paths relative to the run where they point inside it, and which ones were changed."""
    root = str(run_dir.resolve()).rstrip("/") + "/"
    out: list[str] = []
    inside = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        if p.startswith(root):
            out.append(p[len(root) :])
            inside[i] = True
        else:
            out.append(p)
    return out, inside


def page_payload(
    data: RunData, thumbs: dict[str, Any] | None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The page's data; ``extra`` (the workbench's neighbours, label issues...) is merged in.

    Paths inside the run are shown relative to it; ``paths.in_run`` (one bit a point, or None
    when no path was changed) and ``paths.root`` let the page export absolute paths again."""

    n = data.n_points
    methods = []
    for method, xy in data.coords.items():
        qx, qy, extent = _quantise(xy)
        methods.append(
            {
                "name": method,
                "title": method_title(method),
                "x": b64(qx),
                "y": b64(qy),
                "extent": extent,
                "info": _method_info(data, method),
            }
        )
    labels = None
    if data.labels is not None:
        names, codes = categories(data.labels)
        labels = {
            "names": names,
            "codes": b64(codes),
            "bytes": codes.itemsize,
            "colors": _label_colours(names),
        }
    clusters = None
    if data.clusters is not None:
        ids = sorted({int(c) for c in data.clusters})
        names = ["noise" if c < 0 else f"cluster {c}" for c in ids]
        lookup = {c: k for k, c in enumerate(ids)}
        codes = np.asarray([lookup[int(c)] for c in data.clusters], dtype=code_dtype(len(names)))
        clusters = {
            "names": names,
            "codes": b64(codes),
            "bytes": codes.itemsize,
            "grey": lookup.get(-1, -1),
        }
    scores = data.downstream.outlier_scores
    outliers = outlier_coloring(scores) if scores is not None and n else None
    shown, inside = display_paths(data.paths, data.run_dir)
    path_table = _path_table(shown)
    path_table["root"] = str(data.run_dir.resolve())
    path_table["in_run"] = b64(np.packbits(inside)) if inside.any() else None
    return {
        "n": n,
        "methods": methods,
        "labels": labels,
        "clusters": clusters,
        "outliers": outliers,
        "default_color": "cluster" if clusters and not labels else "label" if labels else "none",
        "paths": path_table,
        "thumbs": thumbs,
        "point_size": _default_point_size(n),
        "alpha": 210 if n <= 5_000 else 170 if n <= 30_000 else 140,
        "random_init": data.random_init,
    } | dict(extra or {})


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: every ``<``, ``>`` and
    ``&`` is written as a JSON ``\\u`` escape, so no string (``</script>``, ``<!--``...) can end
    the element or open a comment, and ``JSON.parse`` reads the strings back unchanged."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
