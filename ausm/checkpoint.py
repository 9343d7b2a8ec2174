"""Saving and loading models: ``model.safetensors`` + ``config.json`` (Hugging Face hub layout).

``load_model(path_or_hub_id)`` accepts a local folder, a ``.safetensors`` file with a
``config.json`` beside it, a preset-named shipped checkpoint (``ausm-lite-mo``, the default, ``ausm-lite`` or ``ausm-tiny``), or a hub id
(``owner/name``, downloaded with ``huggingface_hub`` when a hub is reachable).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .config import AUSMConfig
from .errors import CheckpointError, ConfigError
from .io.atomic import apply_umask

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
#: Checkpoints shipped inside the package.
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "ausm-lite-mo"


def save_model(model, directory, extra_files: dict[str, str] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` atomically (a temp folder
    renamed into place; an existing folder is replaced only after the new one is complete).

    Args:
        model: an :class:`~ausm.model.AUSMModel`.
        directory: target folder.
        extra_files: optional ``{filename: text}`` written beside them (e.g. a model card).

    Returns:
        the folder path.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    apply_umask(tmp, folder=True)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "ausm_config": model.cfg.to_json()})
        (tmp / CONFIG_NAME).write_text(model.cfg.to_json())
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def resolve_checkpoint(path_or_id: str | os.PathLike | None) -> Path:
    """Find the folder (or file) of a checkpoint.

    Raises:
        CheckpointError: nothing found locally and the hub download failed.
    """
    if path_or_id is None:
        path_or_id = DEFAULT_MODEL
    p = Path(path_or_id).expanduser()
    if p.exists():
        return p
    shipped = SHIPPED_DIR / str(path_or_id)
    if shipped.exists():
        return shipped
    s = str(path_or_id)
    if s.count("/") == 1 and not s.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=s, allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, "*.md"]))
        except Exception as e:  # network, missing repo, auth
            raise CheckpointError(f"checkpoint {s!r} is not a local path and could not be downloaded "
                                  f"from the hub: {type(e).__name__}: {e}") from e
    raise CheckpointError(f"checkpoint {s!r} not found (not a path, not a shipped model "
                          f"{sorted(p.name for p in SHIPPED_DIR.glob('*') if p.is_dir())})")


def _state_mismatch(own: dict, state: dict) -> str:
    """One line summarising how ``state`` differs from a model's own state dict ("" when it fits)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shape:
        k = shape[0]
        parts.append(f"{len(shape)} of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                     f"{tuple(own[k].shape)} by the config)")
    return "; ".join(parts)


def load_model(path_or_id=None, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
    """Load an :class:`~ausm.model.AUSMModel` safely (``safetensors``; no pickle), in eval mode.

    Args:
        path_or_id: folder, ``.safetensors`` file, shipped name or hub id; ``None`` = the default model.
        device: target device (``None`` = CPU).
        dtype: optional parameter dtype (e.g. ``torch.bfloat16``).

    Raises:
        CheckpointError: missing files, unreadable or truncated weights, config/weight mismatch.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import AUSMModel

    root = resolve_checkpoint(path_or_id)
    wfile = root if root.is_file() else root / WEIGHTS_NAME
    cfile = (root.parent if root.is_file() else root) / CONFIG_NAME
    if not wfile.is_file():
        raise CheckpointError(f"no {WEIGHTS_NAME} in {root}")
    if not cfile.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} beside {wfile}")
    try:
        cfg = AUSMConfig.from_dict(json.loads(cfile.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"bad config {cfile}: {e}") from e
    try:
        state = load_file(str(wfile))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read weights {wfile}: {e}") from e
    try:
        # the checkpoint holds every weight: never fetch pretrained backbone weights just to overwrite them
        model = AUSMModel(cfg.replace(backbone_pretrained=None))
        model.cfg = cfg
    except Exception as e:  # e.g. a backbone type or backbone kwargs the installed transformers rejects
        raise CheckpointError(f"cannot build the model of config {cfile}: {type(e).__name__}: {e}") from e
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"weights {wfile} do not match config {cfile}: {mismatch} (weights of another "
                              "architecture, or a config.json edited by hand?)")
    model.load_state_dict(state, strict=True)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
