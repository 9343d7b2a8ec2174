"""The Python API: ``ausm.AUSM.from_pretrained(...)`` → sessions and offline propagation.

    import ausm
    model = ausm.AUSM.from_pretrained()              # the shipped ausm-lite-mo; or a folder / hub id
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
from .inference.backends import as_backend


class AUSM:
    """A loaded AUSM model with streaming sessions.

    Attributes:
        model: the :class:`~ausm.model.AUSMModel` (eval mode), or the step back-end of an exported ONNX
            file (:meth:`from_onnx`).
        config: its :class:`~ausm.config.AUSMConfig`.
    """

    def __init__(self, model):
        self.model = model.eval() if isinstance(model, torch.nn.Module) else model
        self.config = model.cfg

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, compile: bool = False) -> "AUSM":
        """Load weights safely (safetensors) from a folder, a shipped name (``ausm-lite-mo``, the default; ``ausm-lite``, ``ausm-tiny``)
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

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None,
                  providers: list[str] | None = None) -> "AUSM":
        """An exported streaming step (``ausm export onnx`` / :meth:`export_onnx`) run by onnxruntime: the
        same sessions and results as the PyTorch model (docs/EXPORT.md). Needs the ``export`` extra.
        ``threads``: onnxruntime's intra-op threads (default ``torch.get_num_threads()``); ``providers``: its
        execution providers (default ``["CPUExecutionProvider"]``; e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]`` with onnxruntime-gpu; outputs are always CPU tensors).

        Raises:
            CheckpointError: a missing, corrupt or mismatched file. InputError: onnxruntime not installed.
        """
        from .export.runtime import OnnxStep

        return cls(OnnxStep(path, threads=threads, providers=providers))

    def export_onnx(self, out: str | os.PathLike, size: tuple[int, int] = (480, 854), opset: int | None = None) -> dict:
        """Export this model's streaming step for frames of ``size`` = (height, width) pixels to ``out``
        (:func:`ausm.export.onnx.export_onnx`); returns the contract written beside it."""
        from .export.onnx import export_onnx

        if not isinstance(self.model, torch.nn.Module):
            from .errors import InputError
            raise InputError("this model is already an ONNX graph; export the PyTorch checkpoint it came from")
        return export_onnx(self.model, out, size=size, opset=opset, source=self.config.name)

    @property
    def device(self) -> torch.device:
        return as_backend(self.model).device

    @property
    def dtype(self) -> torch.dtype:
        return as_backend(self.model).dtype

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
