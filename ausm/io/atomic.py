"""Atomic file writes: write to a temporary file in the target's folder, rename into place on success,
remove it on failure — a reader never sees a half-written file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path, folder: bool = False) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) or a folder made by ``mkdtemp`` (0700) the
    mode a plain ``open`` / ``mkdir`` would give it under the process umask (0666 / 0777 & ~umask)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_open(path, mode: str = "w"):
    """``with atomic_open(path, "wb") as f: ...`` — ``path`` appears only if the block succeeds.
    Missing parent folders are created."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        apply_umask(tmp)
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
