"""The models a Triton repository holds, before any format: what :func:`build_targets` makes.

Each :class:`Target` carries its module, the Triton input it takes, the example inputs that
script / trace / export it, and the verification cases (inputs) it is checked on. The wrapper
modules :class:`PixelPipeline` (pixels -> features) and :class:`Chain` (pixels -> 2-D map) and
the record of one written model, :class:`ExportedModel`, live here too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dinomap._validation import check_choice
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.export.triton import ENSEMBLE_PLATFORM, PLATFORMS, TensorSpec

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "Chain",
    "ExportedModel",
    "PixelPipeline",
    "parse_formats",
]

FORMATS: tuple[str, ...] = ("torchscript", "onnx")
INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class PixelPipeline(nn.Module):
    """Raw pixels to features in one graph: ``preprocess`` then ``extractor``.

    Input uint8 ``[N, H, W, 3]`` RGB; output whatever ``extractor`` returns (``[N, D]``).
    """

    def __init__(self, preprocess: nn.Module, extractor: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.extractor = extractor

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.extractor(self.preprocess(pixels))
        return out


class Chain(nn.Module):
    """``second(first(x))``: e.g. a :class:`PixelPipeline` followed by a 2-D mapper."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.second(self.first(x))
        return out


@dataclass(frozen=True)
class ExportedModel:
    """One model written to the repository.

    Attributes
    ----------
    name : str
        Triton model name (= folder name).
    format : str
        ``"torchscript"`` or ``"onnx"``.
    kind : str
        Members: ``"features"``, ``"preprocess"``, ``"mapper"``; ensembles: ``"pipeline"``
        (pixels -> features) or ``"pixels_to_map"``.
    path, config_path : Path
        The model file (an ensemble: its empty version folder) and its ``config.pbtxt``.
    method : str
        How it was made: ``"script"``, ``"trace"``, ``"dynamo"``, ``"legacy"``;
        ``"ensemble"`` for an ensemble.
    inputs, outputs : tuple of TensorSpec
        The model's real I/O (dims without the batch axis), as written to ``config.pbtxt``.
    note : str
        Anything a user should know (a fallback that was taken).
    steps : tuple of str
        An ensemble's members, in the order its ``ensemble_scheduling`` runs them; empty for a
        member.
    """

    name: str
    format: str
    kind: str
    path: Path
    config_path: Path
    method: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    note: str = ""
    steps: tuple[str, ...] = ()

    @property
    def is_ensemble(self) -> bool:
        return bool(self.steps)

    @property
    def platform(self) -> str:
        return ENSEMBLE_PLATFORM if self.is_ensemble else PLATFORMS[self.format][0]

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        def rel(p: Path) -> str:
            return str(p.relative_to(root)) if root is not None else str(p)

        out: dict[str, Any] = {
            "name": self.name,
            "format": self.format,
            "kind": self.kind,
            "platform": self.platform,
            "file": None if self.is_ensemble else rel(self.path),
            "config": rel(self.config_path),
            "method": self.method,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "note": self.note,
        }
        if self.is_ensemble:
            out["steps"] = list(self.steps)
        return out


@dataclass
class Target:
    """A model to export, independent of the format."""

    name: str
    kind: str
    module: nn.Module
    input_dtype: str
    input_dims: tuple[int, ...]
    example: torch.Tensor  # to script/trace and run once
    onnx_example: torch.Tensor  # takes every resize branch
    onnx_dynamic: dict[int, str]
    cases: list[tuple[str, np.ndarray]]
    parameters: dict[str, Any]


