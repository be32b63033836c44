"""Outlier scores."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from dinomap.downstream import find_outliers, outlier_scores
from dinomap.exceptions import InvalidParameterError


@pytest.mark.parametrize("method", ["knn", "lof"])
def test_planted_outliers_rank_on_top(planted, method):
    scores = outlier_scores(planted.X, method=method, k=10)
    top = set(np.argsort(-scores)[: len(planted.outliers)].tolist())
    assert top == set(planted.outliers)


def test_knn_score_is_mean_cosine_distance():
    X = np.array([[1, 0], [1, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    scores = outlier_scores(X, k=1)
    # Row 0's nearest neighbour is row 1: distance 1 - cos(angle).
    expected = 1 - 1 / np.sqrt(1.01)
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert scores[3] == pytest.approx(1.0, abs=1e-5)  # orthogonal to its nearest (row 2)


def test_unknown_method_is_refused(planted):
    with pytest.raises(InvalidParameterError, match="Did you mean 'lof'"):
        outlier_scores(planted.X, method="lfo")


def test_find_outliers_writes_parquet_json_and_sheet(planted_run):
    run, planted = planted_run
    report = find_outliers(run, top=6, k=10)
    table = pq.read_table(run / "downstream" / "outliers.parquet").to_pandas()
    assert list(table.columns) == ["path", "score"]
    assert table["path"].tolist() == planted.paths
    assert {p for p, _ in report.top} == {planted.paths[i] for i in planted.outliers}
    info = json.loads((run / "downstream" / "outliers.json").read_text())
    assert info["method"] == "knn" and len(info["top"]) == 6
    assert info["top"][0]["label"] == "odd"
    sheet = cv2.imread(str(report.sheet))
    assert sheet is not None and sheet.shape[0] > 100


def test_top_scores_are_made_exact_after_an_approximate_search(planted):
    """Inliers whose approximate neighbours were poor look like outliers; the refinement
    rescores the top rows exactly until the top N is exact."""
    from dinomap.downstream.index import NeighborIndex
    from dinomap.downstream.outliers import refine_top_outliers

    X = planted.X
    sims, ids = NeighborIndex(kind="flat").fit(X).search(X, 16, exclude_self=True)
    inliers = [i for i in range(len(X)) if i not in planted.outliers][:10]
    sims[inliers, 1:] = 0.0  # a lost search: itself found, the other neighbours far away
    ids[inliers, 1:] = planted.outliers[0]
    fooled = outlier_scores(X, k=10, neighbors=(sims, ids))
    assert set(np.argsort(-fooled)[:6].tolist()) != set(planted.outliers)
    scores, refined = refine_top_outliers(X, sims, ids, "knn", 10, top=6)
    assert set(np.argsort(-scores)[:6].tolist()) == set(planted.outliers)
    assert 0 < refined < len(X)
    exact = outlier_scores(X, k=10)
    top = np.argsort(-scores)[:6]
    np.testing.assert_allclose(scores[top], exact[top], atol=1e-5)
