"""ParametricUMAP: contract, quality, determinism, persistence, backends and devices."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from dinomap import NotFittedError, ParametricUMAP
from dinomap._umap import import_umap
from dinomap.data.synthetic import make_clusters
from dinomap.exceptions import InvalidParameterError, MissingDependencyError
from dinomap.metrics import knn_accuracy, trustworthiness
from dinomap.parametric.umap import KERAS_HINT, fuzzy_graph

from .._quality import assert_at_least, one_torch_thread, within_cluster_shuffle
from .conftest import json_from_fresh_process

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_CUDA = torch.cuda.is_available()


def fast(**kw: object) -> ParametricUMAP:
    params: dict[str, object] = dict(
        n_epochs=3, hidden=(32,), batch_size=1024, random_state=0, device="cpu"
    )
    params.update(kw)
    return ParametricUMAP(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fitted_small(small: tuple[np.ndarray, np.ndarray]) -> ParametricUMAP:
    return fast().fit(small[0])


def test_init_only_stores_params() -> None:
    p = ParametricUMAP(n_neighbors=-1, backend="nope", hidden=[3])
    assert p.get_params()["backend"] == "nope" and p.n_neighbors == -1
    assert not hasattr(p, "net_")


def test_not_fitted_errors(tmp_path: Path) -> None:
    p = ParametricUMAP()
    with pytest.raises(NotFittedError, match="not fitted"):
        p.transform(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        p.to_torch_module()
    with pytest.raises(NotFittedError):
        p.save(tmp_path)


def test_fit_transform_contract(
    fitted_small: ParametricUMAP, small: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = small
    p = fitted_small
    Z = p.transform(X)
    assert Z.shape == (len(X), 2) and Z.dtype == np.float32 and np.isfinite(Z).all()
    np.testing.assert_array_equal(Z, p.embedding_)
    assert p.n_features_in_ == X.shape[1] and p.n_edges_ > len(X)
    assert p.a_ == pytest.approx(1.577, abs=0.01) and p.b_ == pytest.approx(0.895, abs=0.01)
    assert [h["phase"] for h in p.history_].count("umap") == 3
    assert p.device_ == torch.device("cpu")
    assert Z.std() > 0.1  # not collapsed
    assert p.key_params() == {"n_neighbors": 15, "min_dist": 0.1, "hidden": "32", "epochs": 3}


def test_same_seed_identical(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = small
    a = fast(n_epochs=2).fit_transform(X)
    b = fast(n_epochs=2).fit_transform(X)
    c = fast(n_epochs=2, random_state=1).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cuda_batch_path_matches_cpu_path(
    small: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without de-duplication (the CUDA path) the loss and hence the map are the same (in
    fp32: bf16 rounds batches of other shapes differently)."""
    import dinomap.parametric._umap_graph as pumap_module

    X, _ = small
    Z = fast(n_epochs=2, init="random", precision="fp32").fit_transform(X)
    monkeypatch.setattr(pumap_module, "_dedup_batches", lambda device: False)
    Z2 = fast(n_epochs=2, init="random", precision="fp32").fit_transform(X)
    np.testing.assert_allclose(Z2, Z, rtol=0, atol=1e-3 * np.abs(Z).max())


