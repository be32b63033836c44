"""Triton Inference Server model configurations (``config.pbtxt``) and repository layout.

A Triton model repository holds one folder per model::

    model_repository/
      dino_model/
        config.pbtxt
        1/model.pt          (pytorch_libtorch)
      dino_model_onnx/
        config.pbtxt
        1/model.onnx        (onnxruntime_onnx)

:func:`render_config` writes the protobuf text format of Triton's ``ModelConfig`` message without
needing Triton: the text is plain and small. :func:`parse_config` reads it back with Triton's own
schema (``tritonclient``'s ``model_config_pb2``), which the tests use to check every file we write.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from dinomap._validation import check_choice, check_positive_int
from dinomap.exceptions import DinomapError, InvalidParameterError

__all__ = [
    "ENSEMBLE_PLATFORM",
    "PLATFORMS",
    "TRITON_DTYPES",
    "EnsembleStep",
    "TensorSpec",
    "TritonEnsembleConfig",
    "TritonModelConfig",
    "load_model_config_schema",
    "parse_config",
    "render_config",
    "render_ensemble_config",
]

#: Export format -> (Triton platform, model file name inside the version folder).
PLATFORMS: dict[str, tuple[str, str]] = {
    "torchscript": ("pytorch_libtorch", "model.pt"),
    "onnx": ("onnxruntime_onnx", "model.onnx"),
}

#: The platform of a Triton ensemble: no model file, ``ensemble_scheduling`` wires members.
ENSEMBLE_PLATFORM = "ensemble"

#: numpy dtype name -> Triton data type.
TRITON_DTYPES: dict[str, str] = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "uint8": "TYPE_UINT8",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a served model.

    Attributes
    ----------
    name : str
        Tensor name (``INPUT__0`` / ``OUTPUT__0``, the libtorch backend's convention).
    dtype : str
        numpy dtype name (``"float32"``, ``"uint8"``).
    dims : tuple of int
        Shape **without** the batch axis; ``-1`` marks a variable size.
    """

    name: str
    dtype: str
    dims: tuple[int, ...]

    @property
    def triton_dtype(self) -> str:
        """Triton's name of :attr:`dtype` (``TYPE_FP32``...)."""
        if self.dtype not in TRITON_DTYPES:
            raise InvalidParameterError(
                f"dtype must be one of {', '.join(TRITON_DTYPES)}; got {self.dtype!r}."
            )
        return TRITON_DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}

    def matches(self, array: np.ndarray) -> bool:
        """True when a batched ``array`` has this dtype and shape (``-1`` matches any size)."""
        if str(array.dtype) != self.dtype or array.ndim != len(self.dims) + 1:
            return False
        return all(d == -1 or d == s for d, s in zip(self.dims, array.shape[1:], strict=True))


@dataclass(frozen=True)
class TritonModelConfig:
    """What :func:`render_config` needs to write one ``config.pbtxt``.

    Parameters
    ----------
    name : str
        Model name; must equal its folder name in the repository.
    platform : str
        ``"pytorch_libtorch"`` or ``"onnxruntime_onnx"``.
    inputs, outputs : sequence of TensorSpec
    max_batch_size : int
        Largest batch Triton forms; dims exclude the batch axis.
    instance_kind : str
        ``"KIND_GPU"`` or ``"KIND_CPU"``.
    instance_count : int
    max_queue_delay_microseconds : int
        How long dynamic batching waits to fill a batch.
    parameters : mapping of str to str
        Free-form key/values, written to ``parameters`` (our metadata: weights, random init...).
    """

    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 64
    instance_kind: str = "KIND_CPU"
    instance_count: int = 1
    max_queue_delay_microseconds: int = 100
    parameters: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def make(
        name: str,
        platform: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        *,
        max_batch_size: int = 64,
        device: str = "cpu",
        instance_count: int = 1,
        max_queue_delay_microseconds: int = 100,
        parameters: Mapping[str, Any] | None = None,
    ) -> TritonModelConfig:
        """Build a config, with the instance kind chosen from ``device`` (``cuda`` -> GPU)."""
        check_choice("platform", platform, [p for p, _ in PLATFORMS.values()])
        check_choice("device", device, ["cpu", "cuda"])
        check_positive_int("max_batch_size", max_batch_size)
        check_positive_int("instance_count", instance_count)
        params = tuple((str(k), _param_value(v)) for k, v in (parameters or {}).items())
        return TritonModelConfig(
            name=name,
            platform=platform,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            max_batch_size=int(max_batch_size),
            instance_kind="KIND_GPU" if device == "cuda" else "KIND_CPU",
            instance_count=int(instance_count),
            max_queue_delay_microseconds=int(max_queue_delay_microseconds),
            parameters=params,
        )


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _quote(text: str) -> str:
    return json.dumps(str(text), ensure_ascii=True)  # protobuf text accepts C-style escapes


def _tensor_block(t: TensorSpec) -> str:
    dims = ", ".join(str(int(d)) for d in t.dims)
    return (
        f"  {{\n    name: {_quote(t.name)}\n    data_type: {t.triton_dtype}\n"
        f"    dims: [ {dims} ]\n  }}"
    )


