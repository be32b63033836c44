"""Import umap-learn without its TensorFlow half.

``import umap`` also imports ``umap.parametric_umap`` whenever TensorFlow is installed. That
loads TensorFlow (about 7 s here) even for plain UMAP, and with a CUDA build of PyTorch it
crashes the process: once TensorFlow's native libraries are loaded, loading triton's (which
``torch._dynamo``, ``torch.compile`` and torchvision pull in, and which Keras 3 reaches through
torchvision) ends in a segmentation fault. Loading triton first avoids the clash.

So every import of umap-learn in dinomap goes through :func:`import_umap`, which keeps
TensorFlow out, and the Keras backend goes through :func:`import_parametric_umap`, which loads
triton before TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import warnings
from types import ModuleType

__all__ = ["import_parametric_umap", "import_umap"]

_PARAMETRIC = "umap.parametric_umap"
_lock = threading.RLock()


def import_umap() -> ModuleType:
    """Return the ``umap`` package, imported without ``umap.parametric_umap`` (TensorFlow)."""
    with _lock:
        if "umap" in sys.modules:
            return sys.modules["umap"]
        # Without "umap" there is no "umap.parametric_umap" either. A None entry makes umap's
        # own ``from .parametric_umap import ...`` raise ImportError, which it handles
        # (ParametricUMAP becomes a stub that says so); removed again once umap is in.
        sys.modules[_PARAMETRIC] = None  # type: ignore[assignment]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImportWarning)
                return importlib.import_module("umap")
        finally:
            if sys.modules.get(_PARAMETRIC, 0) is None:
                del sys.modules[_PARAMETRIC]


def import_parametric_umap() -> ModuleType:
    """Return ``umap.parametric_umap`` (TensorFlow), with triton loaded before TensorFlow."""
    with _lock:
        if _PARAMETRIC not in sys.modules and "tensorflow" not in sys.modules:
            _load_triton()
        import_umap()
        return importlib.import_module(_PARAMETRIC)


def _load_triton() -> None:
    if importlib.util.find_spec("triton") is None:
        return
    # A broken triton only matters if torch uses it, and torch then says so itself.
    with contextlib.suppress(Exception):
        importlib.import_module("triton")