@pytest.mark.slow
def test_same_seed_identical_with_approximate_neighbours() -> None:
    """Above 4,096 points the graph comes from pynndescent; a seed still fixes the map."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(8, 16))[np.arange(4500) % 8] + rng.normal(size=(4500, 16))).astype(
        np.float32
    )
    a = fast(n_epochs=1, init="random").fit_transform(X)
    b = fast(n_epochs=1, init="random").fit_transform(X)
    np.testing.assert_array_equal(a, b)


def test_precomputed_graph_gives_same_map(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = small
    ref = fast(n_epochs=2, init="random")
    Z = ref.fit_transform(X)
    Z2 = fast(n_epochs=2, init="random").fit_transform(X, graph=ref.graph_)
    np.testing.assert_array_equal(Z, Z2)
    with pytest.raises(InvalidParameterError, match=r"graph must be a scipy\.sparse"):
        fast().fit(X, graph=np.eye(3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "kersa"}, "Did you mean 'keras'"),
        ({"init": "spectral"}, "init must be one of"),
        ({"n_neighbors": 1}, "n_neighbors"),
        ({"n_neighbors": 50}, "smaller than the number of samples"),
        ({"min_dist": 2.0}, "min_dist"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"negative_sample_rate": 0}, "negative_sample_rate"),
        ({"hidden": (16, -1)}, "hidden"),
        ({"hidden": "keras_umap"}, "Did you mean 'keras-umap'"),
        ({"max_steps": 0}, "max_steps"),
        ({"random_state": -5}, "random_state"),
    ],
)
def test_bad_params(kwargs: dict[str, object], match: str) -> None:
    X = np.random.default_rng(0).normal(size=(40, 5))
    with pytest.raises(InvalidParameterError, match=match):
        fast(**kwargs).fit(X)


def test_bad_inputs(fitted_small: ParametricUMAP) -> None:
    X = np.random.default_rng(0).normal(size=(40, 5))
    X[2, 2] = np.inf
    with pytest.raises(InvalidParameterError, match="NaN or infinite"):
        fast().fit(X)
    with pytest.raises(InvalidParameterError, match="at least 3"):
        fast(n_neighbors=2).fit(X[:2])
    with pytest.raises(InvalidParameterError, match="features"):
        fitted_small.transform(np.zeros((3, 4)))
    with pytest.raises(InvalidParameterError, match="2-D"):
        fitted_small.transform(np.zeros(32))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_to_torch_module_is_plain_and_matches(
    fitted_small: ParametricUMAP, small: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = small
    module = fitted_small.to_torch_module()
    assert isinstance(module, torch.nn.Sequential)
    assert module[0].in_features == X.shape[1] and module[-1].out_features == 2
    with torch.no_grad():
        out = torch.jit.script(module)(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, fitted_small.transform(X), rtol=1e-4, atol=1e-3)


def test_save_load_in_fresh_process(
    fitted_small: ParametricUMAP, small: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = small
    out = fitted_small.save(tmp_path / "pumap")
    config = json.loads((out / "config.json").read_text())
    assert config["class"] == "ParametricUMAP" and config["params"]["hidden"] == [32]
    np.save(tmp_path / "x.npy", X[:5])
    code = (
        "import sys, json, numpy as np\n"
        "from dinomap import ParametricUMAP\n"
        "m = ParametricUMAP.load(sys.argv[1])\n"
        "print(json.dumps({'z': m.transform(np.load(sys.argv[2])).tolist(), 'a': m.a_}))\n"
    )
    got = json_from_fresh_process(code, str(out), str(tmp_path / "x.npy"))
    np.testing.assert_allclose(np.array(got["z"]), fitted_small.transform(X[:5]), atol=1e-5)
    assert got["a"] == pytest.approx(fitted_small.a_)


def test_quality_on_clusters_with_inner_structure() -> None:
    """As trustworthy as umap-learn's own map of the same data, far above a shuffled map.

    On clusters with an 8-d patch each (isotropic blobs cannot tell a map that keeps local
    structure from one that scatters each blob at random). Measured: 0.9693 at the default
    epochs, umap.UMAP 0.9709, the map shuffled within clusters 0.8914; 0.9458 after 8 epochs,
    0.8621 trained on the graph with its nodes shuffled within clusters.
    """
    X, labels = make_clusters(1500, 64, 8, intrinsic=8, seed=0)
    with one_torch_thread():
        Z = ParametricUMAP(random_state=0, device="cpu").fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn: a seed disables parallelism
        peer = import_umap().UMAP(random_state=0).fit_transform(X)
    assert_at_least(
        trustworthiness(X, Z, k=10),
        {
            "umap.UMAP - 0.01": trustworthiness(X, peer, k=10) - 0.01,
            "shuffled + 0.02": trustworthiness(X, within_cluster_shuffle(Z, labels), k=10) + 0.02,
        },
    )
    assert_at_least(
        knn_accuracy(Z, labels, k=10),
        {"umap.UMAP - 0.01": knn_accuracy(peer, labels, k=10) - 0.01},
        what="kNN accuracy",
    )


def test_fuzzy_graph_is_symmetric_and_local(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = small
    g = fuzzy_graph(X, 10, seed=0).tocsr()
    assert g.shape == (len(X), len(X))
    assert abs(g - g.T).max() < 1e-6
    assert g.diagonal().sum() == 0 and g.data.max() <= 1.0 + 1e-6
    assert 10 * len(X) * 0.5 < g.nnz < 2 * 10 * len(X)


@pytest.mark.skipif(HAS_TF, reason="checks the error shown when TensorFlow is missing")
def test_keras_backend_without_tensorflow_names_the_extra(
    small: tuple[np.ndarray, np.ndarray],
) -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install \"dinomap\[keras\]\""):
        fast(backend="keras").fit(small[0])
    assert KERAS_HINT == 'pip install "dinomap[keras]"'


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed (extra [keras])")
def test_keras_backend_fits_saves_and_loads(
    small: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = small
    p = ParametricUMAP(backend="keras", n_epochs=2, random_state=0).fit(X)
    Z = p.transform(X)
    assert Z.shape == (len(X), 2) and np.isfinite(Z).all()
    loaded = ParametricUMAP.load(p.save(tmp_path / "k"))
    np.testing.assert_allclose(loaded.transform(X[:5]), Z[:5], atol=1e-4)
    with pytest.raises(Exception, match="backend='torch'"):
        p.to_torch_module()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_trains_on_cuda_and_matches_cpu_quality(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, labels = small
    gpu = fast(n_epochs=10, device="auto").fit(X)
    assert gpu.device_.type == "cuda" and gpu.net_.input_mean.is_cuda
    Z = gpu.transform(X)
    acc = cross_val_score(KNeighborsClassifier(n_neighbors=10), Z, labels, cv=5).mean()
    assert acc >= 0.95
    np.testing.assert_array_equal(gpu.transform(X), Z)
    module = gpu.to_torch_module()
    assert next(module.parameters()).device.type == "cpu"


def test_step_budget_sets_the_epochs() -> None:
    from dinomap.parametric.umap import _auto_epochs

    # 1M edges an epoch: 500 steps of 4,096 edges -> the 5-epoch floor; 5,000: 21; the
    # default, 3,000: 13; the faithful preset's 20,000: 82
    assert _auto_epochs(1_000_000, 4096, max_steps=500) == 5
    assert _auto_epochs(1_000_000, 4096, max_steps=5000) == 21
    assert _auto_epochs(1_000_000, 4096) == 13
    assert _auto_epochs(1_000_000, 4096, max_steps=20_000) == 82
    assert _auto_epochs(15_000_000, 4096, max_steps=5000) == 5  # a million points: same cost
    assert _auto_epochs(3_000, 4096, max_steps=5000) == 200  # small data: the 200 cap


def test_reference_init_starts_from_the_map_given(small: tuple[np.ndarray, np.ndarray]) -> None:
    """init="auto" with init_coords regresses that map first (make_maps gives UMAP's map of
    the training points); without it, PCA. Checked on a map PCA cannot give: components 3-4."""
    from sklearn.decomposition import PCA

    from dinomap.metrics import map_agreement

    X, _ = small
    ref = (PCA(4, random_state=0).fit_transform(X)[:, 2:] * 3).astype(np.float32)
    started = fast(n_epochs=1).fit(X, init_coords=ref)
    plain = fast(n_epochs=1).fit(X)
    assert [h["phase"] for h in started.history_][:1] == ["init"]
    kept, other = map_agreement(ref, started.embedding_), map_agreement(ref, plain.embedding_)
    assert kept > 0.5 and kept > other + 0.25, (kept, other)
    with pytest.raises(InvalidParameterError, match="init_coords"):
        fast(init="reference").fit(X)
    with pytest.raises(InvalidParameterError, match="shape"):
        fast(n_epochs=1).fit(X, init_coords=ref[:10])
