"""Quality of the maps on 10 Gaussian clusters in 384-d (2,000 points), at default settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinomap import make_maps
from dinomap.maps import resolve_methods

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(42)
    centres = rng.normal(scale=1.0, size=(10, 384))
    y = rng.integers(0, 10, size=2000)
    X = (centres[y] + rng.normal(size=(2000, 384))).astype(np.float32)
    return X, [f"class {v}" for v in y]


@pytest.fixture(scope="module")
def all_maps(blobs, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    return make_maps(blobs, methods=None, random_state=0, out_dir=out), out


def test_tsne_and_umap_are_trustworthy_and_separate_the_classes(all_maps) -> None:
    res, _ = all_maps
    for name in ("tsne", "umap"):
        entry = res.metrics["methods"][name]
        assert entry["trustworthiness"] >= 0.9, (name, entry)
        assert entry["knn_accuracy"] >= 0.95, (name, entry)
    # PCA of 10 clusters in 384-d cannot separate them all in 2-D: the metric must show it
    assert (
        res.metrics["methods"]["pca"]["knn_accuracy"]
        < res.metrics["methods"]["tsne"]["knn_accuracy"]
    )


def test_every_available_map_is_written(all_maps) -> None:
    res, out = all_maps
    names = resolve_methods(None)
    assert list(res.coords) == names
    plots = {p.name for p in Path(out, "plots").iterdir()}
    expected = {
        "pca": "pca_embeddings.png",
        "tsne": "tsne_embeddings.png",
        "umap": "umap_embeddings.png",
        "parametric_umap": "parametric_umap_embeddings.png",
        "tsne_nn": "t-sne_nn_embeddings.png",
    }
    assert plots == {expected[n] for n in names} | {"all_maps.png"}
    if "tsne_nn" in names:
        assert res.metrics["methods"]["tsne_nn"]["agreement"] is not None
    if "parametric_umap" in names:
        entry = res.metrics["methods"]["parametric_umap"]
        assert entry["trustworthiness"] >= 0.9 and entry["knn_accuracy"] >= 0.95, entry
        # held-out points placed by the encoder share their UMAP neighbours far above chance
        # (10 of 1,800 training points: 0.0056). Inside a Gaussian blob the arrangement is
        # arbitrary in both maps, so the overlap of exact 10-NN stays modest on this data.
        assert entry["heldout"]["n_heldout"] == 200, entry
        assert entry["agreement"] >= 5 * 10 / 1800, entry


def test_same_seed_gives_identical_maps_at_default_settings(blobs, all_maps) -> None:
    res, _ = all_maps
    again = make_maps(blobs, methods="pca,tsne", random_state=0, evaluate=False)
    for name in ("pca", "tsne"):
        np.testing.assert_array_equal(again.coords[name], res.coords[name])
