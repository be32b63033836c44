from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dinomap.embed.models import create_encoder, resolve_model_name
from dinomap.exceptions import InvalidParameterError, WeightsUnavailableError

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def test_aliases_and_unknown_names() -> None:
    assert resolve_model_name("dinov2-s14") == "vit_small_patch14_dinov2.lvd142m"
    assert resolve_model_name("dino-s16") == "vit_small_patch16_224.dino"
    assert resolve_model_name("resnet18") == "resnet18"
    with pytest.raises(InvalidParameterError, match="Did you mean 'dinov2-s14'"):
        resolve_model_name("dinov2-s41")


def test_full_vit_s14_at_224_gives_384d_cls() -> None:
    enc = create_encoder("dinov2-s14", random_init=True)
    backbone = enc.extractor.backbone
    assert backbone.patch_embed.img_size == (224, 224)  # not timm's 518 default
    assert enc.embed_dim == 384 and enc.extractor.cls_token
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        out = enc.extractor(x)
        ref = backbone.forward_features(x)[:, 0]
    assert out.shape == (2, 384)
    assert torch.equal(out, ref)
    assert enc.mean == pytest.approx((0.485, 0.456, 0.406))


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = create_encoder("dinov2-s14", random_init=True, init_seed=3, model_kwargs=TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = create_encoder("dinov2-s14", random_init=True, init_seed=3, model_kwargs=TINY)
    c = create_encoder("dinov2-s14", random_init=True, init_seed=4, model_kwargs=TINY)
    pa, pb, pc = (dict(m.extractor.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)
    assert a.weights.random_init and a.weights.source == "random-init"


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_strictly(tmp_path: Path, suffix: str) -> None:
    src = create_encoder("dinov2-s14", random_init=True, init_seed=7, model_kwargs=TINY)
    state = {k: v.contiguous() for k, v in src.extractor.backbone.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    enc = create_encoder("dinov2-s14", weights=path, model_kwargs=TINY)
    assert enc.weights.source == "file" and not enc.weights.random_init
    assert enc.weights.sha256 and len(enc.weights.sha256) == 64
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(enc.extractor(x), src.extractor(x))


def test_mismatched_weights_are_refused(tmp_path: Path) -> None:
    other = create_encoder("dinov2-s14", random_init=True, model_kwargs={**TINY, "depth": 2})
    path = tmp_path / "w.safetensors"
    save_file(
        {k: v.contiguous() for k, v in other.extractor.backbone.state_dict().items()}, str(path)
    )
    with pytest.raises(WeightsUnavailableError, match="does not match"):
        create_encoder("dinov2-s14", weights=path, model_kwargs=TINY)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_encoder("dinov2-s14", weights=tmp_path / "missing.pth", model_kwargs=TINY)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="could not read"):
        create_encoder("dinov2-s14", weights=tmp_path / "junk.pth", model_kwargs=TINY)


def test_offline_without_cache_fails_fast_naming_both_options(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = "from dinomap.embed.models import create_encoder; create_encoder('dinov2-s14')"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "WeightsUnavailableError" in proc.stderr
    assert "--weights FILE" in proc.stderr and "--random-init" in proc.stderr
    assert time.perf_counter() - t0 < 60


def test_non_vit_models_pool_with_their_own_head() -> None:
    enc = create_encoder("resnet18", random_init=True)
    assert not enc.extractor.cls_token
    with torch.inference_mode():
        assert enc.extractor(torch.randn(2, 3, 64, 64)).shape == (2, 512)
