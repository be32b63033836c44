"""Build a verified Triton model repository: feature extractor, raw-pixel pipeline, mappers.

What :func:`export_models` writes (``_onnx`` folders only with the ``onnx`` format)::

    model_repository/
      dino_model/            float32 [N, 3, S, S] normalised  -> float32 [N, D]  (CLS token)
      dino_pipeline/         uint8 [N, H, W, 3] RGB pixels     -> float32 [N, D]
      <method>/              float32 [N, D] embeddings         -> float32 [N, 2]  (mappers)
      dino_pipeline_<method>/  uint8 [N, H, W, 3] pixels       -> float32 [N, 2]
      dino_model_onnx/ ...   the same models for onnxruntime
      dinomap_export.json    what was exported, from which weights (random_init!), verification
      verification.json      per model and input: max |exported - eager|
      README.md              the same for humans

Each model folder holds ``config.pbtxt`` and ``1/model.pt`` (TorchScript, ``pytorch_libtorch``)
or ``1/model.onnx`` (``onnxruntime_onnx``). Tensors are named ``INPUT__0`` / ``OUTPUT__0``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dinomap._validation import check_choice, check_positive_int
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.export.triton import PLATFORMS, TensorSpec, TritonModelConfig, render_config
from dinomap.export.verify import (
    DEFAULT_ATOL,
    ModelCheck,
    VerificationCase,
    VerificationError,
    VerificationReport,
    verify_models,
)
from dinomap.store import atomic_write_bytes, atomic_write_json, atomic_write_text
from dinomap.store.layout import EXPORT_DIR, MAPPERS_DIR, VERIFICATION_FILE
from dinomap.store.layout import EXPORT_README_FILE as README_FILE

if TYPE_CHECKING:
    from dinomap.embed.models import LoadedModel

from dinomap.store.layout import EXPORT_METADATA_FILE as METADATA_FILE

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "METADATA_FILE",
    "OUTPUT_NAME",
    "VERIFICATION_FILE",
    "Chain",
    "ExportResult",
    "ExportedModel",
    "PixelPipeline",
    "export_encoder",
    "export_models",
    "export_run",
    "load_run_mappers",
    "parse_formats",
]

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("torchscript", "onnx")
INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


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
        ``"features"``, ``"pipeline"``, ``"mapper"`` or ``"pixels_to_map"``.
    path, config_path : Path
        The model file and its ``config.pbtxt``.
    method : str
        How it was made: ``"script"``, ``"trace"``, ``"dynamo"`` or ``"legacy"``.
    inputs, outputs : tuple of TensorSpec
        The model's real I/O (dims without the batch axis), as written to ``config.pbtxt``.
    note : str
        Anything a user should know (a fallback that was taken).
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

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        def rel(p: Path) -> str:
            return str(p.relative_to(root)) if root is not None else str(p)

        return {
            "name": self.name,
            "format": self.format,
            "kind": self.kind,
            "platform": PLATFORMS[self.format][0],
            "file": rel(self.path),
            "config": rel(self.config_path),
            "method": self.method,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "note": self.note,
        }


@dataclass
class ExportResult:
    """What :func:`export_models` wrote and how verification went.

    Attributes
    ----------
    repository : Path
    models : list of ExportedModel
    random_init : bool
        The weights are random (untrained); stamped in every file of the repository.
    verification : VerificationReport or None
        None when verification was switched off.
    metadata : dict
        The content of ``dinomap_export.json``.
    """

    repository: Path
    models: list[ExportedModel]
    random_init: bool
    verification: VerificationReport | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        """True/False after verification, None when it was not run. True also when a
        random-init mapper's failure was waived: ``verification.status`` tells."""
        return None if self.verification is None else self.verification.passed

    def model(self, name: str) -> ExportedModel:
        """The exported model called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        check_choice("name", name, [m.name for m in self.models])
        raise AssertionError  # pragma: no cover - check_choice raised


@dataclass
class _Target:
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


def _resolve_device(device: str) -> str:
    check_choice("device", device, ["auto", "cpu", "cuda"])
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _on_cpu(module: nn.Module) -> nn.Module:
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        module = copy.deepcopy(module).cpu()
    return module.eval()


def _eager(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x)))
    return np.ascontiguousarray(out.detach().cpu().numpy())


def _rng_pixels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _same_size_batch(images: np.ndarray | Sequence[np.ndarray], limit: int) -> np.ndarray | None:
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


def _check_name(kind: str, name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidParameterError(
            f"{kind} name must use letters, digits, '_', '.', '-' only (it names a Triton model); "
            f"got {name!r}."
        )
    return name


def _build_targets(
    extractor: nn.Module,
    input_size: int,
    preprocess: nn.Module | None,
    source_size: int,
    mappers: Mapping[str, nn.Module],
    real_images: np.ndarray | None,
    real_embeddings: np.ndarray | None,
    seed: int,
) -> tuple[list[_Target], int]:
    rng = np.random.default_rng(seed)
    s = int(input_size)
    x_feat = rng.standard_normal((2, 3, s, s)).astype(np.float32)
    probe = _eager(extractor, x_feat[:1])
    if probe.ndim != 2:
        raise DinomapError(
            f"the extractor must return [N, D] features; it returned shape {list(probe.shape)}."
        )
    embed_dim = int(probe.shape[1])
    targets: list[_Target] = []
    feat_cases = [
        ("random normal, batch 1", rng.standard_normal((1, 3, s, s)).astype(np.float32)),
        ("random normal, batch 3", rng.standard_normal((3, 3, s, s)).astype(np.float32)),
    ]
    if preprocess is not None and real_images is not None:
        feat_cases.append(("real images, preprocessed", _eager(preprocess, real_images)))
    targets.append(
        _Target(
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
    )
    pipeline: PixelPipeline | None = None
    if preprocess is not None:
        pipeline = PixelPipeline(preprocess, extractor).eval()
        base = source_size if source_size > 0 else s
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
        targets.append(
            _Target(
                name="dino_pipeline",
                kind="pipeline",
                module=pipeline,
                input_dtype="uint8",
                input_dims=(-1, -1, 3),
                example=torch.from_numpy(_rng_pixels(rng, (2, base, base, 3))),
                onnx_example=torch.from_numpy(_rng_pixels(rng, (2, *odd, 3))),
                onnx_dynamic={0: "batch", 1: "height", 2: "width"},
                cases=pix_cases,
                parameters={"input": "uint8 RGB pixels, NHWC, any size"},
            )
        )
    if real_embeddings is None and preprocess is not None and real_images is not None:
        real_embeddings = _eager(pipeline, real_images) if pipeline is not None else None
    for method, mapper in mappers.items():
        _check_name("mapper", method)
        mapper = _on_cpu(mapper)
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
        out = _eager(mapper, x_emb)
        targets.append(
            _Target(
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
        )
        if pipeline is not None:
            chain = Chain(pipeline, mapper).eval()
            pix = targets[1]
            chain_cases = [
                (label, x) for label, x in pix.cases if "batch 2" in label or "real" in label
            ]
            targets.append(
                _Target(
                    name=f"dino_pipeline_{method}",
                    kind="pixels_to_map",
                    module=chain,
                    input_dtype="uint8",
                    input_dims=(-1, -1, 3),
                    example=pix.example,
                    onnx_example=pix.onnx_example,
                    onnx_dynamic=dict(pix.onnx_dynamic),
                    cases=chain_cases,
                    parameters={"method": method, "input": "uint8 RGB pixels, NHWC, any size"},
                )
            )
    return targets, embed_dim


def _onnx_input_dims(data: bytes) -> tuple[tuple[int, ...], bool]:
    """Dims (without batch, -1 for symbolic) of the ONNX graph's first input; batch dynamic?"""
    import onnx

    proto = onnx.load_from_string(data)
    dims = [
        d.dim_value if d.HasField("dim_value") else -1
        for d in proto.graph.input[0].type.tensor_type.shape.dim
    ]
    return tuple(int(d) for d in dims[1:]), dims[0] == -1


