"""Reading an ensemble's wiring back from the ``config.pbtxt`` files written to the repository.

:func:`chain_from_config` parses an ensemble's ``config.pbtxt`` with Triton's own schema
(:func:`dinomap.export.triton.parse_config`), and for each step of its ``ensemble_scheduling``
the member's ``config.pbtxt`` (its platform says which file to load) and version folder. The
verification then runs exactly those files, wired exactly as written: a mistake in the written
config (a wrong member, a swapped tensor) fails the export's verification, not a server later.
"""

from __future__ import annotations

from pathlib import Path

from dinomap.exceptions import DinomapError
from dinomap.export.triton import ENSEMBLE_PLATFORM, PLATFORMS, parse_config
from dinomap.export.verify import ChainStep

__all__ = ["EnsembleWiring", "chain_from_config"]

#: Triton platform -> (export format, model file name).
_BY_PLATFORM = {platform: (fmt, filename) for fmt, (platform, filename) in PLATFORMS.items()}

EnsembleWiring = tuple[str, str, tuple[ChainStep, ...]]


def _member_file(root: Path, name: str, version: int) -> tuple[str, Path]:
    """The format and model file of member ``name`` (``version`` -1: the highest folder)."""
    folder = root / name
    config_path = folder / "config.pbtxt"
    if not config_path.is_file():
        raise DinomapError(
            f"the ensemble step names model {name!r}, but {config_path} does not exist; "
            "export again so every member is written."
        )
    cfg = parse_config(config_path.read_text(encoding="utf-8"))
    if cfg.platform not in _BY_PLATFORM:
        raise DinomapError(
            f"member {name!r} has platform {cfg.platform!r}; expected one of "
            f"{', '.join(_BY_PLATFORM)} (an ensemble of ensembles is not verified)."
        )
    fmt, filename = _BY_PLATFORM[cfg.platform]
    if version < 0:
        versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        if not versions:
            raise DinomapError(f"member {name!r} has no version folder in {folder}.")
        version = versions[-1]
    return fmt, folder / str(version) / filename


def chain_from_config(config_path: str | Path) -> EnsembleWiring:
    """``(input name, output name, steps)`` of the ensemble whose ``config.pbtxt`` is given.

    Members are looked up next to the ensemble's folder (the repository root).
    """
    path = Path(config_path)
    cfg = parse_config(path.read_text(encoding="utf-8"))
    if cfg.platform != ENSEMBLE_PLATFORM or not cfg.HasField("ensemble_scheduling"):
        raise DinomapError(f"{path} is not an ensemble (platform {cfg.platform!r}).")
    if len(cfg.input) != 1 or len(cfg.output) != 1:
        raise DinomapError(f"{path}: expected one input and one output, got "
                           f"{len(cfg.input)} and {len(cfg.output)}.")  # fmt: skip
    root = path.parent.parent
    steps = []
    for step in cfg.ensemble_scheduling.step:
        fmt, file = _member_file(root, step.model_name, int(step.model_version))
        steps.append(
            ChainStep(
                step.model_name, fmt, file,
                tuple(sorted(step.input_map.items())), tuple(sorted(step.output_map.items())),
            )
        )  # fmt: skip
    return cfg.input[0].name, cfg.output[0].name, tuple(steps)
