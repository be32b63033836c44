"""The generic fitting loop of :func:`make_maps`, driven by each method's ReducerSpec
(``needs_target``, ``holdout_reference``, ``reuses_graph_of``, ``numba_warm_up``): no method
name is tested here."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.maps._inputs import build_estimator, load_points, resolve_methods
from dinomap.maps._outputs import MapsResult, jsonable_key, jsonable_params, write_outputs
from dinomap.maps.holdout import fit_with_holdout, reported_agreement, same_graph
from dinomap.reduce.registry import reducer_spec
from dinomap.store import atomic_write_json
from dinomap.store.layout import MAPS_FILE, METRICS_FILE, PLOTS_DIR

__all__ = ["make_maps"]

logger = logging.getLogger(__name__)


def make_maps(
    source: Any,
    methods: str | Iterable[str] | None = None,
    *,
    labels: Sequence[Any] | None = None,
    paths: Sequence[str] | None = None,
    random_state: Any = 0,
    out_dir: str | os.PathLike[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    n_jobs: int | None = None,
    random_init: bool | None = None,
    save_mappers: bool = True,
    plots: bool = True,
    evaluate: bool = True,
    warm_up_umap: bool = True,
    device: str | None = None,
    verbose: bool = False,
) -> MapsResult:
    """Make 2-D maps of embeddings, score them and (with an output directory) write them.

    Parameters
    ----------
    source : path, Embeddings, (X, labels) or array
        A run directory (its embeddings, labels and ``run.json``), an
        :class:`~dinomap.store.Embeddings`, a pair ``(X, labels)`` or an array ``X``.
    methods : str, iterable of str or None
        Method names or a comma-separated string (``"tsne,umap"``). ``None``: all five
        (the neural ones only where :mod:`dinomap.parametric` imports). ``tsne_nn`` adds ``tsne``.
    labels, paths : sequence, optional
        Override or supply the labels / point identifiers (default paths: row numbers).
    random_state : int or None, default=0
        Seed of every method (PCA, t-SNE and the t-SNE approximator are then reproducible).
    out_dir : path or None
        Where to write the outputs; defaults to the run directory when ``source`` is one.
        ``None`` with array input: nothing is written.
    params : dict of str to dict, optional
        Per-method parameters, e.g. ``{"tsne": {"perplexity": 50}}``.
    n_jobs : int or None
        Threads for the methods that take ``n_jobs`` (default: theirs, all cores).
    random_init : bool or None
        Mark the outputs as coming from random-init weights; default: from ``run.json``.
    save_mappers, plots, evaluate : bool
        Write ``mappers/``, write ``plots/``, compute the metrics.
    warm_up_umap : bool, default=True
        Compile umap-learn's numba code in a background thread while PCA and t-SNE run.
    device : str or None
        Device of the methods that take one (the neural mappers): ``"auto"``, ``"cpu"``,
        ``"cuda"``...; ``None`` leaves each method's own default (``"auto"``).
    verbose : bool, default=False
        Print one line per method and the metrics table.

    Returns
    -------
    MapsResult

    Examples
    --------
    >>> res = make_maps("runs/fm", methods="pca,tsne", random_state=7)  # doctest: +SKIP
    >>> print(res.table)  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    names, params = _check_methods(methods, params)
    X, lab, pths, info, run_dir, stamp = load_points(source, labels, paths)
    n = X.shape[0]
    if n < 3:
        raise InvalidParameterError(f"a map needs at least 3 points; got {n}.")
    out = Path(out_dir) if out_dir is not None else run_dir
    if random_init is None:
        random_init = bool(info.get("weights", {}).get("random_init", False))

    mappers = _estimators(names, params, random_state, n_jobs, device, n)
    warm_thread = _start_warm_up(names, mappers, n, random_state) if warm_up_umap else None
    evaluator = _evaluator(X, lab) if evaluate else None

    coords: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name in names:
        coords[name], entries[name] = _fit_one(
            name, X, mappers, coords, evaluator, warm_thread, random_state
        )
        if verbose:
            _print_fitted(name, entries[name])

    metrics: dict[str, Any] = {
        "n_samples": n,
        "random_init": bool(random_init),
        "labels": lab is not None,
        "n_features": int(X.shape[1]),
        "random_state": random_state
        if isinstance(random_state, int | None)
        else repr(random_state),
        "metrics": evaluator.info if evaluator is not None else None,
        "embeddings": stamp,
        "methods": entries,
        "total_seconds": None,
    }
    result = MapsResult(coords, metrics, mappers, pths, lab, out)
    _write(result, t_start, save_mappers=save_mappers, plots=plots, verbose=verbose)
    return result


def _write(
    result: MapsResult, t_start: float, *, save_mappers: bool, plots: bool, verbose: bool
) -> None:
    """Write the outputs (when there is an output directory), then metrics.json with the total."""
    out = result.out_dir
    if out is not None:
        write_outputs(result, save_mappers=save_mappers, plots=plots)
    result.metrics["total_seconds"] = time.perf_counter() - t_start
    if out is not None:
        result.files["metrics"] = atomic_write_json(out / METRICS_FILE, result.metrics)
    if verbose:
        print(result.table, flush=True)
        if out is not None:
            print(f"wrote {out / MAPS_FILE}, {out / METRICS_FILE}, {out / PLOTS_DIR}/", flush=True)


def _evaluator(X: np.ndarray, labels: list[str | None] | None) -> Any:
    from dinomap.metrics import MapEvaluator

    return MapEvaluator(X, labels)


