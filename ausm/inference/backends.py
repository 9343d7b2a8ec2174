"""Step back-ends: what runs the network's streaming step for a :class:`~ausm.inference.session.Session`.

One session implementation (prompts, ID allocation, detection admission, thresholds, outputs) drives
either back-end through the same small interface (issue #17):

* :class:`TorchStep` — :meth:`ausm.model.ausm.AUSMModel.step` in PyTorch (the default; any device, any
  dtype, test-time fine-tuning);
* :class:`ausm.export.runtime.OnnxStep` — an exported ``.onnx`` file of the same step run by onnxruntime
  (``ausm export onnx``; docs/EXPORT.md).

A back-end has ``cfg`` (:class:`~ausm.config.AUSMConfig`), ``device``, ``dtype``, ``class_heads``
({head name: K + 1 logits}), ``model`` (the :class:`AUSMModel`, or None when there is none),
``network`` (the object two sessions must share to be batched together), :meth:`input_size`,
:meth:`init_state` and :meth:`step` with the signatures of :class:`TorchStep`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.ausm import AUSMModel, StreamState

__all__ = ["StepOutput", "TorchStep", "as_backend"]


@dataclass
class StepOutput:
    """The network's outputs for one frame of B streams.

    Attributes:
        masks: (B, n + N_det, H/4, W/4) float mask logits of the n track queries, then the N_det detection
            queries (stride 4 of the model input).
        class_logits: {head name: (B, n + N_det, K + 1) float logits}; the last class is no-object
            (foreground probability = 1 − softmax[..., -1], spec §4).
        state: the :class:`~ausm.model.ausm.StreamState` after this frame (same size as before).
    """

    masks: torch.Tensor
    class_logits: dict[str, torch.Tensor]
    state: StreamState


class TorchStep:
    """The PyTorch back-end: :meth:`AUSMModel.step` and the class heads on its final query embeddings.

    Args:
        model: the network; its parameters' device and dtype are the back-end's.
    """

    kind = "torch"

    def __init__(self, model: AUSMModel):
        self.model = model
        self.network = model
        self.cfg = model.cfg
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.class_heads = {name: head.out_features for name, head in model.class_heads.items()}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input (H', W') for frames of (height, width) pixels (:meth:`AUSMModel.input_size`)."""
        return self.model.input_size(height, width)

    def init_state(self, batch: int, hw: tuple[int, int]) -> StreamState:
        """The state before the first frame for ``batch`` streams on the (h, w) stride-8 grid."""
        return self.model.init_state(batch, hw, device=self.device, dtype=self.dtype)

    def step(self, x: torch.Tensor, state: StreamState, track_ids: torch.Tensor, track_active: torch.Tensor,
             hist_masks: torch.Tensor) -> StepOutput:
        """One streaming step (Algorithm 1) for B streams.

        Args:
            x: (B, 3, H', W') float RGB in [0, 1] at the model input size.
            state: the state after the previous frame (not modified).
            track_ids: (B, n) long ID-buffer rows of the allocated objects; track_active: (B, n) bool
                (False = padding); hist_masks: (B, n, h·w) float in [0, 1], the history M_{t-1}.

        Returns:
            :class:`StepOutput`.
        """
        pred, new = self.model.step(x, state, track_ids, track_active, hist_masks)
        embs = pred.final_embs
        logits = {name: self.model.class_logits(embs, name) for name in self.class_heads}
        return StepOutput(masks=pred.final_masks, class_logits=logits, state=new)


def as_backend(model_or_backend):
    """A step back-end for ``model_or_backend``: an :class:`AUSMModel` is wrapped in :class:`TorchStep`;
    an object that already has ``step``, ``init_state`` and ``class_heads`` is returned as it is.

    Raises:
        TypeError: neither.
    """
    if isinstance(model_or_backend, AUSMModel):
        return TorchStep(model_or_backend)
    if all(hasattr(model_or_backend, a) for a in ("step", "init_state", "class_heads", "input_size", "cfg")):
        return model_or_backend
    raise TypeError(f"expected an AUSMModel or a step back-end (TorchStep, OnnxStep), got {type(model_or_backend).__name__}")