@dataclass
class EnsembleTarget:
    """An ensemble to write: its members in order (by target name) and its eager reference."""

    name: str
    kind: str
    steps: tuple[str, ...]
    module: nn.Module  # the eager reference: the members' modules chained
    cases: list[tuple[str, np.ndarray]]
    parameters: dict[str, Any]


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """``"torchscript,onnx"`` or a sequence of names -> a checked tuple without duplicates."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        name = check_choice("format", str(item).strip().lower(), FORMATS)
        if name not in out:
            out.append(name)
    if not out:
        raise InvalidParameterError(f"format must name at least one of {', '.join(FORMATS)}.")
    return tuple(out)


def on_cpu(module: nn.Module) -> nn.Module:
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        module = copy.deepcopy(module).cpu()
    return module.eval()


def eager_output(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x)))
    return np.ascontiguousarray(out.detach().cpu().numpy())


def _rng_pixels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def same_size_batch(images: np.ndarray | Sequence[np.ndarray], limit: int) -> np.ndarray | None:
    """Up to ``limit`` images of the first image's size, stacked (uint8 [n, H, W, 3])."""
    if images is None or len(images) == 0:
        return None
    first = np.asarray(images[0])
    picked = [np.asarray(im) for im in images if np.asarray(im).shape == first.shape][:limit]
    batch = np.stack(picked).astype(np.uint8, copy=False)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise InvalidParameterError(
            f"real_images must be RGB uint8 images of shape (H, W, 3); got {first.shape}."
        )
    return np.ascontiguousarray(batch)


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidParameterError(
            f"{kind} name must use letters, digits, '_', '.', '-' only (it names a Triton model); "
            f"got {name!r}."
        )
    return name


def build_targets(
    extractor: nn.Module,
    input_size: int,
    preprocess: nn.Module | None,
    source_size: int,
    mappers: Mapping[str, nn.Module],
    real_images: np.ndarray | None,
    real_embeddings: np.ndarray | None,
    seed: int,
) -> tuple[list[Target], list[EnsembleTarget], int]:
    """The member models (in repository order), the ensembles that chain them, and ``D``.

    Members: ``dino_model``, ``preprocess`` (with ``preprocess``) and one per mapper. Ensembles
    (with ``preprocess``): ``dino_pipeline`` = preprocess -> dino_model and
    ``dino_pipeline_<method>`` = preprocess -> dino_model -> mapper; their eager references are a
    :class:`PixelPipeline` / :class:`Chain` of the same modules. The random test inputs are
    drawn from one generator seeded with ``seed``, in a fixed order (features, pixels, then each
    mapper), so an export is reproducible.
    """
    rng = np.random.default_rng(seed)
    s = int(input_size)
    features, embed_dim = _feature_target(extractor, s, preprocess, real_images, rng)
    members: list[Target] = [features]
    ensembles: list[EnsembleTarget] = []
    pipeline: PixelPipeline | None = None
    if preprocess is not None:
        pipeline = PixelPipeline(preprocess, extractor).eval()
        base = source_size if source_size > 0 else s
        pre = _preprocess_target(preprocess, base, real_images, rng)
        members.append(pre)
        ensembles.append(
            EnsembleTarget("dino_pipeline", "pipeline", ("preprocess", "dino_model"), pipeline,
                            pre.cases, {"input": "uint8 RGB pixels, NHWC, any size"})
        )  # fmt: skip
    if real_embeddings is None and pipeline is not None and real_images is not None:
        real_embeddings = eager_output(pipeline, real_images)
    for method, mapper in mappers.items():
        check_name("mapper", method)
        mapper = on_cpu(mapper)
        members.append(_mapper_target(method, mapper, embed_dim, real_embeddings, rng))
        if pipeline is not None:
            cases = [(lbl, x) for lbl, x in ensembles[0].cases if "batch 2" in lbl or "real" in lbl]
            ensembles.append(
                EnsembleTarget(
                    f"dino_pipeline_{method}", "pixels_to_map",
                    ("preprocess", "dino_model", method), Chain(pipeline, mapper).eval(), cases,
                    {"method": method, "input": "uint8 RGB pixels, NHWC, any size"},
                )
            )  # fmt: skip
    return members, ensembles, embed_dim


