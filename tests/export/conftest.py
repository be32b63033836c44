"""Fixtures of the export tests: one tiny repository exported once per session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dinomap.embed.models import LoadedModel, create_encoder
from dinomap.embed.preprocess import Preprocess
from dinomap.export import ExportResult, VerificationReport, export_encoder
from dinomap.export.verify import ModelCheck

#: A one-block ViT of the DINOv2 family at 56 px (4x4 patches): fast to export and verify.
TINY_EXPORT_KWARGS: dict[str, Any] = {"depth": 1, "embed_dim": 32, "num_heads": 2}
TINY_INPUT_SIZE = 56


def tiny_encoder() -> LoadedModel:
    return create_encoder(
        "dinov2-s14",
        input_size=TINY_INPUT_SIZE,
        random_init=True,
        model_kwargs=TINY_EXPORT_KWARGS,
    )


def tiny_mapper(in_features: int, seed: int = 0) -> nn.Module:
    """A 2-D mapper shaped like the parametric ones (Linear/ReLU), random weights."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net.eval()


def real_like_images(n: int = 4, size: int = 28, seed: int = 0) -> np.ndarray:
    """Smooth images with edges (gradients and a bright square), uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = 255 * (0.5 * xx + 0.5 * yy * rng.uniform())
        img = np.stack([base, base[::-1], 255 - base], axis=-1)
        a, b = rng.integers(2, size // 2, size=2)
        img[a : a + size // 3, b : b + size // 3] = rng.uniform(0, 255, size=3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


class PoolExtractor(nn.Module):
    """A stand-in extractor whose output moves with every pixel region: 4x4 average pools.

    Random-init ViTs barely react to small input changes; this one makes a wrong resize or
    normalisation inside an exported pipeline show up as a large difference.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """Both formats, a mapper, real-like images; verified."""
    enc = tiny_encoder()
    out = tmp_path_factory.mktemp("export") / "model_repository"
    return export_encoder(
        out,
        enc,
        mappers={"parametric_umap": tiny_mapper(enc.embed_dim)},
        real_images=real_like_images(),
        device="cpu",
        max_batch_size=16,
    )


@pytest.fixture(scope="session")
def pool_preprocess() -> Preprocess:
    return Preprocess(TINY_INPUT_SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), source_size=32)


@pytest.fixture
def repo_root(tiny_repo: ExportResult) -> Path:
    return tiny_repo.repository


def perturb_torchscript_weight(path: Path, name: str = "backbone.norm.weight") -> None:
    """Rewrite the TorchScript file at ``path`` with the parameter ``name`` changed by ~1%."""
    from dinomap.export.torchscript import load_torchscript_bytes, quiet_torchscript

    module = load_torchscript_bytes(path.read_bytes())
    param = dict(module.named_parameters())[name]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        param.add_(0.01 * torch.randn(param.shape, generator=gen))
    with quiet_torchscript():
        torch.jit.save(module, str(path))


def swap_for_other_onnx_model(path: Path) -> None:
    """Replace the ONNX file at ``path`` with the export of another random-init encoder of the
    same shapes (``init_seed=1``): a file that loads and runs but is not the model."""
    from dinomap.export.onnx import to_onnx

    other = create_encoder(
        "dinov2-s14", input_size=TINY_INPUT_SIZE, random_init=True, init_seed=1,
        model_kwargs=TINY_EXPORT_KWARGS,
    )  # fmt: skip
    example = torch.zeros(2, 3, TINY_INPUT_SIZE, TINY_INPUT_SIZE)
    path.write_bytes(to_onnx(other.extractor, example).data)


def corrupt_before_verification(
    monkeypatch: pytest.MonkeyPatch, corrupt: dict[str, Callable[[Path], None]]
) -> list[str]:
    """Make the export's verification run on files changed after they were written:
    ``corrupt`` maps a model name to a function that rewrites its file. Returns the names of
    the models corrupted (filled in when verification runs)."""
    import dinomap.export.repository as repository

    real_verify = repository.verify_models
    done: list[str] = []

    def verify(checks: Sequence[ModelCheck], **kwargs: Any) -> VerificationReport:
        for check in checks:
            if check.name in corrupt:
                corrupt[check.name](Path(check.path))
                done.append(check.name)
        return real_verify(checks, **kwargs)

    monkeypatch.setattr(repository, "verify_models", verify)
    return done
