"""Clusters recover planted blobs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from dinomap.downstream import cluster_embeddings, cluster_images, cluster_scores
from dinomap.exceptions import InvalidParameterError

from .conftest import make_planted, write_run


@pytest.mark.parametrize(("method", "kwargs"), [("hdbscan", {}), ("kmeans", {"n_clusters": 5})])
def test_clusters_recover_planted_blobs(planted, method, kwargs):
    result = cluster_embeddings(planted.X, method=method, **kwargs)
    inliers = planted.blob >= 0
    ari = adjusted_rand_score(planted.blob[inliers], result.labels[inliers])
    assert ari >= 0.9
    assert result.n_clusters == 5


def test_hdbscan_leaves_planted_outliers_as_noise(planted):
    result = cluster_embeddings(planted.X)
    assert (result.labels[planted.outliers] == -1).all()
    assert result.noise_fraction < 0.05


def test_kmeans_needs_n_clusters(planted):
    with pytest.raises(InvalidParameterError, match="n_clusters"):
        cluster_embeddings(planted.X, method="kmeans")


def test_scores_skip_unlabelled_rows():
    scores = cluster_scores(np.array([0, 0, 1, 1, 5]), ["a", "a", "b", "b", None])
    assert scores == {"ari": 1.0, "nmi": 1.0, "n_labelled": 4}
    assert cluster_scores(np.array([0, 1]), None)["ari"] is None


def test_cluster_images_writes_parquet_and_scores(planted_run):
    run, planted = planted_run
    result = cluster_images(run)
    table = pq.read_table(run / "downstream" / "clusters.parquet").to_pandas()
    assert list(table.columns) == ["path", "cluster"]
    assert table["path"].tolist() == planted.paths
    np.testing.assert_array_equal(table["cluster"].to_numpy(), result.labels)
    info = json.loads((run / "downstream" / "clusters.json").read_text())
    assert info["ari"] >= 0.9 and info["nmi"] >= 0.9
    assert info["params"]["pca_components"] == 32
    assert info["random_init"] is False
    sheet = cv2.imread(str(run / "downstream" / "clusters.png"))
    assert sheet is not None and sheet.shape[0] > 5 * 80  # one row per cluster (5 blobs)


def test_cluster_images_without_labels(tmp_path):
    p = make_planted(n_dup_groups=0, n_outliers=0, seed=3)
    run = write_run(tmp_path / "r", p.X, p.paths, None)
    info_result = cluster_images(run, method="kmeans", n_clusters=5)
    assert info_result.scores["ari"] is None
    info = json.loads((run / "downstream" / "clusters.json").read_text())
    assert info["ari"] is None and info["n_clusters"] == 5
