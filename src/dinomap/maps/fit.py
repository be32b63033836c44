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

from dinomap._device import thread_counts
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.maps._inputs import load_points, resolve_methods
from dinomap.maps._outputs import MapsResult, jsonable_key, jsonable_params, write_outputs
from dinomap.maps.holdout import fit_takes, fit_with_holdout, reported_agreement, same_graph
from dinomap.maps.large import (
    LARGE_DATA_ACCURACY_SAMPLES,
    LargeDataPlan,
    large_data_params,
    place_rest,
    plan_large_data,
)
from dinomap.maps.progress import Eta, collect_timings, show_progress, stage
from dinomap.maps.quality import add_fidelity, check_quality, quality_params
from dinomap.maps.small_n import (
    TooFewPointsError,
    estimators_for,
    finite_or_none,
    skip_failed_fit,
    small_n_defaults,
    small_n_record,
)
from dinomap.reduce.registry import reducer_spec
from dinomap.store import atomic_write_json
from dinomap.store.layout import MAPS_FILE, METRICS_FILE, PLOTS_DIR

__all__ = ["check_map_request", "make_maps"]

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
    progress: bool | None = None,
    large_data: bool | str | int = "auto",
    quality: str = "fast",
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
        Device of the neural mappers (``"auto"``, ``"cpu"``, ``"cuda"``...); ``None``: theirs.
    verbose : bool, default=False
        Print one line per method and the metrics table.
    progress : bool or None, default=None
        Progress bars and stage lines on stderr (:mod:`dinomap.maps.progress`); ``None``: when
        stderr is a terminal. Every stage's seconds go to ``metrics.json`` ``"timings"`` anyway.
    large_data : "auto", bool or int, default="auto"
        Fit t-SNE, UMAP and the neural mappers on a random sample and place the other points
        with their ``transform`` (:mod:`dinomap.maps.large`): ``"auto"`` above 200,000 points,
        ``True`` always, ``False`` never, an int: that sample size.
    quality : {"fast", "faithful"}, default="fast"
        How long the neural maps train (:mod:`dinomap.maps.quality`): ``"fast"`` (all five
        maps of 70,000 points in ~5 min on two cores) or ``"faithful"`` (every fidelity bar
        met, several times longer). Fidelity goes to ``metrics.json`` and the table.

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
    params, preset = quality_params(params, names, check_quality(quality))
    _check_before_loading(source, names, params, random_state, n_jobs, device, large_data)
    X, lab, pths, info, run_dir, stamp = load_points(source, labels, paths)
    n, out = X.shape[0], Path(out_dir) if out_dir is not None else run_dir
    if random_init is None:  # from run.json
        random_init = bool(info.get("weights", {}).get("random_init", False))
    plan, params, budgets = _plan_large_data(n, large_data, random_state, params, names, verbose)
    mappers, adapted, skipped = estimators_for(names, params, random_state, n_jobs, device, n)
    names = [name for name in names if name in mappers]
    warm_thread = _start_warm_up(names, mappers, n, random_state) if warm_up_umap else None
    with show_progress(progress), collect_timings() as timings:
        evaluator = _evaluator(X, lab, plan) if evaluate and n >= 3 else None
        coords, entries = _fit_all(
            names, X, mappers, evaluator, warm_thread, random_state, plan, skipped, verbose
        )
        add_fidelity(entries, coords, X, lab, mappers, plan, evaluator is not None)

    small = small_n_record(n, adapted, skipped, evaluate and evaluator is None)
    metrics = _metrics_record(X, lab, random_init, random_state, evaluator, stamp, entries,
                              timings, plan, small)  # fmt: skip
    _note_budgets(metrics, entries, {"preset": quality, "budgets": preset}, budgets, adapted)
    result = MapsResult(coords, metrics, mappers, pths, lab, out)
    with show_progress(progress), collect_timings(into=timings):
        _write_result(result, t_start, save_mappers=save_mappers, plots=plots, verbose=verbose)
    return result


def _note_budgets(
    metrics: dict[str, Any],
    entries: dict[str, dict[str, Any]],
    quality: dict[str, Any],
    large_budgets: dict[str, dict[str, int]],
    adapted: Mapping[str, Any],
) -> None:
    """Record in ``metrics`` what each method was trained with: the quality preset, the
    large-data budgets used instead (large data only) and the small-data adaptations."""
    metrics["quality"] = quality
    if "large_data" in metrics:
        metrics["large_data"]["budgets"] = large_budgets
    for name, changed in adapted.items():
        if name in entries and "small_n" in metrics:
            entries[name]["adapted"] = changed


def _plan_large_data(
    n: int,
    large_data: bool | str | int,
    random_state: Any,
    params: Mapping[str, Mapping[str, Any]],
    names: list[str],
    verbose: bool,
) -> tuple[LargeDataPlan | None, Mapping[str, Mapping[str, Any]], dict[str, dict[str, int]]]:
    """The large-data plan, the parameters with its training budgets, and those budgets
    (said in one line when ``verbose``)."""
    plan = plan_large_data(n, large_data, random_state)
    if plan is None:
        return None, params, {}
    params, budgets = large_data_params(params, names)
    if verbose:
        print(f"large data: {n} points; t-SNE, UMAP and the neural mappers fit on a sample of "
              f"{len(plan.sample)} and place the rest (large_data=False: all)"
              + "".join(f"; {m}: {b}" for m, b in budgets.items()), flush=True)  # fmt: skip
    return plan, params, budgets


