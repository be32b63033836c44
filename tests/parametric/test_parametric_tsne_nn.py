"""TSNEApproximator: contract, determinism, persistence and imitation quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from dinomap import NotFittedError, TSNEApproximator
from dinomap.exceptions import InvalidParameterError
from dinomap.parametric import knn_agreement

from .._quality import assert_at_least, within_cluster_shuffle
from .conftest import json_from_fresh_process


def _targets(X: np.ndarray) -> np.ndarray:
    """A smooth nonlinear 2-D map of X, standing in for t-SNE in the cheap tests."""
    w = np.random.default_rng(42).normal(size=(X.shape[1], 2)) / np.sqrt(X.shape[1])
    P = X @ w
    return np.stack([P[:, 0] * 20, np.tanh(P[:, 1]) * 10], axis=1).astype(np.float32)


def fast(**kw: object) -> TSNEApproximator:
    params: dict[str, object] = dict(
        hidden=(32,),
        max_epochs=15,
        patience=5,
        batch_size=64,
        random_state=0,
        device="cpu",
        contrastive_steps=0,
    )
    params.update(kw)
    return TSNEApproximator(**params)  # type: ignore[arg-type]


def test_init_only_stores_params() -> None:
    approx = TSNEApproximator(hidden=(8, 4), max_epochs=-3, device="nope")
    assert approx.get_params()["hidden"] == (8, 4) and approx.max_epochs == -3
    assert not hasattr(approx, "net_")


def test_not_fitted_errors() -> None:
    approx = TSNEApproximator()
    for call in (lambda: approx.transform(np.zeros((2, 3))), approx.to_torch_module):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    with pytest.raises(NotFittedError):
        approx.save("unused")


def test_fit_learns_and_reports_heldout(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, labels = small
    Y = _targets(X)
    # a fifth held out (the default is a tenth): 60 points make the kNN agreement meaningful
    # strong weight decay: 240 training points of a smooth synthetic map (the default, 0.1,
    # is for real collections; here it gives 0.46)
    approx = fast(max_epochs=80, patience=10, validation_fraction=0.2, weight_decay=1.0)
    approx.fit(X, Y)
    assert approx.fit(X, Y) is approx
    n_val = round(0.2 * len(X))
    assert approx.heldout_indices_.shape == (n_val,)
    assert np.intersect1d(approx.heldout_indices_, approx.train_indices_).size == 0
    assert approx.heldout_indices_.size + approx.train_indices_.size == len(X)
    m = approx.heldout_metrics_
    Z = approx.transform(X)
    # Held-out neighbourhoods are kept far above chance (10 of the other 59 held-out points)
    # and above the prediction shuffled within its clusters. Measured 0.687 (shuffled 0.225);
    # 0.253 when trained on targets shuffled within clusters, 0.19 after one epoch.
    held = approx.heldout_indices_
    shuffled = knn_agreement(Y[held], within_cluster_shuffle(Z, labels, seed=0)[held])
    chance = 10 / (n_val - 1)
    assert_at_least(
        m["knn_agreement"],
        {"3 x chance": 3 * chance, "shuffled + 0.25": shuffled + 0.25},
        what="held-out kNN agreement",
    )
    assert m["n_heldout"] == n_val and m["r2"] > 0.8, m
    assert Z.dtype == np.float32 and Z.shape == (len(X), 2)
    np.testing.assert_array_equal(Z, approx.embedding_)
    # output in the target's units, not standardised ones
    assert abs(Z[:, 0].std() - Y[:, 0].std()) < 0.5 * Y[:, 0].std()
    assert len(approx.history_) == approx.n_epochs_ and "val_loss" in approx.history_[0]
    assert approx.key_params() == {"hidden": "32", "epochs": approx.n_epochs_}


def test_same_seed_identical_other_seed_different(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = small
    Y = _targets(X)
    a = fast(random_state=3).fit_transform(X, Y)
    b = fast(random_state=3).fit_transform(X, Y)
    c = fast(random_state=4).fit_transform(X, Y)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden": (0,)}, "hidden"),
        ({"hidden": "widest"}, "Did you mean 'wide'"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"n_components": 3}, "n_components=3"),
        ({"device": "gpu"}, "device"),
        ({"input_scaling": "cols"}, "input_scaling"),
        ({"input_pca": 0}, "input_pca"),
        ({"contrastive_epochs": 0}, "contrastive_epochs"),
    ],
)
def test_bad_params(kwargs: dict[str, object], match: str) -> None:
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(InvalidParameterError, match=match):
        fast(**kwargs).fit(X, X[:, :2])


def test_bad_inputs() -> None:
    X = np.random.default_rng(0).normal(size=(20, 4))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="NaN"):
        fast().fit(bad, X[:, :2])
    with pytest.raises(InvalidParameterError, match="same number of rows"):
        fast().fit(X, X[:10, :2])
    with pytest.raises(InvalidParameterError, match="at least 3"):
        fast().fit(X[:2], X[:2, :2])
    approx = fast(max_epochs=1).fit(X, X[:, :2])
    with pytest.raises(InvalidParameterError, match="4"):
        approx.transform(np.zeros((2, 5)))


def test_save_load_in_fresh_process(small: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, _ = small
    approx = fast().fit(X, _targets(X))
    out = approx.save(tmp_path / "tsne_nn")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt"]
    assert set(torch.load(out / "model.pt", weights_only=True)) >= {"input_mean", "mlp.0.weight"}
    np.save(tmp_path / "x.npy", X[:7])
    code = (
        "import sys, json, numpy as np\n"
        "from dinomap import TSNEApproximator\n"
        "m = TSNEApproximator.load(sys.argv[1], device='cpu')\n"
        "print(json.dumps({'z': m.transform(np.load(sys.argv[2])).tolist(),"
        " 'held': m.heldout_indices_.tolist(), 'r2': m.heldout_metrics_['r2']}))\n"
    )
    got = json_from_fresh_process(code, str(out), str(tmp_path / "x.npy"))
    np.testing.assert_allclose(np.array(got["z"]), approx.transform(X[:7]), rtol=1e-6, atol=1e-5)
    assert got["held"] == approx.heldout_indices_.tolist()
    assert got["r2"] == pytest.approx(approx.heldout_metrics_["r2"])
    loaded = TSNEApproximator.load(out)
    assert loaded.get_params()["hidden"] == (32,)
    assert loaded.heldout_indices_.dtype == np.int64


def test_load_refuses_other_class_and_missing_dir(
    small: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from dinomap import DinomapError, ParametricUMAP

    X, _ = small
    out = fast(max_epochs=1).fit(X, _targets(X)).save(tmp_path / "m")
    with pytest.raises(DinomapError, match="TSNEApproximator"):
        ParametricUMAP.load(out)
    with pytest.raises(DinomapError, match="not a saved dinomap mapper"):
        TSNEApproximator.load(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_to_torch_module_matches_transform(small: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = small
    approx = fast().fit(X, _targets(X))
    module = torch.jit.script(approx.to_torch_module())
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, approx.transform(X), rtol=1e-4, atol=1e-3)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("scaling", ["global", "column"])
def test_input_pca_is_folded_into_the_exported_network(
    small: tuple[np.ndarray, np.ndarray], tmp_path: Path, scaling: str
) -> None:
    """input_pca: the MLP sees k principal components; save/load, the plain module and
    TorchScript still take the raw d-dimensional inputs and give transform's output."""
    X, _ = small
    approx = fast(input_pca=5, input_scaling=scaling).fit(X, _targets(X))
    assert approx.net_.mlp[0].in_features == 5 and approx.net_.input_projection.shape == (
        X.shape[1], 5)  # fmt: skip
    plain = approx.to_torch_module()
    assert plain[0].in_features == X.shape[1]
    with torch.no_grad():
        out = torch.jit.script(plain)(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, approx.transform(X), rtol=1e-4, atol=1e-3)
    loaded = TSNEApproximator.load(approx.save(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(loaded.transform(X), approx.transform(X), rtol=1e-6, atol=1e-5)
    # the projection is what the MLP sees: PCA of the training rows, so new inputs that differ
    # only outside those k directions land on the same point
    P = approx.net_.input_projection.numpy()
    away = X[:3] + (np.eye(X.shape[1])[:, :1] - P @ (P.T @ np.eye(X.shape[1])[:, :1])).T * 3
    if scaling == "global":
        np.testing.assert_allclose(approx.transform(away), approx.transform(X[:3]), atol=1e-3)


def test_knn_agreement_detects_scrambling() -> None:
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 2))
    assert knn_agreement(A, A * 3 + 1) == 1.0
    assert knn_agreement(A, rng.permutation(A)) < 0.2