def render_config(config: TritonModelConfig) -> str:
    """Return the ``config.pbtxt`` text of ``config`` (Triton's ``ModelConfig`` text format).

    Examples
    --------
    >>> cfg = TritonModelConfig.make(
    ...     "dino_model", "pytorch_libtorch",
    ...     [TensorSpec("INPUT__0", "float32", (3, 224, 224))],
    ...     [TensorSpec("OUTPUT__0", "float32", (384,))])
    >>> print(render_config(cfg).splitlines()[1])
    platform: "pytorch_libtorch"
    """
    return _render(
        config.name, config.platform, config.max_batch_size, config.inputs, config.outputs,
        [
            "dynamic_batching {\n"
            f"  max_queue_delay_microseconds: {config.max_queue_delay_microseconds}\n}}",
            "instance_group [\n  {\n"
            f"    count: {config.instance_count}\n    kind: {config.instance_kind}\n  }}\n]",
        ],
        config.parameters,
    )  # fmt: skip


def _render(
    name: str,
    platform: str,
    max_batch_size: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    body: Sequence[str],
    parameters: Sequence[tuple[str, str]],
) -> str:
    """A ``config.pbtxt``: the head every model has, its own ``body`` blocks, its parameters."""
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor_block(t) for t in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_block(t) for t in outputs) + "\n]",
        *body,
    ]
    for key, value in parameters:
        lines.append(
            f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EnsembleStep:
    """One step of an ensemble: the member ``model_name`` and how its tensors are wired.

    ``input_map`` maps the member's input names to ensemble tensor names, ``output_map`` the
    member's output names to ensemble tensor names (Triton's ``input_map`` / ``output_map``).
    """

    model_name: str
    input_map: tuple[tuple[str, str], ...]
    output_map: tuple[tuple[str, str], ...]
    model_version: int = -1


@dataclass(frozen=True)
class TritonEnsembleConfig:
    """What :func:`render_ensemble_config` needs: a ``platform: "ensemble"`` model whose
    ``ensemble_scheduling`` runs ``steps`` in order (no file, no instance group: the members
    carry those)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: tuple[EnsembleStep, ...]
    max_batch_size: int = 64
    parameters: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def make(
        name: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        steps: Sequence[EnsembleStep],
        *,
        max_batch_size: int = 64,
        parameters: Mapping[str, Any] | None = None,
    ) -> TritonEnsembleConfig:
        check_positive_int("max_batch_size", max_batch_size)
        if not steps:
            raise InvalidParameterError(f"ensemble {name!r} needs at least one step; got none.")
        params = tuple((str(k), _param_value(v)) for k, v in (parameters or {}).items())
        return TritonEnsembleConfig(
            name, tuple(inputs), tuple(outputs), tuple(steps), int(max_batch_size), params
        )


def _map_block(key: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [
        f"      {key} {{\n        key: {_quote(k)}\n        value: {_quote(v)}\n      }}"
        for k, v in pairs
    ]


def render_ensemble_config(config: TritonEnsembleConfig) -> str:
    """Return the ``config.pbtxt`` text of an ensemble (``platform: "ensemble"``).

    Examples
    --------
    >>> cfg = TritonEnsembleConfig.make(
    ...     "dino_pipeline", [TensorSpec("INPUT__0", "uint8", (-1, -1, 3))],
    ...     [TensorSpec("OUTPUT__0", "float32", (384,))],
    ...     [EnsembleStep("preprocess", (("INPUT__0", "INPUT__0"),), (("OUTPUT__0", "x"),)),
    ...      EnsembleStep("dino_model", (("INPUT__0", "x"),), (("OUTPUT__0", "OUTPUT__0"),))])
    >>> print(render_ensemble_config(cfg).splitlines()[1])
    platform: "ensemble"
    """
    steps = []
    for step in config.steps:
        body = [
            f"      model_name: {_quote(step.model_name)}",
            f"      model_version: {int(step.model_version)}",
            *_map_block("input_map", step.input_map),
            *_map_block("output_map", step.output_map),
        ]
        steps.append("    {\n" + "\n".join(body) + "\n    }")
    return _render(
        config.name, ENSEMBLE_PLATFORM, config.max_batch_size, config.inputs, config.outputs,
        ["ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"],
        config.parameters,
    )  # fmt: skip


def load_model_config_schema() -> ModuleType:
    """Return Triton's ``model_config_pb2`` module (the ``ModelConfig`` protobuf schema).

    ``tritonclient.grpc`` refuses to import without ``grpcio``, although the schema module itself
    needs protobuf only; it is then loaded from its file directly.
    """
    try:
        from tritonclient.grpc import model_config_pb2

        return model_config_pb2
    except ImportError as exc:
        missing: Exception = exc
    except RuntimeError as exc:  # tritonclient without grpc support
        missing = exc
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise DinomapError(
            'reading config.pbtxt needs tritonclient; pip install "dinomap[dev]" '
            f"(or tritonclient protobuf). ({missing})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    file_spec = importlib.util.spec_from_file_location("_dinomap_triton_model_config_pb2", path)
    if file_spec is None or file_spec.loader is None or not path.is_file():
        raise DinomapError(f"tritonclient is installed but has no {path}. ({missing})")
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> Any:
    """Parse ``config.pbtxt`` text with Triton's ``ModelConfig`` schema; return the message.

    Raises ``google.protobuf.text_format.ParseError`` on anything Triton would refuse to parse.
    """
    from google.protobuf import text_format

    schema = load_model_config_schema()
    return text_format.Parse(text, schema.ModelConfig())
