"""Writing the model repository: each model's file and ``config.pbtxt``, ``dinomap_export.json``
(the metadata), ``README.md``, and the removal of models an earlier export left behind.

Each member folder holds ``config.pbtxt`` and ``1/model.pt`` (TorchScript, ``pytorch_libtorch``)
or ``1/model.onnx`` (``onnxruntime_onnx``); an ensemble folder holds ``config.pbtxt``
(``platform: "ensemble"``, ``ensemble_scheduling``) and an empty ``1/``. Tensors are named
``INPUT__0`` / ``OUTPUT__0``.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinomap._version import __version__
from dinomap.exceptions import DinomapError
from dinomap.export.targets import (
    INPUT_NAME,
    NAME_RE,
    OUTPUT_NAME,
    EnsembleTarget,
    ExportedModel,
    Target,
)
from dinomap.export.triton import (
    PLATFORMS,
    EnsembleStep,
    TensorSpec,
    TritonEnsembleConfig,
    TritonModelConfig,
    render_config,
    render_ensemble_config,
)
from dinomap.export.verify import VerificationReport
from dinomap.store import atomic_write_bytes, atomic_write_json, atomic_write_text
from dinomap.store.layout import EXPORT_METADATA_FILE as METADATA_FILE
from dinomap.store.layout import EXPORT_README_FILE as README_FILE
from dinomap.store.layout import VERIFICATION_FILE

__all__ = [
    "CONSISTENCY_MIN_CENTERED_COSINE",
    "METADATA_FILE",
    "README_FILE",
    "VERIFICATION_FILE",
    "member_name",
    "stale_models",
]

logger = logging.getLogger(__name__)

#: The exported raw-pixel model reproduces the run when, for every compared image, its embedding
#: and the stored one point the same way once the mean of the run's stored embeddings is taken
#: off both (cosine at least this).
CONSISTENCY_MIN_CENTERED_COSINE = 0.99


def _onnx_input_dims(data: bytes) -> tuple[tuple[int, ...], bool]:
    """Dims (without batch, -1 for symbolic) of the ONNX graph's first input; batch dynamic?"""
    import onnx

    proto = onnx.load_from_string(data)
    dims = [
        d.dim_value if d.HasField("dim_value") else -1
        for d in proto.graph.input[0].type.tensor_type.shape.dim
    ]
    return tuple(int(d) for d in dims[1:]), dims[0] == -1


def _serialise(target: Target, fmt: str, name: str) -> tuple[bytes, str, str, tuple[int, ...]]:
    """``target`` as a TorchScript or ONNX file: its bytes, method, note and input dims."""
    from dinomap.export.onnx import to_onnx
    from dinomap.export.torchscript import to_torchscript, torchscript_bytes

    dims = target.input_dims
    if fmt == "torchscript":
        scripted = to_torchscript(target.module, target.example)
        data, method, note = torchscript_bytes(scripted.module), scripted.method, scripted.note
        if method == "trace" and -1 in dims:
            dims = tuple(int(v) for v in target.example.shape[1:])
            note += f"; input size fixed to {list(dims)} by tracing"
        return data, method, note, dims
    exported = to_onnx(
        target.module,
        target.onnx_example,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        dynamic_dims=target.onnx_dynamic,
    )
    dims, batch_dynamic = _onnx_input_dims(exported.data)
    if not batch_dynamic:
        raise DinomapError(f"the ONNX export of {name} has a fixed batch axis; Triton needs -1.")
    return exported.data, exported.method, exported.note, dims


def write_model(
    root: Path,
    target: Target,
    fmt: str,
    *,
    output_dims: tuple[int, ...],
    device: str,
    max_batch_size: int,
    common: Mapping[str, Any],
) -> ExportedModel:
    """Write ``target`` in format ``fmt``: ``root/<name>/1/<file>`` and its ``config.pbtxt``."""
    name = target.name if fmt == "torchscript" else f"{target.name}_onnx"
    platform, filename = PLATFORMS[fmt]
    folder = root / name
    data, method, note, dims = _serialise(target, fmt, name)
    path = atomic_write_bytes(folder / "1" / filename, data)
    inputs = (TensorSpec(INPUT_NAME, target.input_dtype, tuple(dims)),)
    outputs = (TensorSpec(OUTPUT_NAME, "float32", tuple(int(d) for d in output_dims)),)
    params = {**common, "dinomap_kind": target.kind, "export_method": method, **target.parameters}
    config = TritonModelConfig.make(
        name, platform, inputs, outputs, max_batch_size=max_batch_size, device=device,
        parameters=params,
    )  # fmt: skip
    config_path = atomic_write_text(folder / "config.pbtxt", render_config(config))
    logger.info("exported %s (%s, %s) to %s", name, fmt, method, path)
    return ExportedModel(name, fmt, target.kind, path, config_path, method, inputs, outputs, note)


#: The ensemble tensor that carries a member's output to the next step.
_INTERMEDIATE = {"preprocess": "preprocessed", "dino_model": "features"}


