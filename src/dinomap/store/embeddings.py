"""The embedding shards of a run: ``embeddings/part-NNNNN.parquet``, one row per image.

Shards are append-only and written atomically; a rerun embeds only the images whose
``(path, sha256)`` is not stored yet. ``errors.csv`` lists the images that could not be embedded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dinomap.exceptions import DinomapError
from dinomap.store._atomic import atomic_write_bytes, atomic_write_text
from dinomap.store._fs import run_path
from dinomap.store.info import read_run_info
from dinomap.store.layout import EMBEDDINGS_DIR, ERRORS_FILE, METADATA_FILE

__all__ = [
    "Embeddings",
    "StoredEmbeddings",
    "check_fresh",
    "current_stamp",
    "embedding_schema",
    "is_stale",
    "keys_stamp",
    "load_embeddings",
    "next_shard_index",
    "read_metadata",
    "shard_paths",
    "stored_keys",
    "stored_rows",
    "write_errors",
    "write_metadata",
    "write_shard",
]

logger = logging.getLogger(__name__)

#: (run, output, digest) already warned about in this process: one line per stale output.
_WARNED: set[tuple[str, str, str]] = set()

#: ``part-NNNNN.parquet`` (local engine) and ``part-NNNNN-<key digest>.parquet`` (Ray engine:
#: every shard of one run shares NNNNN; the digest of its keys makes a retried write overwrite
#: itself instead of duplicating rows).
_SHARD_RE = re.compile(r"^part-(\d{5,})(?:-([0-9a-f]{8,64}))?\.parquet$")
#: Ray Data's own ``write_parquet`` names: ``{uuid}_{block...}.parquet`` (read as oldest).
_RAY_SHARD_RE = re.compile(r"^[0-9a-f]{32}_[0-9_]+\.parquet$")
#: Shards of a run on object storage read at once.
REMOTE_READERS = 16


def _shard_key(name: str) -> tuple[int, str] | None:
    """Sort key of a shard file name (the order in which "the latest wins"), None if not one."""
    m = _SHARD_RE.match(name)
    if m:
        return int(m.group(1)), m.group(2) or ""
    return (-1, name) if _RAY_SHARD_RE.match(name) else None


def embedding_schema(dim: int) -> pa.Schema:
    """Arrow schema of an embedding shard with ``dim``-dimensional vectors."""
    return pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("label", pa.string()),
            pa.field("height", pa.int32()),
            pa.field("width", pa.int32()),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def _shards(run_dir: Path) -> list[Path]:
    emb_dir = run_dir / EMBEDDINGS_DIR
    if not emb_dir.is_dir():
        return []
    found = [(key, p) for p in emb_dir.iterdir() if (key := _shard_key(p.name)) is not None]
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def next_shard_index(run_dir: str | os.PathLike[str]) -> int:
    """The ``NNNNN`` of the next ``part-NNNNN`` shard: one more than any stored."""
    keys = [_shard_key(p.name) for p in _shards(run_path(run_dir))]
    return max((k[0] for k in keys if k is not None), default=-1) + 1


def write_shard(
    run_dir: str | os.PathLike[str],
    paths: Sequence[str],
    sha256: Sequence[str],
    labels: Sequence[str | None],
    heights: Sequence[int],
    widths: Sequence[int],
    embeddings: np.ndarray,
    *,
    name: str | None = None,
) -> Path:
    """Append one shard of embeddings to the run store, atomically; return its path.

    ``name`` (default: the next ``part-NNNNN.parquet``) must be a shard name of the store."""
    run = run_path(run_dir)
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise ValueError(f"embeddings shape {emb.shape} does not match {len(paths)} paths")
    dim = emb.shape[1]
    values = pa.array(emb.reshape(-1), type=pa.float32())
    table = pa.Table.from_arrays(
        [
            pa.array(list(paths), pa.string()),
            pa.array(list(sha256), pa.string()),
            pa.array(list(labels), pa.string()),
            pa.array(list(heights), pa.int32()),
            pa.array(list(widths), pa.int32()),
            pa.FixedSizeListArray.from_arrays(values, dim),
        ],
        schema=embedding_schema(dim),
    )
    if name is None:
        name = f"part-{next_shard_index(run):05d}.parquet"
    elif _shard_key(name) is None:
        raise ValueError(f"shard name must look like part-NNNNN[-hexdigest].parquet; got {name!r}")
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return atomic_write_bytes(run / EMBEDDINGS_DIR / name, buf.getvalue())


def _open_shard(shard: Any, ranges: bool) -> Any:
    """A shard of object storage opened for reading; ``ranges``: fetch only the byte ranges
    read (no read-ahead: the embeddings stay in the bucket when other columns are read)."""
    return shard.fs.open(shard.path, "rb", **({"cache_type": "none"} if ranges else {}))


def _read_shard(shard: Any, columns: list[str] | None = None) -> pa.Table:
    """One shard (a local path or a :class:`UrlPath`); of object storage, only the byte ranges
    of ``columns`` are fetched."""
    if isinstance(shard, Path):
        return pq.read_table(shard, columns=columns)
    with _open_shard(shard, ranges=columns is not None) as fh:
        return pq.read_table(fh, columns=columns)


def _read_table(run: Path, columns: list[str] | None = None) -> pa.Table | None:
    shards = _shards(run)
    if not shards:
        return None
    if isinstance(shards[0], Path):
        tables = [_read_shard(p, columns) for p in shards]
    else:  # object storage: a request's latency per shard, so many at once
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=REMOTE_READERS) as pool:
            tables = list(pool.map(lambda p: _read_shard(p, columns), shards))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def shard_paths(run_dir: str | os.PathLike[str]) -> list[Any]:
    """The run's shard files, in the order in which "the latest wins"."""
    return _shards(run_path(run_dir))


