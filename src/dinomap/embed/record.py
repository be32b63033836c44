"""What ``run.json`` says about the embed stage: versions, the configuration's fingerprint (a
resumed run must repeat it), the sources embedded, and the record written at the start."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dinomap._version import __version__
from dinomap.data.sources import ImageSource
from dinomap.embed.config import EmbedConfig
from dinomap.embed.models import (
    LoadedModel,
    WeightsInfo,
    resolve_model_name,
    sha256_file,
)
from dinomap.exceptions import ConfigMismatchError
from dinomap.store import RUN_FILE, read_run_info, stored_keys, update_run_info

__all__ = [
    "check_same_config",
    "config_fingerprint",
    "new_run_info",
    "now_iso",
    "weights_identity",
    "write_run_info",
]


def _versions() -> dict[str, str]:
    import timm

    return {
        "dinomap": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":  # a CPU driver of a Ray GPU cluster has none itself
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "ray GPUs"
    return platform.processor() or platform.machine()


def config_fingerprint(cfg: EmbedConfig, precision: str, weights_identity: str) -> dict[str, Any]:
    return {
        "model": resolve_model_name(cfg.model),
        "model_kwargs": json.loads(json.dumps(dict(cfg.model_kwargs), default=str)),
        "weights": weights_identity,
        "source_size": cfg.source_size,
        "input_size": cfg.input_size,
        "precision": precision,
    }


def weights_identity(cfg: EmbedConfig) -> str:
    if cfg.random_init:
        return WeightsInfo("random-init", True, seed=cfg.init_seed).identity()
    if cfg.weights is not None:
        path = Path(cfg.weights)
        if not path.is_file():
            from dinomap.exceptions import WeightsUnavailableError

            raise WeightsUnavailableError(f"weights file {path} does not exist.")
        return WeightsInfo("file", False, sha256=sha256_file(path)).identity()
    return "hub"


def _merge_sources(sources: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Every source that fed the run, in order of first use; ``new`` replaces its older self."""
    key = (new.get("kind"), new.get("spec"))
    kept = [s for s in sources if (s.get("kind"), s.get("spec")) != key]
    return [*kept, new]


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Write the embedding stage's sections of run.json; later stages' sections survive."""

    def change(current: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in current.items() if k not in info}, **info}

    update_run_info(run_dir, change, create=True)


def check_same_config(run_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not (run_dir / RUN_FILE).is_file():
        return None
    old = read_run_info(run_dir)
    previous = old.get("fingerprint")
    # A run that stored nothing yet (stopped before its first image, by the drift gate say)
    # holds nothing to mix with: it may start again with other options.
    if previous is not None and previous != fingerprint and stored_keys(run_dir):
        diffs = [
            f"{k}: stored {previous.get(k)!r}, asked {fingerprint.get(k)!r}"
            for k in sorted(set(previous) | set(fingerprint))
            if previous.get(k) != fingerprint.get(k)
        ]
        raise ConfigMismatchError(
            f"{run_dir} holds embeddings made with another configuration ({'; '.join(diffs)}). "
            "Use a new --out directory, or repeat the original options to resume."
        )
    return old


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_info(
    source: str | os.PathLike[str] | ImageSource,
    src: ImageSource,
    limit: int | None,
    previous: dict[str, Any] | None,
    loaded: LoadedModel,
    cfg: EmbedConfig,
    precision: str,
    runtime_report: dict[str, Any],
    device: torch.device,
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """The embedding stage's sections of run.json at the start of a run (status ``running``)."""
    source_entry = {
        **src.describe(),
        "spec": str(source) if not isinstance(source, ImageSource) else src.kind,
        "limit": limit,
    }
    return {
        "dinomap_version": __version__,
        "created": (previous or {}).get("created", now_iso()),
        "updated": now_iso(),
        "status": "running",
        "source": source_entry,
        "sources": _merge_sources(
            (previous or {}).get("sources")
            or ([previous["source"]] if previous and previous.get("source") else []),
            source_entry,
        ),
        "model": loaded.describe(),
        "weights": loaded.weights_dict(),
        "preprocessing": {
            "source_size": cfg.source_size,
            "source_resize": "cv2.resize INTER_LINEAR"
            if cfg.source_size
            else "cv2 INTER_AREA to input size",
            "input_size": cfg.input_size,
            "upsample": "bilinear (torch, on the batch)",
            "mean": list(loaded.mean),
            "std": list(loaded.std),
            "batch_size": cfg.batch_size,
        },
        "precision": precision,
        "runtime": runtime_report,
        "device": {"type": device.type, "name": _device_name(device)},
        "fingerprint": fingerprint,
        "versions": _versions(),
        "config": {k: v for k, v in asdict(cfg).items() if k != "model_kwargs"},
        "timings": {},
        "counts": {},
        "history": (previous or {}).get("history", []),
    }