def member_name(target_name: str, fmt: str) -> str:
    """The Triton model name of a target in a format (``_onnx`` suffix for ONNX)."""
    return target_name if fmt == "torchscript" else f"{target_name}_onnx"


def _ensemble_steps(steps: Sequence[str], fmt: str) -> tuple[EnsembleStep, ...]:
    """The ``ensemble_scheduling`` steps chaining ``steps`` (target names) in format ``fmt``."""
    out: list[EnsembleStep] = []
    tensor = INPUT_NAME
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        produced = OUTPUT_NAME if last else _INTERMEDIATE.get(step, f"{step}_output")
        out.append(
            EnsembleStep(
                member_name(step, fmt), ((INPUT_NAME, tensor),), ((OUTPUT_NAME, produced),)
            )
        )
        tensor = produced
    return tuple(out)


def write_ensemble(
    root: Path,
    target: EnsembleTarget,
    fmt: str,
    members: Mapping[str, ExportedModel],
    *,
    max_batch_size: int,
    common: Mapping[str, Any],
) -> ExportedModel:
    """Write ``root/<name>/config.pbtxt`` of an ensemble over the ``fmt`` members (by Triton
    name in ``members``) and its empty version folder; a model file an earlier export left in
    that folder is removed (Triton would not read it, but it would weigh on the repository)."""
    name = member_name(target.name, fmt)
    folder = root / name
    steps = _ensemble_steps(target.steps, fmt)
    first, last = members[steps[0].model_name], members[steps[-1].model_name]
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    for stale in version.iterdir():
        if stale.is_file() and stale.name in {f for _, f in PLATFORMS.values()}:
            stale.unlink()
            logger.info("removed %s: %s is an ensemble now", stale, name)
    params = {
        **common, "dinomap_kind": target.kind, "export_method": "ensemble",
        "ensemble_steps": [s.model_name for s in steps], **target.parameters,
    }  # fmt: skip
    config = TritonEnsembleConfig.make(
        name, first.inputs, last.outputs, steps, max_batch_size=max_batch_size, parameters=params
    )
    config_path = atomic_write_text(folder / "config.pbtxt", render_ensemble_config(config))
    logger.info("wrote ensemble %s (%s)", name, " -> ".join(s.model_name for s in steps))
    return ExportedModel(
        name, fmt, target.kind, version, config_path, "ensemble", first.inputs, last.outputs,
        steps=tuple(s.model_name for s in steps),
    )  # fmt: skip


def common_parameters(
    desc: Mapping[str, Any], extractor: nn.Module, random_init: bool
) -> dict[str, Any]:
    """The ``parameters`` every ``config.pbtxt`` of the repository carries."""
    common: dict[str, Any] = {
        "random_init": bool(random_init),
        "dinomap_model": (desc.get("model") or {}).get("name", type(extractor).__name__),
        "weights_source": (desc.get("weights") or {}).get(
            "source", "random-init" if random_init else "unknown"
        ),
    }
    if desc.get("preprocessing"):
        common["preprocessing"] = desc["preprocessing"]
    return common


def _verification_metadata(report: VerificationReport | None) -> dict[str, Any] | None:
    """The ``verification`` entry of ``dinomap_export.json`` (None when not run)."""
    if report is None:
        return None
    return {
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
    }


def export_metadata(
    root: Path,
    exported: Sequence[ExportedModel],
    report: VerificationReport | None,
    desc: Mapping[str, Any],
    *,
    random_init: bool,
    embed_dim: int,
    input_size: int,
    device: str,
    max_batch_size: int,
) -> dict[str, Any]:
    """The content of ``dinomap_export.json``."""
    return {
        "dinomap_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "random_init": bool(random_init),
        **desc,
        "embed_dim": embed_dim,
        "input_size": int(input_size),
        "device": device,
        "instance_kind": "KIND_GPU" if device == "cuda" else "KIND_CPU",
        "max_batch_size": int(max_batch_size),
        "models": [m.to_dict(root) for m in exported],
        "members": [m.name for m in exported if not m.is_ensemble],
        "ensembles": {m.name: list(m.steps) for m in exported if m.is_ensemble},
        "verification": _verification_metadata(report),
    }


def write_repository_files(
    root: Path,
    exported: Sequence[ExportedModel],
    meta: Mapping[str, Any],
    report: VerificationReport | None = None,
) -> None:
    """Remove stale model folders, then write ``verification.json`` (when verified),
    ``dinomap_export.json`` and ``README.md``."""
    _remove_stale_models(root, {m.name for m in exported})
    if report is not None:
        atomic_write_json(root / VERIFICATION_FILE, report.to_dict())
    atomic_write_json(root / METADATA_FILE, meta)
    atomic_write_text(root / README_FILE, _readme(meta))


def _diff_text(diff: float | None) -> str:
    return "n/a" if diff is None else f"{diff:.2e}"


