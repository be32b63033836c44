"""The neural maps' training presets, their fidelity record and bar lines, the whole-call ETA,
and the bf16 training precision."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dinomap.data.synthetic import make_clusters
from dinomap.exceptions import InvalidParameterError
from dinomap.maps import make_maps
from dinomap.maps.progress import Eta, show_progress
from dinomap.maps.quality import (
    FIDELITY_GAPS,
    QUALITIES,
    QUALITY_PRESETS,
    fidelity_lines,
    quality_params,
)

SMALL = {"tsne": {"n_iter": 60, "early_exaggeration_iter": 40},
         "tsne_nn": {"max_steps": 60, "contrastive_steps": 20, "contrastive_batch_size": 64}}  # fmt: skip


def test_make_maps_records_each_neural_maps_fidelity_and_says_the_whole_eta(
    tmp_path, capsys
) -> None:
    X, y = make_clusters(600, 16, 3, 3, 0)
    res = make_maps((X, y.tolist()), methods="pca,tsne,tsne_nn", out_dir=tmp_path, plots=False,
                    save_mappers=False, progress=True, params=SMALL)  # fmt: skip
    err = capsys.readouterr().err
    assert "dinomap: map 1/3 (pca): 0 s so far, about" in err
    assert "dinomap: map 3/3 (tsne_nn):" in err and " left" in err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["quality"] == {"preset": "fast", "budgets": {}}
    assert "fidelity" not in metrics["methods"]["tsne"]
    record = metrics["methods"]["tsne_nn"]["fidelity"]
    assert record["reference"] == "tsne" and record["n_heldout"] == 60
    checks = {(c["points"], c["score"]): c for c in record["checks"]}
    assert set(checks) == {(p, s) for p in ("all", "held-out")
                           for s in ("trustworthiness", "knn_accuracy")}  # fmt: skip
    entries = metrics["methods"]
    for score, gap in (("trustworthiness", 0.02), ("knn_accuracy", 0.03)):
        c = checks[("all", score)]
        assert c["value"] == entries["tsne_nn"][score]
        assert c["reference_value"] == entries["tsne"][score]
        assert c["bar"] == pytest.approx(c["reference_value"] - gap)
        assert c["met"] == (c["value"] >= c["bar"])
    assert record["met"] == all(c["met"] for c in record["checks"])
    # the held-out rows are the network's own: scores of those rows alone
    from dinomap.metrics import trustworthiness

    held = res.mappers["tsne_nn"].heldout_indices_
    expected = trustworthiness(X[held], res.coords["tsne_nn"][held])
    assert checks[("held-out", "trustworthiness")]["value"] == pytest.approx(expected)
    assert ("below its fidelity bar" in res.table) == (not record["met"])


def test_fidelity_lines_name_the_scores_below_the_bar_and_the_remedy() -> None:
    record = {"reference": "tsne", "allowed_gaps": {"trustworthiness": 0.02, "knn_accuracy": 0.03},
              "met": False, "checks": [
                  {"points": "all", "score": "trustworthiness", "value": 0.98,
                   "reference_value": 0.987, "bar": 0.967, "met": True},
                  {"points": "held-out", "score": "knn_accuracy", "value": 0.769,
                   "reference_value": 0.804, "bar": 0.774, "met": False}]}  # fmt: skip
    metrics = {"quality": {"preset": "fast"}, "methods": {"tsne_nn": {"fidelity": record},
                                                          "pca": {}}}  # fmt: skip
    (line,) = fidelity_lines(metrics)
    assert line == ("t-SNE NN is below its fidelity bar to t-SNE: held-out kNN accuracy 0.769 < "
                    "0.774 (t-SNE 0.804 - 0.03) (--quality faithful trains it longer)")  # fmt: skip
    metrics["quality"] = {"preset": "faithful"}
    assert "--param tsne_nn.max_steps" in fidelity_lines(metrics)[0]
    record["met"] = True
    assert fidelity_lines(metrics) == []


def test_quality_presets_fill_only_what_the_user_did_not_set() -> None:
    names = ["pca", "tsne", "tsne_nn", "parametric_umap"]
    params, used = quality_params({"tsne_nn": {"max_steps": 7}}, names, "faithful")
    assert params["tsne_nn"] == {"max_steps": 7, "contrastive_steps": 12_000}
    assert used == {"tsne_nn": {"contrastive_steps": 12_000},
                    "parametric_umap": {"max_steps": 20_000}}  # fmt: skip
    assert quality_params({}, names, "fast") == ({}, {})
    assert quality_params({}, ["pca"], "faithful") == ({}, {})
    with pytest.raises(InvalidParameterError, match="'fast', 'faithful'; got 'best'"):
        quality_params({}, names, "best")
    assert set(QUALITY_PRESETS) == set(QUALITIES)
    assert set(FIDELITY_GAPS) == {"tsne_nn", "parametric_umap"}


def test_the_cli_offers_the_library_presets() -> None:
    from dinomap.cli._common import QUALITIES as CLI_QUALITIES

    assert CLI_QUALITIES == QUALITIES


def test_the_eta_rescales_by_the_finished_methods(monkeypatch) -> None:
    clock = iter([0.0, 0.0, 100.0])
    monkeypatch.setattr("dinomap.maps.progress.time.perf_counter", lambda: next(clock))
    eta = Eta(["pca", "tsne", "tsne_nn"], 140_000)  # t-SNE scales with n, the network not
    assert eta.costs == {"pca": 4.0, "tsne": 180.0, "tsne_nn": 110.0}
    with show_progress(False):
        assert eta.line("pca") == "map 1/3 (pca): 0 s so far, about 4 min 54 s left"
        eta.finished("pca")
        eta.finished("tsne")  # 184 s estimated took 100 s: the rest is 110 * 100 / 184
        assert eta.line("tsne_nn") == "map 3/3 (tsne_nn): 1 min 40 s so far, about 1 min 00 s left"


def test_training_precision(monkeypatch) -> None:
    import dinomap._device as dev

    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    assert dev.training_precision("auto", cpu) == "fp32"
    assert dev.training_precision("fp32", cpu) == "fp32"
    with pytest.raises(InvalidParameterError, match="needs native bf16"):
        dev.training_precision("bf16", cpu)
    with pytest.raises(InvalidParameterError, match="precision must be one of"):
        dev.training_precision("fp16", cpu)
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.training_precision("auto", cpu) == "bf16"
    assert dev.training_precision("auto", torch.device("cuda")) == "bf16"


def test_mixed_precision_keeps_the_output_layer_in_fp32() -> None:
    from dinomap.parametric.nets import build_mlp
    from dinomap.parametric.train import MixedPrecision

    mlp = build_mlp(8, (32, 32), 2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    mixed = MixedPrecision(mlp)
    assert list(mixed.parameters()) == list(mlp.parameters())  # no weights of its own
    out = mixed(x)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.detach().numpy(), mlp(x).detach().numpy(), atol=0.05)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in mlp.parameters())
