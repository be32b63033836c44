"""Random-init exports: an ill-conditioned mapper does not fail the export; trained ones do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dinomap.embed import create_encoder
from dinomap.export import VerificationError, export_models

from .conftest import TINY_EXPORT_KWARGS, TINY_INPUT_SIZE, corrupt_before_verification, tiny_mapper


def _ill_conditioned_mapper(dim: int) -> nn.Module:
    """Like a mapper fitted on nearly identical (random-init) embeddings: huge gains."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, 2))
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 3e3)
            layer.bias.zero_()
    return net.eval()


@pytest.mark.parametrize("random_init", [True, False])
def test_mapper_beyond_tolerance_is_waived_only_for_random_init(
    tmp_path: Path, random_init: bool
) -> None:
    enc = create_encoder("dinov2-s14", random_init=True, input_size=TINY_INPUT_SIZE,
                         model_kwargs=TINY_EXPORT_KWARGS)  # fmt: skip
    rng = np.random.default_rng(0)
    real = rng.standard_normal((8, enc.embed_dim)).astype(np.float32)
    kwargs = dict(input_size=TINY_INPUT_SIZE, mappers={"tsne_nn": _ill_conditioned_mapper(enc.embed_dim)},
                  formats=("onnx",), device="cpu", random_init=random_init, real_embeddings=real)  # fmt: skip
    out = tmp_path / "repo"
    if not random_init:
        with pytest.raises(VerificationError, match="tsne_nn_onnx"):
            export_models(out, enc.extractor, **kwargs)  # type: ignore[arg-type]
        return
    result = export_models(out, enc.extractor, **kwargs)  # type: ignore[arg-type]
    assert result.verification is not None and result.verification.passed
    assert result.verification.status == "passed_with_waivers"
    report = json.loads((out / "verification.json").read_text())
    assert report["status"] == "passed_with_waivers" and report["waived"] == ["tsne_nn_onnx"]
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["tsne_nn_onnx"]["passed"] is False
    assert by_name["tsne_nn_onnx"]["max_abs_diff"] > 1e-4
    assert "random-init" in by_name["tsne_nn_onnx"]["waived"]
    assert (
        by_name["dino_model_onnx"]["passed"] is True and "waived" not in by_name["dino_model_onnx"]
    )
    assert "WAIVED  tsne_nn_onnx" in result.verification.summary()
    # dinomap_export.json: the max diff covers the verified models only, the waived one is
    # listed apart with its difference and the reason, and the status says so.
    ver = json.loads((out / "dinomap_export.json").read_text())["verification"]
    assert ver["status"] == "passed_with_waivers" and ver["failed"] == []
    assert set(ver["max_abs_diff"]) == {"dino_model_onnx"}
    assert ver["max_abs_diff"]["dino_model_onnx"] <= 1e-4
    waived = ver["waived"]["tsne_nn_onnx"]
    assert waived["max_abs_diff"] == by_name["tsne_nn_onnx"]["max_abs_diff"]
    assert "random-init" in waived["reason"]
    readme = (out / "README.md").read_text()
    assert "PASSED WITH WAIVERS" in readme and "`tsne_nn_onnx`: WAIVED" in readme


def test_a_random_init_mapper_that_does_not_load_is_not_waived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc = create_encoder("dinov2-s14", random_init=True, input_size=TINY_INPUT_SIZE,
                         model_kwargs=TINY_EXPORT_KWARGS)  # fmt: skip
    corrupt_before_verification(
        monkeypatch, {"tsne_nn_onnx": lambda path: path.write_bytes(b"not an onnx model")}
    )
    out = tmp_path / "repo"
    with pytest.raises(VerificationError, match="tsne_nn_onnx"):
        export_models(out, enc.extractor, input_size=TINY_INPUT_SIZE, formats="onnx",
                      mappers={"tsne_nn": tiny_mapper(enc.embed_dim)}, device="cpu",
                      random_init=True)  # fmt: skip
    report = json.loads((out / "verification.json").read_text())
    mapper = next(m for m in report["models"] if m["name"] == "tsne_nn_onnx")
    assert mapper["passed"] is False and "error" in mapper and "waived" not in mapper
    assert report["status"] == "failed" and report["waived"] == []
