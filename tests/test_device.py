"""The one device resolver (dinomap._device), used by embedding, the neural mappers and export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinomap._device import resolve_device
from dinomap.exceptions import InvalidParameterError


def test_resolve_device_auto_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("CPU") == torch.device("cpu")


def test_resolve_device_refuses_cuda_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidParameterError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(InvalidParameterError, match="'auto', 'cpu', 'cuda'"):
        resolve_device("tpu")
    with pytest.raises(InvalidParameterError, match="device"):
        resolve_device(3)  # type: ignore[arg-type]


def test_every_stage_uses_the_one_resolver() -> None:
    import dinomap.embed.extract as extract
    import dinomap.embed.ray_engine as ray_engine
    import dinomap.parametric._base as neural_base
    import dinomap.parametric.tsne_nn as tsne_nn
    import dinomap.parametric.umap as parametric_umap

    for module in (neural_base, tsne_nn, parametric_umap):
        assert module.resolve_device is resolve_device, module.__name__
    # and the neural mappers' fits call it (a spy in its place stops each fit)
    from dinomap import ParametricUMAP, TSNEApproximator

    class Called(Exception):
        pass

    def spy(*args: object, **kwargs: object) -> None:
        raise Called

    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        for module in (neural_base, tsne_nn, parametric_umap):
            mp.setattr(module, "resolve_device", spy)
        for fit in (
            lambda: TSNEApproximator(random_state=0).fit(X, X[:, :2]),
            lambda: ParametricUMAP(random_state=0).fit(X),
        ):
            with pytest.raises(Called):
                fit()
    # embedding resolves through its engine: here for the local one, the workers' for Ray
    assert extract.engine_device is ray_engine.engine_device
    for wanted in ("auto", "cpu"):
        assert ray_engine.engine_device("local", wanted, None) == resolve_device(wanted)
