"""OpenVINO as the CPU runtime of the embedding model: the same network and weights, in fp32.

On the 2-core CPU this project is measured on, OpenVINO runs ViT-S/14 at 224 px about 1.35x
faster than PyTorch eager, both in fp32, with the same output to 5e-7
(``benchmarks/bench_embed.py``). So ``EmbedConfig(runtime="auto")`` uses it for CPU runs in
fp32 when the package is installed (extra ``[openvino]``).

The model is converted once (traced on a two-image example, dynamic batch; about 3 s for
ViT-S/14) and kept in a cache (:func:`cache_dir`), keyed by the network's architecture and
weights, the input size and the library versions; later runs read it in ~0.1 s. It is compiled
with ``INFERENCE_PRECISION_HINT=f32``: OpenVINO would otherwise compute in bf16 on CPUs that
have it. Before every use, its output on the example is compared with PyTorch's; a conversion
error or a difference above :data:`TOLERANCE` raises :class:`OpenVINOUnavailable`, and the
caller falls back to PyTorch.

One guard: OpenVINO's CPU plugin installs an alternate signal stack on the thread that compiles
a model and frees that memory with the model, from whichever thread drops the last reference.
A signal later handled on the compiling thread (SIGCHLD from a finished subprocess with
PyTorch's DataLoader handler, SIGINT) would land on freed memory and kill the process with a
SIGSEGV. :func:`convert` puts the thread's own signal stack back right after compiling.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "TOLERANCE",
    "OpenVINOUnavailable",
    "available",
    "cache_dir",
    "convert",
    "keep_signal_stack",
]

logger = logging.getLogger(__name__)

#: Largest accepted difference from PyTorch on the check example, relative to the output's
#: largest magnitude (the same bound the exported models are verified with).
TOLERANCE = 1e-4


class OpenVINOUnavailable(RuntimeError):
    """OpenVINO cannot run this model faithfully (not installed, conversion failed, mismatch)."""


def available() -> bool:
    """Whether the ``openvino`` package is installed."""
    return importlib.util.find_spec("openvino") is not None


def cache_dir() -> Path | None:
    """Where converted models are kept: ``$DINOMAP_CACHE_DIR/openvino``, by default
    ``$XDG_CACHE_HOME/dinomap/openvino`` (``~/.cache/...``); ``DINOMAP_CACHE_DIR=none`` turns
    the cache off."""
    root = os.environ.get("DINOMAP_CACHE_DIR")
    if root is not None and root.strip().lower() in ("", "none", "off", "0"):
        return None
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "dinomap")
    return Path(root) / "openvino"


def _cache_entry(extractor: nn.Module, input_size: int) -> Path | None:
    """The cache folder for this network, weights, input size and library versions."""
    root = cache_dir()
    if root is None:
        return None
    import openvino as ov

    h = hashlib.sha256(f"{ov.__version__}|{torch.__version__}|{input_size}".encode())
    for name, module in extractor.named_modules():
        # The architecture, with the plain settings repr() leaves out (num_heads, eps, ...).
        plain = sorted(
            (k, repr(v))
            for k, v in vars(module).items()
            if not k.startswith("_") and isinstance(v, int | float | str | bool | tuple)
        )
        h.update(f"{name}|{type(module).__qualname__}|{plain}".encode())
    for name, tensor in extractor.state_dict().items():
        h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return root / h.hexdigest()[:32]


def _load_or_convert(
    extractor: nn.Module, example: torch.Tensor, input_size: int, entry: Path | None
) -> tuple[Any, str]:
    """The OpenVINO model of ``extractor``, from the cache ``entry`` or converted (and then
    cached there; ``None``: no cache)."""
    import openvino as ov

    if entry is not None and (entry / "model.xml").is_file():
        try:
            return ov.Core().read_model(str(entry / "model.xml")), "hit"
        except Exception as exc:  # a damaged entry is converted again
            logger.warning("OpenVINO cache entry %s unreadable (%s); converting again", entry, exc)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's TracerWarnings say nothing to users
        model = ov.convert_model(
            extractor,
            example_input=example,
            input=[ov.PartialShape([-1, 3, input_size, input_size])],
        )
    if entry is None:
        return model, "off"
    _write_cache_entry(model, entry)
    return model, "miss"


def _write_cache_entry(model: Any, entry: Path) -> None:
    """Save the converted ``model`` as cache ``entry`` (beside, then renamed: a crash never
    leaves a half-written entry); a cache that cannot be written only costs the next run time."""
    import openvino as ov

    partial: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=entry.parent))
        ov.save_model(model, str(partial / "model.xml"), compress_to_fp16=False)
        partial.rename(entry)  # fails when another process cached it first: fine
        partial = None
    except Exception as exc:
        logger.info("OpenVINO model not cached (%s)", exc)
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)


def convert(
    extractor: nn.Module, input_size: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, float | str]]:
    """Convert ``extractor`` (float NCHW batch -> embeddings) to an OpenVINO CPU model.

    Returns ``(run, details)``: ``run`` maps a float32 CPU tensor (n, 3, S, S) to a float32
    tensor of embeddings; ``details`` holds ``openvino_version``, ``convert_s``, ``cache``
    (``hit``, ``miss`` or ``off``) and ``max_rel_diff`` (against PyTorch on the check example).

    Raises
    ------
    OpenVINOUnavailable
        When OpenVINO is missing, the conversion fails, or its output differs from PyTorch's.
    """
    if not available():
        raise OpenVINOUnavailable('OpenVINO is not installed (pip install "dinomap[openvino]")')
    import openvino as ov

    start = time.perf_counter()
    example = torch.randn(
        (2, 3, input_size, input_size), generator=torch.Generator().manual_seed(0)
    )
    extractor = extractor.eval()
    with torch.inference_mode():
        reference = extractor(example).float().numpy()
    entry = _cache_entry(extractor, input_size)
    cached = entry is not None and (entry / "model.xml").is_file()
    try:
        run, diff, cache = _checked(extractor, example, reference, input_size, entry)
    except OpenVINOUnavailable:
        if not cached or entry is None:  # a fresh conversion would only fail again
            raise
        logger.warning("OpenVINO cache entry %s does not match the model; converting again", entry)
        shutil.rmtree(entry, ignore_errors=True)
        run, diff, cache = _checked(extractor, example, reference, input_size, entry)
    details: dict[str, float | str] = {
        "openvino_version": str(ov.__version__).split("-")[0],
        "convert_s": round(time.perf_counter() - start, 3),
        "cache": cache,
        "max_rel_diff": diff,
    }
    logger.info(
        "OpenVINO runtime: ready in %.1f s (cache %s), max relative difference %.1e",
        details["convert_s"],
        cache,
        diff,
    )
    return run, details


def _checked(
    extractor: nn.Module,
    example: torch.Tensor,
    reference: np.ndarray,
    input_size: int,
    entry: Path | None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], float, str]:
    """Compile the model for the CPU in fp32 and check it on ``example``; ``(run, diff, cache)``."""
    import openvino as ov

    try:
        model, cache = _load_or_convert(extractor, example, input_size, entry)
        with keep_signal_stack():
            compiled = ov.Core().compile_model(
                model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
            )
    except Exception as exc:
        raise OpenVINOUnavailable(f"OpenVINO could not convert the model: {exc}") from exc
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        out = request.infer([np.ascontiguousarray(x.numpy(), dtype=np.float32)])[0]
        # A copy: the request reuses its output buffer on the next call.
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))

    got = run(example).numpy()
    scale = max(1.0, float(np.abs(reference).max()))
    diff = float(np.abs(got - reference).max()) / scale if got.shape == reference.shape else np.inf
    if not diff <= TOLERANCE:
        raise OpenVINOUnavailable(
            f"OpenVINO's output differs from PyTorch's by {diff:.2e} (relative; limit "
            f"{TOLERANCE:.0e}) on the check example"
        )
    return run, diff, cache


class _StackT(ctypes.Structure):
    """``stack_t`` of ``sigaltstack(2)`` (the same layout on Linux x86-64 and aarch64)."""

    _fields_ = (
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    )


_SS_DISABLE = 2


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Restore this thread's alternate signal stack (``sigaltstack``) on leaving (Linux)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = _StackT()
    if libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        saved.ss_flags &= _SS_DISABLE  # SS_ONSTACK is a status, not a setting
        if libc.sigaltstack(ctypes.byref(saved), None) != 0:  # pragma: no cover
            logger.debug("sigaltstack restore failed: errno %d", ctypes.get_errno())
