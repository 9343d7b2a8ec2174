"""The Python API: ``ausm.AUSM.from_pretrained(...)`` → sessions and offline propagation.

    import ausm
    model = ausm.AUSM.from_pretrained()              # the shipped ausm-lite; or a folder / hub id
    session = model.session()
    session.add_prompt(0, obj_id=1, box=(100, 80, 300, 260))
    for frame in ausm.io.read_frames("video.mp4"):
        result = session.step(frame)                   # FrameResult
"""
from __future__ import annotations

import os
from typing import Iterator

import torch

from .checkpoint import load_model
from .device import default_dtype, resolve_device
from .inference import FrameResult, Session, propagate


class AUSM:
    """A loaded AUSM model with streaming sessions.

    Attributes:
        model: the :class:`~ausm.model.AUSMModel` (eval mode).
        config: its :class:`~ausm.config.AUSMConfig`.
    """

    def __init__(self, model):
        self.model = model.eval()
        self.config = model.cfg

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, compile: bool = False) -> "AUSM":
        """Load weights safely (safetensors) from a folder, a shipped name (``ausm-lite``, the default; ``ausm-tiny``)
        or a hub id.

        Args:
            device: ``None`` = automatic (:func:`ausm.device.resolve_device`).
            dtype: ``None`` = :func:`default_dtype` of that device.
            compile: ``torch.compile`` the per-frame network (:meth:`AUSMModel.compile_modules`): the first
                frame then takes minutes to compile; worth it for long streams on a GPU.

        Raises:
            CheckpointError: missing or broken checkpoint.
        """
        dev = resolve_device(device)
        model = load_model(path_or_hub_id, device=dev, dtype=dtype or default_dtype(dev))
        return cls(model.compile_modules() if compile else model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def session(self, **kwargs) -> Session:
        """A new streaming :class:`~ausm.inference.Session` (kwargs: ``detect_new_objects``,
        ``class_head``, ``fg_threshold``, ``seed``, ``finetune`` — a step count or a
        :class:`~ausm.train.finetune.FinetuneConfig`, given to the session as its ``adapt`` — or ``adapt``)."""
        return Session(self.model, **_session_kwargs(kwargs))

    def propagate(self, video, prompts: dict | None = None, replay: bool = False, **kwargs) -> Iterator[FrameResult]:
        """Offline segmentation of a whole video.

        Args:
            video: a path (frame folder or video file) or an iterable of (H, W, 3) uint8 frames.
            prompts: ``{frame_idx: {obj_id: mask}}``; ``None`` = unprompted.
            replay: test-time replay (forward, backward, forward).
            kwargs: as :meth:`session`.

        Yields:
            one :class:`FrameResult` per frame.
        """
        if isinstance(video, (str, os.PathLike)):
            from .io.sources import open_source

            video = open_source(video)
        yield from propagate(self.model, video, prompts, replay=replay, **_session_kwargs(kwargs))

    def __repr__(self) -> str:
        return f"AUSM({self.config.name!r}, device={self.device}, dtype={self.dtype})"


def _session_kwargs(kwargs: dict) -> dict:
    """``finetune=`` (a step count or FinetuneConfig) → the session's ``adapt=``."""
    if "finetune" not in kwargs:
        return kwargs
    from .train.finetune import as_finetune_config

    kwargs = dict(kwargs)
    if kwargs.get("adapt") is not None:
        from .errors import InputError
        raise InputError("give finetune= or adapt=, not both")
    kwargs["adapt"] = as_finetune_config(kwargs.pop("finetune"))
    return kwargs
