"""Small HTML building blocks shared by the report's sections (escaping, cards, lists)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from dinomap.viz._format import fmt_number, fmt_seconds, fmt_value

__all__: list[str] = []

METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trustworthiness", "Trustworthiness"),
    ("knn_preservation", "kNN preservation"),
    ("knn_accuracy", "kNN label accuracy"),
    ("agreement", "Agreement with exact map"),
    ("fit_seconds", "Fit time"),
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def card_html(title: str, body: str) -> str:
    return f'<div class="dm-card"><h3>{esc(title)}</h3>{body}</div>'


def rows_html(
    section: Mapping[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """``(name, escaped value)`` rows of a run.json section, leaving out unset (None) values."""
    return [
        (str(k).replace("_", " "), esc(fmt_value(v)))
        for k, v in section.items()
        if v is not None and k not in skip
    ]


def metric_text(key: str, value: Any) -> str:
    if value is not None and key.endswith("_seconds"):
        return fmt_seconds(value)
    return fmt_number(value)


def dl_html(rows: Sequence[tuple[str, str]]) -> str:
    """Definition list; values are HTML already."""
    if not rows:
        return '<p class="dm-empty">not recorded</p>'
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>"
