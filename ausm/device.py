"""The one place that picks a torch device and its default dtype (CLI, Python API and training)."""
from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["resolve_device", "default_dtype"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(name: str | torch.device | None = "auto", local_rank: int | None = None,
                   auto_mps: bool = True) -> torch.device:
    """``"auto"`` / ``None`` → CUDA if available (``cuda:local_rank`` when a rank is given), else Apple
    MPS (unless ``auto_mps=False``: training never picks MPS by itself), else CPU; otherwise the named
    device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), checked.

    Raises:
        InputError: an unknown device string, or a CUDA / MPS device this machine does not have.
    """
    if name is None or (isinstance(name, str) and name == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
        return torch.device("mps") if auto_mps and _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r}: CUDA is not available here (no GPU, or a CPU-only torch); "
                             "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not _mps_available():
        raise InputError(f"device {name!r}: Apple MPS is not available here; use --device cpu or auto")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA GPUs that support it, float32 elsewhere (CPU bf16 is not faster here, and fp16
    on CPU is ~400× slower)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_cpu_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed tensor memory in the process (glibc only) so that streaming does not page-fault.

    A streaming step frees and allocates several multi-MB tensors per frame (the Mamba SSM state is
    8.6 MB at 480p). glibc serves such blocks with ``mmap`` and returns them to the OS on ``free``, so every
    frame page-faults them in again (measured 1,134 minor faults per frame for ``ausm-lite`` at 480p,
    79 with this). Raising the mmap threshold (to 32 MiB, glibc's maximum) and the heap trim threshold
    (256 MiB) keeps them; the process RSS then stays at its working-set peak (docs/PERFORMANCE.md).
    The same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment.

    Called by the CLI; ``AUSM_MALLOC_TUNING=0`` turns it off. Returns whether it was applied (False on
    other C libraries or platforms; never raises).
    """
    import ctypes
    import ctypes.util
    import os
    import sys

    if os.environ.get("AUSM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
