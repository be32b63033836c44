"""Exports that must fail: a wrong file on disk, a preprocessing that differs in the exported
graph, an ensemble wired wrongly in its config, and the ONNX exporter's fallback (which must
still be verified and recorded)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from dinomap.embed.preprocess import Preprocess
from dinomap.export import VerificationError, export_models, parse_config

from .conftest import (
    TINY_INPUT_SIZE,
    PoolExtractor,
    corrupt_before_verification,
    perturb_torchscript_weight,
    real_like_images,
    swap_for_other_onnx_model,
    tiny_encoder,
)

CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "torchscript weight changed in the file": ("dino_model", perturb_torchscript_weight),
    "onnx file swapped for another model's": ("dino_model_onnx", swap_for_other_onnx_model),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_wrong_file_on_disk_stops_the_export_and_is_recorded_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    name, corrupt = CORRUPTIONS[case]
    done = corrupt_before_verification(monkeypatch, {name: corrupt})
    out = tmp_path / "repo"
    with pytest.raises(VerificationError, match=rf"within 0.0001: {name}\. See") as info:
        export_models(out, tiny_encoder().extractor, input_size=TINY_INPUT_SIZE, device="cpu",
                      random_init=True)  # fmt: skip
    assert done == [name]  # the file was changed after writing, before verification
    assert info.value.report is not None and info.value.report.failed == [name]
    report = json.loads((out / "verification.json").read_text())
    assert report["passed"] is False and report["status"] == "failed"
    by_name = {m["name"]: m for m in report["models"]}
    assert set(by_name) == {"dino_model", "dino_model_onnx"}
    assert by_name[name]["passed"] is False and by_name[name]["max_abs_diff"] > 1e-3
    assert "waived" not in by_name[name]  # random-init waives mappers only
    (other,) = set(by_name) - {name}
    assert by_name[other]["passed"] is True
    ver = json.loads((out / "dinomap_export.json").read_text())["verification"]
    assert ver["passed"] is False and ver["status"] == "failed" and ver["failed"] == [name]
    assert ver["max_abs_diff"][name] == by_name[name]["max_abs_diff"]
    readme = (out / "README.md").read_text()
    assert "Verification (verification.json): FAILED" in readme
    assert f"`{name}`: FAILED" in readme


class _OneGreyLevelOffWhenExported(Preprocess):
    """The bug the strict check of the ``preprocess`` member exists for: the exported graph's
    preprocessing is one grey level off eager (as a resize that rounds differently in a runtime
    would be)."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = super().forward(pixels)
        if torch.onnx.is_in_onnx_export():
            out = out + self.inv_std
        return out


def test_a_preprocess_member_one_grey_level_off_stops_the_export(tmp_path: Path) -> None:
    enc = tiny_encoder()
    pre = _OneGreyLevelOffWhenExported(TINY_INPUT_SIZE, enc.mean, enc.std, source_size=32)
    out = tmp_path / "repo"
    with pytest.raises(VerificationError, match=r"within 0.0001: preprocess_onnx\. See"):
        export_models(
            out, enc.extractor, input_size=TINY_INPUT_SIZE, preprocess=pre, formats="onnx",
            device="cpu", random_init=True, real_images=real_like_images(),
        )  # fmt: skip
    report = json.loads((out / "verification.json").read_text())
    assert report["passed"] is False and report["status"] == "failed"
    by_name = {m["name"]: m for m in report["models"]}
    # The random-init model hides one grey level: the ensemble built on the member passes...
    assert by_name["dino_pipeline_onnx"]["passed"] is True
    assert by_name["dino_pipeline_onnx"]["steps"] == ["preprocess_onnx", "dino_model_onnx"]
    # ...and the member alone shows it (1 / (0.224 * 255) = 0.0175 after normalising).
    pre_check = by_name["preprocess_onnx"]
    assert pre_check["passed"] is False
    assert pre_check["max_abs_diff"] == pytest.approx(1 / (0.224 * 255), rel=0.02)
    labels = [c["label"] for c in pre_check["cases"]]
    assert any("28x28" in lbl for lbl in labels) and any("56x56" in lbl for lbl in labels)
    ver = json.loads((out / "dinomap_export.json").read_text())["verification"]
    assert ver["status"] == "failed" and ver["failed"] == ["preprocess_onnx"]
    assert "`preprocess_onnx`: FAILED" in (out / "README.md").read_text()


def test_onnx_falls_back_to_the_legacy_exporter_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_export = torch.onnx.export

    def dynamo_fails(*args: object, **kwargs: object) -> object:
        if kwargs.get("dynamo"):
            raise RuntimeError("unsupported operator for this test")
        return real_export(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    out = tmp_path / "repo"
    with caplog.at_level("WARNING", logger="dinomap.export.onnx"):
        res = export_models(out, PoolExtractor(), input_size=16, formats="onnx", device="cpu")
    assert "trying the legacy exporter" in caplog.text
    (model,) = res.models
    assert model.method == "legacy"
    assert "dynamo exporter failed (RuntimeError: unsupported operator" in model.note
    assert res.passed and res.verification is not None
    assert res.verification.models[0]["max_abs_diff"] <= 1e-4
    cfg = parse_config(model.config_path.read_text())
    assert cfg.parameters["export_method"].string_value == "legacy"
    (meta_model,) = json.loads((out / "dinomap_export.json").read_text())["models"]
    assert meta_model["method"] == "legacy" and "dynamo exporter failed" in meta_model["note"]
    assert "| legacy |" in (out / "README.md").read_text()
    # The legacy file keeps a dynamic batch axis.
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        sess.run(None, {"INPUT__0": x})[0], PoolExtractor()(torch.from_numpy(x)).numpy(), atol=1e-5
    )