def test_imitates_tsne_on_heldout_points(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    X, labels = blobs
    P = PCA(50, random_state=0).fit_transform(X)
    Y = np.asarray(TSNE(random_state=0, n_jobs=1).fit(P), dtype=np.float32)
    approx = TSNEApproximator(random_state=0, device="cpu").fit(X, Y)
    held, tr = approx.heldout_indices_, approx.train_indices_
    knn = KNeighborsClassifier(n_neighbors=10).fit(Y[tr], labels[tr])
    acc_tsne = knn.score(Y[held], labels[held])
    acc_approx = knn.score(approx.transform(X[held]), labels[held])
    assert acc_approx >= acc_tsne - 0.03, (acc_approx, acc_tsne)
    assert approx.heldout_metrics_["r2"] > 0.8, approx.heldout_metrics_


def test_named_nets_and_the_original_one(small: tuple[np.ndarray, np.ndarray]) -> None:
    from dinomap.parametric.nets import NETS, hidden_label, resolve_hidden

    X, _ = small
    assert NETS["wide"] == (512, 512, 512)
    assert resolve_hidden("original") == (256,)  # the original project's 384-256-2 MLP
    approx = fast(hidden="original", max_epochs=2).fit(X, _targets(X))
    shapes = [tuple(p.shape) for n, p in approx.net_.mlp.named_parameters() if "weight" in n]
    assert shapes == [(256, X.shape[1]), (2, 256)]
    assert approx.key_params()["hidden"] == "256" and hidden_label("nnp") == "nnp (256-512-256)"


def test_step_budget_caps_epochs_whatever_n() -> None:
    from dinomap.parametric.tsne_nn import planned_epochs

    # 63,000 training points in batches of 512: 124 steps an epoch, 3,000 steps -> 25 epochs
    assert planned_epochs(63_000, 512, 500, 3000) == 25
    assert planned_epochs(900_000, 512, 500, 3000) == 2  # a million points: still ~3,000 steps
    assert planned_epochs(300, 64, 80, 3000) == 80  # small data: max_epochs decides
    assert planned_epochs(300, 64, 80, None) == 80
    X = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    approx = fast(max_epochs=50, max_steps=14, patience=50).fit(X, X[:, :2])
    assert approx.n_epochs_ == 3  # 360 training points, 6 batches of 64: 14 steps -> 3 epochs


def test_tsne_loss_stage_follows_the_affinities(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    """contrastive_steps trains on t-SNE's loss over the given affinities: with the real ones
    the clusters stay apart; with affinities that pair points across clusters they mix."""
    import scipy.sparse as sp

    from dinomap.parametric._tsne_loss import fit_affinities

    X, labels = blobs[0][:800], blobs[1][:800]
    Y = _targets(X)  # a map that knows nothing of the clusters: the loss must bring them
    P = fit_affinities(X, 30.0, 0)
    perm = np.random.default_rng(0).permutation(len(X))
    wrong = sp.csr_matrix(P)[perm][:, perm]  # same weights, other partners

    def fit(aff: object) -> tuple[float, TSNEApproximator]:
        approx = fast(hidden=(64,), contrastive_steps=300, contrastive_batch_size=128)
        Z = approx.fit(X, Y, affinities=aff).transform(X)
        knn = KNeighborsClassifier(n_neighbors=10).fit(Z[approx.train_indices_],
                                                       labels[approx.train_indices_])  # fmt: skip
        held = approx.heldout_indices_
        return knn.score(Z[held], labels[held]), approx

    acc_real, approx = fit(P)
    acc_wrong, _ = fit(wrong)
    phases = [h["phase"] for h in approx.history_]
    assert phases[0] == "regression" and phases[-1] == "tsne_loss"
    assert acc_real >= 0.9 and acc_wrong < acc_real - 0.3, (acc_real, acc_wrong)
    with pytest.raises(InvalidParameterError, match="affinities must be"):
        fast(contrastive_steps=10).fit(X, Y, affinities=P[:10])
    # contrastive_epochs caps the steps at passes over the training points' pairs
    train = approx.train_indices_
    pairs = sp.csr_matrix(P)[train][:, train].nnz  # no diagonal in openTSNE's P
    capped = fast(contrastive_steps=5000, contrastive_batch_size=128, contrastive_epochs=0.5)
    capped.fit(X, Y, affinities=P)
    tuned = [h for h in capped.history_ if h["phase"] == "tsne_loss"]
    assert len(tuned) == -(-int(np.ceil(0.5 * pairs / 128)) // 100)  # epochs of 100 steps


@pytest.mark.parametrize("scale", [0.1, 5.0, 60.0, 3e4])
def test_the_fast_tsne_kernel_is_infonce_tsne(scale: float) -> None:
    """infonce_tsne_loss gives InfoNC-t-SNE's value and gradient as written with cdist and a
    log-sum-exp over the other points of the batch, computed in float64 (the map spans ~100
    units at 70k points; 3e4: a diverging map stays finite)."""
    import math

    import torch

    from dinomap.parametric._tsne_loss import infonce_tsne_loss

    B = 256
    pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
    z0 = torch.randn(2 * B, 2, generator=torch.Generator().manual_seed(1)) * scale
    fast_z, ref_z = z0.clone().requires_grad_(), z0.double().requires_grad_()
    fast_loss = infonce_tsne_loss(fast_z, pos)
    logq = (-torch.log1p(torch.cdist(ref_z, ref_z).pow(2))).masked_fill(
        torch.eye(2 * B, dtype=torch.bool), -math.inf)  # fmt: skip
    ref_loss = -(logq[torch.arange(2 * B), pos] - torch.logsumexp(logq, dim=1)).mean()
    fast_loss.backward()
    ref_loss.backward()
    assert fast_z.grad is not None and ref_z.grad is not None
    assert torch.isfinite(fast_loss) and bool(torch.isfinite(fast_z.grad).all())
    assert fast_loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    worst = float((fast_z.grad.double() - ref_z.grad).abs().max())
    assert worst <= 5e-3 * float(ref_z.grad.abs().max())  # float32 rounding, no more
