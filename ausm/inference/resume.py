"""Snapshots of a segmentation run, so that a killed ``ausm segment`` can continue (``--resume``).

A snapshot is **one** safetensors file: the tensors of the session state (the model's fixed-size stream
state, the slot tables, class scores, the ID sampler's generator state, pending prompt masks) plus a
JSON document in the file's metadata (``__metadata__["ausm"]``) with everything else: the frame index,
the prompt bookkeeping, the output writer's state and a *fingerprint* of the run (inputs, prompts,
checkpoint, options). No pickle is involved. Snapshots are written atomically (temporary file +
rename), so a kill at any moment leaves either the previous snapshot or the new one.

:class:`PartialRun` owns the hidden folder ``OUT/.ausm-partial/`` of a run in progress::

    OUT/.ausm-partial/work/                 the outputs written so far (moved into OUT at the end)
    OUT/.ausm-partial/snapshot.safetensors  the latest snapshot

Python API: :meth:`ausm.inference.Session.state_dict` / :meth:`~ausm.inference.Session.load_state_dict`
and :func:`save_snapshot` / :func:`load_snapshot`::

    state = session.state_dict()                      # {"tensors": {...}, "meta": {...}}
    save_snapshot("run.safetensors", state["tensors"], {"session": state["meta"]})
    tensors, meta = load_snapshot("run.safetensors")
    session2 = Session(model)
    session2.load_state_dict({"tensors": tensors, "meta": meta["session"]})
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from ..errors import InputError
from ..io.atomic import atomic_open

__all__ = ["SNAPSHOT_FORMAT", "PARTIAL_DIRNAME", "save_snapshot", "load_snapshot", "file_digest",
           "path_signature", "json_digest", "checkpoint_signature", "fingerprint_differences", "PartialRun"]

#: Format tag stored in every snapshot; a snapshot with another tag is refused.
SNAPSHOT_FORMAT = "ausm-snapshot/1"
#: Name of the hidden folder of a run in progress inside the output folder.
PARTIAL_DIRNAME = ".ausm-partial"
_META_KEY = "ausm"


def save_snapshot(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and the JSON-able ``meta`` atomically into one safetensors file."""
    from safetensors.torch import save

    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = save(data, metadata={_META_KEY: json.dumps({"format": SNAPSHOT_FORMAT, **meta}, sort_keys=True)})
    with atomic_open(path, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())  # a snapshot must survive a crash of the machine, not only of the process


def load_snapshot(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_snapshot`: ``(tensors on the CPU, meta)``.

    Raises:
        InputError: the file cannot be read or is not an ausm snapshot.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    try:
        tensors = {}
        with safe_open(str(p), framework="pt") as f:
            meta_text = (f.metadata() or {}).get(_META_KEY)
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        meta = json.loads(meta_text) if meta_text else None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"cannot read the snapshot {p}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
        raise InputError(f"{p} is not an ausm snapshot of format {SNAPSHOT_FORMAT}")
    return tensors, meta


# -- fingerprints -------------------------------------------------------------------------------
def file_digest(path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's contents (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def json_digest(obj) -> str:
    """SHA-256 (hex) of ``obj`` as canonical JSON (sorted keys; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _stat_line(p: Path) -> str:
    st = p.stat()
    return f"{p.name}\t{st.st_size}\t{st.st_mtime_ns}"


def path_signature(path, files: list | None = None) -> str:
    """Cheap identity of an input: its absolute path and the size + modification time of the file, or of
    every frame file of a folder (``files``)."""
    p = Path(path).resolve()
    h = hashlib.sha256(str(p).encode())
    for f in files if files is not None else [p]:
        h.update(_stat_line(Path(f)).encode() + b"\n")
    return h.hexdigest()


def checkpoint_signature(path_or_id) -> str:
    """SHA-256 over the checkpoint's weights and config files (wherever the checkpoint lives)."""
    from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, resolve_checkpoint

    root = resolve_checkpoint(path_or_id)
    folder = root.parent if root.is_file() else root
    wfile = root if root.is_file() else root / WEIGHTS_NAME
    h = hashlib.sha256()
    for f in (wfile, folder / CONFIG_NAME):
        h.update(f.name.encode() + b"\0" + (file_digest(f) if f.is_file() else "missing").encode() + b"\n")
    return h.hexdigest()


def fingerprint_differences(saved: dict, current: dict) -> list[str]:
    """The keys of two fingerprints whose values differ (missing keys count as different)."""
    return [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


# -- the partial folder of a run ------------------------------------------------------------------
class PartialRun:
    """The hidden folder ``OUT/.ausm-partial/`` of an ``ausm segment`` run in progress.

    Args:
        out: the output folder.
        fingerprint: ``{name: str}`` identifying the run (inputs, prompts, checkpoint, options); a
            snapshot is resumed only by a run with the same fingerprint.
    """

    def __init__(self, out, fingerprint: dict[str, str]):
        self.out = Path(out)
        self.root = self.out / PARTIAL_DIRNAME
        self.work = self.root / "work"
        self.snapshot_path = self.root / "snapshot.safetensors"
        self.fingerprint = dict(fingerprint)
        self.snapshots_written = 0

    def exists(self) -> bool:
        return self.root.exists()

    def has_snapshot(self) -> bool:
        return self.snapshot_path.is_file()

    def clear(self) -> None:
        """Remove the folder (an earlier run's leftovers, or this run's after success)."""
        if self.root.is_symlink() or self.root.is_file():
            self.root.unlink()
        elif self.root.exists():
            shutil.rmtree(self.root)

    def load(self) -> tuple[dict[str, torch.Tensor], dict] | None:
        """The latest snapshot, checked against this run's fingerprint; ``None`` when there is none.

        Raises:
            InputError: the snapshot belongs to a run with other inputs, prompts, checkpoint or options
                (the message names what differs), or it cannot be read.
        """
        if not self.has_snapshot():
            return None
        tensors, meta = load_snapshot(self.snapshot_path)
        diff = fingerprint_differences(meta.get("fingerprint") or {}, self.fingerprint)
        if diff:
            raise InputError(
                f"--resume: the snapshot in {self.root} belongs to another run ({', '.join(diff)} "
                f"{'differs' if len(diff) == 1 else 'differ'}); "
                "rerun with the same inputs, prompts, checkpoint and options, or without --resume to start over")
        if not self.work.is_dir():
            raise InputError(f"--resume: {self.work} is missing, the snapshot cannot be continued; run without "
                             "--resume to start over")
        return tensors, meta

    def save(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Write a snapshot (atomically replacing the previous one)."""
        save_snapshot(self.snapshot_path, tensors, {**meta, "fingerprint": self.fingerprint})
        self.snapshots_written += 1
