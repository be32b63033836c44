"""Exporting a run (model, preprocessing, neural mappers from RUN/mappers) and the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from dinomap import load_embeddings
from dinomap.cli.main import main
from dinomap.embed import EmbedConfig, create_encoder, embed, encoder_from_run
from dinomap.embed.models import LoadedModel
from dinomap.embed.preprocess import Preprocess
from dinomap.export import VerificationError, export_run, parse_config
from dinomap.export.torchscript import load_torchscript_bytes
from dinomap.parametric import TSNEApproximator

from ..conftest import write_images
from .conftest import (
    TINY_EXPORT_KWARGS,
    TINY_INPUT_SIZE,
    corrupt_before_verification,
    perturb_torchscript_weight,
)
from .test_export_waiver import _ill_conditioned_mapper


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export_run")
    write_images(root / "images", n_per_class=6, size=36)
    cfg = EmbedConfig(
        random_init=True, model_kwargs=TINY_EXPORT_KWARGS, input_size=TINY_INPUT_SIZE,
        batch_size=6, num_workers=0, device="cpu",
    )  # fmt: skip
    run = root / "run"
    embed(root / "images", run, cfg, progress=False)
    X = load_embeddings(run).X
    approx = TSNEApproximator(hidden=(8,), max_epochs=3, random_state=0, device="cpu")
    approx.fit(X, X[:, :2] * 10.0).save(run / "mappers" / "tsne_nn")
    classic = run / "mappers" / "pca"
    classic.mkdir(parents=True)
    (classic / "config.json").write_text(json.dumps({"class": "PCAReducer", "backend": "pickle"}))
    return run


def test_export_run_exports_the_runs_model_and_its_neural_mapper(run_dir: Path) -> None:
    res = export_run(run_dir, formats="torchscript", device="cpu")
    assert res.repository == run_dir / "model_repository"
    assert [m.name for m in res.models] == ["dino_model", "preprocess", "tsne_nn",
                                            "dino_pipeline", "dino_pipeline_tsne_nn"]  # fmt: skip
    assert res.metadata["ensembles"] == {
        "dino_pipeline": ["preprocess", "dino_model"],
        "dino_pipeline_tsne_nn": ["preprocess", "dino_model", "tsne_nn"],
    }
    assert res.metadata["members"] == ["dino_model", "preprocess", "tsne_nn"]
    assert res.passed and res.random_init
    meta = res.metadata
    assert meta["source_run"] == str(run_dir.resolve()) and meta["random_init"] is True
    # Real inputs came from the run's own images (36x44 PNGs) and stored embeddings.
    report = json.loads((res.repository / "verification.json").read_text())
    pipe = next(m for m in report["models"] if m["name"] == "dino_pipeline")
    assert any(c["input_shape"][1:3] == [36, 44] for c in pipe["cases"])
    section = json.loads((run_dir / "run.json").read_text())["export"]
    assert section["repository"] == str(res.repository.resolve())
    assert section["verified_against_eager"] is True and section["max_abs_diff"] <= 1e-4
    assert section["verification"] == "passed" and "waived" not in section
    assert section["models"] == [m.name for m in res.models] and section["random_init"] is True
    # The eager raw-pixel model reproduces the stored embeddings; the cosine is taken after
    # centering, which other weights or preprocessing do not pass (see the test below).
    cons = meta["consistency_with_run"]
    assert cons["n_images"] >= 2 and cons["consistent"] is True
    assert cons["min_centered_cosine"] >= 0.99 and cons["max_relative_error"] < 1e-5
    assert section["consistent_with_run"] is True
    assert "stored embeddings (4 images): CONSISTENT" in (res.repository / "README.md").read_text()
    tsne = next(m for m in report["models"] if m["name"] == "tsne_nn")
    assert any("real embeddings" in c["label"] for c in tsne["cases"])
    # The exported mapper places stored embeddings where the fitted mapper does.
    emb = load_embeddings(run_dir).X[:5]
    fitted = TSNEApproximator.load(run_dir / "mappers" / "tsne_nn", device="cpu")
    model = load_torchscript_bytes(res.model("tsne_nn").path.read_bytes())
    with torch.no_grad():
        np.testing.assert_allclose(
            model(torch.from_numpy(emb)).numpy(), fitted.transform(emb), atol=1e-4
        )
    # The raw-pixel ensemble's members reproduce the run's encoder + preprocessing.
    enc, pre = encoder_from_run(run_dir)
    pix = np.random.default_rng(1).integers(0, 256, (2, 40, 30, 3), dtype=np.uint8)
    pre_model = load_torchscript_bytes(res.model("preprocess").path.read_bytes())
    feat_model = load_torchscript_bytes(res.model("dino_model").path.read_bytes())
    with torch.no_grad():
        ref = enc.extractor(pre(torch.from_numpy(pix))).numpy()
        got = feat_model(pre_model(torch.from_numpy(pix))).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-4)
    cfg = parse_config(res.model("dino_pipeline_tsne_nn").config_path.read_text())
    assert list(cfg.output[0].dims) == [2] and cfg.parameters["method"].string_value == "tsne_nn"


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run, for tests whose export writes a section into its run.json."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def _other_weights(enc: LoadedModel, pre: Preprocess) -> tuple[LoadedModel, Preprocess]:
    other = create_encoder("dinov2-s14", input_size=TINY_INPUT_SIZE, random_init=True,
                           init_seed=1, model_kwargs=TINY_EXPORT_KWARGS)  # fmt: skip
    return other, pre


def _no_bottleneck(enc: LoadedModel, pre: Preprocess) -> tuple[LoadedModel, Preprocess]:
    return enc, Preprocess(enc.input_size, enc.mean, enc.std, source_size=None)


def _other_mean_std(enc: LoadedModel, pre: Preprocess) -> tuple[LoadedModel, Preprocess]:
    return enc, Preprocess(enc.input_size, (0.5,) * 3, (0.5,) * 3, source_size=32)


WRONG_EXPORTS: dict[str, Callable[[LoadedModel, Preprocess], tuple[LoadedModel, Preprocess]]] = {
    "other weights": _other_weights,
    "no 32x32 bottleneck": _no_bottleneck,
    "other mean and std": _other_mean_std,
}


@pytest.mark.parametrize("wrong", sorted(WRONG_EXPORTS))
def test_consistency_with_run_fails_for_other_weights_or_preprocessing(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, wrong: str
) -> None:
    import dinomap.embed

    real = dinomap.embed.encoder_from_run
    monkeypatch.setattr(dinomap.embed, "encoder_from_run",
                        lambda run: WRONG_EXPORTS[wrong](*real(run)))  # fmt: skip
    with caplog.at_level("WARNING", logger="dinomap.export.run"):
        res = export_run(run_copy, formats="torchscript", verify=False, include_mappers=False,
                         device="cpu")  # fmt: skip
    cons = res.metadata["consistency_with_run"]
    assert cons["n_images"] >= 2 and cons["consistent"] is False
    assert cons["min_centered_cosine"] < 0.9, cons
    if wrong != "other weights":  # the plain cosine cannot tell: random-init collinearity
        assert cons["min_cosine"] > 0.99
    assert "does not reproduce the run's stored embeddings" in caplog.text
    assert "NOT CONSISTENT" in (res.repository / "README.md").read_text()
    section = json.loads((run_copy / "run.json").read_text())["export"]
    assert section["consistent_with_run"] is False
    assert section["verified_against_eager"] is None and section["verification"] == "not run"


def test_export_run_records_a_failed_verification(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt_before_verification(monkeypatch, {"dino_model": perturb_torchscript_weight})
    with pytest.raises(VerificationError, match="dino_model"):
        export_run(run_copy, formats="torchscript", include_mappers=False, device="cpu")
    section = json.loads((run_copy / "run.json").read_text())["export"]
    assert section["verified_against_eager"] is False and section["verification"] == "failed"
    # the ensemble built on the changed file fails with it
    assert section["failed"] == ["dino_model", "dino_pipeline"] and section["max_abs_diff"] > 1e-3
    meta = json.loads((run_copy / "model_repository" / "dinomap_export.json").read_text())
    assert meta["verification"]["status"] == "failed"


def test_export_run_records_waived_mappers_as_not_verified(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dinomap.export.run as export_run_module

    dim = load_embeddings(run_copy).X.shape[1]
    monkeypatch.setattr(export_run_module, "load_run_mappers",
                        lambda run: {"tsne_nn": _ill_conditioned_mapper(dim)})  # fmt: skip
    res = export_run(run_copy, formats="onnx", device="cpu")
    assert res.passed and res.verification is not None
    section = json.loads((run_copy / "run.json").read_text())["export"]
    assert section["verification"] == "passed_with_waivers"
    assert section["verified_against_eager"] is False
    assert "tsne_nn_onnx" in section["waived"] and "failed" not in section
    by_name = {m["name"]: m for m in res.verification.models}
    for name, waived in section["waived"].items():
        assert "random-init" in waived["reason"]
        assert waived["max_abs_diff"] == by_name[name]["max_abs_diff"] > 1e-4
    verified = [m["max_abs_diff"] for n, m in by_name.items() if n not in section["waived"]]
    assert len(verified) >= 2 and section["max_abs_diff"] == max(verified) <= 1e-4


def test_cli_export_from_a_model_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    code = main([
        "export", "--model", "dinov2-s14", "--random-init", "--input-size", str(TINY_INPUT_SIZE),
        "--model-arg", "depth=1", "--model-arg", "embed_dim=32", "--model-arg", "num_heads=2",
        "--format", "onnx", "--out", str(out), "--device", "cpu",
    ])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0
    assert (out / "dino_model_onnx" / "1" / "model.onnx").is_file()
    assert (out / "dino_pipeline_onnx" / "config.pbtxt").is_file()
    assert not (out / "dino_model").exists()
    assert "PASS  dino_model_onnx" in printed.out and "RANDOM-INIT" in printed.err


def test_cli_export_run_without_verification_and_bad_arguments(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repo"
    code = main(["export", str(run_dir), "--out", str(out), "--no-verify", "--no-mappers",
                 "--format", "torchscript"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "dino_model", "dino_pipeline", "preprocess"]  # fmt: skip
    (out / "not_ours").mkdir()
    code = main(["export", str(run_dir), "--out", str(out), "--no-verify", "--no-mappers",
                 "--format", "onnx", "-q"])  # fmt: skip
    assert code == 0  # the TorchScript folders of the earlier export are gone, others stay
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "dino_model_onnx", "dino_pipeline_onnx", "not_ours", "preprocess_onnx"]  # fmt: skip
    assert not (out / "verification.json").exists()
    assert json.loads((out / "dinomap_export.json").read_text())["verification"] is None
    capsys.readouterr()
    assert main(["export", str(run_dir), "--model", "dinov2-s14", "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "tensorrt"]) == 2
    assert "format must be one of" in capsys.readouterr().err
    assert main(["export", "--random-init"]) == 2
    assert "--out is required" in capsys.readouterr().err
