"""TorchScript: script (or, failing that, trace) a module and serialise it for Triton.

PyTorch marks TorchScript as deprecated (every ``torch.jit.script`` / ``trace`` / ``save`` /
``load`` call emits a ``FutureWarning``, once per submodule for ``script``). Triton's
``pytorch_libtorch`` backend still serves exactly these files, so dinomap keeps exporting them
and silences those deprecation messages **inside its own calls only** (:func:`quiet_torchscript`
filters by category and message; any other warning still shows). It says so once in the log.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ScriptedModule",
    "load_torchscript_bytes",
    "quiet_torchscript",
    "to_torchscript",
    "torchscript_bytes",
]

logger = logging.getLogger(__name__)

_DEPRECATION_MESSAGE = r"`?torch\.jit\.\w+`? is deprecated"
_TRACER_MESSAGE = r"(Converting a tensor to a Python|torch\.tensor results are registered)"
_told = False


@contextlib.contextmanager
def quiet_torchscript(*, tracing: bool = False) -> Iterator[None]:
    """Hide PyTorch's TorchScript deprecation warnings within the block (and nothing else).

    Parameters
    ----------
    tracing : bool
        Also hide the ``TracerWarning`` about Python values baked into a trace; dinomap checks
        traced modules against eager ones at other batch sizes instead.
    """
    global _told
    if not _told:
        logger.info(
            "TorchScript is deprecated in PyTorch but still what Triton's pytorch_libtorch backend "
            "serves; dinomap hides its deprecation warnings in its own export calls."
        )
        _told = True
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", message=_DEPRECATION_MESSAGE, category=category)
        if tracing:
            warnings.filterwarnings(
                "ignore", message=_TRACER_MESSAGE, category=torch.jit.TracerWarning
            )
        yield


@contextlib.contextmanager
def _resolved_annotations(module: nn.Module) -> Iterator[None]:
    """Let ``torch.jit.script`` read class annotations written under postponed evaluation.

    With ``from __future__ import annotations`` a class attribute annotation such as
    ``mean: torch.Tensor`` is the *string* ``"torch.Tensor"``, which TorchScript refuses
    ("Unknown type annotation"). Within the block each such submodule gets an instance-level
    ``__annotations__`` with the evaluated types; it is removed afterwards.
    """
    patched: list[nn.Module] = []
    try:
        for sub in module.modules():
            own = inspect.get_annotations(type(sub))
            if not any(isinstance(v, str) for v in own.values()) or "__annotations__" in vars(sub):
                continue
            try:
                resolved = inspect.get_annotations(type(sub), eval_str=True)
            except Exception:  # unresolvable: let scripting report it
                continue
            object.__setattr__(sub, "__annotations__", resolved)
            patched.append(sub)
        yield
    finally:
        for sub in patched:
            vars(sub).pop("__annotations__", None)


@dataclass(frozen=True)
class ScriptedModule:
    """A TorchScript module and how it was made.

    Attributes
    ----------
    module : torch.jit.ScriptModule
    method : str
        ``"script"`` or ``"trace"`` (the fallback).
    note : str
        Why scripting failed, when it did (empty otherwise).
    """

    module: torch.jit.ScriptModule
    method: str
    note: str = ""


def to_torchscript(
    module: nn.Module, example: torch.Tensor, *, allow_trace: bool = True
) -> ScriptedModule:
    """Convert an eval-mode module with ``torch.jit.script``; trace it when that fails.

    Parameters
    ----------
    module : nn.Module
        Put in eval mode; its parameters stay where they are (export on the CPU).
    example : Tensor
        An input used to trace (only when scripting fails) and to check the result runs.
    allow_trace : bool
        When False a scripting failure is raised instead of falling back.

    Returns
    -------
    ScriptedModule

    Examples
    --------
    >>> sm = to_torchscript(nn.Linear(4, 2), torch.zeros(1, 4))
    >>> sm.method
    'script'
    """
    module = module.eval()
    try:
        with quiet_torchscript(), _resolved_annotations(module):
            scripted = torch.jit.script(module)
        with torch.no_grad():
            scripted(example)
        return ScriptedModule(scripted, "script")
    except Exception as exc:
        if not allow_trace:
            raise
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        logger.warning(
            "torch.jit.script failed for %s (%s); falling back to torch.jit.trace, which fixes "
            "Python control flow to the example input's path.",
            type(module).__name__,
            reason[:300],
        )
    with quiet_torchscript(tracing=True), torch.no_grad():
        traced = torch.jit.trace(module, (example,), check_trace=False)
    return ScriptedModule(traced, "trace", note=f"scripting failed ({reason[:300]}); traced")


def torchscript_bytes(module: torch.jit.ScriptModule) -> bytes:
    """Serialise a TorchScript module (what ``torch.jit.save`` writes) to bytes."""
    buf = io.BytesIO()
    with quiet_torchscript():
        torch.jit.save(module, buf)
    return buf.getvalue()


def load_torchscript_bytes(data: bytes) -> torch.jit.ScriptModule:
    """Load bytes written by :func:`torchscript_bytes` on the CPU."""
    with quiet_torchscript():
        loaded: torch.jit.ScriptModule = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return loaded
