"""Similar-image search in a run: by the path of an image already in the run, or by a new image
file embedded with the run's own model and preprocessing.

Results are written to ``RUN/downstream/search/``: one CSV (rank, path, similarity, label) and
one contact sheet PNG per query, the query framed in orange in the first tile.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinomap._validation import check_positive_int, suggest
from dinomap.downstream.contact_sheet import run_thumbnail_loader, write_contact_sheet
from dinomap.downstream.index import DOWNSTREAM_DIR
from dinomap.downstream.neighbors import run_index
from dinomap.exceptions import DinomapError, NoImagesError, SourceNotFoundError
from dinomap.store import Embeddings, atomic_write_text
from dinomap.store.layout import SEARCH_DIR

__all__ = ["SEARCH_DIR", "SearchHit", "SearchResult", "embed_new_images", "search_similar"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One neighbour of a query: its row in the run, path, cosine similarity and label."""

    row: int
    path: str
    similarity: float
    label: str | None = None


@dataclass(frozen=True)
class SearchResult:
    """The neighbours of one query, most similar first.

    Attributes
    ----------
    query : str
        The query as given.
    in_run : bool
        True when the query is an image of the run (it is then left out of its own hits).
    hits : list of SearchHit
    sheet : Path or None
        The contact sheet PNG, when one was written.
    table : Path or None
        The CSV of hits, when one was written.
    """

    query: str
    in_run: bool
    hits: list[SearchHit] = field(default_factory=list)
    sheet: Path | None = None
    table: Path | None = None


def _resolved(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, RuntimeError):
        return path


def _find_in_run(query: str, emb: Embeddings, lookup: dict[str, int]) -> int | None:
    """Row of ``query`` in the run: exact stored path first, then the same file resolved."""
    if query in lookup:
        return lookup[query]
    resolved = _resolved(query)
    for candidate in (resolved, query.rstrip("/")):
        if candidate in lookup:
            return lookup[candidate]
    if os.path.exists(query):
        by_resolved = {_resolved(p): i for i, p in enumerate(emb.paths)}
        return by_resolved.get(resolved)
    return None


def _closest_path(query: str, paths: list[str]) -> str:
    """``" Did you mean ...?"`` for a stored path with the same file name, or a close one."""
    name = Path(query).name
    same_name = [p for p in paths if Path(p).name == name]
    if same_name:
        return f" Did you mean {same_name[0]!r}?"
    return suggest(query, paths[:2000])


