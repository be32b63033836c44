"""Reduced precision on the CPU: the choice per CPU flags, OpenVINO's bf16 and NNCF's int8, their
cache keys, the drift gate against fp32 and one precision per run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dinomap.embed import EmbedConfig, create_encoder, embed, ov_runtime, resolve_precision
from dinomap.embed import encode as encode_module
from dinomap.embed.drift import measure_drift
from dinomap.embed.encode import embed_files
from dinomap.exceptions import ConfigMismatchError, InvalidParameterError, PrecisionDriftError

from ..conftest import TINY_MODEL_KWARGS

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0,
                  input_size=56, calibration_size=6)  # fmt: skip
CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(not ov_runtime.available(), reason="OpenVINO not installed")


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DINOMAP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _flags(monkeypatch: pytest.MonkeyPatch, bf16: bool, openvino: bool = True) -> None:
    monkeypatch.setattr(encode_module, "cpu_has_native_bf16", lambda: bf16)
    monkeypatch.setattr(ov_runtime, "available", lambda: openvino)


def test_auto_is_bf16_on_a_cpu_with_native_bf16_for_large_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    many = encode_module.OPENVINO_MIN_IMAGES
    _flags(monkeypatch, bf16=True)
    assert resolve_precision("auto", CPU, n_images=many) == "bf16"
    assert resolve_precision("auto", CPU, n_images=many - 1) == "fp32"  # conversion not worth it
    assert resolve_precision("auto", CPU, "torch", n_images=many) == "fp32"  # autocast is slower
    assert resolve_precision("auto", CPU, compile=True, n_images=many) == "fp32"
    assert resolve_precision("auto", torch.device("cuda"), n_images=1) == "bf16"
    assert resolve_precision("int8", CPU) == "int8"  # never the default, only when asked
    _flags(monkeypatch, bf16=False)  # emulated bf16 would be slower than fp32
    assert resolve_precision("auto", CPU, n_images=many) == "fp32"
    _flags(monkeypatch, bf16=True, openvino=False)
    assert resolve_precision("auto", CPU, n_images=many) == "fp32"
    with pytest.raises(InvalidParameterError, match=r"int8.*CPU"):
        resolve_precision("int8", torch.device("cuda"))
    with pytest.raises(InvalidParameterError, match="calibration_size"):
        EmbedConfig(calibration_size=0).validate()


def test_native_bf16_is_read_from_the_cpu_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinomap import _device

    real_open = open

    def cpuinfo(flags: str) -> None:
        fake = tmp_path / "cpuinfo"
        fake.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
        monkeypatch.setattr(
            "builtins.open",
            lambda f, *a, **k: real_open(fake if f == "/proc/cpuinfo" else f, *a, **k),
        )

    cpuinfo("avx2 avx512f avx512_bf16")
    assert _device.cpu_has_native_bf16()
    cpuinfo("avx2 amx_bf16 amx_tile")
    assert _device.cpu_has_native_bf16()
    cpuinfo("avx2 avx512f avx512_vnni")
    assert not _device.cpu_has_native_bf16()


def test_drift_figures() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 16)).astype(np.float32)
    same = measure_drift(ref.copy(), ref)
    assert same["cosine_min"] == pytest.approx(1.0) and same["knn_overlap_mean"] == 1.0
    noisy = measure_drift(ref + rng.normal(scale=0.5, size=ref.shape).astype(np.float32), ref)
    assert noisy["cosine_mean"] < 0.95 and noisy["knn_overlap_mean"] < 0.9
    assert noisy["knn"] == 10 and noisy["images"] == 40
    assert measure_drift(ref[:3], ref[:3])["knn"] == 2  # fewer neighbours in a small batch


@needs_openvino
def test_bf16_runs_openvino_with_its_hint_and_records_the_drift(
    image_folder: Path, tmp_path: Path
) -> None:
    res = embed(image_folder, tmp_path / "bf16", CFG, precision="bf16")
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["precision"] == "bf16" and info["fingerprint"]["precision"] == "bf16"
    rt = info["runtime"]
    assert rt["runtime"] == "openvino" and rt["inference_precision"] == "bf16"
    drift = rt["drift"]
    assert drift["precision"] == "bf16" and drift["images"] == 8 and drift["ok"]
    assert drift["cosine_mean"] >= 0.99 and 0 <= drift["knn_overlap_mean"] <= 1


@needs_openvino
def test_int8_is_calibrated_on_the_run_cached_and_reused(
    image_folder: Path, tmp_path: Path, own_cache: Path
) -> None:
    pytest.importorskip("nncf")
    first = embed(image_folder, tmp_path / "a", CFG, precision="int8")
    rt = first.info["runtime"]
    assert first.info["precision"] == "int8" and rt["runtime"] == "openvino"
    assert rt["calibration_images"] == 6 and rt["quantize_cache"] == "miss"
    assert rt["drift"]["ok"] and rt["drift"]["precision"] == "int8"
    # The same images, weights and size: the quantised model comes from the cache.
    second = embed(image_folder, tmp_path / "b", CFG, precision="int8")
    assert second.info["runtime"]["quantize_cache"] == "hit"
    assert second.info["runtime"]["calibration_sha256"] == rt["calibration_sha256"]
    # Another calibration set is another cache entry; so is another weight.
    other = embed(image_folder, tmp_path / "c", CFG, precision="int8", calibration_size=5)
    assert other.info["runtime"]["calibration_sha256"] != rt["calibration_sha256"]
    assert other.info["runtime"]["quantize_cache"] == "miss"
    entries = {p.name for p in own_cache.joinpath("openvino").iterdir()}
    assert len(entries) == 3  # fp32 conversion + two int8 calibrations
    reseeded = create_encoder(CFG.model, input_size=56, random_init=True, init_seed=1,
                              model_kwargs=TINY_MODEL_KWARGS).extractor  # fmt: skip
    assert ov_runtime._cache_entry(reseeded, 56) != ov_runtime._cache_entry(
        create_encoder(CFG.model, input_size=56, random_init=True,
                       model_kwargs=TINY_MODEL_KWARGS).extractor, 56)  # fmt: skip
    # New images embedded like the run use the run's own int8 model (by its calibration).
    X, ok, _ = embed_files(sorted(image_folder.rglob("*.png"))[:3], first.run_dir)
    assert X.shape == (3, 32) and len(ok) == 3


@needs_openvino
def test_a_model_that_drifts_is_refused_and_fp32_can_follow(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ov_runtime.convert

    def drifting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        run, details = real(*args, **kwargs)  # type: ignore[arg-type]
        gen = torch.Generator().manual_seed(0)
        return (
            lambda x: run(x) + 3 * run(x).std() * torch.randn(run(x).shape, generator=gen)
        ), details

    monkeypatch.setattr(ov_runtime, "convert", drifting)
    out = tmp_path / "run"
    with pytest.raises(PrecisionDriftError, match="--precision fp32"):
        embed(image_folder, out, CFG, precision="bf16")
    info = json.loads((out / "run.json").read_text())
    assert (
        info["runtime"]["drift"]["ok"] is False and info["runtime"]["drift"]["cosine_mean"] < 0.99
    )
    assert not list(out.glob("*.parquet")) and not list(out.glob("**/part-*.parquet"))
    # Nothing was stored: the same directory takes fp32 now.
    res = embed(image_folder, out, CFG, precision="fp32")
    assert res.n_embedded == 8 and res.info["precision"] == "fp32"


def test_a_run_stays_one_precision(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    embed(image_folder, out, CFG, precision="fp32", runtime="torch", limit=4)
    with pytest.raises(ConfigMismatchError, match="precision"):
        embed(image_folder, out, CFG, precision="bf16", runtime="torch")
    # auto keeps what the directory holds, even where it would choose bf16 for a new run
    _flags(monkeypatch, bf16=True)
    monkeypatch.setattr(encode_module, "OPENVINO_MIN_IMAGES", 1)
    assert resolve_precision("auto", CPU, n_images=8) == "bf16"
    res = embed(image_folder, out, CFG, runtime="torch")
    assert res.info["precision"] == "fp32" and res.n_embedded == 4
