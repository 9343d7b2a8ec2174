"""Safe path handling for paths read from dataset files."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def safe_join(root: str | Path, relative: str) -> Path:
    """``root / relative``, refusing paths that escape ``root`` (absolute paths, ``..``, symlink tricks
    resolved lexically): dataset JSON files are data, not instructions to read arbitrary files.

    Raises:
        InputError: the path leaves ``root``.
    """
    rel = Path(str(relative))
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"path {relative!r} in a dataset file escapes the dataset root {root}")
    return Path(root) / rel
