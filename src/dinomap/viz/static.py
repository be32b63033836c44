"""PNG maps with matplotlib (Agg, no display needed).

Points are coloured by label with a colour-blind-safe palette (Okabe-Ito up to 8 classes,
Tableau's colour-blind 10 up to 10, then those 10 colours combined with distinct marker
shapes), with a legend of class names. Titles carry the method, its key parameters and the
headline metric. Maps of random-init runs carry a large watermark saying so.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state, safe in
threads) and written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.store import atomic_write_bytes

__all__ = [
    "OKABE_ITO",
    "TABLEAU_CB10",
    "class_styles",
    "format_title",
    "plot_map",
    "save_all_maps",
    "save_map",
]

#: Okabe & Ito (2008) colour-blind-safe palette (black moved last).
OKABE_ITO = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#000000",
)
#: Tableau's colour-blind-safe 10-colour palette.
TABLEAU_CB10 = (
    "#006BA4",
    "#FF800E",
    "#ABABAB",
    "#595959",
    "#5F9ED1",
    "#C85200",
    "#898989",
    "#A2C8EC",
    "#FFBC79",
    "#CFCFCF",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_UNLABELLED = "#BBBBBB"
_NOLABEL_COLOUR = "#0072B2"
_LEGEND_MAX = 40
RANDOM_INIT_TEXT = "RANDOM-INIT WEIGHTS\nmap not meaningful"


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def class_styles(classes: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Colour and marker of each class name (in the given order).

    Examples
    --------
    >>> class_styles(["cat", "dog"])["dog"]
    ('#56B4E9', 'o')
    """
    n = len(classes)
    colours = OKABE_ITO if n <= len(OKABE_ITO) else TABLEAU_CB10
    styles: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(classes):
        styles[name] = (colours[i % len(colours)], _MARKERS[(i // len(colours)) % len(_MARKERS)])
    return styles


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_title(
    label: str,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """Title of a map: method, key parameters, headline metric.

    Examples
    --------
    >>> format_title("t-SNE", {"perplexity": 30}, {"trustworthiness": 0.9712, "knn_accuracy": None})
    't-SNE (perplexity 30)\\ntrustworthiness 0.971'
    """
    head = label
    if params:
        head += (
            " (" + ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in params.items()) + ")"
        )
    parts = []
    if metrics:
        acc = metrics.get("knn_accuracy")
        trust = metrics.get("trustworthiness")
        if acc is not None:
            parts.append(f"kNN accuracy {acc:.3f}")
        if trust is not None:
            parts.append(f"trustworthiness {trust:.3f}")
    return head + ("\n" + ", ".join(parts) if parts else "")


def _labels_as_str(labels: Sequence[Any] | None, n: int) -> list[str | None] | None:
    if labels is None:
        return None
    out: list[str | None] = []
    for v in labels:
        missing = v is None or (isinstance(v, float) and np.isnan(v)) or v == ""
        out.append(None if missing else str(v))
    if len(out) != n:
        raise ValueError(f"labels has {len(out)} entries for {n} points")
    return out if any(v is not None for v in out) else None


def _point_size(n: int) -> float:
    return float(np.clip(6000.0 / max(n, 1), 0.3, 16.0))


def plot_map(
    ax: Any,
    Y: np.ndarray,
    labels: Sequence[Any] | None = None,
    title: str | None = None,
    styles: Mapping[str, tuple[str, str]] | None = None,
) -> list[Any]:
    """Draw map ``Y`` on ``ax``; return legend handles (empty without labels)."""
    from matplotlib.lines import Line2D

    Y = np.asarray(Y)
    n = Y.shape[0]
    size = _point_size(n)
    alpha = 0.8 if n < 5000 else 0.6
    lab = _labels_as_str(labels, n)
    # A fixed shuffled drawing order, so no class is systematically painted over the others.
    order = np.random.default_rng(0).permutation(n)
    handles: list[Any] = []
    if lab is None:
        ax.scatter(Y[order, 0], Y[order, 1], s=size, c=_NOLABEL_COLOUR, alpha=alpha, linewidths=0)
    else:
        classes = sorted({v for v in lab if v is not None}, key=_sort_key)
        styles = styles or class_styles(classes)
        colours = np.array([styles[v][0] if v is not None else _UNLABELLED for v in lab])
        markers = np.array([styles[v][1] if v is not None else "o" for v in lab])
        for marker in dict.fromkeys(markers[order]):
            sel = order[markers[order] == marker]
            ax.scatter(
                Y[sel, 0], Y[sel, 1], s=size, c=colours[sel], marker=marker, alpha=alpha,
                linewidths=0,
            )  # fmt: skip
        for name in classes:
            colour, marker = styles[name]
            handles.append(
                Line2D([], [], linestyle="", marker=marker, color=colour, markersize=6, label=name)
            )
        if any(v is None for v in lab):
            handles.append(
                Line2D([], [], linestyle="", marker="o", color=_UNLABELLED, markersize=6,
                       label="(unlabelled)")
            )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title, fontsize=10)
    return handles


def _watermark(fig: Any) -> None:
    fig.text(
        0.5, 0.5, RANDOM_INIT_TEXT, fontsize=34, color="#D55E00", alpha=0.28, ha="center",
        va="center", rotation=30, weight="bold", zorder=10,
    )  # fmt: skip


def _legend(fig: Any, ax: Any, handles: list[Any], outside: bool) -> None:
    if not handles:
        return
    shown = handles[:_LEGEND_MAX]
    if len(handles) > _LEGEND_MAX:
        from matplotlib.lines import Line2D

        shown.append(Line2D([], [], linestyle="", label=f"... {len(handles) - _LEGEND_MAX} more"))
    ncol = 1 if len(shown) <= 20 else 2
    target = fig if outside else ax
    kwargs: dict[str, Any] = {"fontsize": 8, "frameon": False, "ncol": ncol, "markerscale": 1.2}
    if outside:
        target.legend(handles=shown, loc="center left", bbox_to_anchor=(1.0, 0.5), **kwargs)
    else:
        target.legend(handles=shown, loc="center left", bbox_to_anchor=(1.01, 0.5), **kwargs)


def _write_png(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def save_map(
    path: str | os.PathLike[str],
    Y: np.ndarray,
    labels: Sequence[Any] | None = None,
    title: str = "",
    random_init: bool = False,
    dpi: int = 150,
) -> Path:
    """Write one map as a PNG; returns its path.

    Examples
    --------
    >>> import numpy as np
    >>> save_map("/tmp/m.png", np.zeros((3, 2)), ["a", "b", "a"], "PCA")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(1, 1, 1)
    if random_init:
        title = "[RANDOM-INIT WEIGHTS] " + title
    handles = plot_map(ax, Y, labels, title)
    _legend(fig, ax, handles, outside=False)
    if random_init:
        _watermark(fig)
    return _write_png(fig, path, dpi)


def save_all_maps(
    path: str | os.PathLike[str],
    maps: Mapping[str, np.ndarray],
    labels: Sequence[Any] | None = None,
    titles: Mapping[str, str] | None = None,
    random_init: bool = False,
    dpi: int = 120,
) -> Path:
    """Write every map side by side (up to 3 per row) with one shared legend; returns the path."""
    from matplotlib.figure import Figure

    names = list(maps)
    if not names:
        raise ValueError("no maps to plot")
    ncols = min(3, len(names))
    nrows = (len(names) + ncols - 1) // ncols
    fig = Figure(figsize=(5.0 * ncols, 4.8 * nrows))
    n = len(next(iter(maps.values())))
    lab = _labels_as_str(labels, n)
    styles = None
    if lab is not None:
        styles = class_styles(sorted({v for v in lab if v is not None}, key=_sort_key))
    handles: list[Any] = []
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        title = (titles or {}).get(name, name)
        handles = plot_map(ax, maps[name], lab, title, styles=styles)
    _legend(fig, None, handles, outside=True)
    if random_init:
        fig.suptitle("RANDOM-INIT WEIGHTS: these maps are not meaningful", color="#D55E00")
        _watermark(fig)
    fig.tight_layout()
    return _write_png(fig, path, dpi)
