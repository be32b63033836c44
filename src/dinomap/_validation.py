"""Small validation helpers shared by every stage: errors name the parameter, the allowed
values and the value received (habit 6 of ARCHITECTURE.md)."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dinomap.exceptions import InvalidParameterError

if TYPE_CHECKING:  # numpy is imported by the array checks only: parameter checks stay light
    import numpy as np

__all__ = ["check_choice", "check_embeddings", "check_positive_int", "suggest"]


def suggest(value: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of ``choices`` and return it.

    Examples
    --------
    >>> check_choice("precision", "fp32", ["auto", "fp32"])
    'fp32'
    """
    options = list(choices)
    if value not in options:
        raise InvalidParameterError(
            f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}."
            + suggest(str(value), options)
        )
    return str(value)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum`` and return it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_n_features(X: np.ndarray, expected: int, owner: object) -> np.ndarray:
    """Return ``X`` when it has the ``expected`` columns ``owner`` was fitted on; else refuse."""
    if X.shape[1] != expected:
        raise InvalidParameterError(
            f"X has {X.shape[1]} features but this {type(owner).__name__} was fitted on {expected}."
        )
    return X


def check_embeddings(X: Any, name: str = "X", min_samples: int = 1) -> np.ndarray:
    """Return ``X`` as a C-contiguous float32 2-D array, refusing NaN/inf and too few rows."""
    import numpy as np

    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InvalidParameterError(
            f"{name} must be a 2-D array (n_samples, n_features); got shape {arr.shape}."
        )
    if np.iscomplexobj(arr):
        raise InvalidParameterError(
            f"{name} is complex ({arr.dtype}); the maps need real features: pass X.real, "
            "np.abs(X) or the real and imaginary parts as columns."
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise InvalidParameterError(f"{name} must be numeric; got dtype {arr.dtype}.")
    if arr.shape[1] == 0:
        raise InvalidParameterError(
            f"{name} has {arr.shape[0]} rows but no feature (shape {arr.shape}); "
            "at least one column is needed."
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.shape[0] < min_samples:
        raise InvalidParameterError(
            f"{name} needs at least {min_samples} samples; got {arr.shape[0]}."
        )
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise InvalidParameterError(
            f"{name} contains NaN or infinite values in {bad} row(s); clean or drop them first."
        )
    return arr


def check_positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{name} must be a finite number {bound}; got {value!r}.")
    return float(value)


def check_hidden(hidden: Any) -> tuple[int, ...]:
    """Return the hidden layer widths ``hidden`` as a tuple of positive ints (an int: one layer)."""

    def is_width(h: Any) -> bool:
        return isinstance(h, numbers.Integral) and not isinstance(h, bool) and int(h) >= 1

    if is_width(hidden):
        hidden = (hidden,)
    try:
        sizes = tuple(hidden)
    except TypeError:
        sizes = None
    if sizes is None or not all(is_width(h) for h in sizes):
        raise InvalidParameterError(
            f"hidden must be a sequence of positive layer widths such as (256, 256); got {hidden!r}."
        )
    return tuple(int(h) for h in sizes)


def check_random_state(random_state: Any) -> Any:
    """Accept ``None``, a non-negative int, or a numpy ``Generator`` / ``RandomState``."""
    if random_state is None:
        return None
    if (
        isinstance(random_state, numbers.Integral)
        and not isinstance(random_state, bool)
        and int(random_state) >= 0
    ):
        return int(random_state)
    import numpy as np

    if isinstance(random_state, np.random.Generator | np.random.RandomState):
        return random_state
    raise InvalidParameterError(
        f"random_state must be None, an int >= 0 or a numpy Generator; got {random_state!r}."
    )