def stored_rows(run_dir: str | os.PathLike[str]) -> int:
    """How many rows the run's shards hold, from their Parquet footers alone (no column is
    read): at least the number of stored images (a path embedded again counts twice)."""
    total = 0
    for shard in _shards(run_path(run_dir)):
        if isinstance(shard, Path):
            total += pq.read_metadata(shard).num_rows
        else:
            with _open_shard(shard, ranges=True) as fh:
                total += pq.read_metadata(fh).num_rows
    return total


def stored_keys(run_dir: str | os.PathLike[str]) -> set[tuple[str, str]]:
    """The ``(path, sha256)`` pairs already embedded in a run directory."""
    table = _read_table(run_path(run_dir), columns=["path", "sha256"])
    if table is None:
        return set()
    return set(
        zip(table.column("path").to_pylist(), table.column("sha256").to_pylist(), strict=True)
    )


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of a run, in a deterministic order (sorted by path).

    Attributes
    ----------
    X : ndarray of shape (n_images, dim), float32
    paths, sha256 : list of str
    labels : list of (str or None), or None when no image has a label
    heights, widths : original image sizes
    info : the run's ``run.json`` (empty when read from bare arrays)
    """

    X: np.ndarray
    paths: list[str]
    sha256: list[str]
    labels: list[str | None] | None
    heights: np.ndarray
    widths: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def stamp(self) -> dict[str, Any]:
        """Which embeddings these are: row count and a digest of the stored ``(path, sha256)``
        keys. Every derived output records it, so a reader can tell when it went stale."""
        return keys_stamp(self.paths, self.sha256)

    @property
    def random_init(self) -> bool:
        """True when the embeddings come from a model with random (untrained) weights."""
        return bool(self.info.get("weights", {}).get("random_init", False))


def load_embeddings(run_dir: str | os.PathLike[str]) -> Embeddings:
    """Load every stored embedding of a run, one row per path (the latest wins), sorted by path.

    Examples
    --------
    >>> emb = load_embeddings("runs/fm")  # doctest: +SKIP
    >>> emb.X.shape
    (2000, 384)
    """
    run = run_path(run_dir)
    info = read_run_info(run)
    table = _read_table(run)
    if table is None or table.num_rows == 0:
        raise DinomapError(f"{run_dir} holds no embeddings yet; run `dinomap embed` first.")
    paths = table.column("path").to_pylist()
    # Latest shard wins for a path embedded twice (the file changed between runs).
    last: dict[str, int] = {p: i for i, p in enumerate(paths)}
    order = sorted(last.values(), key=lambda i: paths[i])
    idx = np.asarray(order, dtype=np.int64)
    sha_all = table.column("sha256").to_pylist()
    repeated = 0 if len(last) == len(paths) else len(paths) - len(set(zip(paths, sha_all, strict=True)))
    if repeated:
        logger.warning("%s stores %d row(s) twice (same path and sha256; two writers at once?): "
                       "one of each is used here, other Parquet readers see both; "
                       "`dinomap check %s --repair` drops the repeats", run_dir, repeated,
                       run_dir)  # fmt: skip
    emb_col = table.column("embedding").combine_chunks()
    dim = emb_col.type.list_size
    X = emb_col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)[idx]
    labels_all = table.column("label").to_pylist()
    labels = [labels_all[i] for i in order]
    return Embeddings(
        X=np.ascontiguousarray(X, dtype=np.float32),
        paths=[paths[i] for i in order],
        sha256=[sha_all[i] for i in order],
        labels=labels if any(lbl is not None for lbl in labels) else None,
        heights=table.column("height").to_numpy(zero_copy_only=False)[idx],
        widths=table.column("width").to_numpy(zero_copy_only=False)[idx],
        info=info,
    )


class StoredEmbeddings:
    """A run's stored embeddings, read only as far as a caller needs them: their width from a
    shard's schema, their stamp from the key columns, every row (:meth:`load`) only when asked.

    ``at`` is where the shards are when not in ``run_dir``: the remote run of a mirror that did
    not pull them (``dinomap project s3://...`` places new points with the mappers and plots
    the stored maps; it needs no embedding of the run, and at 10M images they are 16 GB).
    """

    def __init__(self, run_dir: str | os.PathLike[str], at: str | os.PathLike[str] | None = None
                 ) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.at = run_path(at if at is not None else run_dir)
        self._full: Embeddings | None = None
        self._stamp: dict[str, Any] | None = None

    def _shards(self) -> list[Any]:
        shards = _shards(self.at)
        if not shards:
            raise DinomapError(f"{self.run_dir} holds no embeddings yet; run `dinomap embed` first.")
        return shards

    def require(self) -> StoredEmbeddings:
        """``self``; a :class:`DinomapError` when the run stores no embeddings."""
        self._shards()
        return self

    @property
    def dim(self) -> int:
        """The embeddings' width (a :class:`DinomapError` when the run stores none)."""
        shard = self._shards()[-1]
        if isinstance(shard, Path):
            schema = pq.read_schema(shard)
        else:
            with _open_shard(shard, ranges=True) as fh:
                schema = pq.read_schema(fh)
        return int(schema.field("embedding").type.list_size)

    @property
    def stamp(self) -> dict[str, Any] | None:
        """:func:`current_stamp` of the stored embeddings (read once)."""
        if self._stamp is None:
            self._stamp = current_stamp(self.at)
        return self._stamp

    @property
    def random_init(self) -> bool:
        """True when the run's model has random (untrained) weights."""
        return bool(read_run_info(run_path(self.run_dir)).get("weights", {}).get("random_init"))

    def load(self) -> Embeddings:
        """Every stored row (:func:`load_embeddings`), read once."""
        if self._full is None:
            self._full = load_embeddings(self.at)
        return self._full


