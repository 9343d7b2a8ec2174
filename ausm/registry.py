"""The model registry: every preset by name, with or without the weights shipped for it.

    import ausm
    ausm.list_models()                          # [{"name": "ausm-lite", "weights": True, "default": False, ...}, ...]
    model = ausm.create_model("ausm-lite")      # the shipped trained weights
    fresh = ausm.create_model("ausm-swin-t", pretrained=False, num_ids=32)  # a new model to train

Presets are defined in :mod:`ausm.config` (``PRESETS``); shipped weights live in ``ausm/weights/<name>/``
and load through :func:`ausm.checkpoint.load_model` (safetensors, strict).
"""
from __future__ import annotations

from .checkpoint import DEFAULT_MODEL, SHIPPED_DIR, load_model
from .config import get_config, list_presets
from .errors import CheckpointError

__all__ = ["create_model", "list_models"]


def _has_weights(name: str) -> bool:
    return (SHIPPED_DIR / name / "model.safetensors").is_file()


def list_models() -> list[dict]:
    """Every preset: ``{"name", "weights": shipped trained weights?, "default": the default model?,
    "backbone", "hidden_dim", "num_ids"}``, sorted by name."""
    out = []
    for name in list_presets():
        cfg = get_config(name)
        out.append({"name": name, "weights": _has_weights(name), "default": name == DEFAULT_MODEL,
                    "backbone": cfg.backbone_type, "hidden_dim": cfg.hidden_dim, "num_ids": cfg.num_ids})
    return out


def create_model(name: str = DEFAULT_MODEL, pretrained: bool = True, device=None, **overrides):
    """An :class:`~ausm.model.AUSMModel` of preset ``name``.

    Args:
        name: a preset of :func:`list_models`.
        pretrained: load the weights shipped for ``name`` (eval mode); False: a freshly initialised model of
            the preset (train mode; ImageNet backbone weights where the preset uses them), ``overrides``
            applied to its config (:func:`ausm.config.get_config`).
        device: where to put it (``None``: CPU).

    Raises:
        ConfigError: unknown name or bad overrides. CheckpointError: ``pretrained`` for a preset that
            ships no weights, ``overrides`` with ``pretrained``, or broken shipped weights.
    """
    from .model import AUSMModel

    cfg = get_config(name, **overrides)  # unknown names fail here, with the list
    if not pretrained:
        model = AUSMModel(cfg)
        return model.to(device) if device is not None else model
    if overrides:
        raise CheckpointError(f"overrides {sorted(overrides)} change the architecture of the shipped {name!r} "
                              "weights; use pretrained=False to build a new model")
    if not _has_weights(name):
        have = [m["name"] for m in list_models() if m["weights"]]
        raise CheckpointError(f"no weights are shipped for {name!r} (shipped: {have}); use pretrained=False "
                              "to build it untrained")
    return load_model(name, device=device)