def _metrics_record(
    X: np.ndarray,
    lab: Any,
    random_init: bool,
    random_state: Any,
    evaluator: Any,
    stamp: Any,
    entries: dict[str, dict[str, Any]],
    timings: dict[str, Any],
    plan: LargeDataPlan | None,
    small: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``metrics.json`` record of one ``make_maps`` call (``total_seconds`` filled later)."""
    metrics: dict[str, Any] = {
        "n_samples": int(X.shape[0]),
        "random_init": bool(random_init),
        "labels": lab is not None,
        "n_features": int(X.shape[1]),
        "random_state": random_state
        if isinstance(random_state, int | None)
        else repr(random_state),
        "metrics": evaluator.info if evaluator is not None else None,
        "embeddings": stamp,
        "methods": entries,
        "timings": timings,
        "total_seconds": None,
        "threads": thread_counts(),
    }
    if plan is not None:
        metrics["large_data"] = plan.info()
    if small is not None:
        metrics["small_n"] = small
    return metrics


def _fit_all(
    names: list[str],
    X: np.ndarray,
    mappers: dict[str, Any],
    evaluator: Any,
    warm_thread: threading.Thread | None,
    random_state: Any,
    plan: LargeDataPlan | None,
    skipped: dict[str, str],
    verbose: bool,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Fit every method in order; on a handful of points a method whose fit fails is skipped
    (with the methods that imitate it) and said so (:func:`~dinomap.maps.small_n.skip_failed_fit`)."""
    n = X.shape[0]
    coords: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    eta = Eta(names, n)
    for name in names:
        if name in skipped:  # it imitates a map whose fit failed
            continue
        eta.line(name)
        try:
            coords[name], entries[name] = _fit_one(
                name, X, mappers, coords, evaluator, warm_thread, random_state, plan
            )
        except Exception as exc:  # re-raised unless n is small
            skip_failed_fit(name, exc, n, mappers, skipped)
            continue
        eta.finished(name)
        if verbose:
            _print_fitted(name, entries[name])
    if not coords:
        raise TooFewPointsError(f"no map could be made from {n} points: {skipped}.")
    return coords, entries


def _write_result(
    result: MapsResult, t_start: float, *, save_mappers: bool, plots: bool, verbose: bool
) -> None:
    """Write the outputs (when there is an output directory), then metrics.json with the total."""
    out = result.out_dir
    if out is not None:
        with stage("write maps, plots and mappers"):
            write_outputs(result, save_mappers=save_mappers, plots=plots)
    result.metrics["total_seconds"] = time.perf_counter() - t_start
    if out is not None:
        result.files["metrics"] = atomic_write_json(out / METRICS_FILE, result.metrics)
    if verbose:
        print(result.table, flush=True)
        if out is not None:
            print(f"wrote {out / MAPS_FILE}, {out / METRICS_FILE}, {out / PLOTS_DIR}/", flush=True)


def _evaluator(X: np.ndarray, labels: list[str | None] | None, plan: Any = None) -> Any:
    from dinomap.metrics import MapEvaluator

    if plan is None:
        return MapEvaluator(X, labels)
    return MapEvaluator(X, labels, max_accuracy_samples=LARGE_DATA_ACCURACY_SAMPLES)


def _print_fitted(name: str, entry: Mapping[str, Any]) -> None:
    trust = entry.get("trustworthiness")
    print(
        f"{reducer_spec(name).label:>16}: {entry['fit_seconds']:7.1f} s"
        + (f", trustworthiness {trust:.3f}" if trust is not None else ""),
        flush=True,
    )


def _check_methods(
    methods: str | Iterable[str] | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    say: bool = True,
) -> tuple[list[str], dict[str, Mapping[str, Any]]]:
    names = resolve_methods(methods)
    if not names:
        raise DinomapError("no map method is available here; see `dinomap map --help`.")
    checked = dict(params or {})
    for key in checked:
        if key not in names:
            try:
                reducer_spec(key)  # unknown -> clear error; known but not run -> ignored
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"--param {key}.*: {exc}") from None
            if say:
                logger.warning("parameters given for %s, which is not being made", key)
    return names, checked


def _check_before_loading(
    run: Any,
    names: list[str],
    params: Mapping[str, Mapping[str, Any]],
    random_state: Any,
    n_jobs: int | None,
    device: str | None,
    large_data: bool | str | int,
) -> None:
    """:func:`check_map_request` for the images a run stores (its key columns only read),
    before they are loaded; nothing for points given as arrays."""
    if not isinstance(run, str | os.PathLike):
        return
    from dinomap.store.embeddings import stored_rows

    n = stored_rows(run)  # from the shards' footers: an upper bound of the points, read at once
    if n:
        check_map_request(names, params, n, random_state=random_state,
                          n_jobs=n_jobs, device=device, large_data=large_data)  # fmt: skip


