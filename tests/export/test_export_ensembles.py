"""The ensembles: configs checked with Triton's schema, wiring read back from the written files,
a wrongly wired config caught by verification, one ViT per format."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from dinomap.embed.preprocess import Preprocess
from dinomap.export import ExportResult, parse_config
from dinomap.export.ensemble import chain_from_config
from dinomap.export.verify import ModelCheck, VerificationCase, verify_models

from .conftest import real_like_images, tiny_encoder, tiny_mapper

DTYPES = {"TYPE_FP32": "float32", "TYPE_UINT8": "uint8"}


def _dtype(cfg: Any, tensor: Any) -> str:
    enum = type(tensor).DESCRIPTOR.fields_by_name["data_type"].enum_type
    return DTYPES[enum.values_by_number[tensor.data_type].name]


def test_ensemble_configs_follow_triton_schema_and_wire_real_members(
    tiny_repo: ExportResult,
) -> None:
    root = tiny_repo.repository
    ensembles = [m for m in tiny_repo.models if m.is_ensemble]
    assert len(ensembles) == 4
    for m in ensembles:
        cfg = parse_config(m.config_path.read_text())
        assert cfg.name == m.name and cfg.platform == "ensemble"
        assert cfg.max_batch_size == 16
        # Triton refuses these on an ensemble: the members carry batching and instances.
        assert not cfg.HasField("dynamic_batching") and len(cfg.instance_group) == 0
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert params["random_init"] == "true" and params["export_method"] == "ensemble"
        (inp,), (out,) = cfg.input, cfg.output
        available = {inp.name: (_dtype(cfg, inp), list(inp.dims))}
        steps = list(cfg.ensemble_scheduling.step)
        assert [s.model_name for s in steps] == list(m.steps)
        for step in steps:
            member = parse_config((root / step.model_name / "config.pbtxt").read_text())
            assert member.platform == ("pytorch_libtorch" if m.format == "torchscript"
                                       else "onnxruntime_onnx")  # fmt: skip
            assert member.max_batch_size >= cfg.max_batch_size
            (m_in,), (m_out,) = member.input, member.output
            assert dict(step.input_map) == {m_in.name: step.input_map[m_in.name]}
            produced = available[step.input_map[m_in.name]]  # made by an earlier step
            assert produced == (_dtype(member, m_in), list(m_in.dims)), step.model_name
            (target,) = step.output_map.values()
            available[target] = (_dtype(member, m_out), list(m_out.dims))
        assert available[out.name] == (_dtype(cfg, out), list(out.dims))
        assert list(inp.dims) == [-1, -1, 3] and _dtype(cfg, inp) == "uint8"
    # One ViT per format: the only files that hold it are dino_model's.
    sizes = {m.name: m.path.stat().st_size for m in tiny_repo.models if not m.is_ensemble}
    assert max(sizes, key=lambda n: sizes[n]).startswith("dino_model")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("model.*"))
    assert files == sorted(f"{m.name}/1/{m.path.name}" for m in tiny_repo.models
                           if not m.is_ensemble)  # fmt: skip


@pytest.fixture(scope="module")
def eager_chain() -> torch.nn.Module:
    enc = tiny_encoder()
    pre = Preprocess(enc.input_size, enc.mean, enc.std, source_size=32)
    return torch.nn.Sequential(pre, enc.extractor, tiny_mapper(enc.embed_dim)).eval()


def _check(config: Path, x: np.ndarray, expected: np.ndarray) -> ModelCheck:
    inp, out, steps = chain_from_config(config)
    return ModelCheck(config.parent.name, "onnx", config, inp, out,
                      (VerificationCase("real-like", x, expected),), steps=steps)  # fmt: skip


def test_a_wrongly_wired_ensemble_fails_verification(
    tiny_repo: ExportResult, eager_chain: torch.nn.Module, tmp_path: Path
) -> None:
    repo = Path(shutil.copytree(tiny_repo.repository, tmp_path / "repo"))
    x = real_like_images(2, 28, seed=3)
    with torch.no_grad():
        expected = eager_chain(torch.from_numpy(x)).numpy()
    config = repo / "dino_pipeline_parametric_umap_onnx" / "config.pbtxt"
    # As written: the chain of the member files matches eager.
    good = verify_models([_check(config, x, expected)])
    assert good.passed, good.summary()
    # The mapper step dropped (dino_model writes the ensemble output): runs, wrong output.
    cfg = parse_config(config.read_text())
    del cfg.ensemble_scheduling.step[2]
    cfg.ensemble_scheduling.step[1].output_map["OUTPUT__0"] = "OUTPUT__0"
    config.write_text(text_format.MessageToString(cfg))
    bad = verify_models([_check(config, x, expected)])
    assert not bad.passed
    (case,) = bad.models[0]["cases"]
    assert case["output_shape"] == [2, 32] and "expected float32[2, 2]" in case["error"]
    # A member from the other format: the same numbers within 1e-4, so it passes (wiring by
    # name is what is checked, not which runtime).
    cfg = parse_config((tiny_repo.repository / config.parent.name / "config.pbtxt").read_text())
    cfg.ensemble_scheduling.step[0].model_name = "preprocess"
    config.write_text(text_format.MessageToString(cfg))
    steps = chain_from_config(config)[2]
    assert (steps[0].name, steps[0].format) == ("preprocess", "torchscript")
    assert verify_models([_check(config, x, expected)]).passed
    # A member that does not exist: said plainly.
    cfg.ensemble_scheduling.step[0].model_name = "no_such_model"
    config.write_text(text_format.MessageToString(cfg))
    with pytest.raises(Exception, match="no_such_model"):
        chain_from_config(config)


def test_reexport_over_the_old_layout_leaves_no_weights_in_ensembles(
    tiny_repo: ExportResult, tmp_path: Path
) -> None:
    from dinomap.export import export_encoder

    repo = tmp_path / "repo"
    old = repo / "dino_pipeline" / "1" / "model.pt"  # an older dinomap wrote the ViT here
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old weights")
    enc = tiny_encoder()
    res = export_encoder(repo, enc, formats="torchscript", device="cuda", verify=False,
                         max_batch_size=8)  # fmt: skip
    assert not old.exists() and list(old.parent.iterdir()) == []
    assert [m.name for m in res.models] == ["dino_model", "preprocess", "dino_pipeline"]
    kinds = {m.name: parse_config(m.config_path.read_text()) for m in res.models}
    gpu = type(kinds["dino_model"].instance_group[0]).Kind.Value("KIND_GPU")
    assert kinds["dino_model"].instance_group[0].kind == gpu  # --device cuda
    assert kinds["preprocess"].instance_group[0].kind == gpu
    assert len(kinds["dino_pipeline"].instance_group) == 0
    assert {c.max_batch_size for c in kinds.values()} == {8}