def _write_model(
    root: Path,
    target: _Target,
    fmt: str,
    *,
    output_dim: int,
    device: str,
    max_batch_size: int,
    common: Mapping[str, Any],
) -> ExportedModel:
    from dinomap.export.onnx import to_onnx
    from dinomap.export.torchscript import to_torchscript, torchscript_bytes

    name = target.name if fmt == "torchscript" else f"{target.name}_onnx"
    platform, filename = PLATFORMS[fmt]
    folder = root / name
    dims = target.input_dims
    note = ""
    if fmt == "torchscript":
        scripted = to_torchscript(target.module, target.example)
        data, method, note = torchscript_bytes(scripted.module), scripted.method, scripted.note
        if method == "trace" and -1 in dims:
            dims = tuple(int(v) for v in target.example.shape[1:])
            note += f"; input size fixed to {list(dims)} by tracing"
    else:
        exported = to_onnx(
            target.module,
            target.onnx_example,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            dynamic_dims=target.onnx_dynamic,
        )
        data, method, note = exported.data, exported.method, exported.note
        dims, batch_dynamic = _onnx_input_dims(data)
        if not batch_dynamic:
            raise DinomapError(
                f"the ONNX export of {name} has a fixed batch axis; Triton needs -1."
            )
    path = atomic_write_bytes(folder / "1" / filename, data)
    inputs = (TensorSpec(INPUT_NAME, target.input_dtype, tuple(dims)),)
    outputs = (TensorSpec(OUTPUT_NAME, "float32", (int(output_dim),)),)
    params = {**common, "dinomap_kind": target.kind, "export_method": method, **target.parameters}
    config = TritonModelConfig.make(
        name, platform, inputs, outputs, max_batch_size=max_batch_size, device=device,
        parameters=params,
    )  # fmt: skip
    config_path = atomic_write_text(folder / "config.pbtxt", render_config(config))
    logger.info("exported %s (%s, %s) to %s", name, fmt, method, path)
    return ExportedModel(name, fmt, target.kind, path, config_path, method, inputs, outputs, note)


