"""What every saved mapper directory shares, classic (pickle) or neural (state dict).

One ``config.json`` layout (``format_version``, ``class``, ``method``, ``backend``, ``params``,
``fitted``), one reader, one JSON conversion and one not-fitted message, used by
:class:`dinomap.reduce.base.Reducer` and :class:`dinomap.parametric.NeuralMapper` alike. Light:
no numpy, scikit-learn or torch at import time (the registry reads configs through it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dinomap.exceptions import DinomapError

if TYPE_CHECKING:  # pragma: no cover
    from dinomap.exceptions import NotFittedError

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "from_jsonable",
    "jsonable",
    "not_fitted",
    "read_mapper_config",
]

#: The config file of a saved mapper directory.
CONFIG_FILE = "config.json"
#: Bumped when the saved layout changes in a way older code cannot read.
FORMAT_VERSION = 1


def read_mapper_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``config.json`` of a saved mapper directory, with clear errors.

    Refuses a directory that holds no mapper and one saved by a newer dinomap.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise DinomapError(f"{directory} is not a saved dinomap mapper (no {CONFIG_FILE}).")
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DinomapError(f"{path} cannot be read as JSON: {exc}") from exc
    version = config.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DinomapError(
            f"{path} has format_version {version!r}; this dinomap reads up to {FORMAT_VERSION}: "
            "upgrade dinomap to load it."
        )
    return config


def not_fitted(owner: object, call: str = "fit(X)") -> NotFittedError:
    """The error every estimator raises when used before ``fit`` (scikit-learn's subclass, made
    on first use: ``dinomap map --help`` lists the methods without loading scikit-learn)."""
    from dinomap.exceptions import NotFittedError

    return NotFittedError(
        f"This {type(owner).__name__} is not fitted yet; call {call} before using it."
    )


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars to numbers, arrays to tagged lists, a torch device
    to its name, random generators (state, not parameters) to ``None``, anything else to its
    ``repr``."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.random.Generator | np.random.RandomState):
        return None
    torch = sys.modules.get("torch")  # a device can only exist once torch is imported
    if torch is not None and isinstance(value, torch.device):
        return str(value)
    return repr(value)


def from_jsonable(value: Any) -> Any:
    """Undo :func:`jsonable` for arrays (``{"__ndarray__": ...}``); the rest is kept."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            import numpy as np

            return np.asarray(value["__ndarray__"], dtype=value.get("dtype", "float64"))
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value
