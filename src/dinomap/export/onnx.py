"""ONNX export with a dynamic batch axis (and dynamic image sizes for raw-pixel models).

dinomap uses the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``), the
default since PyTorch 2.9: it keeps the raw-pixel pipeline's shape-dependent resize branches
symbolic. The legacy TorchScript-based exporter (``dynamo=False``) is only tried when the dynamo
exporter fails: it is logged as a warning, and the result says which one made the file
(``method``) and why (``note``); :mod:`dinomap.export.writer` writes both to
``dinomap_export.json`` and ``config.pbtxt`` (``export_method``). A legacy export is traced, so
its resize branches are those the example input takes; verification runs it like any other.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinomap.exceptions import DinomapError

__all__ = ["DEFAULT_OPSET", "OnnxExport", "to_onnx"]

logger = logging.getLogger(__name__)

#: Opset 18 is read by onnxruntime >= 1.14, i.e. every Triton release since 23.02.
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class OnnxExport:
    """A serialised ONNX model and how it was made (``method``: ``"dynamo"`` or ``"legacy"``)."""

    data: bytes
    method: str
    opset: int
    note: str = ""


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """The exporter's helpers log every rewrite at INFO; keep them at WARNING while exporting."""
    names = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export")
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(max(logging.WARNING, saved[n]))
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise DinomapError(
            f'ONNX export needs onnx and onnxscript ({exc.name} is missing); pip install "dinomap[export]".'
        ) from exc


def to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    *,
    input_name: str = "INPUT__0",
    output_name: str = "OUTPUT__0",
    dynamic_dims: Mapping[int, str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> OnnxExport:
    """Export an eval-mode module with one tensor input and one tensor output to ONNX bytes.

    Parameters
    ----------
    module : nn.Module
    example : Tensor
        Example input. For a raw-pixel model pick an image size that takes every resize branch
        (not the model's input size), so those branches are in the graph.
    input_name, output_name : str
        Graph tensor names (must match ``config.pbtxt``).
    dynamic_dims : mapping of int to str
        Input axes that stay dynamic, with their names; ``{0: "batch"}`` by default. The output's
        axis 0 is always the batch.
    opset : int
        ONNX opset of the default domain.

    Returns
    -------
    OnnxExport

    Examples
    --------
    >>> out = to_onnx(nn.Linear(4, 2).eval(), torch.zeros(2, 4))
    >>> out.method
    'dynamo'
    """
    _require_onnx()
    module = module.eval()
    dims = dict(dynamic_dims or {0: "batch"})
    try:
        shapes = {
            axis: torch.export.Dim(name, min=1, max=1 << 20 if axis == 0 else 1 << 15)
            for axis, name in dims.items()
        }
        with warnings.catch_warnings(), _quiet_exporter_logs():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=(shapes,),
                opset_version=opset,
                external_data=False,
                verbose=False,
                report=False,
            )
        if program is None:  # pragma: no cover - dynamo=True always returns a program
            raise RuntimeError("torch.onnx.export returned no program")
        proto = program.model_proto
        _rename_output_batch(proto, dims.get(0, "batch"))
        _lower_ir_version(proto)
        return OnnxExport(proto.SerializeToString(), "dynamo", opset)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        logger.warning(
            "the torch.export-based ONNX exporter failed for %s (%s); trying the legacy exporter.",
            type(module).__name__,
            reason[:300],
        )
    axes = {input_name: dict(dims), output_name: {0: dims.get(0, "batch")}}
    with tempfile.TemporaryDirectory(prefix="dinomap-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), _quiet_exporter_logs():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes=axes,
                opset_version=opset,
            )
        data = path.read_bytes()
    return OnnxExport(data, "legacy", opset, note=f"dynamo exporter failed ({reason[:300]})")


#: IR version 8 (ONNX 1.13) is the first with opset 18; onnxruntime >= 1.14 reads it.
_MIN_IR_VERSION = 8


def _lower_ir_version(proto: Any) -> None:
    """Stamp the lowest IR version that holds the model, so older onnxruntime builds (those of
    older Triton releases) load it; keep the exporter's when the checker refuses the lower one."""
    import onnx

    original = int(proto.ir_version)
    if original <= _MIN_IR_VERSION:
        return
    proto.ir_version = _MIN_IR_VERSION
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        logger.info("keeping ONNX IR version %d (%s)", original, exc)
        proto.ir_version = original


def _rename_output_batch(proto: object, name: str) -> None:
    """Name the output's symbolic batch axis like the input's (cosmetic, for readers)."""
    graph = getattr(proto, "graph", None)
    if graph is None:
        return
    for out in graph.output:
        shape = out.type.tensor_type.shape
        if len(shape.dim) and shape.dim[0].dim_param:
            shape.dim[0].dim_param = name
