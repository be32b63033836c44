"""``run.json``: what a run is (model, weights, sources, preprocessing) and what each stage did.

Stages never rewrite the whole file from a copy they read earlier: :func:`update_run_info` reads
the current file under a lock, applies one change and writes it back atomically, so two stages
(or two processes) cannot lose each other's sections.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dinomap.exceptions import RunFileError, SourceNotFoundError
from dinomap.store._atomic import atomic_write_json
from dinomap.store._fs import is_url, run_path
from dinomap.store.layout import RUN_FILE

__all__ = ["BACKUP_SUFFIX", "is_random_init", "read_json_record", "read_run_info", "update_run_info"]

logger = logging.getLogger(__name__)

_LOCK_SUFFIX = ".lock"
#: ``run.json.bak``: the previous version, written (atomically) before each update.
BACKUP_SUFFIX = ".bak"


def read_json_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A stage's JSON record (``metrics.json``, ``downstream/*.json``...), or None when it is
    missing or unreadable (logged): readers of optional outputs never fail on them."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        loaded = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", p, exc)
        return None
    return loaded if isinstance(loaded, dict) else None


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``run.json`` of a run directory."""
    path = run_path(run_dir) / RUN_FILE
    if not path.is_file():
        raise SourceNotFoundError(
            f"{run_dir} is not a dinomap run directory (no {RUN_FILE}); "
            "create one with `dinomap embed SOURCE --out DIR`."
        )
    return _parse(path, run_dir)


def _parse(path: Path, run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``path``'s JSON object; a one-line :class:`RunFileError` naming the way out otherwise."""
    raw = path.read_bytes()
    try:
        info = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        why = "it is empty" if not raw.strip() else f"it does not parse ({exc})"
        raise RunFileError(
            f"cannot read {path}: {why}. Run `dinomap check {run_dir} --repair` to restore it "
            f"from {path.name}{BACKUP_SUFFIX} or rebuild it from the stored embeddings."
        ) from None
    if not isinstance(info, dict):
        raise RunFileError(
            f"cannot read {path}: it holds a JSON {type(info).__name__}, not the run's record. "
            f"Run `dinomap check {run_dir} --repair` to restore it."
        )
    return info


def is_random_init(run_dir: str | os.PathLike[str]) -> bool:
    """True when a run's embeddings come from random (untrained) weights."""
    return bool(read_run_info(run_dir).get("weights", {}).get("random_init", False))


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``run.json`` (a sibling ``.run.json.lock`` file). Object
    storage has no locks: a remote run directory has one writing command at a time (docs/scale.md)."""
    if is_url(run_dir):
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / f".{RUN_FILE}{_LOCK_SUFFIX}").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def update_run_info(
    run_dir: str | os.PathLike[str],
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    *,
    create: bool = False,
) -> dict[str, Any]:
    """Apply ``change`` to the current ``run.json`` and write it back atomically; return it.

    ``change`` gets the current content (``{}`` when ``create`` and no file exists yet) and
    edits it in place or returns a replacement.

    Examples
    --------
    >>> update_run_info("runs/fm", lambda info: info.update(export={"models": 3}))  # doctest: +SKIP
    """
    run = run_path(run_dir)
    with _locked(run):
        path = run / RUN_FILE
        exists = path.is_file() or not create
        info = read_run_info(run) if exists else {}
        if exists:  # the version that parsed, kept for `dinomap check --repair`
            atomic_write_json(run / f"{RUN_FILE}{BACKUP_SUFFIX}", info)
        new = change(info)
        info = info if new is None else new
        atomic_write_json(path, info)
    return info