def embed_new_images(
    paths: Sequence[str], run_dir: str | os.PathLike[str], progress: bool | None = False
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Embed image files with the run's own model, weights and preprocessing.

    Thin wrapper over ``dinomap.embed.embed_files(paths, like_run=run_dir)``; ``progress``:
    its progress bar (``None``: when stderr is a terminal).

    Returns
    -------
    X : ndarray of shape (n_ok, dim), float32
    ok_paths : list of str
    errors : list of (path, reason)
    """
    try:
        embed_files = importlib.import_module("dinomap.embed").embed_files
    except (ImportError, AttributeError) as exc:
        raise DinomapError(
            "embedding new images needs dinomap.embed.embed_files, which is not available "
            f"in this installation ({exc})."
        ) from exc
    X, ok, errors = embed_files(list(paths), like_run=run_dir, progress=progress)
    return np.asarray(X, dtype=np.float32), list(ok), list(errors)


def _slug(query: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(query).stem or "query")[:40]
    digest = hashlib.sha1(query.encode("utf-8")).hexdigest()[:8]
    return f"{stem}-{digest}"


def _write_table(path: Path, result: SearchResult) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["rank", "path", "similarity", "label"])
    for rank, hit in enumerate(result.hits, start=1):
        writer.writerow([rank, hit.path, f"{hit.similarity:.6f}", hit.label or ""])
    return atomic_write_text(path, buf.getvalue())


def search_similar(
    run_dir: str | os.PathLike[str],
    queries: str | Sequence[str],
    *,
    k: int = 12,
    index: str = "auto",
    rebuild: bool = False,
    write: bool = True,
    out_dir: str | os.PathLike[str] | None = None,
    **index_params: Any,
) -> list[SearchResult]:
    """Find the ``k`` most similar images of a run for each query.

    Parameters
    ----------
    run_dir : path
        The run directory (embeddings and, once built, ``downstream/index.faiss``).
    queries : str or sequence of str
        Paths of images already in the run, or of new image files (embedded with the run's model
        and preprocessing through ``dinomap.embed.embed_files``).
    k : int, default=12
        Neighbours per query. A query from the run is not counted among its own neighbours.
    index : {"auto", "flat", "hnsw", "ivf"}, default="auto"
        Index kind (see :class:`~dinomap.downstream.index.NeighborIndex`).
    rebuild : bool, default=False
        Rebuild the saved index even when it is up to date.
    write : bool, default=True
        Write a CSV and a contact sheet PNG per query.
    out_dir : path or None
        Where to write them; default ``RUN/downstream/search``.
    **index_params
        Other index parameters (``ef_search``, ``n_probe``...).

    Returns
    -------
    list of SearchResult
        One per query that could be placed, in the order given.

    Raises
    ------
    SourceNotFoundError
        A query is neither an image of the run nor an existing file.

    Examples
    --------
    >>> results = search_similar("runs/fm", "query.png", k=12)  # doctest: +SKIP
    >>> [hit.path for hit in results[0].hits][:3]  # doctest: +SKIP
    """
    k = check_positive_int("k", k)
    query_list = _as_query_list(queries)
    nn, emb = run_index(run_dir, kind=index, rebuild=rebuild, **index_params)
    rows, new_files = _place_queries(query_list, emb)
    vectors: dict[int, np.ndarray] = {qi: emb.X[row] for qi, row in rows.items()}
    if new_files:
        _embed_new_queries(new_files, run_dir, vectors)
    order = sorted(vectors)
    Q = np.stack([vectors[qi] for qi in order])
    sims, ids = nn.search(Q, min(k + 1, len(emb)))
    target = Path(out_dir) if out_dir is not None else Path(run_dir) / DOWNSTREAM_DIR / SEARCH_DIR
    results: list[SearchResult] = []
    for pos, qi in enumerate(order):
        query = query_list[qi]
        own = rows.get(qi)
        hits = _hits(emb, sims[pos], ids[pos], own, k)
        result = SearchResult(query=query, in_run=own is not None, hits=hits)
        if write:
            result = _write_result(result, target, emb)
        results.append(result)
    return results


def _as_query_list(queries: str | Sequence[str]) -> list[str]:
    query_list = [queries] if isinstance(queries, str | os.PathLike) else list(queries)
    query_list = [str(q) for q in query_list]
    if not query_list:
        raise DinomapError("search needs at least one query image.")
    return query_list


def _place_queries(
    query_list: list[str], emb: Embeddings
) -> tuple[dict[int, int], list[tuple[int, str]]]:
    """Split the queries into images of the run (query index -> row) and new files on disk."""
    lookup = {p: i for i, p in enumerate(emb.paths)}
    rows: dict[int, int] = {}
    new_files: list[tuple[int, str]] = []
    for qi, query in enumerate(query_list):
        row = _find_in_run(query, emb, lookup)
        if row is not None:
            rows[qi] = row
        elif os.path.isfile(query):
            new_files.append((qi, query))
        else:
            raise SourceNotFoundError(
                f"query {query!r} is neither an image of the run ({len(emb)} images) nor a "
                "file on disk." + _closest_path(query, emb.paths)
            )
    return rows, new_files


def _embed_new_queries(
    new_files: list[tuple[int, str]],
    run_dir: str | os.PathLike[str],
    vectors: dict[int, np.ndarray],
) -> None:
    """Embed the new query files and add their vectors to ``vectors`` (by query index)."""
    X_new, ok, errors = embed_new_images([p for _, p in new_files], run_dir)
    for path, reason in errors:
        logger.warning("could not embed query %s: %s", path, reason)
    position: dict[str, list[int]] = {}
    for qi, path in new_files:  # embed_files may return the path normalised
        for key in {path, str(Path(path))}:
            position.setdefault(key, []).append(qi)
    for vec, path in zip(X_new, ok, strict=True):
        for qi in position.get(path, position.get(str(Path(path)), [])):
            vectors[qi] = vec
    if not vectors:
        raise NoImagesError("none of the query images could be embedded.")


def _hits(
    emb: Embeddings, sims: np.ndarray, ids: np.ndarray, own: int | None, k: int
) -> list[SearchHit]:
    """The first ``k`` valid neighbours of one query, leaving out its own row."""
    return [
        SearchHit(
            row=int(j),
            path=emb.paths[j],
            similarity=min(1.0, max(-1.0, float(s))),  # float rounding: a cosine is in [-1, 1]
            label=emb.labels[j] if emb.labels is not None else None,
        )
        for s, j in zip(sims, ids, strict=True)
        if j >= 0 and j != own
    ][:k]


def _write_result(result: SearchResult, target: Path, emb: Embeddings) -> SearchResult:
    """Write the CSV and contact sheet of one query; return the result pointing at them."""
    query, hits = result.query, result.hits
    slug = _slug(query)
    table = _write_table(target / f"{slug}.csv", result)
    shown = [query, *[h.path for h in hits]]
    captions = ["query", *[f"{h.similarity:.3f} {h.label or ''}" for h in hits]]
    sheet = write_contact_sheet(
        shown,
        target / f"{slug}.png",
        captions=captions,
        title=f"{len(hits)} nearest to {Path(query).name} (cosine)",
        highlight=[0],
        random_init=emb.random_init,
        loader=run_thumbnail_loader(emb.info),
    )
    return SearchResult(query, result.in_run, hits, sheet=sheet, table=table)