def _feature_target(
    extractor: nn.Module,
    s: int,
    preprocess: nn.Module | None,
    real_images: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[Target, int]:
    """``dino_model``: normalised float32 ``[N, 3, s, s]`` -> ``[N, D]``; and ``D``."""
    x_feat = rng.standard_normal((2, 3, s, s)).astype(np.float32)
    probe = eager_output(extractor, x_feat[:1])
    if probe.ndim != 2:
        raise DinomapError(
            f"the extractor must return [N, D] features; it returned shape {list(probe.shape)}."
        )
    feat_cases = [
        ("random normal, batch 1", rng.standard_normal((1, 3, s, s)).astype(np.float32)),
        ("random normal, batch 3", rng.standard_normal((3, 3, s, s)).astype(np.float32)),
    ]
    if preprocess is not None and real_images is not None:
        feat_cases.append(("real images, preprocessed", eager_output(preprocess, real_images)))
    target = Target(
        name="dino_model",
        kind="features",
        module=extractor,
        input_dtype="float32",
        input_dims=(3, s, s),
        example=torch.from_numpy(x_feat),
        onnx_example=torch.from_numpy(x_feat),
        onnx_dynamic={0: "batch"},
        cases=feat_cases,
        parameters={"input": "normalised float32 RGB, NCHW"},
    )
    return target, int(probe.shape[1])


def _preprocess_target(
    preprocess: nn.Module,
    base: int,
    real_images: np.ndarray | None,
    rng: np.random.Generator,
) -> Target:
    """``preprocess``: uint8 pixels of any size -> normalised ``[N, 3, S, S]``, checked around
    ``base`` (the bottleneck size) and at sizes with rounding ties; the cases of the pixel
    ensembles too."""
    odd = (base + 13, base + 5)  # differs from every size a resize branch compares with
    # Sizes whose bilinear weights are multiples of 1/16 or 1/8 (28 -> 32 up, 56 -> 32 down)
    # give exact x.5 values before the bottleneck's rounding: the cases where runtimes that
    # compute the resize in another order could round differently.
    up, down = max(base - base // 8, 1), base + base * 3 // 4
    pix_cases = [
        (f"random pixels {base}x{base}, batch 2", _rng_pixels(rng, (2, base, base, 3))),
        (f"random pixels {odd[0]}x{odd[1]}, batch 1", _rng_pixels(rng, (1, *odd, 3))),
        (f"random pixels {up}x{up}, batch 2", _rng_pixels(rng, (2, up, up, 3))),
        (f"random pixels {down}x{down}, batch 1", _rng_pixels(rng, (1, down, down, 3))),
    ]
    if real_images is not None:
        h, w = real_images.shape[1:3]
        pix_cases.append((f"real images {h}x{w}, batch {len(real_images)}", real_images))
    return Target(
        name="preprocess",
        kind="preprocess",
        module=preprocess,
        input_dtype="uint8",
        input_dims=(-1, -1, 3),
        example=torch.from_numpy(_rng_pixels(rng, (2, base, base, 3))),
        onnx_example=torch.from_numpy(_rng_pixels(rng, (2, *odd, 3))),
        onnx_dynamic={0: "batch", 1: "height", 2: "width"},
        cases=pix_cases,
        parameters={
            "input": "uint8 RGB pixels, NHWC, any size",
            "output": "normalised float32 RGB, NCHW",
        },
    )


def _mapper_target(
    method: str,
    mapper: nn.Module,
    embed_dim: int,
    real_embeddings: np.ndarray | None,
    rng: np.random.Generator,
) -> Target:
    """``<method>``: float32 embeddings ``[N, D]`` -> 2-D map coordinates."""
    # Random inputs drawn around the real embeddings (per-dimension mean and spread): a
    # mapper standardises its input with the training statistics, so inputs far outside
    # them (a plain N(0, 1)) only test float32 on meaningless, huge outputs.
    mu: np.ndarray | float = 0.0
    sd: np.ndarray | float = 1.0
    if real_embeddings is not None and len(real_embeddings) > 1:
        mu = np.asarray(real_embeddings, np.float64).mean(axis=0)
        sd = np.asarray(real_embeddings, np.float64).std(axis=0) + 1e-12
    x_emb = (mu + rng.standard_normal((2, embed_dim)) * sd).astype(np.float32)
    map_cases = [
        (
            "random around the real embeddings, batch 3",
            (mu + rng.standard_normal((3, embed_dim)) * sd).astype(np.float32),
        ),
    ]
    if real_embeddings is not None:
        emb = np.ascontiguousarray(real_embeddings[:8], dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != embed_dim:
            raise InvalidParameterError(
                f"real_embeddings must have shape (n, {embed_dim}); got {list(emb.shape)}."
            )
        map_cases.append((f"real embeddings, batch {len(emb)}", emb))
    out = eager_output(mapper, x_emb)
    return Target(
        name=method,
        kind="mapper",
        module=mapper,
        input_dtype="float32",
        input_dims=(embed_dim,),
        example=torch.from_numpy(x_emb),
        onnx_example=torch.from_numpy(x_emb),
        onnx_dynamic={0: "batch"},
        cases=map_cases,
        parameters={"method": method, "output": f"{out.shape[1]}-D map coordinates"},
    )
