"""The OpenVINO runtime: when ``auto`` picks it, that it gives PyTorch's embeddings, fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dinomap import load_embeddings
from dinomap.embed import EmbedConfig, create_encoder, embed, ov_runtime, resolve_runtime
from dinomap.embed import encode as encode_module
from dinomap.exceptions import InvalidParameterError

from ..conftest import TINY_MODEL_KWARGS

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0)
CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(not ov_runtime.available(), reason="OpenVINO not installed")


@pytest.fixture
def with_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ov_runtime, "available", lambda: True)


@pytest.fixture
def without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ov_runtime, "available", lambda: False)


def test_auto_picks_openvino_for_large_fp32_and_every_bf16_int8_cpu_run(
    with_openvino: None,
) -> None:
    many = encode_module.OPENVINO_MIN_IMAGES
    assert resolve_runtime("auto", CPU, "fp32", many, None) == "openvino"
    assert resolve_runtime("auto", CPU, "fp32", many - 1, None) == "torch"
    assert resolve_runtime("auto", CPU, "bf16", 1, None) == "openvino"  # its bf16 hint
    assert resolve_runtime("auto", CPU, "int8", 1, None) == "openvino"
    assert resolve_runtime("auto", CPU, "fp16", many, None) == "torch"
    assert resolve_runtime("torch", CPU, "bf16", many, None) == "torch"  # autocast, as asked
    assert resolve_runtime("auto", CPU, "fp32", many, True) == "torch"
    assert resolve_runtime("auto", torch.device("cuda"), "bf16", many, None) == "torch"
    assert resolve_runtime("torch", CPU, "fp32", many, None) == "torch"
    assert resolve_runtime("openvino", CPU, "fp32", 1, None) == "openvino"


def test_auto_without_openvino_is_torch(without_openvino: None) -> None:
    assert resolve_runtime("auto", CPU, "fp32", 10**6, None) == "torch"


def test_explicit_openvino_refuses_what_it_cannot_do(
    with_openvino: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidParameterError, match="CPU in fp32, bf16 or int8"):
        resolve_runtime("openvino", CPU, "fp16", 10, None)
    with pytest.raises(InvalidParameterError, match="CPU in fp32, bf16 or int8"):
        resolve_runtime("openvino", torch.device("cuda"), "bf16", 10, None)
    with pytest.raises(InvalidParameterError, match="'int8' runs with OpenVINO"):
        resolve_runtime("torch", CPU, "int8", 10, None)
    with pytest.raises(InvalidParameterError, match="exclude"):
        resolve_runtime("openvino", CPU, "fp32", 10, True)
    with pytest.raises(InvalidParameterError, match="runtime"):
        EmbedConfig(runtime="tensorrt").validate()
    monkeypatch.setattr(ov_runtime, "available", lambda: False)
    with pytest.raises(InvalidParameterError, match=r'pip install "dinomap\[openvino\]"'):
        resolve_runtime("openvino", CPU, "fp32", 10, None)


@needs_openvino
def test_converted_model_matches_pytorch_on_any_batch_size() -> None:
    loaded = create_encoder("dinov2-s14", random_init=True, model_kwargs=TINY_MODEL_KWARGS)
    run, details = ov_runtime.convert(loaded.extractor, loaded.input_size)
    assert details["max_rel_diff"] <= ov_runtime.TOLERANCE
    x = torch.randn((5, 3, 224, 224), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = loaded.extractor(x)
    got = run(x)
    assert got.shape == (5, loaded.embed_dim) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-5)
    again = run(x[:1])  # a new call must not overwrite what an earlier one returned
    np.testing.assert_allclose(got[:1].numpy(), again.numpy(), rtol=0, atol=1e-6)


@needs_openvino
def test_converted_model_is_cached_and_a_wrong_entry_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setenv("DINOMAP_CACHE_DIR", str(tmp_path / "cache"))
    a = create_encoder("dinov2-s14", random_init=True, init_seed=1, model_kwargs=TINY_MODEL_KWARGS)
    b = create_encoder("dinov2-s14", random_init=True, init_seed=2, model_kwargs=TINY_MODEL_KWARGS)
    assert ov_runtime.convert(a.extractor, 224)[1]["cache"] == "miss"
    run_a, details = ov_runtime.convert(a.extractor, 224)
    assert details["cache"] == "hit"
    entry_a = ov_runtime._cache_entry(a.extractor, 224)
    entry_b = ov_runtime._cache_entry(b.extractor, 224)
    assert entry_a is not None and entry_b is not None and entry_a != entry_b
    shutil.copytree(entry_a, entry_b)  # b's entry now holds a's network
    run_b, details = ov_runtime.convert(b.extractor, 224)
    assert details["cache"] == "miss" and details["max_rel_diff"] <= ov_runtime.TOLERANCE
    x = torch.randn((3, 3, 224, 224), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        np.testing.assert_allclose(run_a(x).numpy(), a.extractor(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(run_b(x).numpy(), b.extractor(x).numpy(), atol=1e-5)
    (entry_a / "model.xml").write_text("not a model")
    assert ov_runtime.convert(a.extractor, 224)[1]["cache"] == "miss"
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DINOMAP_CACHE_DIR", str(tmp_path / "a-file"))  # cannot hold a cache
    run, details = ov_runtime.convert(a.extractor, 224)
    assert details["cache"] == "miss" and run(x).shape == (3, a.embed_dim)
    monkeypatch.setenv("DINOMAP_CACHE_DIR", "none")
    assert ov_runtime.cache_dir() is None
    assert ov_runtime.convert(a.extractor, 224)[1]["cache"] == "off"


@needs_openvino
def test_signal_after_the_model_is_freed_elsewhere_does_not_crash(tmp_path: Path) -> None:
    """OpenVINO's compile leaves a signal stack on the thread that it frees with the model; a
    SIGCHLD handled afterwards (as with PyTorch's DataLoader handler) crashed the process."""
    import subprocess
    import sys

    script = f"""
import signal, subprocess, sys, threading, torch
from dinomap.embed import create_encoder, ov_runtime
signal.signal(signal.SIGCHLD, lambda *a: None)
loaded = create_encoder("dinov2-s14", random_init=True, model_kwargs={TINY_MODEL_KWARGS!r})
holder = [ov_runtime.convert(loaded.extractor, 224)[0]]
for n in (1, 3, 7):
    holder[0](torch.zeros((n, 3, 224, 224)))
worker = threading.Thread(target=holder.clear)  # the last reference dies in another thread
worker.start()
worker.join()
for _ in range(3):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
print("survived")
"""
    env = {**__import__("os").environ, "DINOMAP_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip().endswith("survived")


@needs_openvino
def test_openvino_run_stores_pytorch_embeddings_and_says_so(
    image_folder: Path, tmp_path: Path
) -> None:
    ov = embed(image_folder, tmp_path / "ov", CFG, runtime="openvino")
    pt = embed(image_folder, tmp_path / "pt", CFG, runtime="torch")
    assert ov.info["runtime"]["runtime"] == "openvino" and "openvino_version" in ov.info["runtime"]
    threads = pt.info["runtime"].pop("threads")
    assert threads["torch"] >= 1  # the thread counts the bits may depend on, recorded
    assert pt.info["runtime"] == {"requested": "torch", "runtime": "torch"}
    a, b = load_embeddings(ov.run_dir), load_embeddings(pt.run_dir)
    assert a.paths == b.paths
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-5)
    # the runtime is not part of the run's identity: resuming with the other one is allowed
    again = embed(image_folder, tmp_path / "ov", CFG, runtime="torch")
    assert again.n_embedded == 0 and again.n_already_stored == len(a.paths)


def test_auto_falls_back_to_pytorch_when_conversion_fails(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_openvino: None
) -> None:
    def broken(*_: object) -> None:
        raise ov_runtime.OpenVINOUnavailable("OpenVINO could not convert the model: boom")

    monkeypatch.setattr(ov_runtime, "convert", broken)
    monkeypatch.setattr(encode_module, "OPENVINO_MIN_IMAGES", 1)
    res = embed(image_folder, tmp_path / "auto", CFG)
    assert res.n_embedded == 8
    assert res.info["runtime"]["runtime"] == "torch"
    assert "boom" in res.info["runtime"]["openvino_error"]
    with pytest.raises(InvalidParameterError, match="boom"):
        embed(image_folder, tmp_path / "explicit", CFG, runtime="openvino")
