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