def _preprocessing_checks(
    tmp: Path, preprocess: nn.Module, target: _Target, pipelines: Sequence[ExportedModel]
) -> list[ModelCheck]:
    """Diagnostics: the preprocessing alone, exported like each pipeline, vs eager.

    An untrained extractor hides small input differences (a grey level here and there); the
    normalised pixels do not, so a resize that rounds differently in a runtime shows up here.
    """
    from dinomap.export.onnx import to_onnx
    from dinomap.export.torchscript import to_torchscript, torchscript_bytes

    checks: list[ModelCheck] = []
    for model in pipelines:
        path = tmp / f"{model.name}.{'pt' if model.format == 'torchscript' else 'onnx'}"
        try:
            if model.format == "torchscript":
                sm = to_torchscript(preprocess, target.example, allow_trace=model.method == "trace")
                path.write_bytes(torchscript_bytes(sm.module))
            else:
                path.write_bytes(
                    to_onnx(preprocess, target.onnx_example, dynamic_dims=target.onnx_dynamic).data
                )
        except Exception as exc:  # the model itself is still verified
            logger.warning("no preprocessing diagnostic for %s (%s)", model.name, exc)
            continue
        cases = tuple(
            VerificationCase(label, x, _eager(preprocess, x))
            for label, x in target.cases
            if model.inputs[0].matches(x)
        )
        checks.append(
            ModelCheck(f"{model.name}[preprocessing]", model.format, path, INPUT_NAME,
                       OUTPUT_NAME, cases, diagnostic=True)
        )  # fmt: skip
    return checks


def _readme(meta: Mapping[str, Any]) -> str:
    lines = ["# dinomap model repository (NVIDIA Triton Inference Server)", ""]
    if meta["random_init"]:
        lines += [
            "> **WARNING: RANDOM-INIT WEIGHTS.** These models were exported with random, untrained",
            "> weights. Their outputs are meaningless; use them to test serving only.",
            "",
        ]
    model = meta.get("model") or {}
    lines += [
        f"- model: `{model.get('name', '?')}` (`{model.get('timm_name', '?')}`), weights: "
        f"`{(meta.get('weights') or {}).get('source', '?')}`",
        f"- exported with dinomap {meta['dinomap_version']}, torch {meta['torch_version']}, "
        f"{meta['created']}",
        f"- instance kind: `{meta['instance_kind']}`, max_batch_size {meta['max_batch_size']}",
        "",
        "| model | platform | input | output | made by |",
        "|---|---|---|---|---|",
    ]
    for m in meta["models"]:
        i, o = m["inputs"][0], m["outputs"][0]
        lines.append(
            f"| `{m['name']}` | {m['platform']} | {i['name']} {i['dtype']} [N, "
            f"{', '.join(map(str, i['dims']))}] | {o['name']} {o['dtype']} [N, "
            f"{', '.join(map(str, o['dims']))}] | {m['method']} |"
        )
    ver = meta.get("verification")
    lines.append("")
    if ver is None:
        lines.append("Verification: not run.")
    else:
        status = str(ver.get("status") or ("passed" if ver["passed"] else "failed"))
        lines.append(
            f"Verification ({VERIFICATION_FILE}): {status.replace('_', ' ').upper()}, "
            f"max |exported - eager| <= {ver['atol']:g} required, in a fresh process without dinomap."
        )
        failed = set(ver.get("failed") or ())
        for name, diff in ver["max_abs_diff"].items():
            mark = "FAILED, " if name in failed else ""
            lines.append(f"- `{name}`: {mark}{'n/a' if diff is None else f'{diff:.2e}'}")
        for name, w in (ver.get("waived") or {}).items():
            diff = w.get("max_abs_diff")
            lines.append(
                f"- `{name}`: WAIVED, {'n/a' if diff is None else f'{diff:.2e}'} ({w['reason']})"
            )
        for name, diag in (ver.get("diagnostics") or {}).items():
            diff = diag.get("max_abs_diff")
            lines.append(
                f"- diagnostic `{name}`: {'ok' if diag.get('passed') else 'FAILED'}, "
                f"max |diff| {'n/a' if diff is None else f'{diff:.2e}'}"
            )
    cons = meta.get("consistency_with_run")
    if cons and cons.get("n_images"):
        centered = cons.get("min_centered_cosine")
        lines += [
            "",
            f"Raw-pixel model vs the run's stored embeddings ({cons['n_images']} images): "
            f"{'CONSISTENT' if cons.get('consistent') else 'NOT CONSISTENT'}, "
            f"min cosine after centering "
            f"{'n/a' if centered is None else f'{centered:.4f}'} "
            f"(>= {cons.get('threshold', CONSISTENCY_MIN_CENTERED_COSINE)} required), "
            f"max |diff| {cons['max_abs_diff']:.2e}, max relative error "
            f"{cons['max_relative_error']:.2e}.",
        ]
    lines += [
        "",
        "Serve it: `docker run --rm -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD:/models "
        "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models`",
        "",
    ]
    return "\n".join(lines)


