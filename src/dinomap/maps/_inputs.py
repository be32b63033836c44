"""What :func:`dinomap.maps.make_maps` starts from: the methods, the points, the estimators."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dinomap._validation import check_embeddings
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.reduce.registry import get_reducer, list_reducers, reducer_spec
from dinomap.store import Embeddings, load_embeddings

__all__ = ["ALL_METHODS", "build_estimator", "load_points", "resolve_methods"]

logger = logging.getLogger(__name__)

#: Every registered method, in the registry's order (the order of maps.parquet, plots, tabs).
ALL_METHODS: tuple[str, ...] = tuple(list_reducers())


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


class Points(NamedTuple):
    """The points to map: embeddings, labels, paths, run info, the run directory (None for
    arrays) and the stamp of the stored embeddings they are (None for arrays)."""

    X: np.ndarray
    labels: list[str | None] | None
    paths: list[str]
    info: dict[str, Any]
    run_dir: Path | None
    stamp: dict[str, Any] | None


def load_points(source: Any, labels: Sequence[Any] | None, paths: Sequence[str] | None) -> Points:
    """Read or check the points of ``source`` (a run directory, Embeddings, (X, labels), X)."""
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
    stamp = source.stamp if isinstance(source, Embeddings) else None
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
    return Points(X, out_labels, pth, info, run_dir, stamp)


def build_estimator(
    name: str,
    params: Mapping[str, Any],
    random_state: Any,
    n_jobs: int | None,
    device: str | None = None,
) -> Any:
    """The estimator of method ``name`` with ``params`` (``backend`` among them picks the
    implementation, e.g. ``{"backend": "torchdr"}``) and the shared seed, threads and device."""
    kwargs = dict(params)
    backend = kwargs.pop("backend", None)
    if backend is not None and not isinstance(backend, str):
        raise InvalidParameterError(f"{name}.backend must be a string; got {backend!r}.")
    spec = reducer_spec(name)
    cls = spec.load_class(backend)
    accepted = set(cls().get_params(deep=False)) if hasattr(cls, "get_params") else set()
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
    return get_reducer(name, backend=backend, **kwargs)
