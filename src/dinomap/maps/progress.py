"""Progress of the long map fits on a terminal, and the seconds of every stage.

One small interface for every method, classic or neural:

- :func:`show_progress` (a context manager) switches the bars on or off for everything run inside
  it; :func:`dinomap.maps.make_maps` opens it (``progress=None``: on when stderr is a terminal,
  ``dinomap map --quiet``: off).
- :func:`progress_bar` is what a fitting loop calls: a tqdm bar on stderr, or a no-op object when
  progress is off, with the same ``update`` / ``set_postfix`` methods either way::

      from dinomap.maps.progress import progress_bar

      with progress_bar("parametric UMAP: epochs", total=n_epochs, unit="epoch") as bar:
          for epoch in range(n_epochs):
              ...
              bar.update(1)
              bar.set_postfix(loss=f"{loss:.3f}")

- :func:`stage` times a named stage (``"tsne: fit on the sample"``) and records its seconds in
  the open :func:`collect_timings` dictionary, which ``make_maps`` writes to ``metrics.json``
  (``"timings"``); with progress on, it also prints one line when the stage starts.

tqdm is imported only when a bar is shown. Nothing here writes a file.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = [
    "Eta",
    "collect_timings",
    "progress_bar",
    "progress_enabled",
    "show_progress",
    "stage",
    "umap_tqdm_kwds",
]

logger = logging.getLogger(__name__)

_enabled: ContextVar[bool] = ContextVar("dinomap_progress", default=False)
_timings: ContextVar[dict[str, float] | None] = ContextVar("dinomap_timings", default=None)


def progress_enabled() -> bool:
    """Whether progress bars are shown in this context."""
    return _enabled.get()


@contextlib.contextmanager
def show_progress(enabled: bool | None = None) -> Iterator[bool]:
    """Show progress bars inside the block (``None``: when stderr is a terminal)."""
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    token = _enabled.set(bool(enabled))
    try:
        yield bool(enabled)
    finally:
        _enabled.reset(token)


class _NoBar:
    """What :func:`progress_bar` yields when progress is off: every call does nothing."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def progress_bar(desc: str, total: int | None = None, unit: str = "it") -> Iterator[Any]:
    """A tqdm bar on stderr (or a silent stand-in when progress is off) for one loop."""
    if not progress_enabled():
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
               mininterval=0.5, dynamic_ncols=True)  # fmt: skip
    try:
        yield bar
    finally:
        bar.close()


@contextlib.contextmanager
def collect_timings(into: dict[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Collect the seconds of every :func:`stage` run inside the block into the yielded dict
    (``into``, to go on filling one)."""
    timings: dict[str, float] = {} if into is None else into
    token = _timings.set(timings)
    try:
        yield timings
    finally:
        _timings.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time stage ``name``; its seconds go to the open :func:`collect_timings` (summed when a
    stage of that name runs again) and, with progress on, a line says it started."""
    if progress_enabled():
        print(f"dinomap: {name} ...", file=sys.stderr, flush=True)
    logger.info("stage %s", name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - t0
        if progress_enabled():
            print(f"dinomap: {name} done in {seconds:.1f} s", file=sys.stderr, flush=True)
        timings = _timings.get()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + seconds


def umap_tqdm_kwds(desc: str) -> dict[str, Any]:
    """umap-learn's ``tqdm_kwds`` for its epoch bar: shown when progress is on (picklable: no
    file object, since the fitted model keeps it)."""
    return {"disable": not progress_enabled(), "desc": desc, "leave": False}


#: Rough seconds of each method (fit and metrics) on two cores at 70,000 points (Fashion-MNIST,
#: ``benchmarks/bench_maps.py``): only the ratios matter, since :class:`Eta` rescales them by
#: the time the finished methods really took.
_SECONDS_AT_70K = {
    "pca": 2.0,
    "tsne": 90.0,
    "umap": 40.0,
    "parametric_umap": 95.0,
    "tsne_nn": 110.0,
}
_FIXED_BUDGET = ("parametric_umap", "tsne_nn")


class Eta:
    """The whole ``make_maps`` call's progress: which method of how many, the time so far and
    an estimate of the time left (the methods' expected costs at ``n`` points, rescaled by how
    long the finished ones took against their estimate)."""

    def __init__(self, names: list[str], n: int) -> None:
        scale = n / 70_000  # the networks' step budgets are fixed from about 70,000 points up
        self.costs = {m: _SECONDS_AT_70K.get(m, 30.0) * (min(scale, 1.0) if m in _FIXED_BUDGET
                                                         else scale) for m in names}  # fmt: skip
        self.start = time.perf_counter()
        self.done = 0.0

    def line(self, name: str) -> str:
        """``"map 2/5 (umap): 1 min 32 s so far, about 3 min left"``; said on stderr when
        progress is on."""
        names = list(self.costs)
        elapsed = time.perf_counter() - self.start
        rate = elapsed / self.done if self.done > 0 and elapsed > 1.0 else 1.0
        left = rate * (sum(self.costs.values()) - self.done)
        text = (f"map {names.index(name) + 1}/{len(names)} ({name}): {_duration(elapsed)} so "
                f"far, about {_duration(left)} left")  # fmt: skip
        if progress_enabled():
            print(f"dinomap: {text}", file=sys.stderr, flush=True)
        return text

    def finished(self, name: str) -> None:
        """Count ``name``'s estimated cost as done."""
        self.done += self.costs.get(name, 0.0)


def _duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
