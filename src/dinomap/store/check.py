"""``dinomap check RUN [--repair]``: a run's files checked against each other.

What is checked: ``run.json`` parses; every shard reads; no ``(path, sha256)`` row is stored
twice (what two writers at once used to leave; :mod:`.run_lock` now prevents it); ``run.json``'s
count of stored images is the shards'; ``maps.parquet`` holds the stored images; the derived
outputs were made from the stored embeddings (:func:`~dinomap.store.staleness.stale_outputs`);
``report.html`` is not older than what it shows.

What ``repair`` mends: a ``run.json`` that does not parse is restored from ``run.json.bak`` (the
version before the last update) or, failing that, rebuilt from the shards (its model, weights and
preprocessing from the exported model's record when there is one; otherwise the weights are
marked unknown and treated as random-init, which every output then says); an unreadable shard
is moved to ``RUN/quarantine/`` (``dinomap embed`` embeds its images again); repeated rows are
dropped from the shards (the first copy kept); a wrong count is corrected. Stale maps and
downstream outputs are named with the command that refreshes them, not refit here.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dinomap.exceptions import RunFileError, SourceNotFoundError
from dinomap.store._atomic import atomic_write_bytes, atomic_write_json
from dinomap.store.embeddings import shard_paths
from dinomap.store.info import BACKUP_SUFFIX, read_json_record, read_run_info, update_run_info
from dinomap.store.layout import (
    DOWNSTREAM_DIR,
    EXPORT_DIR,
    EXPORT_METADATA_FILE,
    INDEX_INFO_FILE,
    KNN_INFO_FILE,
    MAPS_FILE,
    METRICS_FILE,
    REPORT_FILE,
    RUN_FILE,
)
from dinomap.store.staleness import stale_outputs

__all__ = ["CheckResult", "check_run"]

QUARANTINE_DIR = "quarantine"


@dataclass
class CheckResult:
    """What :func:`check_run` found: ``problems`` still there, ``repaired`` (what ``repair``
    mended), ``ok`` (what was checked and found right)."""

    run_dir: str
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_dir, "passed": self.passed, "problems": self.problems,
                "repaired": self.repaired, "ok": self.ok}  # fmt: skip


def _rebuilt_info(run: Path, n_stored: int) -> dict[str, Any]:
    """A ``run.json`` from what the run's other files say (see the module's docstring)."""
    export = read_json_record(run / EXPORT_DIR / EXPORT_METADATA_FILE) or {}
    metrics = read_json_record(run / METRICS_FILE) or {}
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    source = f"the shards, {EXPORT_DIR}/{EXPORT_METADATA_FILE}" if export else "the shards"
    info: dict[str, Any] = {
        "status": "complete",
        "rebuilt": {"at": now, "from": source},
        "counts": {"stored": n_stored},
        "history": [],
    }
    for key in ("model", "weights", "preprocessing"):
        if export.get(key):
            info[key] = export[key]
    if "weights" not in info:
        random_init = metrics.get("random_init")
        info["weights"] = {"source": "unknown (run.json rebuilt from the shards)",
                           "random_init": True if random_init is None else bool(random_init)}  # fmt: skip
    return info


def _check_run_json(run: Path, result: CheckResult, repair: bool) -> dict[str, Any] | None:
    path = run / RUN_FILE
    try:
        info = read_run_info(run)
    except (RunFileError, SourceNotFoundError) as exc:  # broken, or missing
        backup = read_json_record(run / f"{RUN_FILE}{BACKUP_SUFFIX}")
        if not repair:
            if path.is_file():
                result.problems.append(str(exc))
            return None
        if backup is not None:
            was = backup.get("status")
            if was == "running":  # the update after it never landed: say so, not "running"
                backup["status"] = "interrupted"
            atomic_write_json(path, backup)
            result.repaired.append(f"{RUN_FILE} restored from {RUN_FILE}{BACKUP_SUFFIX}"
                                   + (" (its status 'running' is now 'interrupted')"
                                      if was == "running" else ""))  # fmt: skip
            return backup
        return None  # rebuilt once the shards are counted
    result.ok.append(f"{RUN_FILE} reads")
    return info


def _key_table(shard: Path) -> pa.Table:
    return pq.read_table(shard, columns=["path", "sha256"])


def _check_shards(run: Path, result: CheckResult, repair: bool) -> int:
    """Check the shards; return the number of images they store (the latest row of a path)."""
    good: list[tuple[Path, pa.Table]] = []
    for shard in shard_paths(run):
        try:
            good.append((shard, _key_table(shard)))
        except (OSError, pa.ArrowException) as exc:
            rel = shard.relative_to(run)
            if repair:
                (run / QUARANTINE_DIR).mkdir(exist_ok=True)
                os.replace(shard, run / QUARANTINE_DIR / shard.name)
                result.repaired.append(f"{rel} cannot be read ({exc}): moved to "
                                       f"{QUARANTINE_DIR}/; `dinomap embed` embeds its images again")  # fmt: skip
            else:
                result.problems.append(f"{rel} cannot be read: {exc}")
    seen: Counter[tuple[str, str]] = Counter()
    repeated = 0
    for shard, keys in good:
        pairs = list(zip(keys.column("path").to_pylist(), keys.column("sha256").to_pylist(),
                         strict=True))  # fmt: skip
        keep = [seen[p] == 0 for p in pairs]
        for p in pairs:
            seen[p] += 1
        if all(keep):
            continue
        repeated += keep.count(False)
        if repair:
            table = pq.read_table(shard).filter(pa.array(keep))
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            atomic_write_bytes(shard, buf.getvalue())
    if repeated:
        what = (f"{repeated:,} stored rows repeat a (path, sha256) row of another (two writers "
                "at once?); dinomap's readers use one, other Parquet readers see both")  # fmt: skip
        if repair:
            result.repaired.append(f"{what}: the repeats dropped from the shards")
        else:
            result.problems.append(what)
    elif good:
        result.ok.append(f"{len(good)} shard(s) read, no repeated row")
    paths = set()
    for _, keys in good:
        paths.update(pc.unique(keys.column("path")).to_pylist())
    return len(paths)


def _check_counts(run: Path, info: dict[str, Any], n: int, result: CheckResult,
                  repair: bool) -> None:  # fmt: skip
    stored = (info.get("counts") or {}).get("stored")
    if stored == n:
        result.ok.append(f"{RUN_FILE} counts {n:,} stored images, as the shards hold")
        return
    what = f"{RUN_FILE} counts {stored} stored images; the shards hold {n:,}"
    if repair:
        update_run_info(run, lambda i: i.setdefault("counts", {}).update(stored=n))
        result.repaired.append(f"{what}: corrected")
    else:
        result.problems.append(what)


def _check_derived(run: Path, n: int, result: CheckResult) -> None:
    maps = run / MAPS_FILE
    if maps.is_file():
        rows = pq.read_metadata(maps).num_rows
        if rows != n:
            result.problems.append(f"{MAPS_FILE} has {rows:,} rows; the run stores {n:,} "
                                   f"images: run `dinomap map {run}`")  # fmt: skip
        else:
            result.ok.append(f"{MAPS_FILE} has a row per stored image")
    result.problems.extend(stale_outputs(run))
    report = run / REPORT_FILE
    if report.is_file():
        caches = {INDEX_INFO_FILE, KNN_INFO_FILE}  # search's index: not shown in the report
        shown = [maps, run / METRICS_FILE, *sorted(p for p in (run / DOWNSTREAM_DIR).glob("*.json")
                                                   if p.name not in caches)]  # fmt: skip
        newer = [p for p in shown if p.is_file() and p.stat().st_mtime > report.stat().st_mtime]
        if newer:
            names = ", ".join(str(p.relative_to(run)) for p in newer[:4])
            result.problems.append(f"{REPORT_FILE} is older than {names}: run "
                                   f"`dinomap report {run}` to show them")  # fmt: skip


def check_run(run_dir: str | os.PathLike[str], *, repair: bool = False) -> CheckResult:
    """Check (and with ``repair``, mend) a local run directory; see the module's docstring.

    Examples
    --------
    >>> check_run("runs/fm").passed  # doctest: +SKIP
    True
    """
    run = Path(run_dir)
    if not (run / RUN_FILE).is_file() and not shard_paths(run):
        raise SourceNotFoundError(f"{run_dir} is not a dinomap run directory (no {RUN_FILE}, "
                                  "no embeddings)")  # fmt: skip
    result = CheckResult(str(run_dir))
    info = _check_run_json(run, result, repair)
    n = _check_shards(run, result, repair)
    if info is None and repair:
        info = _rebuilt_info(run, n)
        atomic_write_json(run / RUN_FILE, info)
        if "model" not in info:
            known = ("; the model and weights are unknown, treated as random-init (embed into a "
                     "new run to know them)")  # fmt: skip
        else:
            known = " (random-init weights)" if info["weights"].get("random_init") else ""
        result.repaired.append(f"{RUN_FILE} rebuilt from {info['rebuilt']['from']}{known}")
    if info is None:
        if not (run / RUN_FILE).is_file():
            result.problems.append(f"{run / RUN_FILE} is missing: `dinomap check {run_dir} "
                                   "--repair` restores it from its .bak or rebuilds it from the "
                                   "shards")  # fmt: skip
        return result
    _check_counts(run, info, n, result, repair)
    _check_derived(run, n, result)
    return result
