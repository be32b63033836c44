"""A handful of images still gets every map and its metrics: defaults that n points cannot take
are lowered, and the output says so; a value the user gave is never changed."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dinomap import make_maps
from dinomap.exceptions import InvalidParameterError
from dinomap.maps.fit import _small_n_defaults


def test_defaults_adapt_to_a_small_n_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    X = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    labels = ["a", "b"] * 4
    with caplog.at_level(logging.WARNING):
        res = make_maps((X, labels), methods="pca,tsne,tsne_nn", random_state=0)
    tsne = res.metrics["methods"]["tsne"]
    assert tsne["params"]["perplexity"] == pytest.approx(7 / 3)
    assert res.metrics["metrics"]["k"] == 4  # 3k + 1 < 2n
    assert all(np.isfinite(res.coords[m]).all() for m in ("pca", "tsne", "tsne_nn"))
    text = caplog.text
    assert "perplexity=30.0 is too large for 8 points" in text and "tsne.perplexity" in text
    assert "k=10 is too large for 8 points" in text


def test_only_defaults_are_lowered() -> None:
    assert _small_n_defaults("umap", {}, 12) == {"n_neighbors": 11}
    assert _small_n_defaults("umap", {}, 500) == {}
    assert _small_n_defaults("parametric_umap", {"n_neighbors": 5}, 12) == {"n_neighbors": 5}
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(InvalidParameterError, match="perplexity"):
        make_maps(X, methods="tsne", params={"tsne": {"perplexity": 30}}, evaluate=False)
