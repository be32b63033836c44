"""Import umap-learn without its TensorFlow half.

``import umap`` also imports ``umap.parametric_umap`` whenever TensorFlow is installed. That
loads TensorFlow (about 7 s here) even for plain UMAP, and with a CUDA build of PyTorch it
crashes the process: once TensorFlow's native libraries are loaded, loading triton's (which
``torch._dynamo``, ``torch.compile`` and torchvision pull in, and which Keras 3 reaches through
torchvision) ends in a segmentation fault. Loading triton first avoids the clash.

So every import of umap-learn in dinomap goes through :func:`import_umap`, which keeps
TensorFlow out (and keeps numba off its TBB threading layer, :func:`prefer_openmp_threads`), and the Keras backend goes through :func:`import_parametric_umap`, which loads
triton before TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import warnings
from types import ModuleType

__all__ = ["import_parametric_umap", "import_umap", "prefer_openmp_threads"]

_PARAMETRIC = "umap.parametric_umap"
_lock = threading.RLock()


def prefer_openmp_threads() -> None:
    """Make numba's parallel code use its OpenMP threading layer before TBB (unless the user
    chose with ``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY``).

    numba picks TBB first whenever ``libtbb`` is loadable, and OpenVINO (dinomap's CPU runtime)
    loads it. With oneTBB 2022.3, one available CPU and numba first run from a thread other
    than the main one (dinomap compiles umap-learn in a background thread), the process then
    hangs at exit in ``unload_tbb`` (numba/numba#10556, uxlfoundation/oneTBB#2056). OpenMP has
    no such exit; TBB stays the fallback where OpenMP is missing.
    """
    if {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
        return
    from numba.core import config

    # read at numba's first parallel launch; set at runtime by numba itself, unknown to mypy
    config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]  # type: ignore[attr-defined]


def import_umap() -> ModuleType:
    """Return the ``umap`` package, imported without ``umap.parametric_umap`` (TensorFlow)."""
    with _lock:
        if "umap" in sys.modules:
            return sys.modules["umap"]
        prefer_openmp_threads()  # before umap's and pynndescent's parallel code first runs
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
