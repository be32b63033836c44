"""From stored embeddings to 2-D maps, their metrics, plots and saved mappers.

:func:`make_maps` fits each requested method (``pca``, ``tsne``, ``umap``, ``parametric_umap``,
``tsne_nn``), scores every map with :class:`dinomap.metrics.MapEvaluator` and, given an output
directory, writes the contract files of a run directory:

``maps.parquet``
    one row per image: ``path``, ``label``, ``{method}_x``, ``{method}_y`` (float32).
``metrics.json``
    ``{"n_samples", "random_init", "methods": {method: {"params", "fit_seconds",
    "trustworthiness", "knn_preservation", "knn_accuracy", "agreement"?...}}}``.
``plots/``
    ``pca_embeddings.png``, ``tsne_embeddings.png``, ``umap_embeddings.png``,
    ``parametric_umap_embeddings.png``, ``t-sne_nn_embeddings.png`` and ``all_maps.png``.
``mappers/<method>/``
    each fitted mapper's ``save`` directory (``config.json`` + state), reloadable with
    :func:`dinomap.reduce.load_reducer`.

Running a subset of methods on a run that already has maps keeps the other methods' columns,
metrics and plots (when the points are the same). Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinomap._validation import check_embeddings
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.reduce.registry import ReducerSpec, get_reducer, list_reducers, reducer_spec
from dinomap.store import (
    Embeddings,
    atomic_write_bytes,
    atomic_write_json,
    current_stamp,
    load_embeddings,
)
from dinomap.store.layout import ALL_MAPS_PLOT, MAPPERS_DIR, MAPS_FILE, METRICS_FILE, PLOTS_DIR

__all__ = [
    "ALL_METHODS",
    "MAPPERS_DIR",
    "MAPS_FILE",
    "METRICS_FILE",
    "PLOTS_DIR",
    "MapsResult",
    "format_metrics_table",
    "make_maps",
    "resolve_methods",
]

logger = logging.getLogger(__name__)

#: The five maps, in the order they are made.
#: Every registered method, in the registry's order (the order of maps.parquet, plots, tabs).
ALL_METHODS: tuple[str, ...] = tuple(list_reducers())
_NEURAL = ("parametric_umap", "tsne_nn")


@dataclass
class MapsResult:
    """What :func:`make_maps` produced.

    Attributes
    ----------
    coords : dict of str to ndarray (n, 2)
        The map of each method made in this call.
    metrics : dict
        The ``metrics.json`` content (including methods kept from an earlier call).
    mappers : dict of str to estimator
        The fitted mappers of this call.
    paths : list of str
        One per point (``maps.parquet``'s ``path`` column).
    labels : list or None
    out_dir : Path or None
        Where the files were written (``None``: nothing written).
    files : dict of str to Path
        Every file written.
    """

    coords: dict[str, np.ndarray]
    metrics: dict[str, Any]
    mappers: dict[str, Any]
    paths: list[str]
    labels: list[str | None] | None
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def table(self) -> str:
        """The metrics as a plain-text table."""
        return format_metrics_table(self.metrics)

    def __repr__(self) -> str:
        return (
            f"MapsResult(methods={list(self.coords)}, n_samples={len(self.paths)}, "
            f"out_dir={str(self.out_dir) if self.out_dir else None!r})"
        )


def resolve_methods(methods: str | Iterable[str] | None = None) -> list[str]:
    """Validate method names and return them in pipeline order, dependencies added.

    ``None`` means every method whose implementation is importable here (the neural ones need
    :mod:`dinomap.parametric`). ``"tsne_nn"`` needs the t-SNE map, so ``"tsne"`` is added.

    Examples
    --------
    >>> resolve_methods("umap, tsne_nn")
    ['tsne', 'umap', 'tsne_nn']
    """
    if methods is None:
        chosen = []
        for name in ALL_METHODS:
            try:
                reducer_spec(name).load_class()
            except DinomapError as exc:
                logger.warning("skipping %s: %s", name, exc)
                continue
            chosen.append(name)
        return chosen
    if isinstance(methods, str):
        names = [m.strip() for m in methods.split(",") if m.strip()]
    else:
        names = [str(m).strip() for m in methods]
    if not names:
        raise InvalidParameterError(
            f"methods must name at least one of {', '.join(map(repr, list_reducers()))}; got none."
        )
    for name in names:
        reducer_spec(name)  # unknown name -> lists the valid ones, suggests the closest
    wanted = set(names)
    for name in names:
        dep = reducer_spec(name).needs_target
        if dep and dep not in wanted:
            logger.info("%s imitates the %s map, so %s is made too", name, dep, dep)
            wanted.add(dep)
    order = [m for m in list_reducers() if m in wanted]
    return order


def _load_source(
    source: Any, labels: Sequence[Any] | None, paths: Sequence[str] | None
) -> tuple[np.ndarray, list[str | None] | None, list[str], dict[str, Any], Path | None]:
    """Return X, labels, paths, run info and the run directory (None for arrays)."""
    if isinstance(source, str | os.PathLike):
        run = Path(source)
        if not run.exists():
            raise DinomapError(f"{run} does not exist; give a run directory or (X, labels).")
        if not run.is_dir():
            raise DinomapError(
                f"{run} is not a run directory; for a features file use "
                "`dinomap map features.npy --labels labels.npy --out DIR`."
            )
        source = load_embeddings(run)
        run_dir: Path | None = run
    else:
        run_dir = None
    lab: Any
    pth: list[str] | None
    if isinstance(source, Embeddings):
        X, lab, pth, info = source.X, source.labels, list(source.paths), dict(source.info)
    elif isinstance(source, tuple) and len(source) == 2:
        X, lab, pth, info = source[0], source[1], None, {}
    else:
        X, lab, pth, info = source, None, None, {}
    X = check_embeddings(X, name="embeddings", min_samples=1)
    n = X.shape[0]
    if labels is not None:
        lab = labels
    if paths is not None:
        pth = list(paths)
    if pth is None:
        pth = [str(i) for i in range(n)]
    if len(pth) != n:
        raise InvalidParameterError(f"paths must have {n} entries (one per row); got {len(pth)}.")
    out_labels: list[str | None] | None = None
    if lab is not None:
        lab_list = list(lab.tolist() if isinstance(lab, np.ndarray) else lab)
        if len(lab_list) != n:
            raise InvalidParameterError(
                f"labels must have {n} entries (one per row of the embeddings); got {len(lab_list)}."
            )
        out_labels = [
            None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "" else str(v)
            for v in lab_list
        ]
        if all(v is None for v in out_labels):
            out_labels = None
    return X, out_labels, pth, info, run_dir


def _build(
    name: str,
    params: Mapping[str, Any],
    random_state: Any,
    n_jobs: int | None,
    device: str | None = None,
) -> Any:
    spec = reducer_spec(name)
    cls = spec.load_class()
    accepted = set(cls().get_params(deep=False)) if hasattr(cls, "get_params") else set()
    kwargs = dict(params)
    if "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = random_state
    if n_jobs is not None and "n_jobs" in accepted and "n_jobs" not in kwargs:
        kwargs["n_jobs"] = n_jobs
    if device is not None and "device" in accepted and "device" not in kwargs:
        kwargs["device"] = device
    unknown = set(kwargs) - accepted if accepted else set()
    if unknown:
        raise InvalidParameterError(
            f"unknown parameter(s) {sorted(unknown)} for method {name!r}; "
            f"it accepts {', '.join(sorted(accepted))}."
        )
    return get_reducer(name, **kwargs)


#: Share of the points held out of parametric UMAP's training to measure its agreement with UMAP.
PARAMETRIC_HELDOUT_FRACTION = 0.1


def _knn_agreement(
    ref: np.ndarray, Y: np.ndarray, train: np.ndarray, held: np.ndarray, k: int = 10
) -> float:
    """Share of each held-out point's ``k`` nearest training points in map ``ref`` that are also
    among its ``k`` nearest training points in map ``Y`` (neighbour searches, no N x N)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(train))
    a = NearestNeighbors(n_neighbors=k).fit(ref[train]).kneighbors(ref[held], return_distance=False)
    b = NearestNeighbors(n_neighbors=k).fit(Y[train]).kneighbors(Y[held], return_distance=False)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def _fit_parametric_umap_with_holdout(
    mapper: Any,
    X: np.ndarray,
    umap_mapper: Any,
    umap_coords: np.ndarray,
    same_graph: bool,
    random_state: Any,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Fit parametric UMAP on 90% of the points, place the other 10% with its encoder (as new
    points), and measure how well they agree with the UMAP map it imitates. Below 100 points
    everything is used for training and no agreement is reported."""
    n = len(X)
    graph = umap_mapper.graph_ if same_graph else None
    if n < 100:
        mapper.fit(X, graph=graph)
        return mapper.transform(X), None
    seed = random_state if isinstance(random_state, int) else 0
    perm = np.random.default_rng(seed).permutation(n)
    n_held = max(10, round(n * PARAMETRIC_HELDOUT_FRACTION))
    held, train = np.sort(perm[:n_held]), np.sort(perm[n_held:])
    sub_graph = graph.tocsr()[train][:, train] if graph is not None else None
    mapper.fit(X[train], graph=sub_graph)
    Y = mapper.transform(X)
    info = {
        "reference": "umap",
        "n_heldout": int(n_held),
        "knn_agreement": _knn_agreement(umap_coords, Y, train, held),
        "k": 10,
    }
    return Y, info


def _agreement(mapper: Any) -> tuple[float | None, dict[str, Any] | None]:
    """Held-out agreement of a neural mapper with the map it imitates, when it reports one."""
    held = getattr(mapper, "heldout_metrics_", None)
    if isinstance(held, Mapping):
        value = held.get("knn_agreement", held.get("agreement"))
        return (float(value) if value is not None else None), {
            k: (float(v) if isinstance(v, int | float | np.number) else v) for k, v in held.items()
        }
    value = getattr(mapper, "heldout_agreement_", None)
    return (float(value) if value is not None else None), None


def _jsonable_params(mapper: Any) -> dict[str, Any]:
    from dinomap.reduce._persist import jsonable

    params = mapper.get_params(deep=False) if hasattr(mapper, "get_params") else {}
    out: dict[str, Any] = jsonable(params)
    return out


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """The per-method metrics as a fixed-width text table.

    Examples
    --------
    >>> print(format_metrics_table({"methods": {"pca": {"fit_seconds": 0.1,
    ...     "trustworthiness": 0.8, "knn_preservation": 0.2, "knn_accuracy": None}}}))
    method  fit s  trustworthiness  kNN preservation  kNN accuracy  agreement
    pca       0.1            0.800             0.200             -          -
    """
    cols = ("fit s", "trustworthiness", "kNN preservation", "kNN accuracy", "agreement")
    keys = ("fit_seconds", "trustworthiness", "knn_preservation", "knn_accuracy", "agreement")
    methods = metrics.get("methods", {})
    width = max([len("method"), *(len(m) for m in methods)]) + 2
    lines = [f"{'method':<{width}}" + "  ".join(f"{c:>{max(len(c), 5)}}" for c in cols)]
    for name, entry in methods.items():
        cells = []
        for col, key in zip(cols, keys, strict=True):
            value = entry.get(key)
            if value is None:
                text = "-"
            elif key == "fit_seconds":
                text = f"{value:.1f}"
            else:
                text = f"{value:.3f}"
            cells.append(f"{text:>{max(len(col), 5)}}")
        lines.append(f"{name:<{width}}" + "  ".join(cells))
    if metrics.get("random_init"):
        lines.append("(random-init weights: these maps are not meaningful)")
    return "\n".join(lines)


def _read_previous(out: Path, paths: list[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Maps and metrics of an earlier call on the same points (empty when none/different)."""
    maps_file, metrics_file = out / MAPS_FILE, out / METRICS_FILE
    if not (maps_file.is_file() and metrics_file.is_file()):
        return {}, {}
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(maps_file)
        if table.column("path").to_pylist() != paths:
            logger.info("existing %s is for other points; replacing it", maps_file)
            return {}, {}
        old_metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        coords = {}
        for name in old_metrics.get("methods", {}):
            cx, cy = f"{name}_x", f"{name}_y"
            if cx in table.column_names and cy in table.column_names:
                coords[name] = np.column_stack(
                    [table.column(cx).to_numpy(), table.column(cy).to_numpy()]
                ).astype(np.float32)
        methods = {k: v for k, v in old_metrics.get("methods", {}).items() if k in coords}
        return coords, methods
    except Exception as exc:  # a broken earlier output is simply replaced
        logger.warning("cannot read the earlier maps in %s (%s); replacing them", out, exc)
        return {}, {}


def _write_parquet(
    path: Path, paths: list[str], labels: list[str | None] | None, coords: Mapping[str, np.ndarray]
) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(paths)
    columns: dict[str, Any] = {
        "path": pa.array(paths, pa.string()),
        "label": pa.array(labels if labels is not None else [None] * n, pa.string()),
    }
    for name, Y in coords.items():
        columns[f"{name}_x"] = pa.array(np.asarray(Y[:, 0], dtype=np.float32), pa.float32())
        columns[f"{name}_y"] = pa.array(np.asarray(Y[:, 1], dtype=np.float32), pa.float32())
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, compression="zstd")
    return atomic_write_bytes(path, buf.getvalue())


