"""The exported repository: layout, Triton configs checked with Triton's schema, verification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from dinomap.export import ExportResult, export_models, parse_config
from dinomap.export.torchscript import load_torchscript_bytes

from .conftest import TINY_INPUT_SIZE, PoolExtractor, real_like_images, tiny_mapper

TRITON_TO_NUMPY = {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8}
ORT_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8"}


def test_layout_metadata_and_random_init_stamp(tiny_repo: ExportResult, repo_root: Path) -> None:
    names = sorted(m.name for m in tiny_repo.models)
    members = ["dino_model", "preprocess", "parametric_umap"]
    ensembles = ["dino_pipeline", "dino_pipeline_parametric_umap"]
    assert names == sorted(n + s for n in members + ensembles for s in ("", "_onnx"))
    for m in tiny_repo.models:
        assert m.config_path == repo_root / m.name / "config.pbtxt"
        if m.is_ensemble:  # no file of its own: an empty version folder
            assert m.path == repo_root / m.name / "1" and list(m.path.iterdir()) == []
            continue
        suffix = "model.pt" if m.format == "torchscript" else "model.onnx"
        assert m.path == repo_root / m.name / "1" / suffix and m.path.stat().st_size > 0
    meta = json.loads((repo_root / "dinomap_export.json").read_text())
    assert meta["random_init"] is True and meta["weights"]["source"] == "random-init"
    ver = meta["verification"]
    assert ver["passed"] is True and ver["status"] == "passed"
    assert ver["waived"] == {} and ver["failed"] == []
    assert set(ver["max_abs_diff"]) == {m.name for m in tiny_repo.models}
    assert ver["diagnostics"] == {}  # preprocess is a member, checked strictly on its own
    assert meta["members"] == [m.name for m in tiny_repo.models if not m.is_ensemble]
    assert meta["ensembles"] == {
        "dino_pipeline": ["preprocess", "dino_model"],
        "dino_pipeline_onnx": ["preprocess_onnx", "dino_model_onnx"],
        "dino_pipeline_parametric_umap": ["preprocess", "dino_model", "parametric_umap"],
        "dino_pipeline_parametric_umap_onnx": [
            "preprocess_onnx", "dino_model_onnx", "parametric_umap_onnx"],
    }  # fmt: skip
    assert meta["preprocessing"]["source_size"] == 32
    assert "RANDOM-INIT" in (repo_root / "README.md").read_text()
    # The eager models ran in this process; the scripted ones were made by torch.jit.script.
    files = [m for m in tiny_repo.models if not m.is_ensemble]
    assert {m.method for m in files if m.format == "torchscript"} == {"script"}
    assert {m.method for m in files if m.format == "onnx"} == {"dynamo"}
    assert {m.method for m in tiny_repo.models if m.is_ensemble} == {"ensemble"}


def _batch(dims: list[int], dtype: type, n: int = 2) -> np.ndarray:
    shape = [n] + [29 if d == -1 else d for d in dims]  # 29: a size no resize branch expects
    rng = np.random.default_rng(0)
    if dtype is np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(np.float32)


def test_every_config_parses_with_triton_schema_and_matches_the_model(
    tiny_repo: ExportResult,
) -> None:
    schema_kinds = {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx"}
    for m in tiny_repo.models:
        if m.is_ensemble:  # see test_export_ensembles.py
            continue
        cfg = parse_config(m.config_path.read_text())
        assert cfg.name == m.config_path.parent.name == m.name
        assert cfg.platform == schema_kinds[m.format]
        assert cfg.max_batch_size == 16 and cfg.HasField("dynamic_batching")
        assert len(cfg.instance_group) == 1
        assert type(cfg).DESCRIPTOR.fields_by_name  # a real ModelConfig message
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert params["random_init"] == "true" and params["weights_source"] == "random-init"
        (inp,), (out,) = cfg.input, cfg.output
        assert (inp.name, out.name) == ("INPUT__0", "OUTPUT__0")
        in_dims, out_dims = list(inp.dims), list(out.dims)
        in_type = type(cfg.input[0]).DESCRIPTOR.fields_by_name["data_type"].enum_type
        in_dtype = in_type.values_by_number[inp.data_type].name
        out_dtype = in_type.values_by_number[out.data_type].name
        assert out_dtype == "TYPE_FP32"
        x = _batch(in_dims, TRITON_TO_NUMPY[in_dtype])
        if m.format == "torchscript":
            model = load_torchscript_bytes(m.path.read_bytes())
            with torch.no_grad():
                y = model(torch.from_numpy(x)).numpy()
        else:
            sess = ort.InferenceSession(str(m.path), providers=["CPUExecutionProvider"])
            (gi,), (go,) = sess.get_inputs(), sess.get_outputs()
            assert (gi.name, go.name) == (inp.name, out.name)
            assert ORT_TO_TRITON[gi.type] == in_dtype and ORT_TO_TRITON[go.type] == out_dtype
            assert isinstance(gi.shape[0], str), "batch axis must be dynamic"
            assert [d if isinstance(d, int) else -1 for d in gi.shape[1:]] == in_dims
            y = sess.run(None, {gi.name: x})[0]
        assert y.dtype == np.float32 and list(y.shape) == [2, *out_dims], m.name
    kinds = {m.name: m for m in tiny_repo.models}
    pipe = parse_config(kinds["preprocess"].config_path.read_text())
    assert list(pipe.input[0].dims) == [-1, -1, 3]
    assert list(pipe.output[0].dims) == [3, TINY_INPUT_SIZE, TINY_INPUT_SIZE]
    feat = parse_config(kinds["dino_model"].config_path.read_text())
    assert list(feat.input[0].dims) == [3, TINY_INPUT_SIZE, TINY_INPUT_SIZE]
    assert list(feat.output[0].dims) == [32]
    assert feat.instance_group[0].kind == type(feat.instance_group[0]).Kind.Value("KIND_CPU")


def test_verification_ran_in_a_fresh_process_with_real_inputs(
    tiny_repo: ExportResult, repo_root: Path
) -> None:
    report = json.loads((repo_root / "verification.json").read_text())
    assert report["passed"] is True and report["atol"] == pytest.approx(1e-4)
    assert report["worker"]["dinomap_imported"] is False
    assert {m["name"] for m in report["models"]} == {m.name for m in tiny_repo.models}
    for m in report["models"]:
        labels = [c["label"] for c in m["cases"]]
        assert len(labels) >= 2 and any("random" in lbl for lbl in labels), m["name"]
        assert any("real" in lbl for lbl in labels), m["name"]
        assert all(c["passed"] and c["max_abs_diff"] <= 1e-4 for c in m["cases"])
        assert all(c["expected_max_abs"] > 1e-3 for c in m["cases"])  # not comparing zeros
    # The preprocess member on its own: every case passes, the rounding ties of 28x28 and
    # 56x56 (Fashion-MNIST's size, and 56 -> 32 down) included.
    assert report["diagnostics"] == []
    by_name = {m["name"]: m for m in report["models"]}
    for name in ("preprocess", "preprocess_onnx"):
        labels = [c["label"] for c in by_name[name]["cases"]]
        assert any("28x28" in lbl for lbl in labels) and any("56x56" in lbl for lbl in labels)
    assert report["status"] == "passed" and report["waived"] == []
    for name in ("dino_pipeline_onnx", "preprocess_onnx"):
        sizes = {tuple(c["input_shape"][1:3]) for c in by_name[name]["cases"]}
        assert {(32, 32), (45, 37), (28, 28)} <= sizes  # the bottleneck size, odd, real ones
    # Ensembles were run member file by member file, as their config wires them.
    assert by_name["dino_pipeline_parametric_umap_onnx"]["steps"] == [
        "preprocess_onnx", "dino_model_onnx", "parametric_umap_onnx"]  # fmt: skip


@pytest.fixture(scope="module")
def pool_repo(tmp_path_factory: pytest.TempPathFactory, pool_preprocess: nn.Module) -> ExportResult:
    """Both formats of a pipeline whose extractor reacts to every pixel region."""
    return export_models(
        tmp_path_factory.mktemp("pool") / "repo", PoolExtractor(), input_size=TINY_INPUT_SIZE,
        preprocess=pool_preprocess, device="cpu", verify=False,
    )  # fmt: skip


def _pipeline_outputs(res: ExportResult, batch: np.ndarray) -> dict[str, np.ndarray]:
    """``dino_pipeline`` and its ONNX twin, their member files chained by hand."""
    ts = [load_torchscript_bytes(res.model(n).path.read_bytes()) for n in ("preprocess", "dino_model")]
    sessions = [
        ort.InferenceSession(str(res.model(n).path), providers=["CPUExecutionProvider"])
        for n in ("preprocess_onnx", "dino_model_onnx")
    ]
    with torch.no_grad():
        out = {"torchscript": ts[1](ts[0](torch.from_numpy(batch))).numpy()}
    x = sessions[0].run(None, {"INPUT__0": batch})[0]
    out["onnx"] = sessions[1].run(None, {"INPUT__0": x})[0]
    return out


def test_exported_pipeline_reproduces_preprocess_then_extractor(
    pool_repo: ExportResult, pool_preprocess: nn.Module
) -> None:
    extractor = PoolExtractor()
    imgs = real_like_images(n=3, size=23, seed=5)
    with torch.no_grad():
        ref = extractor(pool_preprocess(torch.from_numpy(imgs))).numpy()
        # Without the 32x32 bottleneck the features differ clearly: the check below can fail.
        direct = torch.nn.functional.interpolate(
            torch.from_numpy(imgs).permute(0, 3, 1, 2).float(), size=(56, 56), mode="bilinear"
        )
        no_bottleneck = extractor((direct - pool_preprocess.mean) * pool_preprocess.inv_std).numpy()
    assert np.abs(no_bottleneck - ref).max() > 1e-2
    for batch in (imgs, real_like_images(n=2, size=32, seed=6), real_like_images(n=1, size=40)):
        with torch.no_grad():
            expected = extractor(pool_preprocess(torch.from_numpy(batch))).numpy()
        for fmt, got in _pipeline_outputs(pool_repo, batch).items():
            np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fmt)


@pytest.mark.parametrize("size", [28, 56])
def test_pipeline_at_sizes_with_rounding_ties(
    pool_repo: ExportResult, pool_preprocess: nn.Module, size: int
) -> None:
    """28 -> 32 and 56 -> 32 produce exact x.5 values before the bottleneck's ``round()``.

    TorchScript runs the same kernels as eager and always agrees. onnxruntime computes the resize
    in another order, so ``Preprocess``'s round-half-to-even flips some ties by one grey level
    (about 1% of the values at 28x28, Fashion-MNIST's size) unless the rounding is made robust
    to float error (``(x + 1e-3).round()``, which is also what OpenCV's fixed-point resize does:
    round half up), as ``dinomap.embed.preprocess`` does; the export's own verification runs the
    same sizes.
    """
    batch = real_like_images(n=2, size=size, seed=size)
    with torch.no_grad():
        expected = PoolExtractor()(pool_preprocess(torch.from_numpy(batch))).numpy()
    outs = _pipeline_outputs(pool_repo, batch)
    np.testing.assert_allclose(outs["torchscript"], expected, atol=1e-4)
    np.testing.assert_allclose(outs["onnx"], expected, atol=1e-4)


class _NotScriptable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = lambda t: t.mean(dim=(2, 3))  # noqa: E731 - lambdas cannot be scripted
        return pool(x) * 2.0


def test_unscriptable_model_falls_back_to_tracing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="dinomap.export.torchscript"):
        res = export_models(
            tmp_path / "repo", _NotScriptable(), input_size=16, formats="torchscript",
            device="cpu",
        )  # fmt: skip
    (model,) = res.models
    assert model.method == "trace" and "scripting failed" in model.note
    assert "falling back to torch.jit.trace" in caplog.text
    assert res.passed  # traced at batch 2, verified at batches 1 and 3
    assert '"trace"' in model.config_path.read_text()


def test_mapper_only_export_without_preprocessing(tmp_path: Path) -> None:
    res = export_models(
        tmp_path / "repo", PoolExtractor(), input_size=16, formats=("onnx",),
        mappers={"tsne_nn": tiny_mapper(48)}, device="cpu", verify=False,
    )  # fmt: skip
    assert [m.name for m in res.models] == ["dino_model_onnx", "tsne_nn_onnx"]
    assert res.model("tsne_nn_onnx").inputs[0].dims == (48,)
    assert res.model("tsne_nn_onnx").outputs[0].dims == (2,)
    assert res.random_init is False
    meta = json.loads((tmp_path / "repo" / "dinomap_export.json").read_text())
    assert meta["random_init"] is False and meta["embed_dim"] == 48