def write_metadata(
    run_dir: str | os.PathLike[str], paths: Sequence[str], fields: dict[str, Sequence[str | None]]
) -> Path | None:
    """Store the source's extra columns (``fields``: name -> one text value per path) in
    ``RUN/metadata.parquet``, atomically, merged with what an earlier run stored there (a path
    listed again gets its new values). None when there is nothing to store."""
    if not fields or not paths:
        return None
    import pandas as pd

    new = pd.DataFrame({"path": list(paths), **{k: list(v) for k, v in fields.items()}})
    old = read_metadata(run_dir)
    if old is not None:
        new = pd.concat([old[~old["path"].isin(set(new["path"]))], new], ignore_index=True)
    table = pa.Table.from_pandas(new.astype(object).where(new.notna(), None), preserve_index=False)
    table = table.cast(pa.schema([pa.field(c, pa.string()) for c in table.column_names]))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return atomic_write_bytes(run_path(run_dir) / METADATA_FILE, buf.getvalue())


def read_metadata(run_dir: str | os.PathLike[str]) -> Any:
    """``RUN/metadata.parquet`` as a pandas DataFrame (``path`` and one text column per
    field), or None when the run's source had no extra columns."""
    target = run_path(run_dir) / METADATA_FILE
    if not target.is_file():
        return None
    with target.open("rb") as fh:
        df = pq.read_table(fh).to_pandas().astype(object)
    return df.where(df.notna(), None)  # a missing value is None, as written