def _title(spec: ReducerSpec, mapper: Any, entry: Mapping[str, Any]) -> str:
    from dinomap.viz.static import format_title

    key = mapper.key_params() if hasattr(mapper, "key_params") else _neural_key_params(spec, entry)
    return format_title(spec.label, key, entry)


def _neural_key_params(spec: ReducerSpec, entry: Mapping[str, Any]) -> dict[str, Any]:
    params = entry.get("params", {})
    keys = ("hidden", "n_neighbors", "min_dist", "backend")
    out = {k: params[k] for k in keys if k in params and params[k] is not None}
    if isinstance(out.get("hidden"), list):
        out["hidden"] = "-".join(str(h) for h in out["hidden"])
    return out


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
    names = resolve_methods(methods)
    if not names:
        raise DinomapError("no map method is available here; see `dinomap map --help`.")
    params = dict(params or {})
    for key in params:
        if key not in names:
            reducer_spec(key)  # unknown -> clear error; known but not run -> ignored
            logger.warning("parameters given for %s, which is not being made", key)
    X, lab, pths, info, run_dir = _load_source(source, labels, paths)
    if isinstance(source, Embeddings):
        stamp: dict[str, Any] | None = source.stamp
    else:
        stamp = current_stamp(run_dir) if run_dir is not None else None
    n = X.shape[0]
    if n < 3:
        raise InvalidParameterError(f"a map needs at least 3 points; got {n}.")
    out = Path(out_dir) if out_dir is not None else run_dir
    if random_init is None:
        random_init = bool(info.get("weights", {}).get("random_init", False))

    # Build and validate every estimator before the first long fit.
    mappers: dict[str, Any] = {}
    for name in names:
        mapper = _build(name, params.get(name, {}), random_state, n_jobs, device)
        check = getattr(mapper, "validate", None)
        if callable(check):
            check(n)
        mappers[name] = mapper

    warm_thread = None
    if warm_up_umap and {"umap", "parametric_umap"} & set(names):
        from dinomap.reduce.umap import NNDESCENT_MIN_SAMPLES, start_warm_up

        if n > NNDESCENT_MIN_SAMPLES:
            umap_params = mappers.get("umap")
            low_memory = bool(getattr(umap_params, "low_memory", True))
            warm_thread = start_warm_up(low_memory=low_memory, seeded=random_state is not None)

    evaluator = None
    if evaluate:
        from dinomap.metrics import MapEvaluator

        evaluator = MapEvaluator(X, lab)

    coords: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name in names:
        mapper = mappers[name]
        spec = reducer_spec(name)
        waited = None
        if name in ("umap", "parametric_umap") and warm_thread is not None:
            t_wait = time.perf_counter()
            warm_thread.join()
            waited = time.perf_counter() - t_wait
        t0 = time.perf_counter()
        held_info: dict[str, Any] | None = None
        if spec.needs_target:
            Y = mapper.fit(X, coords[spec.needs_target]).transform(X)
        elif name == "parametric_umap" and "umap" in coords:
            Y, held_info = _fit_parametric_umap_with_holdout(
                mapper, X, mappers["umap"], coords["umap"], _same_graph(mappers, "umap", name),
                random_state,
            )  # fmt: skip
        else:
            Y = mapper.fit_transform(X)
        fit_seconds = time.perf_counter() - t0
        Y = np.ascontiguousarray(Y, dtype=np.float32)
        if Y.shape != (n, 2):
            raise DinomapError(f"{name} returned a map of shape {Y.shape}; expected ({n}, 2).")
        coords[name] = Y
        entry: dict[str, Any] = {"params": _jsonable_params(mapper), "fit_seconds": fit_seconds}
        if waited is not None:
            # time spent waiting for umap-learn's numba compilation (started in the background)
            entry["numba_warm_up_wait_seconds"] = waited
        if hasattr(mapper, "key_params"):
            entry["key_params"] = _jsonable_key(mapper.key_params())
        if evaluator is not None:
            t1 = time.perf_counter()
            entry.update(evaluator.evaluate(Y))
            entry["metrics_seconds"] = time.perf_counter() - t1
        else:
            entry.update(trustworthiness=None, knn_preservation=None, knn_accuracy=None)
        if held_info is not None:
            entry["agreement"] = held_info["knn_agreement"]
            entry["heldout"] = held_info
        elif name in _NEURAL:
            agreement, held = _agreement(mapper)
            entry["agreement"] = agreement
            if held is not None:
                entry["heldout"] = held
        entries[name] = entry
        if verbose:
            trust = entry.get("trustworthiness")
            print(
                f"{spec.label:>16}: {fit_seconds:7.1f} s"
                + (f", trustworthiness {trust:.3f}" if trust is not None else ""),
                flush=True,
            )

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
    if out is not None:
        _write_outputs(result, save_mappers=save_mappers, plots=plots)
    metrics["total_seconds"] = time.perf_counter() - t_start
    if out is not None:
        result.files["metrics"] = atomic_write_json(out / METRICS_FILE, metrics)
    if verbose:
        print(result.table, flush=True)
        if out is not None:
            print(f"wrote {out / MAPS_FILE}, {out / METRICS_FILE}, {out / PLOTS_DIR}/", flush=True)
    return result


