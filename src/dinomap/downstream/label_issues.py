"""Label issues: images whose nearest neighbours disagree with their label.

For every labelled image, each of its ``k`` nearest neighbours (cosine similarity, itself
excluded) votes for its own label with weight ``max(similarity, 0)``; one pseudo-vote spread
evenly over the classes keeps a neighbourhood of a few weak votes from sounding certain::

    support_i(c) = (sum_j w_ij [y_j = c] + 1 / C) / (sum_j w_ij + 1)

Class frequency is corrected the way confident learning (Northcutt et al., 2021) does it: each
class's support is measured against that class's own typical support, its threshold ``t_c`` =
the mean ``support_i(c)`` over the images labelled ``c``. A small class, or one that sits next
to a big one, has a low ``t_c``: its members are not flagged merely because a big class
outnumbers them in every neighbourhood, and a big class does not win a neighbourhood by its
size alone::

    label_issue_score_i = 1 - min(1, support_i(y_i) / t_{y_i})
    suggested_label_i   = argmax_c support_i(c) / t_c

(0: the neighbours support the label at least as much as is typical of its class; near 1: none
does). Unlabelled images get no score (NaN) but a suggested label, and cast no vote.

:func:`find_label_issues` works on arrays and returns a table; :func:`label_issues_run` scores a
run through its cached neighbour graph (:func:`~dinomap.downstream.neighbors.run_neighbors`,
shared with outliers and duplicates) and writes ``RUN/downstream/label_issues.parquet``
(``path``, ``label``, ``suggested_label``, ``label_issue_score``, ``label_support``,
``is_label_issue``; run order), ``label_issues.json`` (parameters, the embeddings' stamp, the
top N) and ``label_issues.png`` (a contact sheet of the top N).

On Fashion-MNIST pixels (PCA-384 stand-in features, 5 % planted flips) the top N hold 0.81 of
the flips against 0.69 for cleanlab's ``Datalab`` kNN check (``benchmarks/bench_label_issues.py``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dinomap._validation import check_embeddings, check_positive_int
from dinomap.exceptions import DinomapError, InvalidParameterError

if TYPE_CHECKING:  # pandas loads inside the functions
    import pandas as pd

__all__ = [
    "LABEL_ISSUE_COLUMNS",
    "LabelIssuesReport",
    "find_label_issues",
    "label_issues_run",
]

logger = logging.getLogger(__name__)

#: The columns of the table :func:`find_label_issues` returns (and ``label_issues.parquet``).
LABEL_ISSUE_COLUMNS = (
    "path",
    "label",
    "suggested_label",
    "label_issue_score",
    "label_support",
    "is_label_issue",
)

#: ``is_label_issue``: another class is better supported and the score is at least this.
ISSUE_THRESHOLD = 0.5


def _label_codes(labels: Sequence[Any], n: int) -> tuple[np.ndarray, list[str]]:
    """Integer code per row (-1: no label) and the sorted class names."""
    if len(labels) != n:
        raise InvalidParameterError(
            f"labels must have one entry per embedding ({n}); got {len(labels)}."
        )
    text = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in labels]  # fmt: skip
    classes = sorted({t for t in text if t is not None})
    if len(classes) < 2:
        raise InvalidParameterError(
            f"label issues need at least 2 classes among the labels; got {len(classes)} "
            f"({', '.join(map(repr, classes)) or 'no labels'}). Give labelled images (class "
            "folders, or a manifest with a 'label' column)."
        )
    code_of = {c: i for i, c in enumerate(classes)}
    codes = np.array([code_of[t] if t is not None else -1 for t in text], dtype=np.int64)
    return codes, classes


def _supports(
    sims: np.ndarray,
    ids: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    *,
    weighted: bool,
    prior: float,
) -> np.ndarray:
    """``(n, n_classes)`` support of each class in each row's neighbourhood (rows sum to 1)."""
    n, k = ids.shape
    valid = ids >= 0
    neigh = np.where(valid, codes[np.where(valid, ids, 0)], -1)
    w = np.clip(sims.astype(np.float64), 0.0, None) if weighted else np.ones((n, k))
    w = np.where(valid & (neigh >= 0), w, 0.0)
    votes = np.zeros((n, n_classes), dtype=np.float64)
    rows = np.repeat(np.arange(n), k)
    keep = (w > 0).ravel()
    np.add.at(votes, (rows[keep], neigh.ravel()[keep]), w.ravel()[keep])
    votes += prior / n_classes
    total = votes.sum(axis=1, keepdims=True)
    out: np.ndarray = votes / np.where(total > 0, total, 1.0)
    return out


