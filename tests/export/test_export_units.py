"""Small parts of the export: formats, configs, warnings, the verifier catching a mismatch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from torch import nn

from dinomap.exceptions import InvalidParameterError
from dinomap.export import (
    TensorSpec,
    TritonModelConfig,
    parse_config,
    parse_formats,
    render_config,
    verify_models,
)
from dinomap.export.torchscript import quiet_torchscript, to_torchscript, torchscript_bytes
from dinomap.export.verify import ModelCheck, VerificationCase


def test_parse_formats_accepts_lists_and_names_the_choices() -> None:
    assert parse_formats("torchscript, onnx") == ("torchscript", "onnx")
    assert parse_formats(["onnx", "onnx"]) == ("onnx",)
    with pytest.raises(InvalidParameterError, match=r"format must be one of .*Did you mean 'onnx'"):
        parse_formats("torchscript,onx")


def test_gpu_export_device_gives_a_gpu_instance_group() -> None:
    cfg = TritonModelConfig.make(
        "dino_model", "pytorch_libtorch",
        [TensorSpec("INPUT__0", "float32", (3, 224, 224))],
        [TensorSpec("OUTPUT__0", "float32", (384,))],
        device="cuda", max_batch_size=8, parameters={"random_init": False, "note": 'a "quoted" x'},
    )  # fmt: skip
    msg = parse_config(render_config(cfg))
    assert msg.instance_group[0].kind == type(msg.instance_group[0]).Kind.Value("KIND_GPU")
    assert msg.max_batch_size == 8 and list(msg.input[0].dims) == [3, 224, 224]
    assert msg.parameters["random_init"].string_value == "false"
    assert msg.parameters["note"].string_value == 'a "quoted" x'
    with pytest.raises(InvalidParameterError, match="device"):
        TritonModelConfig.make("m", "pytorch_libtorch", [], [], device="tpu")


def test_a_config_with_a_typo_does_not_parse() -> None:
    with pytest.raises(text_format.ParseError):
        parse_config('name: "m"\nplatfrom: "onnxruntime_onnx"\n')


def test_torchscript_deprecation_warnings_hidden_only_inside_our_calls() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sm = to_torchscript(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.zeros(2, 4))
        torchscript_bytes(sm.module)
        with quiet_torchscript():
            warnings.warn("an unrelated future change", FutureWarning, stacklevel=1)
        torch.jit.script(nn.Linear(2, 2))  # outside our calls: the user's own warning stays
    messages = [str(w.message) for w in seen]
    assert sm.method == "script"
    assert "an unrelated future change" in messages
    deprecations = [m for m in messages if "deprecated" in m]
    assert deprecations and all("torch.jit.script" in m for m in deprecations)
    assert len(deprecations) == 1  # one from the bare call, none from ours


def test_verifier_flags_a_model_that_differs_from_eager(tmp_path: Path) -> None:
    net = nn.Linear(4, 2).eval()
    path = tmp_path / "model.pt"
    path.write_bytes(torchscript_bytes(to_torchscript(net, torch.zeros(1, 4)).module))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    ok = VerificationCase("exact", x, y)
    off = VerificationCase("shifted by 2e-4", x, y + np.float32(2e-4))
    bad_shape = VerificationCase("wrong shape", x, y[:, :1].copy())
    report = verify_models(
        [
            ModelCheck("good", "torchscript", path, "INPUT__0", "OUTPUT__0", (ok,)),
            ModelCheck("bad", "torchscript", path, "INPUT__0", "OUTPUT__0", (ok, off, bad_shape)),
            ModelCheck("missing", "onnx", tmp_path / "nope.onnx", "INPUT__0", "OUTPUT__0", (ok,)),
        ]
    )
    assert not report.passed and report.worker["dinomap_imported"] is False
    by_name = {m["name"]: m for m in report.models}
    assert by_name["good"]["passed"] and by_name["good"]["max_abs_diff"] < 1e-6
    bad = by_name["bad"]
    assert not bad["passed"] and bad["max_abs_diff"] == pytest.approx(2e-4, rel=0.01)
    assert [c["passed"] for c in bad["cases"]] == [True, False, False]
    assert "expected" in bad["cases"][2]["error"]
    assert not by_name["missing"]["passed"] and "error" in by_name["missing"]
    assert "FAIL  bad" in report.summary() and "PASS  good" in report.summary()


def test_a_failing_diagnostic_fails_verification_and_a_waiver_is_recorded(tmp_path: Path) -> None:
    net = nn.Linear(3, 2).eval()
    path = tmp_path / "model.pt"
    path.write_bytes(torchscript_bytes(to_torchscript(net, torch.zeros(1, 3)).module))
    x = np.ones((2, 3), np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    ok, off = VerificationCase("ok", x, y), VerificationCase("off", x, y + 1.0)
    report = verify_models(
        [
            ModelCheck("m", "torchscript", path, "INPUT__0", "OUTPUT__0", (ok,)),
            ModelCheck("mapper", "torchscript", path, "INPUT__0", "OUTPUT__0", (ok, off)),
            ModelCheck("m[part]", "torchscript", path, "INPUT__0", "OUTPUT__0", (off,),
                       diagnostic=True),
        ]
    )  # fmt: skip
    assert [m["name"] for m in report.models] == ["m", "mapper"]
    assert [d["name"] for d in report.diagnostics] == ["m[part]"]
    assert report.models[0]["passed"] and not report.diagnostics[0]["passed"]
    assert report.diagnostics[0]["max_abs_diff"] > 0.9
    assert not report.passed and report.status == "failed"
    assert report.failed == ["mapper", "m[part]"]
    assert "FAIL  m[part]" in report.summary() and "PASS  m " in report.summary()
    # Waiving the model's failure leaves the diagnostic deciding: still failed.
    report.waive(["mapper"], "a reason")
    assert not report.passed and report.failed == ["m[part]"]
    assert list(report.waived) == ["mapper"] and report.waived["mapper"]["reason"] == "a reason"
    assert report.waived["mapper"]["max_abs_diff"] == pytest.approx(1.0, abs=1e-5)
    assert report.verified_max_abs_diff() == {"m": report.models[0]["max_abs_diff"]}
    assert "WAIVED  mapper" in report.summary()
    # Without the diagnostic the waiver lets it pass, and says so.
    report.diagnostics.clear()
    report.waive(["mapper"], "a reason")
    assert report.passed and report.status == "passed_with_waivers"
    assert report.to_dict()["waived"] == ["mapper"] and report.to_dict()["passed"] is True
