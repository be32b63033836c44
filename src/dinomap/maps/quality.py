"""How long the neural maps train, and how faithful they came out to the maps they imitate.

``make_maps(quality=...)`` picks one of :data:`QUALITY_PRESETS`: ``"fast"`` (the default) keeps
the estimators' own step budgets, chosen so that all five maps of 70,000 points take about five
minutes on two cores; ``"faithful"`` trains both networks for longer (the budgets measured to meet
every fidelity bar on Fashion-MNIST 70k; several times the wall time; docs/maps.md has the table
of time against fidelity). A value the user set with ``params`` is kept either way.

After the fit, :func:`fidelity` compares each neural map with its reference on the same points
(trustworthiness and, with labels, kNN accuracy; on all points and on the points it never
trained on) against :data:`FIDELITY_GAPS`, and :func:`fidelity_lines` says which maps are below
their bar, in the metrics table that ``dinomap map`` and ``dinomap run`` print.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dinomap.exceptions import InvalidParameterError
from dinomap.maps.progress import stage
from dinomap.reduce.registry import reducer_spec

__all__ = [
    "FIDELITY_GAPS",
    "QUALITIES",
    "QUALITY_PRESETS",
    "add_fidelity",
    "fidelity",
    "fidelity_lines",
    "fill_budgets",
    "quality_params",
]

QUALITIES = ("fast", "faithful")

#: The step budgets of each preset (``"fast"``: the estimators' own defaults).
QUALITY_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {},
    "faithful": {
        "tsne_nn": {"max_steps": 20_000, "contrastive_steps": 12_000},
        "parametric_umap": {"max_steps": 20_000},
    },
}

#: Each neural map's reference and the largest trustworthiness and kNN-accuracy gaps allowed.
FIDELITY_GAPS: dict[str, tuple[str, float, float]] = {
    "parametric_umap": ("umap", 0.01, 0.03),
    "tsne_nn": ("tsne", 0.02, 0.03),
}

_LABELS = {
    "tsne": "t-SNE",
    "umap": "UMAP",
    "tsne_nn": "t-SNE NN",
    "parametric_umap": "parametric UMAP",
}


def check_quality(quality: str) -> str:
    """``quality`` if it is one of :data:`QUALITIES`, else an error naming them."""
    if quality not in QUALITIES:
        raise InvalidParameterError(
            f"quality must be one of {', '.join(map(repr, QUALITIES))}; got {quality!r}."
        )
    return quality


def fill_budgets(
    params: Mapping[str, Mapping[str, Any]],
    names: list[str],
    budgets: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``params`` with ``budgets`` (per method) for the keys the user did not set, and what was
    so applied per method (for ``metrics.json``)."""
    out = {name: dict(given) for name, given in params.items()}
    used: dict[str, dict[str, Any]] = {}
    for name, budget in budgets.items():
        if name in names:
            given = out.setdefault(name, {})
            applied = {k: v for k, v in budget.items() if k not in given}
            given.update(applied)
            if applied:
                used[name] = applied
    return out, used


def quality_params(
    params: Mapping[str, Mapping[str, Any]], names: list[str], quality: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``params`` with the ``quality`` preset's budgets where the user set none
    (:func:`fill_budgets`)."""
    return fill_budgets(params, names, QUALITY_PRESETS[check_quality(quality)])


def fidelity(
    name: str,
    entries: Mapping[str, Mapping[str, Any]],
    coords: Mapping[str, np.ndarray],
    X: np.ndarray,
    labels: Any,
    heldout: np.ndarray | None,
) -> dict[str, Any] | None:
    """The fidelity record of neural map ``name`` (None when it imitates nothing or its
    reference was not made): its scores and the reference's, on all points (from ``entries``)
    and on the ``heldout`` rows (computed here), each with its bar and whether it is met."""
    if name not in FIDELITY_GAPS or FIDELITY_GAPS[name][0] not in coords:
        return None
    ref, trust_gap, acc_gap = FIDELITY_GAPS[name]
    gaps = {"trustworthiness": trust_gap, "knn_accuracy": acc_gap}
    checks: list[dict[str, Any]] = []
    for key, gap in gaps.items():
        value, ref_value = entries[name].get(key), entries[ref].get(key)
        if value is not None and ref_value is not None:
            checks.append(_check("all", key, float(value), float(ref_value), gap))
    if heldout is not None and len(heldout) >= 30:
        from dinomap.metrics import knn_accuracy, trustworthiness

        rows = np.sort(np.asarray(heldout, dtype=np.int64))
        Xh, ours, theirs = X[rows], coords[name][rows], coords[ref][rows]
        checks.append(_check("held-out", "trustworthiness", trustworthiness(Xh, ours),
                             trustworthiness(Xh, theirs), trust_gap))  # fmt: skip
        if labels is not None:
            lab = [labels[i] for i in rows]
            acc, ref_acc = knn_accuracy(ours, lab), knn_accuracy(theirs, lab)
            if acc is not None and ref_acc is not None:
                checks.append(_check("held-out", "knn_accuracy", acc, ref_acc, acc_gap))
    return {
        "reference": ref,
        "allowed_gaps": gaps,
        "n_heldout": 0 if heldout is None else len(heldout),
        "checks": checks,
        "met": all(c["met"] for c in checks),
    }


def add_fidelity(
    entries: dict[str, dict[str, Any]],
    coords: Mapping[str, np.ndarray],
    X: np.ndarray,
    labels: Any,
    mappers: Mapping[str, Any],
    plan: Any,
    evaluated: bool,
) -> None:
    """Each neural map's fidelity to its reference (:func:`fidelity`), on
    all points and on the rows it never trained on (of the sample, in large-data mode)."""
    for name, entry in entries.items():
        rows = entry.pop("_heldout_rows", getattr(mappers[name], "heldout_indices_", None))
        if not evaluated or name not in FIDELITY_GAPS:
            continue
        if rows is not None and plan is not None and reducer_spec(name).large_data_sample:
            rows = plan.sample[rows]
        with stage(f"{name}: fidelity"):
            record = fidelity(name, entries, coords, X, labels, rows)
        if record is not None:
            entry["fidelity"] = record


def _check(points: str, key: str, ours: float, ref: float, gap: float) -> dict[str, Any]:
    return {"points": points, "score": key, "value": ours, "reference_value": ref,
            "bar": ref - gap, "met": bool(ours >= ref - gap - 1e-12)}  # fmt: skip


def fidelity_lines(metrics: Mapping[str, Any]) -> list[str]:
    """One line per neural map below its fidelity bar, naming the scores and the remedy."""
    lines = []
    for name, entry in metrics.get("methods", {}).items():
        record = entry.get("fidelity")
        if not record or record.get("met", True):
            continue
        ref = _LABELS.get(record["reference"], record["reference"])
        below = [
            f"{c['points']} {c['score'].replace('_', ' ').replace('knn', 'kNN')} "
            f"{c['value']:.3f} < {c['bar']:.3f} ({ref} {c['reference_value']:.3f} - "
            f"{record['allowed_gaps'][c['score']]})"
            for c in record["checks"]
            if not c["met"]
        ]
        remedy = (
            "--quality faithful trains it longer"
            if (metrics.get("quality") or {}).get("preset", "fast") == "fast"
            else "train it longer with --param " + name + ".max_steps=..."
        )
        lines.append(f"{_LABELS.get(name, name)} is below its fidelity bar to {ref}: "
                     + "; ".join(below) + f" ({remedy})")  # fmt: skip
    return lines
