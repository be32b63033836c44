"""The one device resolver of dinomap: every stage (embedding, neural mappers, export) asks here.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU. An explicit device that is not available
is an error, never a silent fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap.exceptions import InvalidParameterError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DEVICE_HELP",
    "TRAIN_PRECISIONS",
    "cpu_has_native_bf16",
    "resolve_device",
    "thread_counts",
    "training_precision",
]

DEVICE_HELP = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into a usable device.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dinomap.exceptions.InvalidParameterError: device must be 'auto', 'cpu', ...; got 'tpu'.
    """
    import torch

    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise InvalidParameterError(f"device must be {DEVICE_HELP}; got {device!r}.")
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise InvalidParameterError(f"device must be {DEVICE_HELP}; got {device!r}.")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InvalidParameterError(f"device must be {DEVICE_HELP}; got {device!r}.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device={device!r} asks for CUDA but no CUDA device is available here; "
            "use device='cpu' or 'auto'."
        )
    count = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and dev.index is not None and dev.index >= count:
        raise InvalidParameterError(
            f"device={device!r} does not exist; this machine has {count} CUDA device(s)."
        )
    if dev.type == "mps" and not has_mps:
        raise InvalidParameterError(
            f"device={device!r} asks for MPS but MPS is not available here; "
            "use device='cpu' or 'auto'."
        )
    return dev


def thread_counts() -> dict[str, int]:
    """The thread counts the results may depend on: torch's intra-op threads and the largest
    BLAS / OpenMP pool loaded in this process (threadpoolctl). A different count may change the
    last bits of a map (see docs/determinism.md), so ``metrics.json`` and ``run.json`` record it.

    Examples
    --------
    >>> sorted(thread_counts())  # doctest: +SKIP
    ['blas', 'openmp', 'torch']
    """
    import torch
    from threadpoolctl import threadpool_info

    out = {"torch": int(torch.get_num_threads()), "blas": 0, "openmp": 0}
    for pool in threadpool_info():
        key = "blas" if pool.get("user_api") == "blas" else "openmp"
        out[key] = max(out[key], int(pool.get("num_threads") or 0))
    return out


#: What the neural mappers' ``precision`` takes: ``"auto"`` is bf16 where the hardware computes
#: it natively (CUDA; a CPU with ``avx512_bf16`` or AMX), fp32 elsewhere.
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (x86 ``avx512_bf16`` or AMX, read from
    ``/proc/cpuinfo``); ``False`` where that cannot be read. Without it, PyTorch's bf16 matrix
    products on the CPU are emulated and slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_flags() -> set[str]:
    """This CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``); empty where
    that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def training_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` (one of :data:`TRAIN_PRECISIONS`) means on
    ``device``. An explicit ``"bf16"`` on hardware without native bf16 is an error, not a
    silent slowdown."""
    if precision not in TRAIN_PRECISIONS:
        raise InvalidParameterError(
            f"precision must be one of {', '.join(map(repr, TRAIN_PRECISIONS))}; got {precision!r}."
        )
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        raise InvalidParameterError(
            f"precision='bf16' needs native bf16 (CUDA, or a CPU with avx512_bf16 or AMX); "
            f"{device} has none here: use precision='fp32' or 'auto'."
        )
    return precision
