"""The downstream section of the report: clusters, outliers and duplicates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dinomap.viz._format import fmt_number, fmt_seconds, fmt_value, params_text, run_rel
from dinomap.viz._html import dl_html, esc
from dinomap.viz._run_data import DownstreamData, RunData

__all__ = ["OUTLIER_ROWS"]

#: Rows of the outlier table (the full list is in ``downstream/outliers.json``).
OUTLIER_ROWS = 20
#: Outlier-score colouring of the map: quantile bins, lowest first, and their colours.


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
        f'<figure class="dm-ds-fig" id="fig-{esc(key.replace("_", "-"))}">'
        f'<img src="{esc(href.get(rel, rel))}" alt="{esc(caption)}" loading="lazy">'
        f"<figcaption>{esc(caption)} — <code>{esc(rel)}</code></figcaption></figure>"
    )


def _ds_block(block_id: str, title: str, card: str, extra: str = "") -> str:
    return (
        f'<div class="dm-ds" id="{block_id}"><h3>{esc(title)}</h3>'
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
            rows.append(("method", esc(info["method"])))
    elif data.clusters is not None:  # only clusters.parquet: count on the map points
        n_clusters = int(np.unique(data.clusters[data.clusters >= 0]).size)
        noise = float(np.mean(data.clusters < 0)) if data.clusters.size else 0.0
    else:
        n_clusters = noise = None
    rows.append(
        (
            "clusters",
            f'<span class="dm-big" id="ds-n-clusters">{esc(fmt_number(n_clusters))}</span>',
        )
    )
    rows.append(("noise share", f'<span id="ds-noise">{esc(_pct(noise))}</span>'))
    if info is not None:
        for key, title in (("ari", "ARI vs labels"), ("nmi", "NMI vs labels")):
            if info.get(key) is not None:
                rows.append((title, f'<span id="ds-{key}">{esc(fmt_number(info[key], 3))}</span>'))
        if info.get("ari") is None and info.get("nmi") is None:
            rows.append(("ARI / NMI", "no labels"))
        elif info.get("n_labelled") is not None:
            rows.append(("labelled images", esc(fmt_number(info["n_labelled"]))))
        if isinstance(info.get("params"), Mapping):
            rows.append(("parameters", esc(params_text(info["params"]))))
        if info.get("seconds") is not None:
            rows.append(("time", esc(fmt_seconds(info["seconds"]))))
    else:
        rows.append(("source", "<code>downstream/clusters.parquet</code> (no clusters.json)"))
    sheet = _ds_figure("clusters_sheet", "Most typical images of the largest clusters", ds, href)
    return _ds_block("ds-clusters", "Clusters", dl_html(rows), sheet)


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
            rows.append((key, esc(fmt_value(info[key]))))
    if info.get("n_samples") is not None:
        rows.append(("images scored", esc(fmt_number(info["n_samples"]))))
    rows.append(("top listed", f'<span id="ds-outliers-top">{len(top)}</span>'))
    if info.get("seconds") is not None:
        rows.append(("time", esc(fmt_seconds(info["seconds"]))))
    if "outliers_table" in ds.files:
        link = esc(href.get(ds.files["outliers_table"], ds.files["outliers_table"]))
        rows.append(("all scores", f'<a href="{link}">outliers.parquet</a>'))
    table = ""
    if top:
        body = "".join(
            f"<tr><td class='num'>{r}</td><td><code>{esc(run_rel(data.run_dir, t.get('path')))}</code></td>"
            f"<td>{esc(t.get('label') if t.get('label') is not None else '—')}</td>"
            f"<td class='num'>{esc(fmt_number(t.get('score'), 3))}</td></tr>"
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
    return _ds_block("ds-outliers", "Outliers", dl_html(rows), table + sheet)


def _duplicates_block(data: RunData, href: dict[str, str]) -> str:
    ds = data.downstream
    info = ds.duplicates
    if info is None:
        return ""
    rows: list[tuple[str, str]] = []
    for kind, title in (("exact", "exact groups"), ("near", "near-duplicate groups")):
        groups, images = info.get(f"n_{kind}_groups"), info.get(f"n_{kind}_images")
        text = f'<span id="ds-{kind}-groups">{esc(fmt_number(groups))}</span>'
        if images is not None:
            text += f' <span class="dm-muted">({esc(fmt_number(images))} images)</span>'
        rows.append((title, text))
    if info.get("threshold") is not None:
        rows.append(
            (
                "cosine threshold",
                f'<span id="ds-threshold">{esc(fmt_number(info["threshold"], 3))}</span>',
            )
        )
    for key in ("index", "n_samples"):
        if info.get(key) is not None:
            rows.append((key.replace("n_samples", "images searched"), esc(fmt_value(info[key]))))
    if info.get("seconds") is not None:
        rows.append(("time", esc(fmt_seconds(info["seconds"]))))
    if "duplicates_csv" in ds.files:
        link = esc(href.get(ds.files["duplicates_csv"], ds.files["duplicates_csv"]))
        rows.append(("groups", f'<a href="{link}" id="ds-duplicates-csv">duplicates.csv</a>'))
    return _ds_block("ds-duplicates", "Duplicates", dl_html(rows))


def _label_issues_block(data: RunData, href: dict[str, str]) -> str:
    """The label-issues stage's most suspicious images: contact sheet and table."""
    ds = data.downstream
    rel = ds.files.get("label_issues_table")
    if rel is None:
        return ""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(data.run_dir / rel).to_pylist()
    except (OSError, ValueError) as exc:
        return f'<p class="dm-empty">{esc(rel)} unreadable: {esc(exc)}</p>'
    table.sort(key=lambda r: -float(r.get("label_issue_score") or 0.0))
    body = "".join(
        f"<tr><td class='num'>{r}</td><td><code>{esc(run_rel(data.run_dir, t.get('path')))}</code>"
        f"</td><td>{esc(t.get('label'))}</td><td>{esc(t.get('suggested_label'))}</td>"
        f"<td class='num'>{esc(fmt_number(t.get('label_issue_score'), 3))}</td></tr>"
        for r, t in enumerate(table[:OUTLIER_ROWS], start=1)
    )
    link = esc(href.get(rel, rel))
    card = dl_html(
        [
            ("images scored", esc(fmt_number(len(table)))),
            ("table", f'<a href="{link}">label_issues.parquet</a>'),
        ]
    )
    extra = _ds_figure("label_issues_sheet", "Most likely mislabelled", ds, href) + (
        "<div class='dm-ds-table'><table class='dm-table' id='label-issues-table'><thead><tr>"
        "<th>#</th><th>path</th><th>label</th><th>suggested</th><th>score</th></tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )
    return _ds_block("ds-label-issues", "Label issues", card, extra)


def downstream_section(data: RunData, href: dict[str, str]) -> str:
    """Clusters, outliers and duplicates; empty when the downstream stage has not run."""
    blocks = [
        _clusters_block(data, href),
        _outliers_block(data, href),
        _duplicates_block(data, href),
        _label_issues_block(data, href),
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
