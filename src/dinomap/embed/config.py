"""How images become embeddings: :class:`EmbedConfig`, the model names, and what a run did.

Light on purpose (no torch, no OpenCV): the CLI builds its options from this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dinomap._validation import check_choice, check_positive_int
from dinomap.exceptions import InvalidParameterError

__all__ = [
    "CALIBRATION_IMAGES",
    "COMPILE_MIN_IMAGES",
    "DEFAULT_MODEL",
    "DRIFT_CHECK_IMAGES",
    "DRIFT_MIN_MEAN_COSINE",
    "MODEL_ALIASES",
    "OPENVINO_MIN_IMAGES",
    "PRECISIONS",
    "RUNTIMES",
    "EmbedConfig",
    "EmbedResult",
]

#: Short names users can type, mapped to timm model names.
MODEL_ALIASES: dict[str, str] = {
    "dinov2-s14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2-b14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2-l14": "vit_large_patch14_dinov2.lvd142m",
    "dinov2-g14": "vit_giant_patch14_dinov2.lvd142m",
    "dino-s16": "vit_small_patch16_224.dino",
    "dino-b16": "vit_base_patch16_224.dino",
}
DEFAULT_MODEL = "dinov2-s14"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
RUNTIMES = ("auto", "torch", "openvino")
#: ``runtime="auto"`` runs the model with OpenVINO (when installed) for CPU runs in fp32 of at
#: least this many images: converting takes ~3 s, and OpenVINO saves ~25 ms per image here.
OPENVINO_MIN_IMAGES = 256
#: ``compile=None`` compiles on CUDA from this many images on: below it, the one-off compile
#: (tens of seconds) costs more than it saves. On the CPU it is off (measured here: 90 s to
#: compile ViT-S/14 for a 1.12x speed-up).
COMPILE_MIN_IMAGES = 10_000
#: Images of the run its int8 model is calibrated on (``calibration_size``'s default).
CALIBRATION_IMAGES = 300
#: Images of the run a reduced-precision model is checked on against fp32 before it is used.
DRIFT_CHECK_IMAGES = 64
#: The smallest mean cosine similarity to the fp32 embeddings each reduced precision may have on
#: the check batch; below it the run stops and names ``--precision fp32``.
DRIFT_MIN_MEAN_COSINE = {"bf16": 0.99, "fp16": 0.99, "int8": 0.98}


@dataclass(frozen=True)
class EmbedConfig:
    """Everything that decides how images become embeddings.

    ``model``, weights, ``source_size``, ``input_size`` and the resolved precision form the run's
    fingerprint: a run directory never mixes embeddings made with different ones.
    """

    model: str = DEFAULT_MODEL
    weights: str | None = None
    random_init: bool = False
    init_seed: int = 0  # seed of the random-init weights (random_init=True)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source_size: int | None = 32
    input_size: int = 224
    batch_size: int = 64
    num_workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    shard_size: int = 2048
    flush_seconds: float = 60.0
    compile: bool | None = None  # None: on CUDA for runs of >= COMPILE_MIN_IMAGES images
    runtime: str = "auto"  # see resolve_runtime
    calibration_size: int = CALIBRATION_IMAGES  # images the int8 model is calibrated on

    def validate(self) -> EmbedConfig:
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("input_size", self.input_size, minimum=8)
        check_positive_int("shard_size", self.shard_size)
        check_positive_int("calibration_size", self.calibration_size)
        if self.source_size is not None:
            check_positive_int("source_size", self.source_size)
        if self.num_workers is not None:
            check_positive_int("num_workers", self.num_workers, minimum=0)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("runtime", self.runtime, RUNTIMES)
        if self.weights is not None and self.random_init:
            raise InvalidParameterError("weights and random_init are exclusive; choose one.")
        return self


@dataclass
class EmbedResult:
    """What one call of :func:`embed` did."""

    run_dir: Path
    n_source: int
    n_embedded: int
    n_already_stored: int
    n_failed: int
    errors: list[tuple[str, str]]
    seconds: float
    info: dict[str, Any]

    @property
    def images_per_second(self) -> float:
        return self.n_embedded / self.seconds if self.seconds > 0 else 0.0
