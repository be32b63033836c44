"""Maps of small collections (2-100 points): defaults that depend on ``n`` adapt, methods that
cannot run are skipped, and both are said in one line each and recorded in ``metrics.json``.

A parameter the user set is never changed: if it cannot work for ``n`` points, the method's
``validate`` says so and the call fails. A *default* that ``n`` points cannot take (t-SNE's
perplexity 30 needs 91 points, UMAP's 15 neighbours need 16) is lowered to the largest value
``n`` allows; the held-out split of the methods measured against a reference map (parametric
UMAP: 10 % held out, at least 10 points) is dropped below :data:`HOLDOUT_MIN_SAMPLES` points. A
method that still cannot run (t-SNE below 4 points, UMAP below 3, anything on one point) is
skipped, and so is a method that imitates a skipped map (the t-SNE approximator).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.maps._inputs import build_estimator
from dinomap.reduce.registry import reducer_spec

__all__ = [
    "FIT_FAILURE_MAX_N",
    "HOLDOUT_MIN_SAMPLES",
    "SMALL_N",
    "TooFewPointsError",
    "estimators_for",
    "skip_failed_fit",
    "small_n_defaults",
    "small_n_record",
]

logger = logging.getLogger("dinomap.maps.fit")  # the logger these lines always went to

#: Below this many points a failing default means "too few points" (a method is skipped);
#: from here on it is an error as before.
SMALL_N = 100

#: Below this many points a library that fails inside its fit (umap-learn's spectral start on
#: 3 points) is taken to fail for lack of points and the method is skipped; from here on the
#: failure is an error, never hidden.
FIT_FAILURE_MAX_N = 20

#: Below this many points, the methods fitted with a held-out part (``holdout_reference``)
#: train on every point and report no held-out agreement (see :mod:`dinomap.maps.holdout`).
HOLDOUT_MIN_SAMPLES = 100

#: Neighbourhood-size parameters whose *default* cannot exceed what ``n`` points allow: the
#: largest value ``n`` allows. A value the user gave is never changed (validate() refuses it).
SMALL_N_LIMITS: dict[str, Callable[[int], float]] = {
    "perplexity": lambda n: max(1.0, (n - 1) / 3.0),  # t-SNE: 3 * perplexity <= n - 1
    "n_neighbors": lambda n: max(2, n - 1),  # UMAP, parametric UMAP: n_neighbors < n
}


class TooFewPointsError(DinomapError):
    """No map method can run on so few points (the reason of each is in the message)."""


def small_n_defaults(
    name: str, params: Mapping[str, Any], n: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``params`` with the defaults that ``n`` points cannot take lowered, and what was
    changed: ``{key: {"default": d, "used": v}}`` (said by :func:`estimators_for` once the
    method is known to run)."""
    out = dict(params)
    spec = reducer_spec(name)
    defaults = spec.load_class(out.get("backend"))().get_params(deep=False)
    changed: dict[str, dict[str, Any]] = {}
    for key, limit in SMALL_N_LIMITS.items():
        if key in defaults and key not in out and defaults[key] is not None:
            allowed = limit(n)
            if defaults[key] > allowed:
                out[key] = allowed
                changed[key] = {"default": defaults[key], "used": allowed}
    if spec.holdout_reference is not None and n < HOLDOUT_MIN_SAMPLES:
        changed["heldout"] = {
            "default": f"10% of the points held out to measure agreement with "
            f"{spec.holdout_reference}",
            "used": f"none: below {HOLDOUT_MIN_SAMPLES} points every point trains",
        }
    return out, changed


def estimators_for(
    names: list[str],
    params: Mapping[str, Mapping[str, Any]],
    random_state: Any,
    n_jobs: int | None,
    device: str | None,
    n: int,
    say: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, str]]:
    """Build and validate every estimator before the first long fit (``say``: log the adapted
    defaults and skipped methods; off for a check ahead of the real call).

    Returns the estimators (in ``names`` order), the adapted defaults per method and the
    skipped methods with their reason (each logged in one line). Raises
    :class:`TooFewPointsError` when no method can run, and the method's own error when a
    value the user set cannot work.
    """
    mappers: dict[str, Any] = {}
    adapted: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        spec = reducer_spec(name)
        if spec.needs_target and spec.needs_target not in mappers:
            skipped[name] = f"it imitates the {spec.needs_target} map, which was skipped"
        else:
            given, changed = small_n_defaults(name, params.get(name, {}), n)
            try:
                mapper = build_estimator(name, given, random_state, n_jobs, device)
                check = getattr(mapper, "validate", None)
                if callable(check):
                    check(n)
            except InvalidParameterError as exc:
                user = params.get(name) or {}
                if n >= SMALL_N or any(key in str(exc) for key in user):
                    raise  # a value the user set cannot work: their error, said as such
                skipped[name] = str(exc).rstrip(".")
                continue
            mappers[name] = mapper
            if changed:
                adapted[name] = changed
                if say:
                    _say_adapted(name, changed, n)
    for name, why in skipped.items() if mappers and say else ():  # none left: one line says it all
        logger.warning("%s skipped: %s", reducer_spec(name).label, why)
    if not mappers:
        reasons = "; ".join(f"{reducer_spec(m).label}: {why}" for m, why in skipped.items())
        raise TooFewPointsError(
            f"no map can be made from {n} point{'s' if n != 1 else ''} ({reasons}). "
            "A map needs at least 2 images (PCA), t-SNE 4, UMAP 3; add images and run again."
        )
    return mappers, adapted, skipped


def skip_failed_fit(
    name: str, exc: Exception, n: int, mappers: dict[str, Any], skipped: dict[str, str]
) -> None:
    """Record (and say in one line) that ``name`` failed to fit on ``n`` points, with the
    methods that imitate it; re-raise from :data:`FIT_FAILURE_MAX_N` points on (a real error)."""
    if n >= FIT_FAILURE_MAX_N:
        raise exc
    skipped[name] = f"its fit failed on {n} points ({type(exc).__name__}: {str(exc)[:200]})"
    mappers.pop(name, None)
    logger.warning("%s skipped: %s", reducer_spec(name).label, skipped[name])
    for other in list(mappers):
        if reducer_spec(other).needs_target == name:
            skipped[other] = f"it imitates the {name} map, which was skipped"
            mappers.pop(other)
            logger.warning("%s skipped: %s", reducer_spec(other).label, skipped[other])


def _say_adapted(name: str, changed: Mapping[str, Mapping[str, Any]], n: int) -> None:
    label = reducer_spec(name).label
    for key, what in changed.items():
        if key in SMALL_N_LIMITS:
            logger.warning(
                "%s: %s=%s is too large for %d points; using %s (set %s.%s to choose)",
                label, key, what["default"], n, round(what["used"], 3), name, key,
            )  # fmt: skip


def small_n_record(
    n: int, adapted: Mapping[str, Any], skipped: Mapping[str, str], no_metrics: bool = False
) -> dict[str, Any] | None:
    """The ``metrics.json`` ``"small_n"`` section (``None`` when nothing adapted or skipped)."""
    if not adapted and not skipped and not no_metrics:
        return None
    kept = {name: changed for name, changed in adapted.items() if name not in skipped}
    out: dict[str, Any] = {"n_samples": n, "adapted": kept, "skipped": dict(skipped)}
    if no_metrics:
        out["metrics"] = "none: trustworthiness and the kNN metrics need at least 3 points"
    return out


def finite_or_none(value: Any) -> Any:
    """``value``, or ``None`` for a NaN / infinite float (which JSON cannot hold)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
