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
