"""Exceptions raised by dinomap.

Every error a user can cause derives from :class:`DinomapError`, so the CLI can print one clear
line for it instead of a traceback. Subclasses also derive from the matching built-in exception
(``ValueError``, ``FileNotFoundError``...) so generic handlers keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ConfigMismatchError",
    "DinomapError",
    "InvalidParameterError",
    "MissingDependencyError",
    "NoImagesError",
    "NotFittedError",
    "PrecisionDriftError",
    "RunFileError",
    "SourceNotFoundError",
    "VerificationError",
    "WeightsUnavailableError",
]


class DinomapError(Exception):
    """Base class of every error dinomap raises on purpose."""


class InvalidParameterError(DinomapError, ValueError):
    """A parameter has a value outside its allowed set or range."""


class SourceNotFoundError(DinomapError, FileNotFoundError):
    """An image source (folder, manifest, data set) does not exist or holds no images."""


class RunFileError(DinomapError, ValueError):
    """A file of a run directory (``run.json``...) is there but cannot be read: empty, cut
    short or not what dinomap wrote. The message names the file and ``dinomap check --repair``."""


class NoImagesError(DinomapError):
    """Not a single image of the source could be embedded."""


class WeightsUnavailableError(DinomapError):
    """Pretrained weights could not be obtained (offline hub, missing file, wrong state dict)."""


class ConfigMismatchError(DinomapError):
    """A run directory was created with another model or preprocessing than the one asked for."""


if TYPE_CHECKING:  # pragma: no cover - the class below, as type checkers see it
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(DinomapError, SklearnNotFittedError):
        """An estimator was used before ``fit``."""

else:
    import threading

    _MAKE_LOCK = threading.Lock()

    def __getattr__(name: str) -> Any:
        """``NotFittedError`` subclasses scikit-learn's (so ``except
        sklearn.exceptions.NotFittedError`` catches it), made on first use so that importing
        dinomap loads no scikit-learn."""
        if name != "NotFittedError":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        with _MAKE_LOCK:  # one class, even when two threads ask at once
            if "NotFittedError" not in globals():
                from sklearn.exceptions import NotFittedError as SklearnNotFittedError

                globals()["NotFittedError"] = type(
                    "NotFittedError",
                    (DinomapError, SklearnNotFittedError),
                    {"__doc__": "An estimator was used before ``fit``.", "__module__": __name__},
                )
        return globals()["NotFittedError"]


class MissingDependencyError(DinomapError, ImportError):
    """An optional dependency is not installed; the message names the extra to install
    (``pip install "dinomap[search]"``, ``"dinomap[keras]"``...)."""


class PrecisionDriftError(DinomapError):
    """A reduced-precision model's embeddings moved too far from fp32 on the run's check batch
    (:mod:`dinomap.embed.drift`); the message names ``--precision fp32``."""


class VerificationError(DinomapError):
    """An exported model does not reproduce the eager PyTorch model.

    ``report`` is the :class:`~dinomap.export.verify.VerificationReport` that failed (None when
    there was none).
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report
