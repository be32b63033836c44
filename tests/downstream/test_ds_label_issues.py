"""Label issues: planted label flips on synthetic clustered embeddings are found, a wrong scorer
is not good enough, the class-frequency correction matters on imbalanced classes, and the run
wrapper / CLI write what the report reads (with the embeddings' stamp, refreshed when stale)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import dinomap
from dinomap.cli import main as cli_main
from dinomap.data.synthetic import make_clusters
from dinomap.downstream.index import NeighborIndex
from dinomap.downstream.label_issues import LABEL_ISSUE_COLUMNS, label_issues_run
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.store import current_stamp, write_shard
from dinomap.store.staleness import stale_outputs

from .conftest import write_run

NOISE = 0.05


def flip_labels(y: np.ndarray, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``noise`` of the labels to another class, uniformly; return them and the flipped rows."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    idx = np.sort(rng.choice(len(y), round(noise * len(y)), replace=False))
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    return noisy, idx


def precision_at_n(scores: np.ndarray, flips: np.ndarray) -> float:
    top = np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable")[: len(flips)]
    return len(set(top.tolist()) & set(flips.tolist())) / len(flips)


def names(codes: np.ndarray) -> list[str]:
    return [f"class{c}" for c in codes]


@pytest.fixture(scope="module")
def flipped() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_clusters(1200, 32, clusters=6, intrinsic=8, seed=3)
    noisy, flips = flip_labels(y, NOISE, seed=3)
    return X, y, noisy, flips


def imbalanced(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One big class (80 %), three small ones, the first small one moved next to the big one."""
    X, y = make_clusters(6000, 32, clusters=4, intrinsic=8, seed=seed)
    keep = np.sort(np.concatenate(
        [np.flatnonzero(y == c)[: 1600 if c == 0 else 133] for c in range(4)]
    ))  # fmt: skip
    X, y = X[keep].copy(), y[keep]
    X[y == 1] += (X[y == 0].mean(0) - X[y == 1].mean(0)) * 0.9
    return X, y


def test_planted_flips_are_found_with_precision_at_n_of_at_least_0_9(flipped) -> None:
    X, y, noisy, flips = flipped
    df = dinomap.find_label_issues(X, names(noisy), k=10)
    assert list(df.columns) == list(LABEL_ISSUE_COLUMNS) and len(df) == len(X)
    assert precision_at_n(df["label_issue_score"].to_numpy(), flips) >= 0.9
    # the suggested label of a flipped image is its true class
    assert (df["suggested_label"].to_numpy()[flips] == np.array(names(y[flips]))).mean() >= 0.9
    assert df["label_issue_score"].between(0, 1).all()
    clean = np.setdiff1d(np.arange(len(X)), flips)
    assert df["label_issue_score"].to_numpy()[clean].mean() < 0.1


