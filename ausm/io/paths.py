"""Safe path handling: paths read from dataset files, and outputs that must never touch an input."""
from __future__ import annotations

import os
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


def check_output_separate(out: str | Path, inputs, flag: str = "--out") -> None:
    """Refuse an output folder that would write into or over an input (issue #15): ``out`` equal to an
    input file or folder, inside an input folder, or containing an input. Inputs that are not local
    paths (streams, URLs, ``-``) are ignored. Symlinks are resolved.

    Raises:
        InputError: naming the output and the input it would touch.
    """
    o = Path(os.path.realpath(out))
    for spec in inputs:
        spec = str(spec)
        if spec == "-" or "://" in spec or not os.path.exists(spec):
            continue
        i = Path(os.path.realpath(spec))
        if o == i:
            raise InputError(f"{flag} {out} is the input {spec}: give another folder (nothing was written)")
        if i.is_dir() and o.is_relative_to(i):
            raise InputError(f"{flag} {out} lies inside the input folder {spec}: its masks would mix with the "
                             "frames; give a folder outside it (nothing was written)")
        if i.is_relative_to(o):
            raise InputError(f"{flag} {out} contains the input {spec}: writing there could replace it; give "
                             "another folder (nothing was written)")


def check_output_file(path: str | Path, flag: str) -> Path:
    """Refuse, before any work, an output file that cannot be created: the path is a folder, or its
    nearest existing ancestor is not a folder (missing folders are created when it is written).
    Permissions are found out when it is written; the CLI then reports the OS error as one line, exit 2.

    Raises:
        InputError: naming ``flag`` and the path.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a folder; give a file path")
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise InputError(f"{flag} {p}: {anc} is not a folder")
    return p
