"""``mappers/<method>/``: the fitted mappers of a run, found and loaded in one place.

Each folder holds a ``config.json`` (class, method, backend, params) and the state (a pickle for
PCA, t-SNE and UMAP, a PyTorch state dict for the neural mappers). The method a folder holds is
read from its config (``method``, else the registered class), never guessed from the folder name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinomap._validation import check_choice
from dinomap.exceptions import DinomapError
from dinomap.store.layout import MAPPERS_DIR

__all__ = [
    "SavedMapper",
    "load_mappers",
    "mapper_files",
    "require_mappers",
    "saved_mappers",
    "write_mapper",
    "write_mapper_files",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavedMapper:
    """One saved mapper folder: its method, its folder and its ``config.json``."""

    method: str
    folder: Path
    config: dict[str, Any]

    @property
    def backend(self) -> str:
        return str(self.config.get("backend") or "pickle")


def _method_of(config: dict[str, Any]) -> str | None:
    if config.get("method"):
        return str(config["method"])
    from dinomap.reduce.registry import list_reducers, reducer_spec

    cls = config.get("class")
    return next((n for n in list_reducers() if reducer_spec(n).target.endswith(f":{cls}")), None)


def saved_mappers(run_dir: str | os.PathLike[str]) -> list[SavedMapper]:
    """Every readable mapper folder of a run (sorted); an unreadable one is skipped with a
    warning."""
    from dinomap.reduce._persist import CONFIG_FILE, read_mapper_config

    base = Path(run_dir) / MAPPERS_DIR
    if not base.is_dir():
        return []
    found = []
    for folder in sorted(p for p in base.iterdir() if (p / CONFIG_FILE).is_file()):
        try:
            config = read_mapper_config(folder)
        except DinomapError as exc:
            logger.warning("skipping mapper folder %s: %s", folder, exc)
            continue
        method = _method_of(config)
        if method is None:
            logger.warning(
                "skipping mapper folder %s: unknown class %r", folder, config.get("class")
            )
            continue
        found.append(SavedMapper(method, folder, config))
    return found


def load_mappers(
    run_dir: str | os.PathLike[str],
    methods: Sequence[str] | None = None,
    *,
    backend: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load a run's fitted mappers (only ``methods``, only one ``backend`` when given).

    Returns the mappers by method and the folders that could not be loaded, with the reason
    (one broken mapper never stops the others).
    """
    from dinomap.reduce.registry import load_reducer

    saved = [s for s in saved_mappers(run_dir) if backend is None or s.backend == backend]
    if methods is not None:
        for method in methods:
            check_choice("method", method, [s.method for s in saved])
    mappers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for s in saved:
        if methods is not None and s.method not in methods:
            continue
        try:
            mappers[s.method] = load_reducer(s.folder)
        except Exception as exc:  # one broken mapper must not stop the others
            logger.warning("cannot load mapper %s: %s", s.folder, exc)
            skipped[s.method] = f"cannot load: {exc}"
    return mappers, skipped


def write_mapper(
    directory: str | os.PathLike[str], files: dict[str, bytes], config: dict[str, Any]
) -> Path:
    """Write a fitted mapper's folder: each of ``files`` (name -> bytes), then ``config.json``.

    Every file is written atomically and the config last, so a folder with a ``config.json``
    always holds the state it describes. Returns the folder. The estimators' ``save`` methods
    serialise their state and call this.
    """
    from dinomap.reduce._persist import CONFIG_FILE
    from dinomap.store._atomic import atomic_write_bytes, atomic_write_json

    out = Path(directory)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    atomic_write_json(out / CONFIG_FILE, config)
    return out


def mapper_files(run_dir: str | os.PathLike[str], methods: Sequence[str] | None = None
                 ) -> dict[str, bytes]:  # fmt: skip
    """The bytes of the saved mapper folders (``methods`` only, when given), keyed by their
    path relative to the run (``mappers/<folder>/<file>``): what Ray workers on other machines
    need to load the same mappers (:func:`write_mapper_files`)."""
    out: dict[str, bytes] = {}
    root = Path(run_dir)
    for s in saved_mappers(run_dir):
        if methods is None or s.method in methods:
            for path in sorted(p for p in s.folder.rglob("*") if p.is_file()):
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def write_mapper_files(root: str | os.PathLike[str], files: dict[str, bytes]) -> Path:
    """Write :func:`mapper_files`' output under ``root`` (a run-like folder that
    :func:`load_mappers` reads); returns ``root``."""
    from dinomap.store._atomic import atomic_write_bytes

    base = Path(root)
    for rel, data in files.items():
        target = (base / rel).resolve()
        if base.resolve() not in target.parents:
            raise DinomapError(f"refusing to write {rel!r} outside {base}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return base


def require_mappers(
    run_dir: str | os.PathLike[str], methods: Sequence[str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load the fitted mappers saved in ``RUN/mappers/<method>/``; an error naming the command
    that makes them when there are none, or none loads.

    Returns
    -------
    mappers : dict of str to estimator
        Method name -> fitted mapper with ``transform``.
    skipped : dict of str to str
        Mapper folders that could not be loaded, with the reason.
    """
    base = Path(run_dir) / MAPPERS_DIR
    if not base.is_dir():
        raise DinomapError(
            f"{run_dir} has no fitted mappers ({MAPPERS_DIR}/); make the maps first with "
            "`dinomap map RUN`, which saves them."
        )
    mappers, skipped = load_mappers(run_dir, methods)
    if not mappers:
        raise DinomapError(
            f"no usable mapper in {base}"
            + (f" ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else "")
            + "."
        )
    return mappers, skipped