def test_scores_and_suggestions_agree() -> None:
    """A row whose label is fully supported (score 0) suggests its own label; a row that
    suggests another has a score above 0. Structureless points with unequal classes: a row
    well supported by its own class is often even better supported, relative to its small
    threshold, by a rare class (21 of 300 rows said "0.00, but try c2" before)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    df = dinomap.find_label_issues(X, names(rng.choice(3, 300, p=[0.7, 0.2, 0.1])), k=10)
    other = df["suggested_label"] != df["label"]
    assert (df.loc[df["label_issue_score"] == 0, "suggested_label"]
            == df.loc[df["label_issue_score"] == 0, "label"]).all()  # fmt: skip
    assert (df.loc[other, "label_issue_score"] > 0).all()
    assert other.any() and (df["label_issue_score"] == 0).any()


def test_a_wrong_scorer_fails_the_same_bar(flipped) -> None:
    X, _, noisy, flips = flipped
    random_scores = np.random.default_rng(0).random(len(X))
    assert precision_at_n(random_scores, flips) < 0.9
    # the right votes from the wrong neighbours (a graph of other rows) find nothing either
    sims, ids = NeighborIndex(kind="flat").fit(X).search(X, 10, exclude_self=True)
    perm = np.random.default_rng(1).permutation(len(X))
    wrong = dinomap.find_label_issues(X, names(noisy), k=10, neighbors=(sims, ids[perm]))
    assert precision_at_n(wrong["label_issue_score"].to_numpy(), flips) < 0.5


def test_class_frequency_correction_helps_on_imbalanced_classes() -> None:
    X, y = imbalanced()
    noisy, flips = flip_labels(y, NOISE, seed=0)
    labels = names(noisy)
    corrected = dinomap.find_label_issues(X, labels, k=10)
    raw = dinomap.find_label_issues(X, labels, k=10, class_balance=False)
    p_corr = precision_at_n(corrected["label_issue_score"].to_numpy(), flips)
    p_raw = precision_at_n(raw["label_issue_score"].to_numpy(), flips)
    assert p_corr >= 0.9
    assert p_corr > p_raw  # raw support flags genuine members of the crowded small class
    clean_small = np.setdiff1d(np.flatnonzero(y == 1), flips)

    def flagged(df: pd.DataFrame) -> int:
        top = np.argsort(-df["label_issue_score"].to_numpy(), kind="stable")[: len(flips)]
        return len(np.intersect1d(top, clean_small))

    assert flagged(corrected) < flagged(raw)


def test_unlabelled_rows_get_no_score_but_a_suggestion_and_bad_input_is_refused() -> None:
    X, y = make_clusters(60, 8, clusters=2, intrinsic=2, seed=0)
    labels: list[str | None] = names(y)
    labels[0] = None
    df = dinomap.find_label_issues(X, labels, k=5)
    assert (
        np.isnan(df.loc[0, "label_issue_score"]) and df.loc[0, "suggested_label"] == f"class{y[0]}"
    )
    with pytest.raises(InvalidParameterError, match="at least 2 classes"):
        dinomap.find_label_issues(X, ["a"] * 60)
    with pytest.raises(InvalidParameterError, match="one entry per embedding"):
        dinomap.find_label_issues(X, labels[:10])
    with pytest.raises(InvalidParameterError, match="neighbors must be"):
        dinomap.find_label_issues(X, labels, k=5, neighbors=(np.zeros((60, 2)), np.zeros((60, 2))))


def _run_with_flips(tmp_path, n: int = 400):
    X, y = make_clusters(n, 16, clusters=4, intrinsic=4, seed=5)
    noisy, flips = flip_labels(y, NOISE, seed=5)
    paths = [f"img_{i:04d}.png" for i in range(n)]
    return write_run(tmp_path / "run", X, paths, names(noisy)), paths, flips


def test_run_wrapper_writes_table_record_and_sheet_and_goes_stale(tmp_path) -> None:
    from dinomap.pipeline import refresh_stale_downstream

    run, paths, flips = _run_with_flips(tmp_path)
    report = label_issues_run(run, top=len(flips))
    ds = run / "downstream"
    table = pq.read_table(ds / "label_issues.parquet").to_pandas()
    assert list(table.columns) == list(LABEL_ISSUE_COLUMNS) and table["path"].tolist() == paths
    info = json.loads((ds / "label_issues.json").read_text())
    assert info["embeddings"] == current_stamp(run) and info["k"] == 15
    assert [t["path"] for t in info["top"]] == report.top["path"].tolist()
    assert len(set(report.top.index) & set(flips.tolist())) / len(flips) >= 0.9
    assert (ds / "label_issues.png").stat().st_size > 1000
    assert (ds / "knn.npz").is_file()  # the shared, cached neighbour graph
    assert stale_outputs(run) == []
    write_shard(run, ["zz_new.png"], [hashlib.sha256(b"z").hexdigest()], ["class0"], [32], [32],
                np.ones((1, 16), np.float32))  # fmt: skip
    stale = stale_outputs(run)
    assert any("label_issues.parquet" in s and "dinomap label-issues" in s for s in stale), stale
    assert "label_issues" in refresh_stale_downstream(run)
    info = json.loads((ds / "label_issues.json").read_text())
    assert info["embeddings"] == current_stamp(run) and len(info["top"]) == len(flips)


def test_run_without_labels_is_a_clear_error(tmp_path) -> None:
    X, _ = make_clusters(30, 8, clusters=2, intrinsic=2, seed=0)
    run = write_run(tmp_path / "run", X, [f"p{i}.png" for i in range(30)])
    with pytest.raises(DinomapError, match="has no labels"):
        label_issues_run(run)
    from dinomap.pipeline import label_issues_if_labelled

    assert label_issues_if_labelled(run) is None
    assert not (run / "downstream" / "label_issues.json").exists()


def test_cli_label_issues(tmp_path, capsys) -> None:
    run, paths, flips = _run_with_flips(tmp_path)
    assert cli_main.main(["label-issues", str(run), "--top", "5", "--k", "8"]) == 0
    out = capsys.readouterr().out
    assert "label issues (k=8) of 400 labelled images" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 5
    top_paths = {line.split()[-1] for line in rows}
    assert len(top_paths & {paths[i] for i in flips}) >= 4
    assert "label_issues.parquet" in out and "label_issues.png" in out
    bare = write_run(tmp_path / "bare", np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    assert cli_main.main(["label-issues", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "has no labels" in err and len(err.strip().splitlines()) == 1
