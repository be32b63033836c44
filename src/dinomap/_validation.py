"""Small validation helpers shared by every stage: errors name the parameter, the allowed
values and the value received (habit 6 of ARCHITECTURE.md)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import numpy as np

from dinomap.exceptions import InvalidParameterError

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
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_n_features(X: np.ndarray, expected: int, owner: object) -> np.ndarray:
    """Return ``X`` when it has the ``expected`` columns ``owner`` was fitted on; else refuse."""
    if X.shape[1] != expected:
        raise InvalidParameterError(
            f"X has {X.shape[1]} features but this {type(owner).__name__} was fitted on "
            f"{expected}."
        )
    return X


def check_embeddings(X: Any, name: str = "X", min_samples: int = 1) -> np.ndarray:
    """Return ``X`` as a C-contiguous float32 2-D array, refusing NaN/inf and too few rows."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InvalidParameterError(
            f"{name} must be a 2-D array (n_samples, n_features); got shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise InvalidParameterError(f"{name} must be numeric; got dtype {arr.dtype}.")
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
