"""Map quality on clusters with structure inside them, against references in the same test.

The data (:func:`dinomap.data.synthetic.make_clusters`, the benchmarks' generator) put every
cluster on its own 8-dimensional patch, so a point has true neighbours inside its cluster that a
faithful map keeps next to it. Every map's trustworthiness (k=10) is compared with:

- the **peer**: the library's own call with the same parameters on the same input (openTSNE on
  the same PCA-50, ``umap.UMAP``), or for a neural mapper the map it imitates, minus a margin;
- the **shuffled** baseline: the same map with each cluster's points permuted among themselves
  (clusters kept, local structure gone), plus 0.02;
- for t-SNE and UMAP also **per-cluster PCA** (each cluster drawn by its own 2-D PCA): a
  reference that uses neither library, so it still stands when openTSNE's or umap-learn's output
  loses its local structure (the peer then loses it as well).

Measured on this data (``make_clusters(1500, 64, 8, intrinsic=8, seed=0)``, 2026-12-01):

==================  ===============  =====================  ========  ===============
map                 trustworthiness  peer / imitated map    shuffled  per-cluster PCA
==================  ===============  =====================  ========  ===============
PCA                 0.8369           sklearn: same coords   0.7922    -
t-SNE (100+200 it)  0.9859           openTSNE 0.9866        0.8897    0.9657
UMAP                0.9709           umap.UMAP 0.9709       0.8903    0.9657
parametric UMAP     0.9650           UMAP 0.9709            0.8919    -
t-SNE approximator  0.9570           t-SNE 0.9859           0.8887    -
==================  ===============  =====================  ========  ===============

With openTSNE's and umap-learn's outputs scrambled after every fit (each point shuffled among
the points of its cell of an 8 x 8, 16 x 16 or 24 x 24 grid over the map: the issue's test of
this suite), t-SNE keeps 0.924 / 0.954 / 0.966 and UMAP 0.900 / 0.912 / 0.931. The peer is
scrambled as well and the shuffled baseline + 0.02 is passed in most of these cases, but every
one falls below per-cluster PCA + 0.01 (t-SNE) or - 0.01 (UMAP).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from dinomap.data.synthetic import make_clusters
from dinomap.metrics import trustworthiness
from dinomap.reduce import get_reducer

from .._quality import (
    assert_at_least,
    clusterwise_pca,
    one_torch_thread,
    within_cluster_shuffle,
)

#: Fewer t-SNE iterations than the defaults (250 + 750); openTSNE gets the same.
TSNE_FAST = {"perplexity": 30, "early_exaggeration_iter": 100, "n_iter": 200}
#: The t-SNE approximator's MLP is smoother than t-SNE: 0.029 below it on this data at its
#: defaults (0.026-0.037 on four data seeds; 0.016-0.024 with weight_decay=0.1), so its margin
#: is 0.04 rather than 0.01.
TSNE_NN_MARGIN = 0.04


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_clusters(1500, 64, 8, intrinsic=8, seed=0)


def trust(X: np.ndarray, Y: Any) -> float:
    return trustworthiness(X, np.asarray(Y, dtype=np.float32), k=10)


def shuffled(X: np.ndarray, Y: np.ndarray, labels: np.ndarray) -> float:
    return trust(X, within_cluster_shuffle(Y, labels, seed=0))


@pytest.fixture(scope="module")
def cluster_pca_trust(data: tuple[np.ndarray, np.ndarray]) -> float:
    X, labels = data
    return trust(X, clusterwise_pca(X, labels))


@pytest.fixture(scope="module")
def tsne_map(data: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.asarray(get_reducer("tsne", random_state=0, **TSNE_FAST).fit_transform(data[0]))


@pytest.fixture(scope="module")
def umap_reducer(data: tuple[np.ndarray, np.ndarray]) -> Any:
    return get_reducer("umap", random_state=0).fit(data[0])


def test_pca_is_sklearns_pca_and_beats_the_shuffled_map(data) -> None:
    from sklearn.decomposition import PCA

    X, labels = data
    Y = get_reducer("pca", random_state=0).fit_transform(X)
    ref = PCA(n_components=2).fit_transform(X)
    assert_at_least(trust(X, Y), {"shuffled + 0.02": shuffled(X, Y, labels) + 0.02})
    signs = np.sign((Y * ref).sum(axis=0))  # sklearn's signs are its own; ours are fixed
    np.testing.assert_allclose(Y, ref * signs, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_tsne_is_as_trustworthy_as_opentsne_and_keeps_local_structure(
    data, tsne_map, cluster_pca_trust
) -> None:
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    X, labels = data
    # dinomap's input: the first 50 principal components; openTSNE with its own defaults for
    # everything dinomap sets differently (Barnes-Hut here, its interpolation grid).
    Xp = PCA(n_components=50, random_state=0).fit_transform(X)
    peer = np.asarray(TSNE(random_state=0, n_jobs=1, **TSNE_FAST).fit(Xp))
    assert_at_least(
        trust(X, tsne_map),
        {
            "openTSNE - 0.01": trust(X, peer) - 0.01,
            "shuffled + 0.02": shuffled(X, tsne_map, labels) + 0.02,
            "per-cluster PCA + 0.01": cluster_pca_trust + 0.01,
        },
    )


def test_umap_is_as_trustworthy_as_umap_learn_and_keeps_local_structure(
    data, umap_reducer, cluster_pca_trust
) -> None:
    from dinomap._umap import import_umap

    X, labels = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn: a seed disables parallelism
        peer = import_umap().UMAP(random_state=0).fit_transform(X)
    Y = umap_reducer.embedding_
    assert_at_least(
        trust(X, Y),
        {
            "umap.UMAP - 0.01": trust(X, peer) - 0.01,
            "shuffled + 0.02": shuffled(X, Y, labels) + 0.02,
            "per-cluster PCA - 0.01": cluster_pca_trust - 0.01,
        },
    )


def test_parametric_umap_is_as_trustworthy_as_the_umap_map_it_imitates(data, umap_reducer) -> None:
    from dinomap.parametric import ParametricUMAP

    X, labels = data
    # On UMAP's own graph, as make_maps fits it. Five seeds on one and two torch threads:
    # 0.9646-0.9716 against UMAP's 0.9709.
    with one_torch_thread():
        mapper = ParametricUMAP(random_state=0, device="cpu").fit(X, graph=umap_reducer.graph_)
        Z = mapper.transform(X)
    assert_at_least(
        trust(X, Z),
        {
            "UMAP - 0.01": trust(X, umap_reducer.embedding_) - 0.01,
            "shuffled + 0.02": shuffled(X, Z, labels) + 0.02,
        },
    )


def test_tsne_approximator_is_nearly_as_trustworthy_as_the_tsne_map_it_imitates(
    data, tsne_map
) -> None:
    from dinomap.parametric import TSNEApproximator

    X, labels = data
    with one_torch_thread():
        Z = TSNEApproximator(random_state=0, device="cpu").fit(X, tsne_map).transform(X)
    assert_at_least(
        trust(X, Z),
        {
            f"t-SNE - {TSNE_NN_MARGIN}": trust(X, tsne_map) - TSNE_NN_MARGIN,
            "shuffled + 0.02": shuffled(X, Z, labels) + 0.02,
        },
    )
