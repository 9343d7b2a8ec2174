"""What one streaming step returns: :class:`FrameResult` (masks, ids, scores, classes of one frame)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .prompting import box_of

__all__ = ["FrameResult", "index_mask", "PROMPT_LOGIT"]

#: The logit a prompted mask stands for on its frame (inside: +, outside: −): above any prediction.
PROMPT_LOGIT = 1e4


@dataclass
class FrameResult:
    """Output of one :meth:`Session.step`.

    Attributes:
        frame_idx: 0-based index of the frame in the stream.
        obj_ids: client object ids, in track order.
        masks: (n, H, W) bool masks at the input frame's resolution.
        scores: (n,) float32 foreground probabilities of the tracks (1.0 on prompted frames).
        index_mask: (H, W) uint16 VOS index mask: per pixel the object with the highest probability
            among those above 0.5, else 0 (spec §7).
        new_obj_ids: objects that started on this frame (prompts and detections).
        class_ids: (n,) int64 class index of each track in the session's class head: the argmax of
            its class probabilities maxed over the frames seen so far (spec §7, GenVIS); 0 for the
            class-agnostic head.
        class_scores: (n,) float32 the probability of that class (max over frames).
        class_names: the class names (``cfg.class_names[head]``; ``"object"`` for the agnostic head,
            ``"class_<i>"`` when the checkpoint stores no names).
    """

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray
    scores: np.ndarray
    index_mask: np.ndarray
    new_obj_ids: list[int] = field(default_factory=list)
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    class_names: list[str] = field(default_factory=list)

    @property
    def boxes(self) -> np.ndarray:
        """(n, 4) float32 boxes (x0, y0, x1, y1) in pixels of the masks (zeros for empty masks)."""
        if len(self.masks) == 0:
            return np.zeros((0, 4), np.float32)
        return box_of(torch.from_numpy(self.masks)).numpy().astype(np.float32)


def index_mask(logits: torch.Tensor, obj_ids: torch.Tensor) -> torch.Tensor:
    """The VOS index mask (spec §7): per pixel the object with the highest mask logit among those with a
    positive logit (probability > 0.5), else 0; ties go to the first object in track order.

    Args:
        logits: (n, H, W) float mask logits at the frame resolution (n may be 0).
        obj_ids: (n,) int64 client ids, on the same device.

    Returns:
        (H, W) int64.

    One pass per object with contiguous element-wise ops: ``argmax`` over the object axis of an
    (n, H, W) tensor is a strided reduction, ~7 ms per object at 480p on a CPU core (measured, issue #16).
    """
    n, H, W = logits.shape
    if n == 0:
        return torch.zeros(H, W, dtype=torch.long, device=logits.device)
    best = logits[0].clone()
    idx = torch.zeros(H, W, dtype=torch.long, device=logits.device)
    for i in range(1, n):
        upd = logits[i] > best
        idx.masked_fill_(upd, i)
        torch.maximum(best, logits[i], out=best)
    return torch.where(best > 0, obj_ids[idx], torch.zeros_like(idx))