def _readme(meta: Mapping[str, Any]) -> str:
    lines = ["# dinomap model repository (NVIDIA Triton Inference Server)", ""]
    if meta["random_init"]:
        lines += [
            "> **WARNING: RANDOM-INIT WEIGHTS.** These models were exported with random, untrained",
            "> weights. Their outputs are meaningless; use them to test serving only.",
            "",
        ]
    lines += _readme_models(meta)
    lines.append("")
    lines += _readme_verification(meta.get("verification"))
    lines += _readme_consistency(meta.get("consistency_with_run"))
    lines += [
        "",
        "Serve it: `docker run --rm -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD:/models "
        "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models`",
        "",
    ]
    return "\n".join(lines)


def _readme_models(meta: Mapping[str, Any]) -> list[str]:
    """The README's provenance lines and its table of models."""
    model = meta.get("model") or {}
    lines = [
        f"- model: `{model.get('name', '?')}` (`{model.get('timm_name', '?')}`), weights: "
        f"`{(meta.get('weights') or {}).get('source', '?')}`",
        f"- exported with dinomap {meta['dinomap_version']}, torch {meta['torch_version']}, "
        f"{meta['created']}",
        f"- instance kind: `{meta['instance_kind']}`, max_batch_size {meta['max_batch_size']}",
        "",
        "| model | platform | input | output | made by / steps |",
        "|---|---|---|---|---|",
    ]
    for m in meta["models"]:
        i, o = m["inputs"][0], m["outputs"][0]
        made = " -> ".join(f"`{s}`" for s in m["steps"]) if m.get("steps") else m["method"]
        lines.append(
            f"| `{m['name']}` | {m['platform']} | {i['name']} {i['dtype']} [N, "
            f"{', '.join(map(str, i['dims']))}] | {o['name']} {o['dtype']} [N, "
            f"{', '.join(map(str, o['dims']))}] | {made} |"
        )
    lines += [
        "",
        "The `ensemble` models hold no weights: Triton runs their members in the order shown "
        "(`ensemble_scheduling` in their `config.pbtxt`), so the ViT exists once per format.",
    ]
    return lines


def _readme_verification(ver: Mapping[str, Any] | None) -> list[str]:
    """The README's verification lines: status, then each model, waiver and diagnostic."""
    if ver is None:
        return ["Verification: not run."]
    status = str(ver.get("status") or ("passed" if ver["passed"] else "failed"))
    lines = [
        f"Verification ({VERIFICATION_FILE}): {status.replace('_', ' ').upper()}, "
        f"max |exported - eager| <= {ver['atol']:g} required, in a fresh process without dinomap."
    ]
    failed = set(ver.get("failed") or ())
    for name, diff in ver["max_abs_diff"].items():
        mark = "FAILED, " if name in failed else ""
        lines.append(f"- `{name}`: {mark}{_diff_text(diff)}")
    for name, w in (ver.get("waived") or {}).items():
        lines.append(f"- `{name}`: WAIVED, {_diff_text(w.get('max_abs_diff'))} ({w['reason']})")
    for name, diag in (ver.get("diagnostics") or {}).items():
        lines.append(
            f"- diagnostic `{name}`: {'ok' if diag.get('passed') else 'FAILED'}, "
            f"max |diff| {_diff_text(diag.get('max_abs_diff'))}"
        )
    return lines


def _readme_consistency(cons: Mapping[str, Any] | None) -> list[str]:
    """The README's line on the raw-pixel model vs the run's stored embeddings (if compared)."""
    if not cons or not cons.get("n_images"):
        return []
    centered = cons.get("min_centered_cosine")
    return [
        "",
        f"Raw-pixel model vs the run's stored embeddings ({cons['n_images']} images): "
        f"{'CONSISTENT' if cons.get('consistent') else 'NOT CONSISTENT'}, "
        f"min cosine after centering "
        f"{'n/a' if centered is None else f'{centered:.4f}'} "
        f"(>= {cons.get('threshold', CONSISTENCY_MIN_CENTERED_COSINE)} required), "
        f"max |diff| {cons['max_abs_diff']:.2e}, max relative error "
        f"{cons['max_relative_error']:.2e}.",
    ]


def stale_models(previous_metadata: str, keep: set[str]) -> list[str]:
    """The model folders an earlier export's ``dinomap_export.json`` (its text) listed that are
    not in ``keep`` (valid model names only; none when the record cannot be read)."""
    import json

    try:
        names = [str(m["name"]) for m in json.loads(previous_metadata)["models"]]
    except (ValueError, KeyError, TypeError):
        return []
    return [name for name in names if name not in keep and NAME_RE.match(name)]


def _remove_stale_models(root: Path, keep: set[str]) -> None:
    """Delete model folders that an earlier dinomap export listed and this one did not write
    (a mapper no longer fitted, a format not asked for), so Triton does not serve them."""
    import shutil

    previous = root / METADATA_FILE
    try:
        text = previous.read_text("utf-8")
    except OSError:
        return
    for name in stale_models(text, keep):
        folder = root / name
        if (folder / "config.pbtxt").is_file():
            shutil.rmtree(folder)
            logger.info("removed %s, exported earlier but not now", folder)
