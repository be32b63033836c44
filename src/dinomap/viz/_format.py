"""Number and value formatting shared by the report and the slides."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HIDDEN_PARAMS",
    "flatten_timings",
    "fmt_number",
    "fmt_seconds",
    "fmt_value",
    "params_text",
]


def fmt_number(value: Any, digits: int = 4) -> str:
    """Format a number for people: ints with thousands separators, floats with ``digits``
    significant digits; anything else as ``str``."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:,.0f}"
    return str(value)


def fmt_seconds(value: Any) -> str:
    """``0.0123`` -> ``"12.3 ms"``, ``75.2`` -> ``"1 min 15.2 s"``."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(s):
        return str(s)
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    minutes, sec = divmod(s, 60)
    if minutes < 60:
        return f"{int(minutes)} min {sec:04.1f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes):02d} min"


def fmt_value(value: Any) -> str:
    """Plain-text form of a run.json value (lists joined, floats shortened)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return fmt_number(value)


#: Parameters that do not change a map (left out where parameters are shown).
HIDDEN_PARAMS = frozenset({"verbose", "n_jobs"})


def params_text(params: Mapping[str, Any]) -> str:
    """``{"perplexity": 30, "verbose": False}`` -> ``"perplexity=30"``."""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in params.items() if k not in HIDDEN_PARAMS)


def _stage_name(key: str) -> str:
    for suffix in ("_seconds", "_sec", "_s"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    return key.replace("_", " ")


def _is_rate(key: str) -> bool:
    return "_per_" in key or key.startswith("per_") or key.endswith(("_rate", "_per_s"))


def flatten_timings(timings: Any, prefix: str = "") -> list[tuple[str, float]]:
    """Flatten nested ``{"stage": seconds}`` dicts into ``[("stage", seconds), ...]``."""
    rows: list[tuple[str, float]] = []
    if not isinstance(timings, Mapping):
        return rows
    for key, value in timings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += flatten_timings(value, prefix=f"{name} / ")
        elif _is_rate(str(key)):
            continue  # images_per_s and the like are speeds, not durations
        elif isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((_stage_name(name), float(value)))
    return rows


def run_rel(run_dir: Any, value: Any) -> Any:
    """A path inside the run as run-relative text (``export/dinov2/1/model.pt``); any other
    value unchanged. The report and the slides show paths this way."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    root = str(Path(run_dir).resolve()).rstrip("/") + "/"
    return value[len(root) :] if value.startswith(root) else value