def write_errors(run_dir: str | os.PathLike[str], errors: Iterable[tuple[str, str]]) -> Path:
    """Write ``errors.csv`` (columns ``path``, ``reason``) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    for path, reason in errors:
        writer.writerow([path, reason])
    return atomic_write_text(run_path(run_dir) / ERRORS_FILE, buf.getvalue())


def keys_stamp(paths: Sequence[str], sha256: Sequence[str]) -> dict[str, Any]:
    """``{"n_rows", "keys_digest"}`` of a set of stored embeddings (order-independent)."""
    h = hashlib.sha256()
    for path, sha in sorted(zip(paths, sha256, strict=True)):
        h.update(f"{path}\t{sha}\n".encode())
    return {"n_rows": len(paths), "keys_digest": h.hexdigest()[:16]}


def current_stamp(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stamp of what the run stores now (reads only the key columns), or None if empty."""
    table = _read_table(run_path(run_dir), columns=["path", "sha256"])
    if table is None:
        return None
    latest: dict[str, str] = {}
    for path, sha in zip(table.column("path").to_pylist(), table.column("sha256").to_pylist(),
                         strict=True):  # fmt: skip
        latest[path] = sha  # the latest shard wins, as in load_embeddings
    return keys_stamp(list(latest), list(latest.values()))


def is_stale(recorded: Any, now: dict[str, Any] | None) -> bool:
    """Whether an output that recorded the stamp ``recorded`` was made from other embeddings
    than those stamped ``now`` (an output that recorded nothing is taken as fresh)."""
    if not isinstance(recorded, dict) or "keys_digest" not in recorded or now is None:
        return False
    return bool(now.get("keys_digest") != recorded.get("keys_digest"))


def check_fresh(
    run_dir: str | os.PathLike[str],
    recorded: Any,
    what: str,
    command: str,
    current: dict[str, Any] | None = None,
) -> str | None:
    """Warn in one line when the output ``what`` was made from other embeddings than the run
    stores now; return the message (None when fresh or when nothing was recorded)."""
    if not isinstance(recorded, dict) or "keys_digest" not in recorded:
        return None
    now = current if current is not None else current_stamp(run_dir)
    if now is None or not is_stale(recorded, now):
        return None
    n_then, n_now = int(recorded.get("n_rows", 0)), int(now["n_rows"])
    change = (f"{n_then:,} images; the run now holds {n_now:,}" if n_then != n_now
              else f"{n_then:,} images, some of which changed since")  # fmt: skip
    message = f"{what} is stale: it was made from {change}. Run `{command}` to refresh it."
    key = (str(Path(run_dir).resolve()), what, str(now.get("keys_digest")))
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)
    return message