def check_map_request(
    methods: str | Iterable[str] | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    n: int,
    *,
    random_state: Any = 0,
    n_jobs: int | None = None,
    device: str | None = None,
    large_data: bool | str | int = "auto",
) -> list[str]:
    """Raise what :func:`make_maps` would raise about its methods and parameters for ``n``
    points, without reading or fitting anything (``dinomap run`` calls it before embedding;
    ``make_maps`` of a run before loading it). Returns the methods that would be made; too few
    points for any map is left to ``make_maps`` to say.

    Examples
    --------
    >>> check_map_request("pca,tsne", {"tsne": {"perplexity": -3}}, 250)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dinomap.exceptions.InvalidParameterError: perplexity must be a number > 0; got -3.
    """
    names, given = _check_methods(methods, params, say=False)
    checked: Mapping[str, Mapping[str, Any]] = given
    if plan_large_data(n, large_data, random_state) is not None:
        checked, _ = large_data_params(given, names)
    try:
        mappers, _, _ = estimators_for(names, checked, random_state, n_jobs, device, n, say=False)
    except TooFewPointsError:
        return []
    return [name for name in names if name in mappers]


def _small_n_defaults(name: str, params: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``params`` with the defaults that ``n`` points cannot take lowered
    (:func:`dinomap.maps.small_n.small_n_defaults` without the record)."""
    return small_n_defaults(name, params, n)[0]


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
    plan: LargeDataPlan | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit method ``name`` (driven by its ReducerSpec), return its map and metrics entry."""
    mapper, spec, n = mappers[name], reducer_spec(name), X.shape[0]
    waited = None
    if spec.numba_warm_up and warm_thread is not None:
        t_wait = time.perf_counter()
        warm_thread.join()
        waited = time.perf_counter() - t_wait
    t0 = time.perf_counter()
    sampled = plan is not None and spec.large_data_sample
    rows = plan.sample if sampled and plan is not None else None
    with stage(f"{name}: fit" + (" on the sample" if sampled else "")):
        Y, held_info = _fit_map(name, X, mappers, coords, random_state, rows)
    if sampled and plan is not None:
        Y = place_rest(name, mapper, X, plan, Y)
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
    if getattr(mapper, "backend_name", ""):
        entry["backend"] = mapper.backend_name
    if sampled and plan is not None:
        entry["fit_samples"] = len(plan.sample)
    if evaluator is not None:
        t1 = time.perf_counter()
        with stage(f"{name}: metrics"):
            entry.update(evaluator.evaluate(Y))
        entry["metrics_seconds"] = time.perf_counter() - t1
    else:
        entry.update(trustworthiness=None, knn_preservation=None, knn_accuracy=None)
    if held_info is not None:
        entry["_heldout_rows"] = held_info.pop("rows", None)  # for the fidelity check
        entry["agreement"] = held_info["knn_agreement"]
        entry["heldout"] = held_info
    elif "export" in spec.capabilities:  # the neural mappers report their own held-out check
        agreement, held = reported_agreement(mapper)
        entry["agreement"] = finite_or_none(agreement)  # NaN: too few held-out points
        if held is not None:
            entry["heldout"] = {key: finite_or_none(v) for key, v in held.items()}
    return Y, entry


def _fit_map(
    name: str,
    X: np.ndarray,
    mappers: Mapping[str, Any],
    coords: Mapping[str, np.ndarray],
    random_state: Any,
    rows: np.ndarray | None,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Fit ``name`` on ``X`` (or its ``rows``: the large-data sample) as its spec says; return
    the map of those points and the held-out check, if any."""
    mapper, spec = mappers[name], reducer_spec(name)
    Xf = X if rows is None else X[rows]

    def ref_coords(m: str) -> np.ndarray:
        return coords[m] if rows is None else coords[m][rows]

    ref = spec.holdout_reference
    if spec.needs_target:
        kwargs = {}
        P = _affinities_of(mappers[spec.needs_target], len(Xf))
        if P is not None and fit_takes(mapper, "affinities"):
            kwargs["affinities"] = P  # the t-SNE approximator reuses t-SNE's own affinities
        return mapper.fit(Xf, ref_coords(spec.needs_target), **kwargs).transform(Xf), None
    if ref is not None and ref in coords:
        reuse = spec.reuses_graph_of == ref and same_graph(mappers, ref, name)
        return fit_with_holdout(
            mapper, Xf, mappers[ref], ref_coords(ref), reuse, random_state, reference=ref
        )
    return mapper.fit_transform(Xf), None


def _affinities_of(mapper: Any, n: int) -> Any:
    """The fitted t-SNE's affinity matrix P (openTSNE) of its ``n`` points, if it has one."""
    embedding = getattr(mapper, "tsne_embedding_", None)
    P = getattr(getattr(embedding, "affinities", None), "P", None)
    return P if P is not None and getattr(P, "shape", None) == (n, n) else None