def class_thresholds(support: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per class, the mean support of the class among the rows labelled with it (confident
    learning's per-class threshold); a class no row carries gets 1."""
    n_classes = support.shape[1]
    labelled = codes >= 0
    own = support[np.flatnonzero(labelled), codes[labelled]]
    sums = np.bincount(codes[labelled], weights=own, minlength=n_classes)
    counts = np.bincount(codes[labelled], minlength=n_classes)
    t = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)
    return np.maximum(t, 1e-12)


def find_label_issues(
    embeddings: np.ndarray,
    labels: Sequence[Any],
    *,
    k: int = 15,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    paths: Sequence[str] | None = None,
    weighted: bool = True,
    class_balance: bool = True,
    prior: float = 1.0,
) -> pd.DataFrame:
    """Score how much each image's neighbours disagree with its label; suggest a label.

    Parameters
    ----------
    embeddings : array of shape (n_samples, n_features)
    labels : sequence of length n_samples
        The given label of every row; ``None`` (or NaN) for an unlabelled row.
    k : int, default=15
        Neighbours per row (itself excluded); capped at ``n_samples - 1``.
    neighbors : (sims, ids) or None
        Each row's nearest neighbours by cosine similarity, self excluded, at least ``k``
        columns (e.g. a run's cached graph from
        :func:`~dinomap.downstream.neighbors.run_neighbors`); ``-1`` ids are ignored.
        ``None``: an exact search is run.
    paths : sequence of str or None
        Row identifiers for the ``path`` column (default: row numbers).
    weighted : bool, default=True
        Weight each neighbour's vote by its cosine similarity (``False``: one vote each).
    class_balance : bool, default=True
        Measure each class's support against the class's own threshold (its mean support
        among its rows), so class size and crowding do not decide; ``False``: raw support.
    prior : float, default=1.0
        Pseudo-votes spread evenly over the classes (smoothing; 0 disables it).

    Returns
    -------
    pandas.DataFrame
        One row per input row, in input order, with the columns :data:`LABEL_ISSUE_COLUMNS`:
        ``label_issue_score`` in ``[0, 1]`` (higher: more likely mislabelled; NaN for
        unlabelled rows), ``suggested_label`` (the best-supported class, relative to its
        threshold; the given label itself where its score is 0), ``label_support`` (the raw support of the given label) and
        ``is_label_issue`` (another class is better supported and the score is at least
        :data:`ISSUE_THRESHOLD`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 0.1, (20, 4)) + 1, rng.normal(0, 0.1, (20, 4)) - 1])
    >>> y = ["a"] * 20 + ["b"] * 20
    >>> y[3] = "b"  # a planted flip
    >>> df = find_label_issues(X.astype("float32"), y, k=5)
    >>> int(df["label_issue_score"].idxmax()), df.loc[3, "suggested_label"]
    (3, 'a')
    """
    import pandas as pd

    X = check_embeddings(embeddings, min_samples=2)
    n = X.shape[0]
    codes, classes = _label_codes(list(labels), n)
    k = min(check_positive_int("k", k), n - 1)
    if not np.isfinite(prior) or prior < 0:
        raise InvalidParameterError(f"prior must be a number >= 0; got {prior!r}.")
    if neighbors is None:
        from dinomap.downstream.index import NeighborIndex

        neighbors = NeighborIndex(kind="flat").fit(X).search(X, k, exclude_self=True)
    sims, ids = (np.asarray(a) for a in neighbors)
    if ids.shape != sims.shape or ids.shape[0] != n or ids.shape[1] < k:
        raise InvalidParameterError(
            f"neighbors must be two arrays of shape ({n}, >= {k}); got {sims.shape} and "
            f"{ids.shape}. Pass the graph of these embeddings, or neighbors=None."
        )
    support = _supports(sims[:, :k], ids[:, :k].astype(np.int64), codes, len(classes),
                        weighted=weighted, prior=float(prior))  # fmt: skip
    rows, labelled = np.arange(n), codes >= 0
    given = np.where(labelled, support[rows, np.maximum(codes, 0)], np.nan)
    relative = support / class_thresholds(support, codes) if class_balance else support
    score = 1.0 - np.minimum(relative[rows, np.maximum(codes, 0)], 1.0)
    score = np.where(labelled, score, np.nan)
    relative_argmax = np.argmax(relative, axis=1)
    # a label that is fully supported (score 0) is its own suggestion: another class that is
    # even better supported does not make it wrong, and a row never says "0.00, but try x"
    suggested = np.where(labelled & (score <= 0), codes, relative_argmax)
    names = np.asarray(classes, dtype=object)
    text_labels = [names[c] if c >= 0 else None for c in codes]
    return pd.DataFrame(
        {
            "path": list(paths) if paths is not None else [str(i) for i in range(n)],
            "label": text_labels,
            "suggested_label": names[suggested].tolist(),
            "label_issue_score": score.astype(np.float32),
            "label_support": given.astype(np.float32),
            "is_label_issue": labelled & (relative_argmax != codes) & (score >= ISSUE_THRESHOLD),
        },
        columns=list(LABEL_ISSUE_COLUMNS),
    )


@dataclass(frozen=True)
class LabelIssuesReport:
    """Label issues of a run.

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`find_label_issues`' table, run order.
    top : pandas.DataFrame
        The ``top`` highest scores, most suspicious first.
    k : int
    files : dict
        ``table``, ``info``, ``sheet`` -> written path (empty when nothing was written).
    info : dict
        What ``label_issues.json`` holds.
    """

    table: pd.DataFrame
    top: pd.DataFrame
    k: int
    files: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def top_issues(table: pd.DataFrame, top: int) -> pd.DataFrame:
    """The ``top`` rows with the highest scores (labelled rows only), highest first."""
    scored = table[table["label_issue_score"].notna()]
    return scored.sort_values("label_issue_score", ascending=False, kind="stable").head(top)


def label_issues_run(
    run_dir: str | os.PathLike[str],
    *,
    k: int = 15,
    top: int = 50,
    index: str = "auto",
    rebuild: bool = False,
    write: bool = True,
    **index_params: Any,
) -> LabelIssuesReport:
    """Find the label issues of a run and write ``downstream/label_issues.parquet``, its
    record and a contact sheet of the ``top`` most suspicious images.

    Raises
    ------
    DinomapError
        When the run's images carry no labels (or a single class).

    Examples
    --------
    >>> report = label_issues_run("runs/fm", top=100)  # doctest: +SKIP
    >>> report.top[["path", "label", "suggested_label"]].head()  # doctest: +SKIP
    """
    from dinomap.downstream.neighbors import run_neighbors
    from dinomap.store import load_embeddings

    k = check_positive_int("k", k)
    top = check_positive_int("top", top)
    start = time.perf_counter()
    emb = load_embeddings(run_dir)
    if emb.labels is None:
        raise DinomapError(
            f"the run {run_dir} has no labels, so there is nothing to check: label issues "
            "need labelled images. Embed class folders (photos/cat/*.jpg, photos/dog/*.jpg) "
            "or a manifest with a 'label' column, then run `dinomap label-issues` again."
        )
    if len(emb) < 2:
        raise DinomapError(
            f"label issues need at least 2 images; the run {run_dir} has {len(emb)}."
        )
    # The graph is shared with outliers and duplicates (which ask for >= 16 neighbours).
    sims, ids, nn, emb = run_neighbors(
        run_dir, max(k, 16), kind=index, rebuild=rebuild, embeddings=emb, **index_params
    )
    k_eff = min(k, ids.shape[1])
    labels = emb.labels if emb.labels is not None else [None] * len(emb)
    table = find_label_issues(emb.X, labels, k=k_eff, neighbors=(sims, ids), paths=emb.paths)
    best = top_issues(table, top)
    info = _record(table, best, emb, k_eff, nn.kind_, time.perf_counter() - start)
    files: dict[str, Path] = {}
    if write:
        files = write_label_issues(run_dir, table, best, info, emb)
    return LabelIssuesReport(table=table, top=best, k=k_eff, files=files, info=info)


def _record(
    table: pd.DataFrame, best: pd.DataFrame, emb: Any, k: int, index: str, seconds: float
) -> dict[str, Any]:
    counts = table["label"].value_counts()
    info: dict[str, Any] = {
        "method": "similarity-weighted kNN vote, per-class thresholds",
        "k": k,
        "weighted": True,
        "class_balance": True,
        "prior": 1.0,
        "index": index,
        "n_samples": len(table),
        "n_labelled": int(table["label"].notna().sum()),
        "classes": {str(c): int(v) for c, v in sorted(counts.items())},
        "issue_threshold": ISSUE_THRESHOLD,
        "n_label_issues": int(table["is_label_issue"].sum()),
        "seconds": round(seconds, 4),
        "random_init": bool(emb.random_init),
        "embeddings": emb.stamp,
        "top": [
            {
                "path": r.path,
                "label": r.label,
                "suggested_label": r.suggested_label,
                "score": float(r.label_issue_score),  # type: ignore[arg-type]
            }
            for r in best.itertuples(index=False)
        ],
    }
    if emb.random_init:
        info["warning"] = "random-init weights: label issues of these embeddings are not meaningful"
    return info


def write_label_issues(
    run_dir: str | os.PathLike[str],
    table: pd.DataFrame,
    best: pd.DataFrame,
    info: dict[str, Any],
    emb: Any,
) -> dict[str, Path]:
    """Write the table and its record (``store.downstream``) and the top-N contact sheet."""
    import pyarrow as pa

    from dinomap.downstream.contact_sheet import run_thumbnail_loader, write_contact_sheet
    from dinomap.store.downstream import downstream_dir, write_downstream_table
    from dinomap.store.layout import (
        LABEL_ISSUES_FILE,
        LABEL_ISSUES_INFO_FILE,
        LABEL_ISSUES_SHEET,
    )

    columns = {
        "path": pa.array(table["path"].tolist(), pa.string()),
        "label": pa.array(table["label"].tolist(), pa.string()),
        "suggested_label": pa.array(table["suggested_label"].tolist(), pa.string()),
        "label_issue_score": pa.array(table["label_issue_score"].to_numpy(), pa.float32()),
        "label_support": pa.array(table["label_support"].to_numpy(), pa.float32()),
        "is_label_issue": pa.array(table["is_label_issue"].to_numpy(), pa.bool_()),
    }
    out = write_downstream_table(run_dir, LABEL_ISSUES_FILE, columns, LABEL_ISSUES_INFO_FILE, info)
    captions = [
        f"{r.label} -> {r.suggested_label} {r.label_issue_score:.2f}"
        for r in best.itertuples(index=False)
    ]
    sheet = write_contact_sheet(
        best["path"].tolist(),
        downstream_dir(run_dir) / LABEL_ISSUES_SHEET,
        captions=captions,
        title=f"top {len(best)} label issues (given -> suggested, score; k={info['k']})",
        random_init=bool(emb.random_init),
        loader=run_thumbnail_loader(emb.info),
    )
    return {"table": out, "info": downstream_dir(run_dir) / LABEL_ISSUES_INFO_FILE, "sheet": sheet}
