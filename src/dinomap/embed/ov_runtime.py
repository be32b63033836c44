"""OpenVINO as the CPU runtime of the embedding model: the same network and weights, in fp32,
bf16 or int8.

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

Reduced precision (:func:`convert` ``precision=``): ``"bf16"`` compiles the same model with
``INFERENCE_PRECISION_HINT=bf16`` (AVX512-BF16 / AMX on the CPUs that have them); ``"int8"``
quantises it with NNCF's post-training quantisation (``nncf.quantize``, transformer preset) on
a calibration batch of the run's own images, cached like the conversion with the calibration
images' hash and NNCF's version in the key. Neither is compared with PyTorch here: the caller
measures their drift from fp32 on the run's images (:mod:`dinomap.embed.drift`).

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
import io
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

from dinomap._device import cpu_has_native_bf16

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


def _cache_entry(extractor: nn.Module, input_size: int, variant: str = "") -> Path | None:
    """The cache folder for this network, weights, input size, library versions and ``variant``
    (empty for the fp32 conversion; the int8 model's calibration and NNCF version)."""
    root = cache_dir()
    if root is None:
        return None
    import openvino as ov

    h = hashlib.sha256(f"{ov.__version__}|{torch.__version__}|{input_size}".encode())
    if variant:
        h.update(f"|{variant}".encode())
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
    extractor: nn.Module,
    input_size: int,
    precision: str = "fp32",
    calibration: torch.Tensor | str | None = None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """Convert ``extractor`` (float NCHW batch -> embeddings) to an OpenVINO CPU model.

    Returns ``(run, details)``: ``run`` maps a float32 CPU tensor (n, 3, S, S) to a float32
    tensor of embeddings; ``details`` holds ``openvino_version``, ``convert_s``, ``cache``
    (``hit``, ``miss`` or ``off``) and ``max_rel_diff`` (against PyTorch on the check example).
    ``precision="bf16"`` compiles it with the bf16 hint, ``"int8"`` quantises it on the
    ``calibration`` batch (preprocessed float images of the run, or the ``calibration_sha256``
    of a run's calibration: its model from the cache) first; their
    details say so (``inference_precision``, ``calibration_images``, ``calibration_sha256``,
    ``nncf_version``, ``quantize_s``) instead of a comparison with PyTorch.

    Raises
    ------
    OpenVINOUnavailable
        When OpenVINO (or, for int8, NNCF) is missing, the conversion fails, or its fp32 output
        differs from PyTorch's.
    """
    if not available():
        raise OpenVINOUnavailable('OpenVINO is not installed (pip install "dinomap[openvino]")')
    if precision not in _HINTS:
        raise ValueError(f"precision must be one of {sorted(_HINTS)}; got {precision!r}")
    if precision != "fp32":
        return _reduced(extractor, input_size, precision, calibration)
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
    details: dict[str, Any] = {
        "openvino_version": str(ov.__version__).split("-")[0],
        "inference_precision": "f32",
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
    run = _runner(compiled)
    got = run(example).numpy()
    scale = max(1.0, float(np.abs(reference).max()))
    diff = float(np.abs(got - reference).max()) / scale if got.shape == reference.shape else np.inf
    if not diff <= TOLERANCE:
        raise OpenVINOUnavailable(
            f"OpenVINO's output differs from PyTorch's by {diff:.2e} (relative; limit "
            f"{TOLERANCE:.0e}) on the check example"
        )
    return run, diff, cache


#: OpenVINO's ``INFERENCE_PRECISION_HINT`` per precision. The int8 model's layers NNCF left in
#: floating point run in bf16 where the CPU has it, as OpenVINO does by default.
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}


def _reduced(
    extractor: nn.Module, input_size: int, precision: str, calibration: torch.Tensor | str | None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """:func:`convert` for bf16 and int8: the fp32 conversion (cached), quantised for int8
    (cached under its calibration), compiled with the precision's hint."""
    import openvino as ov

    start = time.perf_counter()
    example = torch.randn(
        (2, 3, input_size, input_size), generator=torch.Generator().manual_seed(0)
    )
    extractor = extractor.eval()
    hint = _HINTS[precision]
    if precision == "int8" and not cpu_has_native_bf16():
        hint = "f32"  # the layers left in floating point: fp32 where bf16 would be emulated
    details: dict[str, Any] = {"openvino_version": str(ov.__version__).split("-")[0],
                               "inference_precision": hint}  # fmt: skip
    try:
        model, details["cache"] = _load_or_convert(
            extractor, example, input_size, _cache_entry(extractor, input_size)
        )
        if precision == "int8":
            model = _quantized(extractor, model, input_size, calibration, details)
        with keep_signal_stack():
            compiled = ov.Core().compile_model(
                model, "CPU",
                {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"},
            )  # fmt: skip
    except OpenVINOUnavailable:
        raise
    except Exception as exc:
        raise OpenVINOUnavailable(f"OpenVINO could not make the {precision} model: {exc}") from exc
    run = _runner(compiled)
    if run(example).shape[0] != 2:
        raise OpenVINOUnavailable(f"OpenVINO's {precision} model gives the wrong output shape")
    details["convert_s"] = round(time.perf_counter() - start, 3)
    return run, details


def _quantized(
    extractor: nn.Module,
    model: Any,
    input_size: int,
    calibration: torch.Tensor | str | None,
    details: dict[str, Any],
) -> Any:
    """``model`` quantised to int8 by NNCF on ``calibration``, from the cache when it holds it."""
    if importlib.util.find_spec("nncf") is None:
        raise OpenVINOUnavailable('int8 needs NNCF: pip install "dinomap[openvino]"')
    import nncf
    import openvino as ov

    if isinstance(calibration, str):  # the digest of a run's calibration: its cached model
        digest, batch = calibration, None
    elif calibration is not None and calibration.shape[0] > 0:
        batch = np.ascontiguousarray(calibration.detach().cpu().numpy(), dtype=np.float32)
        digest = hashlib.sha256(batch.tobytes()).hexdigest()
        details["calibration_images"] = int(batch.shape[0])
    else:
        raise ValueError("int8 needs a calibration batch of the run's images")
    details.update(calibration_sha256=digest, nncf_version=str(nncf.__version__))
    entry = _cache_entry(extractor, input_size, f"int8|nncf {nncf.__version__}|{digest}")
    if entry is not None and (entry / "model.xml").is_file():
        try:
            details.update(quantize_cache="hit", quantize_s=0.0)
            return ov.Core().read_model(str(entry / "model.xml"))
        except Exception as exc:  # a damaged entry is quantised again
            logger.warning("OpenVINO int8 cache entry %s unreadable (%s)", entry, exc)
    if batch is None:
        raise OpenVINOUnavailable(
            f"the int8 model calibrated for this run (calibration {digest[:12]}) is not in the "
            f"cache {cache_dir()}; embed with the run's source again to rebuild it"
        )
    t0 = time.perf_counter()
    samples = [batch[i : i + 1] for i in range(batch.shape[0])]
    logger.info("int8: calibrating on %d images of the run (NNCF) ...", len(samples))
    # NNCF draws its own progress bars on stdout: kept out of dinomap's output, logged instead.
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                                  model_type=nncf.ModelType.TRANSFORMER)  # fmt: skip
    logger.debug("NNCF: %s", said.getvalue()[-2000:])
    details.update(quantize_cache="off" if entry is None else "miss",
                   quantize_s=round(time.perf_counter() - t0, 3))  # fmt: skip
    if entry is not None:
        _write_cache_entry(quantized, entry)
    return quantized


def _runner(compiled: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float32 CPU batch -> float32 embeddings through ``compiled``'s one infer request."""
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        out = request.infer([np.ascontiguousarray(x.numpy(), dtype=np.float32)])[0]
        # A copy: the request reuses its output buffer on the next call.
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))

    return run


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