def _jsonable_key(params: Mapping[str, Any]) -> dict[str, Any]:
    from dinomap.reduce._persist import jsonable

    out: dict[str, Any] = jsonable(dict(params))
    return out


def _same_graph(mappers: Mapping[str, Any], a: str, b: str) -> bool:
    """Whether method ``b`` can reuse the fuzzy graph of ``a`` (same neighbourhood size)."""
    na = getattr(mappers[a], "n_neighbors", None)
    nb = getattr(mappers[b], "n_neighbors", None)
    backend = getattr(mappers[b], "backend", "torch")
    return na is not None and na == nb and backend == "torch"


def _write_outputs(result: MapsResult, *, save_mappers: bool, plots: bool) -> None:
    out = result.out_dir
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    old_coords, old_entries = _read_previous(out, result.paths)
    all_coords = {m: c for m, c in old_coords.items() if m not in result.coords}
    all_coords.update(result.coords)
    entries = {m: e for m, e in old_entries.items() if m not in result.coords}
    entries.update(result.metrics["methods"])
    order = [m for m in list_reducers() if m in all_coords]
    all_coords = {m: all_coords[m] for m in order}
    result.metrics["methods"] = {m: entries[m] for m in order if m in entries}

    result.files["maps"] = _write_parquet(out / MAPS_FILE, result.paths, result.labels, all_coords)
    if save_mappers:
        for name, mapper in result.mappers.items():
            result.files[f"mapper:{name}"] = Path(mapper.save(out / MAPPERS_DIR / name))
    if plots:
        from dinomap.viz.static import save_all_maps, save_map

        random_init = bool(result.metrics["random_init"])
        titles: dict[str, str] = {}
        for name in order:
            spec = reducer_spec(name)
            entry = result.metrics["methods"].get(name, {})
            mapper = result.mappers.get(name)
            if mapper is not None:
                titles[name] = _title(spec, mapper, entry)
            else:
                from dinomap.viz.static import format_title

                titles[name] = format_title(spec.label, entry.get("key_params"), entry)
            if name in result.coords:
                result.files[f"plot:{name}"] = save_map(
                    out / PLOTS_DIR / f"{spec.plot_name}.png",
                    all_coords[name],
                    result.labels,
                    titles[name],
                    random_init=random_init,
                )
        result.files["plot:all"] = save_all_maps(
            out / PLOTS_DIR / ALL_MAPS_PLOT,
            all_coords,
            result.labels,
            titles,
            random_init=random_init,
        )
