"""Exact and near-duplicate groups."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from dinomap.downstream import (
    NeighborIndex,
    exact_duplicate_groups,
    find_duplicates,
    near_duplicate_groups,
)
from dinomap.downstream.index import cosine_floor
from dinomap.exceptions import InvalidParameterError

from .conftest import write_run


def _pair_recall(found: list[list[int]], planted: list[list[int]]) -> float:
    found_of = {i: gi for gi, g in enumerate(found) for i in g}
    pairs = [(g[0], j) for g in planted for j in g[1:]]
    hit = sum(1 for a, b in pairs if a in found_of and found_of.get(a) == found_of.get(b))
    return hit / len(pairs)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_planted_near_duplicates_found_without_false_groups(planted, kind):
    index = NeighborIndex(kind=kind).fit(planted.X)
    groups, best = near_duplicate_groups(planted.X, 0.95, index=index)
    assert _pair_recall(groups, planted.near_groups) >= 0.95
    planted_sets = [set(g) for g in planted.near_groups]
    for g in groups:  # no false group: every group lies inside one planted group
        assert any(set(g) <= p for p in planted_sets), g
    members = [i for g in groups for i in g]
    assert (best[members] >= 0.95).all()
    assert np.isnan(np.delete(best, members)).all()


def test_threshold_is_validated(planted):
    with pytest.raises(InvalidParameterError, match=r"threshold .*\[-1, 1\].*1.5"):
        near_duplicate_groups(planted.X, 1.5)


def test_exact_groups_by_hash():
    assert exact_duplicate_groups(["x", "y", "x", "", ""]) == [[0, 2]]


def test_find_duplicates_writes_csv_with_exact_and_near(tmp_path, planted):
    X = planted.X.copy()
    paths = list(planted.paths)
    sha = [hashlib.sha256(p.encode()).hexdigest() for p in paths]
    # Rows 0 and 1 become byte-identical copies (same hash, same embedding).
    X[1] = X[0]
    sha[1] = sha[0]
    run = write_run(tmp_path / "run", X, paths, planted.labels, sha, random_init=True)
    report = find_duplicates(run, threshold=0.95)
    assert report.exact == [[paths[0], paths[1]]]
    # The pure exact copy is not repeated as a near group; the planted ones are all there.
    assert len(report.near) == len(planted.near_groups)
    with open(report.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = {r["kind"] for r in rows}
    assert kinds == {"exact", "near"}
    near_paths = {r["path"] for r in rows if r["kind"] == "near"}
    assert near_paths == {paths[i] for g in planted.near_groups for i in g}
    info = json.loads((run / "downstream" / "duplicates.json").read_text())
    assert info["random_init"] is True and "warning" in info
    assert info["n_near_groups"] == len(planted.near_groups)


def test_collapsed_embeddings_give_one_group_with_bounded_work(caplog):
    """Random-init weights can make every embedding nearly identical: one group, found with
    at most max_neighbors neighbours per row instead of all n - 1."""
    rng = np.random.default_rng(0)
    X = (np.ones((300, 8)) + rng.normal(scale=1e-3, size=(300, 8))).astype(np.float32)
    index = NeighborIndex(kind="flat").fit(X)
    a, _ = index.range_pairs(X, 0.95, max_neighbors=32)
    assert a.size <= 300 * 32
    assert "more than 32 neighbours" in caplog.text
    # a threshold that links every pair (all cosines >= cosine_floor(X)) is refused, in O(n d)
    assert cosine_floor(X) > 0.999
    with pytest.raises(InvalidParameterError, match="links every pair of the 300 images"):
        near_duplicate_groups(X, 0.95, index=index)


def test_degenerate_embeddings_are_said_once_and_rounding_is_clamped(
    tmp_path, capsys, caplog
) -> None:
    """Collapsed embeddings (every cosine within 1e-5 of 1, as a random-init model gives):
    the downstream commands say once that similarities carry no meaning, no outlier distance
    is negative and no similarity is above 1."""
    import logging

    from dinomap.cli import main as cli_main

    rng = np.random.default_rng(0)
    X = (np.ones((40, 16)) + rng.normal(scale=1e-6, size=(40, 16))).astype(np.float32)
    paths = [f"img_{i:02d}.png" for i in range(40)]
    run = write_run(tmp_path / "run", X, paths, random_init=True)
    with caplog.at_level(logging.WARNING):
        assert cli_main.main(["outliers", str(run), "--top", "5"]) == 0
        assert cli_main.main(["outliers", str(run), "--top", "5", "-k", "5"]) == 0
    said = [r for r in caplog.records if "degenerate" in r.getMessage()]
    assert len(said) == 1 and "carry no meaning" in said[0].getMessage()
    assert "random-init" in said[0].getMessage()
    scores = pd.read_parquet(run / "downstream" / "outliers.parquet")["score"]
    assert (scores >= 0).all(), scores.min()
    printed = re.findall(r"^\s+\d+\s+(\S+)\s+img_", capsys.readouterr().out, re.M)
    assert len(printed) == 10 and min(float(v) for v in printed) >= 0, printed
    assert cli_main.main(["search", str(run), paths[0], "-k", "5", "--no-write"]) == 0
    sims = [float(line.split()[1]) for line in capsys.readouterr().out.splitlines()[1:]]
    assert sims and max(sims) <= 1.0
