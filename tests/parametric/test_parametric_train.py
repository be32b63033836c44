"""The shared pieces of the neural mappers: devices, seeds, networks, the training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dinomap.exceptions import InvalidParameterError
from dinomap.parametric.nets import MapperNet, Standardizer, build_mlp, fold_standardization
from dinomap.parametric.train import (
    make_generator,
    seed_from_random_state,
    train,
)


def test_seed_from_random_state() -> None:
    assert seed_from_random_state(7) == seed_from_random_state(7)
    assert seed_from_random_state(7) != seed_from_random_state(8)
    assert seed_from_random_state(None) != seed_from_random_state(None)
    assert 0 <= seed_from_random_state(np.random.default_rng(0)) < 2**63
    for bad in (-1, True, "7", 1.5):
        with pytest.raises(InvalidParameterError, match="random_state"):
            seed_from_random_state(bad)


def test_build_mlp_uses_only_its_generator() -> None:
    before = torch.random.get_rng_state()
    a = build_mlp(8, (16, 4), 2, generator=make_generator(3))
    b = build_mlp(8, (16, 4), 2, generator=make_generator(3))
    c = build_mlp(8, (16, 4), 2, generator=make_generator(4))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert [type(m).__name__ for m in a] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_standardizer_round_trip_and_constant_columns() -> None:
    X = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    s = Standardizer.fit(X)
    Z = s.transform(X)
    assert np.allclose(Z.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(Z[:, [0, 2]].std(axis=0), 1, atol=1e-5)
    assert s.scale[1] == 1.0  # constant column: no division by zero
    assert np.allclose(s.inverse_transform(Z), X, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
def test_fold_standardization_matches_and_scripts(hidden: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(50, 6)) * [1, 10, 100, 0.1, 1, 3] + 5).astype(np.float32)
    ins = Standardizer.fit(X)
    outs = Standardizer(np.array([3.0, -2.0]), np.array([20.0, 0.5]))
    net = MapperNet(build_mlp(6, hidden, 2, generator=make_generator(0)), ins, outs)
    w0 = net.mlp[0].weight.detach().clone()
    folded = fold_standardization(net)
    assert isinstance(folded, nn.Sequential)
    assert all(isinstance(m, nn.Linear | nn.ReLU) for m in folded)
    x = torch.from_numpy(X)
    with torch.no_grad():
        expected = net(x)
        assert torch.allclose(folded(x), expected, rtol=1e-4, atol=1e-3)
        assert torch.allclose(torch.jit.script(folded)(x), expected, rtol=1e-4, atol=1e-3)
    assert torch.equal(net.mlp[0].weight, w0)  # the source network is untouched


def test_train_early_stopping_restores_best_epoch() -> None:
    module = nn.Linear(1, 1, bias=False)
    scores = iter([3.0, 1.0, 2.0, 2.5, 2.7, 9.0, 9.0])
    weights: list[float] = []

    def batches(epoch: int):  # type: ignore[no-untyped-def]
        yield (torch.ones(4, 1),)

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return ((m(batch[0]) - 10.0) ** 2).mean()

    def validate(m: nn.Module) -> float:
        weights.append(m.weight.detach().item())
        return next(scores)

    res = train(
        module, batches, loss_fn, n_epochs=7, learning_rate=0.1, validate=validate, patience=3
    )
    assert res.stopped_early and res.epochs_run == 5 and res.best_epoch == 1
    assert module.weight.detach().item() == pytest.approx(weights[1])
    assert len(res.history) == 5 and "val_loss" in res.history[0]


def test_train_rejects_unknown_schedule() -> None:
    with pytest.raises(InvalidParameterError, match="lr_schedule"):
        train(
            nn.Linear(1, 1),
            lambda e: [],
            lambda m, b: m(b[0]).sum(),
            n_epochs=1,
            learning_rate=0.1,
            lr_schedule="cosinus",
        )


def test_cosine_schedule_decays_to_one_percent() -> None:
    from dinomap.parametric.train import _set_lr

    opt = torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=1.0)
    lrs = [_set_lr(opt, 1.0, "cosine", d) for d in np.linspace(0.0, 1.0, 11)]
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.505) and all(np.diff(lrs) < 0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert _set_lr(opt, 1.0, "linear", 0.5) == pytest.approx(0.5)
    # with steps_per_epoch the step size moves within an epoch: the second epoch starts lower
    res = train(
        nn.Linear(1, 1),
        lambda e: [(torch.ones(2, 1),)] * 4,
        lambda m, b: m(b[0]).pow(2).mean(),
        n_epochs=2,
        learning_rate=1.0,
        lr_schedule="cosine",
        steps_per_epoch=4,
    )
    assert res.history[1]["lr"] == pytest.approx(0.505)
