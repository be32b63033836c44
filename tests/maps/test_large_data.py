"""The large-data strategy: fit on a sample, place the rest with transform, say so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dinomap.data.synthetic import make_clusters
from dinomap.exceptions import InvalidParameterError
from dinomap.maps import make_maps
from dinomap.maps.large import LARGE_DATA_FIT_SAMPLES, LARGE_DATA_MIN_SAMPLES, plan_large_data

TSNE = {"n_iter": 150, "early_exaggeration_iter": 100}


def test_plan_switches_on_above_the_threshold_by_itself() -> None:
    assert plan_large_data(LARGE_DATA_MIN_SAMPLES, "auto", 0) is None
    plan = plan_large_data(LARGE_DATA_MIN_SAMPLES + 1, "auto", 0)
    assert plan is not None and len(plan.sample) == LARGE_DATA_FIT_SAMPLES
    assert len(np.intersect1d(plan.sample, plan.rest)) == 0
    assert len(plan.sample) + len(plan.rest) == LARGE_DATA_MIN_SAMPLES + 1
    assert plan_large_data(LARGE_DATA_MIN_SAMPLES + 1, False, 0) is None
    assert len(plan_large_data(1000, 300, 0).sample) == 300  # type: ignore[union-attr]
    assert plan_large_data(1000, 5000, 0) is None
    for bad in ("sometimes", 3, 1.5):
        with pytest.raises(InvalidParameterError, match="large_data must be"):
            plan_large_data(1000, bad, 0)  # type: ignore[arg-type]


def test_sampled_tsne_keeps_quality_and_says_so(tmp_path, capsys) -> None:
    X, y = make_clusters(2400, 48, 6, 4, 0)
    full = make_maps((X, y.tolist()), methods="pca,tsne", params={"tsne": TSNE}, plots=False)
    res = make_maps((X, y.tolist()), methods="pca,tsne", params={"tsne": TSNE}, plots=False,
                    large_data=800, out_dir=tmp_path, verbose=True)  # fmt: skip
    assert "large data: 2400 points" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["large_data"]["fit_samples"] == 800
    assert metrics["methods"]["tsne"]["fit_samples"] == 800
    assert "fit_samples" not in metrics["methods"]["pca"]  # PCA is fitted on all points
    assert "tsne: place the other points" in metrics["timings"]
    Y = res.coords["tsne"]
    assert Y.shape == (2400, 2) and np.isfinite(Y).all()
    assert res.mappers["tsne"].embedding_.shape == (800, 2)
    t_full = full.metrics["methods"]["tsne"]["trustworthiness"]
    t_sampled = metrics["methods"]["tsne"]["trustworthiness"]
    assert t_sampled >= t_full - 0.02, (t_sampled, t_full)
    assert type(res.mappers["tsne"]).transform_n_iter == 250  # the class default is back


def test_large_data_trains_the_t_sne_network_on_the_1m_budget_unless_told() -> None:
    from dinomap.maps.large import LARGE_DATA_BUDGETS, large_data_params

    params, used = large_data_params({"tsne_nn": {"max_steps": 50}}, ["tsne", "tsne_nn"])
    assert params["tsne_nn"]["max_steps"] == 50  # the user's value stays
    assert params["tsne_nn"]["contrastive_steps"] == LARGE_DATA_BUDGETS["tsne_nn"][
        "contrastive_steps"]  # fmt: skip
    assert used == {"tsne_nn": {"contrastive_steps": LARGE_DATA_BUDGETS["tsne_nn"][
        "contrastive_steps"]}}  # fmt: skip
    assert large_data_params({}, ["pca", "tsne"]) == ({}, {})  # no network: nothing set
    X, y = make_clusters(600, 16, 4, 4, 0)
    res = make_maps((X, y.tolist()), methods="tsne,tsne_nn", plots=False, large_data=300,
                    params={"tsne": TSNE, "tsne_nn": {"max_epochs": 2}})  # fmt: skip
    assert res.metrics["large_data"]["budgets"] == {"tsne_nn": LARGE_DATA_BUDGETS["tsne_nn"]}
    got = res.mappers["tsne_nn"].get_params()
    assert got["max_steps"] == LARGE_DATA_BUDGETS["tsne_nn"]["max_steps"]
    assert got["max_epochs"] == 2