def export_models(
    out: str | os.PathLike[str],
    extractor: nn.Module,
    *,
    input_size: int = 224,
    preprocess: nn.Module | None = None,
    source_size: int = 32,
    mappers: Mapping[str, nn.Module] | None = None,
    formats: str | Iterable[str] = FORMATS,
    verify: bool = True,
    device: str = "auto",
    max_batch_size: int = 64,
    random_init: bool = False,
    description: Mapping[str, Any] | None = None,
    real_images: np.ndarray | Sequence[np.ndarray] | None = None,
    real_embeddings: np.ndarray | None = None,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> ExportResult:
    """Export a feature extractor (and optionally preprocessing and mappers) as a Triton repository.

    Parameters
    ----------
    out : path
        The model repository folder (created; existing model files are replaced atomically).
    extractor : nn.Module
        Normalised float32 ``[N, 3, S, S]`` -> float32 ``[N, D]`` (e.g. ``LoadedModel.extractor``).
    input_size : int
        ``S``.
    preprocess : nn.Module, optional
        uint8 ``[N, H, W, 3]`` -> normalised ``[N, 3, S, S]`` (:class:`dinomap.embed.preprocess.Preprocess`);
        with it the raw-pixel ``dino_pipeline`` (and a pixels -> 2-D model per mapper) is exported.
    source_size : int
        The preprocessing's bottleneck size (32), used for test inputs only; 0 when none.
    mappers : mapping of str to nn.Module, optional
        ``{method: module}`` of fitted 2-D mappers (``D -> 2``), e.g. from ``to_torch_module()``.
    formats : str or iterable of str
        ``"torchscript"``, ``"onnx"`` or both (``"torchscript,onnx"``).
    verify : bool
        Check every exported file, and the preprocessing of each raw-pixel model on its own, in
        a fresh process (see :mod:`dinomap.export.verify`); a failure raises
        :class:`VerificationError` after ``verification.json`` and ``dinomap_export.json``
        record it. With ``random_init`` a mapper that runs but differs beyond ``atol`` is
        waived instead (recorded as such, ``status: "passed_with_waivers"``).
    device : {"auto", "cpu", "cuda"}
        Device Triton should run the models on (``instance_group`` kind). Export runs on the CPU.
    max_batch_size : int
        Triton's ``max_batch_size``; dynamic batching is switched on.
    random_init : bool
        The weights are random: stamped in the metadata, README, and every ``config.pbtxt``.
    description : mapping, optional
        Extra metadata (``model``, ``weights``, ``preprocessing``, ``source_run``...).
    real_images : uint8 array (n, H, W, 3) or list of them, optional
        Real images for verification (up to 4 of the first image's size are used).
    real_embeddings : float32 array (n, D), optional
        Real embeddings for verifying the mappers (default: the eager pipeline on ``real_images``).
    atol : float
        Verification tolerance (max abs difference from eager).
    seed : int
        Seed of the random test inputs.

    Returns
    -------
    ExportResult

    Examples
    --------
    >>> from dinomap.embed.models import create_encoder
    >>> enc = create_encoder("dinov2-s14", random_init=True, model_kwargs={"depth": 1})
    >>> res = export_models("model_repository", enc.extractor, random_init=True)  # doctest: +SKIP
    >>> res.passed  # doctest: +SKIP
    True
    """
    fmts = parse_formats(formats)
    dev = _resolve_device(device)
    check_positive_int("input_size", input_size, minimum=1)
    check_positive_int("max_batch_size", max_batch_size)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    extractor = _on_cpu(extractor)
    preprocess = _on_cpu(preprocess) if preprocess is not None else None
    images = _same_size_batch(real_images, 4) if real_images is not None else None
    desc = dict(description or {})
    if random_init:
        logger.warning(
            "exporting RANDOM-INIT weights to %s: the models are marked as such everywhere", root
        )
    targets, embed_dim = _build_targets(
        extractor, input_size, preprocess, int(source_size), dict(mappers or {}), images,
        real_embeddings, seed,
    )  # fmt: skip
    common: dict[str, Any] = {
        "random_init": bool(random_init),
        "dinomap_model": (desc.get("model") or {}).get("name", type(extractor).__name__),
        "weights_source": (desc.get("weights") or {}).get(
            "source", "random-init" if random_init else "unknown"
        ),
    }
    if desc.get("preprocessing"):
        common["preprocessing"] = desc["preprocessing"]
    exported: list[ExportedModel] = []
    checks: list[ModelCheck] = []
    for target in targets:
        expected_cache: dict[int, np.ndarray] = {}
        probe = _eager(target.module, target.example.numpy()[:1])
        for fmt in fmts:
            model = _write_model(
                root, target, fmt, output_dim=int(probe.shape[1]), device=dev,
                max_batch_size=max_batch_size, common=common,
            )  # fmt: skip
            exported.append(model)
            if not verify:
                continue
            cases = []
            for i, (label, x) in enumerate(target.cases):
                if not model.inputs[0].matches(x):
                    logger.info("skipping check %r of %s: input does not fit %s", label, model.name,
                                model.inputs[0].dims)  # fmt: skip
                    continue
                if i not in expected_cache:
                    expected_cache[i] = _eager(target.module, x)
                cases.append(VerificationCase(label, x, expected_cache[i]))
            checks.append(
                ModelCheck(model.name, fmt, model.path, INPUT_NAME, OUTPUT_NAME, tuple(cases))
            )
    report: VerificationReport | None = None
    if verify:
        with tempfile.TemporaryDirectory(prefix="dinomap-preprocess-") as tmp:
            if preprocess is not None:
                pipe_target = next(t for t in targets if t.kind == "pipeline")
                checks += _preprocessing_checks(
                    Path(tmp),
                    preprocess,
                    pipe_target,
                    [m for m in exported if m.kind == "pipeline"],
                )
            report = verify_models(checks, atol=atol)
        if random_init:
            _waive_random_init_mappers(report, exported)
        atomic_write_json(root / VERIFICATION_FILE, report.to_dict())
        for diag in report.diagnostics:
            if not diag.get("passed"):
                logger.error(
                    "the preprocessing inside %s differs from eager PyTorch by up to %s "
                    "(one grey level is about 0.017 after normalisation); see %s",
                    diag["name"].split("[")[0],
                    "n/a" if diag.get("max_abs_diff") is None else f"{diag['max_abs_diff']:.3g}",
                    root / VERIFICATION_FILE,
                )
    meta: dict[str, Any] = {
        "dinomap_version": _version(),
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "random_init": bool(random_init),
        **desc,
        "embed_dim": embed_dim,
        "input_size": int(input_size),
        "device": dev,
        "instance_kind": "KIND_GPU" if dev == "cuda" else "KIND_CPU",
        "max_batch_size": int(max_batch_size),
        "models": [m.to_dict(root) for m in exported],
        "verification": None
        if report is None
        else {
            "passed": report.passed,
            "status": report.status,
            "atol": report.atol,
            "file": VERIFICATION_FILE,
            "max_abs_diff": report.verified_max_abs_diff(),
            "waived": report.waived,
            "failed": report.failed,
            "diagnostics": {
                m["name"]: {"passed": m.get("passed"), "max_abs_diff": m.get("max_abs_diff")}
                for m in report.diagnostics
            },
        },
    }
    _remove_stale_models(root, {m.name for m in exported})
    atomic_write_json(root / METADATA_FILE, meta)
    atomic_write_text(root / README_FILE, _readme(meta))
    result = ExportResult(root, exported, bool(random_init), report, meta)
    if report is not None and not report.passed:
        detail = report.worker.get("error") or ", ".join(report.failed)
        raise VerificationError(
            f"exported models do not match the eager model within {atol:g}: {detail}. "
            f"See {root / VERIFICATION_FILE} (the files stay in {root} for inspection; "
            f"{METADATA_FILE} records the export as failed).",
            report=report,
        )
    return result


RANDOM_INIT_WAIVER = (
    "waived: random-init embeddings are nearly identical, so the mapper's input "
    "standardisation divides by a tiny spread and amplifies float32 rounding; with trained "
    "weights this check is strict"
)


def _waive_random_init_mappers(
    report: VerificationReport, exported: Sequence[ExportedModel]
) -> None:
    """On a random-init export, a mapper (or pixels -> map chain) beyond tolerance does not fail
    the export: it is kept as ``passed: false`` with the reason in ``waived``, and logged. Only a
    difference is waived (a model that did not load, crashed, gave the wrong shape or a
    non-finite value still fails); the extractor, raw-pixel models and diagnostics stay strict."""
    kinds = {m.name: m.kind for m in exported}
    waived = [
        m["name"]
        for m in report.models
        if not m.get("passed")
        and kinds.get(m["name"]) in {"mapper", "pixels_to_map"}
        and "error" not in m
        and m.get("cases")
        and all(c.get("passed") or (c.get("finite") and "error" not in c) for c in m["cases"])
    ]
    if waived:
        logger.warning(
            "verification beyond tolerance for %s (%s)", ", ".join(waived), RANDOM_INIT_WAIVER
        )
        report.waive(waived, RANDOM_INIT_WAIVER)


def _remove_stale_models(root: Path, keep: set[str]) -> None:
    """Delete model folders that an earlier dinomap export listed and this one did not write
    (a mapper no longer fitted, a format not asked for), so Triton does not serve them."""
    import json
    import shutil

    previous = root / METADATA_FILE
    if not previous.is_file():
        return
    try:
        names = [str(m["name"]) for m in json.loads(previous.read_text("utf-8"))["models"]]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name in names:
        folder = root / name
        if name not in keep and _NAME_RE.match(name) and (folder / "config.pbtxt").is_file():
            shutil.rmtree(folder)
            logger.info("removed %s, exported earlier but not now", folder)


def _version() -> str:
    from dinomap import __version__

    return __version__


def _demo_images(n: int) -> np.ndarray | None:
    """A few real images from the built-in demo set, for verification (None if unavailable)."""
    try:
        from dinomap.data import demo_source

        source = demo_source()
        return np.stack([source.load(i)[0] for i in range(min(n, len(source)))])
    except Exception as exc:  # the demo set is optional for export
        logger.info("no demo images for verification (%s)", exc)
        return None


def export_encoder(
    out: str | os.PathLike[str],
    encoder: LoadedModel,
    *,
    preprocess: nn.Module | None = None,
    source_size: int = 32,
    mappers: Mapping[str, nn.Module] | None = None,
    real_images: np.ndarray | Sequence[np.ndarray] | None = None,
    description: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ExportResult:
    """Export a :class:`~dinomap.embed.models.LoadedModel` (see :func:`export_models`).

    ``preprocess`` defaults to the original pipeline's (``source_size`` bottleneck, then the
    encoder's input size, mean and std); ``real_images`` to a few built-in demo images.

    Examples
    --------
    >>> from dinomap.embed.models import create_encoder
    >>> enc = create_encoder("dinov2-s14", random_init=True)
    >>> export_encoder("model_repository", enc, formats="torchscript")  # doctest: +SKIP
    """
    from dinomap.embed.preprocess import Preprocess

    if preprocess is None:
        preprocess = Preprocess(
            encoder.input_size, encoder.mean, encoder.std, source_size=source_size
        )
    if real_images is None:
        real_images = _demo_images(4)
    desc: dict[str, Any] = {
        "model": encoder.describe(),
        "weights": encoder.weights_dict(),
        "preprocessing": {
            "source_size": int(getattr(preprocess, "source_size", source_size)),
            "input_size": encoder.input_size,
            "mean": list(encoder.mean),
            "std": list(encoder.std),
        },
        **dict(description or {}),
    }
    return export_models(
        out,
        encoder.extractor,
        input_size=encoder.input_size,
        preprocess=preprocess,
        source_size=int(getattr(preprocess, "source_size", source_size)),
        mappers=mappers,
        random_init=encoder.weights.random_init,
        description=desc,
        real_images=real_images,
        **kwargs,
    )


def load_run_mappers(run_dir: str | os.PathLike[str]) -> dict[str, nn.Module]:
    """The fitted neural mappers saved under ``RUN/mappers/<method>/``, as plain modules.

    Only PyTorch mappers (``"backend": "torch"`` in their ``config.json``: parametric UMAP, the
    t-SNE approximator) can be exported; classic ones (PCA, t-SNE, UMAP) are passed over. Returns
    an empty dict when the run has none; a mapper that cannot be loaded is skipped with a warning.
    """
    import json

    base = Path(run_dir) / MAPPERS_DIR
    if not base.is_dir():
        return {}
    found: dict[str, nn.Module] = {}
    for folder in sorted(p for p in base.iterdir() if (p / "config.json").is_file()):
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            if config.get("backend") != "torch":
                logger.debug("not exportable (no PyTorch network): %s", folder)
                continue
            import dinomap.parametric as parametric

            cls = getattr(parametric, str(config.get("class")), None)
            if cls is None or not hasattr(cls, "load"):
                raise DinomapError(f"unknown neural mapper class {config.get('class')!r}")
            mapper = cls.load(folder, device="cpu")
            method = _check_name("mapper", str(config.get("method") or folder.name))
            found[method] = mapper.to_torch_module()
        except Exception as exc:  # one broken mapper must not stop the export
            logger.warning("skipping mapper %s: %s", folder, exc)
    return found


def export_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    formats: str | Iterable[str] = FORMATS,
    verify: bool = True,
    device: str = "auto",
    max_batch_size: int = 64,
    include_mappers: bool = True,
    n_real: int = 4,
) -> ExportResult:
    """Export a run's model, preprocessing and fitted mappers as a verified Triton repository.

    Parameters
    ----------
    run_dir : path
        A dinomap run directory (``run.json``; ``mappers/`` when neural maps were fitted).
    out : path, optional
        Repository folder; ``RUN_DIR/model_repository`` by default.
    formats, verify, device, max_batch_size
        See :func:`export_models`.
    include_mappers : bool
        Also export the run's parametric UMAP / t-SNE approximator (and pixel -> 2-D models).
    n_real : int
        How many of the run's images (and embeddings) to verify with.

    Examples
    --------
    >>> res = export_run("runs/fm", "model_repository")  # doctest: +SKIP
    >>> [m.name for m in res.models][:2]  # doctest: +SKIP
    ['dino_model', 'dino_model_onnx']
    """
    from dinomap.embed import encoder_from_run
    from dinomap.store import load_embeddings, read_run_info

    run = Path(run_dir)
    info = read_run_info(run)
    encoder, preprocess = encoder_from_run(run)
    mappers = load_run_mappers(run) if include_mappers else {}
    stored = None
    try:
        stored = load_embeddings(run)
    except DinomapError as exc:
        logger.info("no stored embeddings to verify the mappers with (%s)", exc)
    real_embeddings = stored.X[: max(n_real, 1) * 2] if stored is not None else None
    paths, real_images = _run_images(info, n_real)
    description: dict[str, Any] = {"source_run": str(run.resolve())}
    if stored is not None and real_images is not None and paths:
        description["consistency_with_run"] = _compare_with_stored(
            encoder.extractor, preprocess, real_images, paths, stored.paths, stored.X, info
        )
    repo = Path(out) if out is not None else run / EXPORT_DIR
    start = time.perf_counter()
    section: dict[str, Any] = {
        "repository": str(repo.resolve()),
        "formats": list(parse_formats(formats)),
    }
    try:
        result = export_encoder(
            repo,
            encoder,
            preprocess=preprocess,
            mappers=mappers,
            real_images=real_images,
            real_embeddings=real_embeddings,
            description=description,
            formats=formats,
            verify=verify,
            device=device,
            max_batch_size=max_batch_size,
        )
    except VerificationError as exc:
        section.update(verified_against_eager=False, verification="failed")
        if exc.report is not None:
            section.update(_verification_section(exc.report))
        section["seconds"] = round(time.perf_counter() - start, 2)
        _record_in_run(run, section)
        raise
    section.update(
        models=[m.name for m in result.models],
        random_init=result.random_init,
        verified_against_eager=None,
        verification="not run",
    )
    if result.verification is not None:
        section.update(_verification_section(result.verification))
    cons = description.get("consistency_with_run")
    section["consistent_with_run"] = cons.get("consistent") if cons else None
    section["seconds"] = round(time.perf_counter() - start, 2)
    _record_in_run(run, section)
    return result


def _verification_section(report: VerificationReport) -> dict[str, Any]:
    """What ``run.json``'s export section says about verification.

    ``verified_against_eager`` is True only when every exported model and diagnostic passed;
    with a waiver it is False, ``verification`` is ``"passed_with_waivers"``, ``max_abs_diff``
    covers the verified models only and ``waived`` lists the others with their difference and
    reason.
    """
    diffs = [d for d in report.verified_max_abs_diff().values() if d is not None]
    out: dict[str, Any] = {
        "verified_against_eager": report.status == "passed",
        "verification": report.status,
        "max_abs_diff": max(diffs, default=None),
        "tolerance": report.atol,
    }
    if report.waived:
        out["waived"] = report.waived
    if report.failed:
        out["failed"] = report.failed
    return out


def _record_in_run(run: Path, section: Mapping[str, Any]) -> None:
    """Write the export section into the run's ``run.json`` (read fresh, written atomically)."""
    from dinomap.store import update_run_info

    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    update_run_info(run, lambda info: info.update(export={**dict(section), "created": created}))


def _run_images(info: Mapping[str, Any], n: int) -> tuple[list[str], np.ndarray | None]:
    """A few images of the run's own source with their stored paths, else demo images."""
    source_info = info.get("source") or {}
    spec = source_info.get("spec") or source_info.get("root") or source_info.get("manifest")
    spec = spec or source_info.get("kind")
    if spec:
        try:
            from dinomap.data import open_source

            source = open_source(
                spec, data_dir=source_info.get("data_dir"), split=source_info.get("split", "all")
            )
            items = source.items
            picked: list[tuple[str, np.ndarray]] = []
            for i in range(len(items)):
                try:
                    rgb = source.load(i)[0]
                except Exception:  # a bad image: take the next one
                    continue
                if not picked or rgb.shape == picked[0][1].shape:
                    picked.append((items[i].path, rgb))
                if len(picked) >= n:
                    break
            if picked:
                return [p for p, _ in picked], np.stack([im for _, im in picked])
        except Exception as exc:
            logger.info("cannot reopen the run's source %r for verification (%s)", spec, exc)
    return [], _demo_images(n)


#: The exported raw-pixel model reproduces the run when, for every compared image, its embedding
#: and the stored one point the same way once the mean of the run's stored embeddings is taken
#: off both (cosine at least this).
CONSISTENCY_MIN_CENTERED_COSINE = 0.99


def _compare_with_stored(
    extractor: nn.Module,
    preprocess: nn.Module,
    images: np.ndarray,
    paths: Sequence[str],
    stored_paths: Sequence[str],
    stored_X: np.ndarray,
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """How closely the raw-pixel model (eager) reproduces the run's stored embeddings.

    The plain cosine says little: random-init embeddings are nearly collinear, so an export that
    skips the 32x32 bottleneck or normalises with other statistics still scores above 0.99999.
    The verdict (``consistent``) uses the cosine *after centering*: the mean of all the run's
    stored embeddings is taken off both sides, so only what tells images apart is compared
    (on the tests' random-init model: other weights give about -0.1, swapped colour channels,
    a missing bottleneck or another mean/std 0.37 - 0.85, the run's own weights and
    preprocessing 0.998).
    Not consistent is logged as a warning and recorded, and does not stop the export: a run
    embedded in bf16 on a GPU cannot be reproduced to the precision that separates random-init
    embeddings.
    """
    index = {p: i for i, p in enumerate(stored_paths)}
    rows = [(k, index[p]) for k, p in enumerate(paths) if p in index]
    if not rows:
        return {"n_images": 0, "consistent": None}
    with torch.no_grad():
        ours = extractor(preprocess(torch.from_numpy(images))).numpy()
    a = ours[[k for k, _ in rows]].astype(np.float64)
    b = stored_X[[i for _, i in rows]].astype(np.float64)

    def cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        den = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
        return np.asarray((u * v).sum(1) / np.where(den > 0, den, np.inf))

    centered: float | None = None
    if len(stored_X) > 1:
        mean = np.asarray(stored_X.mean(axis=0, dtype=np.float64))
        if np.linalg.norm(b - mean, axis=1).min() > 0:
            centered = float(cosine(a - mean, b - mean).min())
    info = run_info or {}
    device = info.get("device")
    out: dict[str, Any] = {
        "n_images": len(rows),
        "consistent": None if centered is None else centered >= CONSISTENCY_MIN_CENTERED_COSINE,
        "min_centered_cosine": centered,
        "threshold": CONSISTENCY_MIN_CENTERED_COSINE,
        "max_abs_diff": float(np.abs(a - b).max()),
        "max_relative_error": float(
            (np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)).max()
        ),
        "min_cosine": float(cosine(a, b).min()),
        "run_precision": info.get("precision"),
        "run_device": device.get("type") if isinstance(device, Mapping) else device,
        "note": "exported raw-pixel model (eager, fp32, CPU) vs the embeddings stored by the run; "
        "consistent when the cosine after taking off the mean of the stored embeddings is >= "
        f"{CONSISTENCY_MIN_CENTERED_COSINE} for every image (the plain cosine, min_cosine, is "
        "near 1 for any random-init embeddings)",
    }
    if out["consistent"] is False:
        logger.warning(
            "the exported raw-pixel model does not reproduce the run's stored embeddings "
            "(min cosine after centering %.4f < %s over %d images; the run embedded with %s on "
            "%s): check the weights and preprocessing",
            centered, CONSISTENCY_MIN_CENTERED_COSINE, len(rows), out["run_precision"],
            out["run_device"],
        )  # fmt: skip
    return out