def _print_fitted(name: str, entry: Mapping[str, Any]) -> None:
    trust = entry.get("trustworthiness")
    print(
        f"{reducer_spec(name).label:>16}: {entry['fit_seconds']:7.1f} s"
        + (f", trustworthiness {trust:.3f}" if trust is not None else ""),
        flush=True,
    )


def _check_methods(
    methods: str | Iterable[str] | None, params: Mapping[str, Mapping[str, Any]] | None
) -> tuple[list[str], dict[str, Mapping[str, Any]]]:
    names = resolve_methods(methods)
    if not names:
        raise DinomapError("no map method is available here; see `dinomap map --help`.")
    checked = dict(params or {})
    for key in checked:
        if key not in names:
            reducer_spec(key)  # unknown -> clear error; known but not run -> ignored
            logger.warning("parameters given for %s, which is not being made", key)
    return names, checked


def _estimators(
    names: list[str],
    params: Mapping[str, Mapping[str, Any]],
    random_state: Any,
    n_jobs: int | None,
    device: str | None,
    n: int,
) -> dict[str, Any]:
    """Build and validate every estimator before the first long fit."""
    mappers: dict[str, Any] = {}
    for name in names:
        given = _small_n_defaults(name, params.get(name, {}), n)
        mapper = build_estimator(name, given, random_state, n_jobs, device)
        check = getattr(mapper, "validate", None)
        if callable(check):
            check(n)
        mappers[name] = mapper
    return mappers


#: Neighbourhood-size parameters whose *default* cannot exceed what ``n`` points allow: the
#: largest value ``n`` allows. A value the user gave is never changed (validate() refuses it).
_SMALL_N_LIMITS: dict[str, Any] = {
    "perplexity": lambda n: max(1.0, (n - 1) / 3.0),  # t-SNE: 3 * perplexity <= n - 1
    "n_neighbors": lambda n: max(2, n - 1),  # UMAP, parametric UMAP: n_neighbors < n
}


def _small_n_defaults(name: str, params: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``params`` with the defaults that ``n`` points cannot take lowered, and said so."""
    out = dict(params)
    defaults = reducer_spec(name).load_class()().get_params(deep=False)
    for key, limit in _SMALL_N_LIMITS.items():
        if key in defaults and key not in out and defaults[key] is not None:
            allowed = limit(n)
            if defaults[key] > allowed:
                out[key] = allowed
                logger.warning(
                    "%s: %s=%s is too large for %d points; using %s (set %s.%s to choose)",
                    reducer_spec(name).label, key, defaults[key], n, round(allowed, 3), name, key,
                )  # fmt: skip
    return out


def _start_warm_up(
    names: list[str], mappers: Mapping[str, Any], n: int, random_state: Any
) -> threading.Thread | None:
    """Compile umap-learn's numba code in the background for the methods that need it."""
    if not any(reducer_spec(name).numba_warm_up for name in names):
        return None
    from dinomap.reduce.umap import NNDESCENT_MIN_SAMPLES, start_warm_up

    if n <= NNDESCENT_MIN_SAMPLES:
        return None
    low_memory = bool(getattr(mappers.get("umap"), "low_memory", True))
    return start_warm_up(low_memory=low_memory, seeded=random_state is not None)


def _fit_one(
    name: str,
    X: np.ndarray,
    mappers: Mapping[str, Any],
    coords: Mapping[str, np.ndarray],
    evaluator: Any,
    warm_thread: threading.Thread | None,
    random_state: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit method ``name`` (driven by its ReducerSpec), return its map and metrics entry."""
    mapper, spec, n = mappers[name], reducer_spec(name), X.shape[0]
    waited = None
    if spec.numba_warm_up and warm_thread is not None:
        t_wait = time.perf_counter()
        warm_thread.join()
        waited = time.perf_counter() - t_wait
    t0 = time.perf_counter()
    held_info: dict[str, Any] | None = None
    ref = spec.holdout_reference
    if spec.needs_target:
        Y = mapper.fit(X, coords[spec.needs_target]).transform(X)
    elif ref is not None and ref in coords:
        reuse = spec.reuses_graph_of == ref and same_graph(mappers, ref, name)
        Y, held_info = fit_with_holdout(
            mapper, X, mappers[ref], coords[ref], reuse, random_state, reference=ref
        )
    else:
        Y = mapper.fit_transform(X)
    fit_seconds = time.perf_counter() - t0
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    if Y.shape != (n, 2):
        raise DinomapError(f"{name} returned a map of shape {Y.shape}; expected ({n}, 2).")
    entry: dict[str, Any] = {"params": jsonable_params(mapper), "fit_seconds": fit_seconds}
    if waited is not None:
        # time spent waiting for umap-learn's numba compilation (started in the background)
        entry["numba_warm_up_wait_seconds"] = waited
    if hasattr(mapper, "key_params"):
        entry["key_params"] = jsonable_key(mapper.key_params())
    if evaluator is not None:
        t1 = time.perf_counter()
        entry.update(evaluator.evaluate(Y))
        entry["metrics_seconds"] = time.perf_counter() - t1
    else:
        entry.update(trustworthiness=None, knn_preservation=None, knn_accuracy=None)
    if held_info is not None:
        entry["agreement"] = held_info["knn_agreement"]
        entry["heldout"] = held_info
    elif "export" in spec.capabilities:  # the neural mappers report their own held-out check
        agreement, held = reported_agreement(mapper)
        entry["agreement"] = agreement
        if held is not None:
            entry["heldout"] = held
    return Y, entry
