"""Mask2Former-style set loss for AUSM (spec §5 "Losses").

* **Tracking**: fixed slot ↔ instance assignment (slot i is instance i); class target "object"
  (or the instance's category) where visible, "no-object" where absent; mask terms where visible.
* **Detection**: Hungarian matching per frame (``scipy.optimize.linear_sum_assignment``) between the
  N_det detection predictions and the frame's detection targets; cost 2·(−p(class)) + 5·BCE +
  5·dice on random points; unmatched predictions get "no-object" (weight 0.1).
* Mask terms: BCE + dice on importance-sampled points (PointRend / Mask2Former sampling:
  ``oversample``× random candidates, the ``importance`` fraction most uncertain kept, the rest random).
* Weights 2 (class) / 5 (BCE) / 5 (dice), mask terms normalised by the number of mask targets,
  summed over every prediction point of the Pixel Decoder (deep supervision).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..model.ausm import Prediction

if TYPE_CHECKING:
    from .batch import ClipTargets


@dataclass
class LossConfig:
    """Loss hyper-parameters (spec §5; Mask2Former defaults)."""

    num_points: int = 12544
    oversample: float = 3.0
    importance: float = 0.75
    no_object_weight: float = 0.1
    class_weight: float = 2.0
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    deep_supervision: bool = True


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample maps at normalised points.

    Args:
        x: (N, H, W) maps.
        coords: (N, P, 2) points, (x, y) in [0, 1] (0 = left/top edge, 1 = right/bottom edge).

    Returns:
        (N, P) sampled values. Points within half a pixel of the border take the border value
        (``padding_mode="border"``; Mask2Former pads with zeros, which biases masks that touch the
        image border towards background).
    """
    grid = coords.to(x.dtype) * 2.0 - 1.0
    return F.grid_sample(x.unsqueeze(1), grid.unsqueeze(1), align_corners=False,
                         padding_mode="border").squeeze(1).squeeze(1)


def uncertain_points(logits: torch.Tensor, num_points: int, oversample: float, importance: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance sampling of points (N, num_points, 2) around uncertain logits (|logit| small)."""
    N = logits.shape[0]
    n_over = int(num_points * oversample)
    cand = torch.rand(N, n_over, 2, generator=generator).to(logits.device)
    with torch.no_grad():
        unc = -point_sample(logits.detach().float(), cand).abs()
    n_imp = int(importance * num_points)
    idx = unc.topk(n_imp, dim=1).indices
    pts = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rest = torch.rand(N, num_points - n_imp, 2, generator=generator).to(logits.device)
    return torch.cat([pts, rest], dim=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over rows of 1 − (2·Σ p·y + 1) / (Σ p + Σ y + 1); logits and targets (N, P)."""
    p = logits.sigmoid()
    return (1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)).sum()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over rows of the mean BCE over points; logits and targets (N, P)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1).sum()


def pairwise_mask_cost(logits: torch.Tensor, targets: torch.Tensor):
    """Pairwise BCE and dice costs (Q, G) between Q predictions and G targets on shared points."""
    P = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    bce = (pos @ targets.T + neg @ (1 - targets).T) / P
    p = logits.sigmoid()
    dice = 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)
    return bce, dice


class SetCriterion:
    """Callable ``criterion(model, prediction, targets, generator=None) -> dict`` of scalar losses;
    ``"loss"`` is the weighted total to back-propagate."""

    def __init__(self, cfg: LossConfig | None = None):
        self.cfg = cfg or LossConfig()

    def _num_classes(self, model, head):
        return model.class_heads[head].out_features - 1

    @torch.no_grad()
    def _match(self, cls_prob, mask_logits, tgt_cls, tgt_masks, generator):
        c = self.cfg
        pts = torch.rand(1, min(c.num_points, 4096), 2, generator=generator).to(mask_logits.device)
        pl = point_sample(mask_logits.float(), pts.expand(mask_logits.shape[0], -1, -1))
        tl = point_sample(tgt_masks.float(), pts.expand(tgt_masks.shape[0], -1, -1))
        bce, dice = pairwise_mask_cost(pl, tl)
        cost = -c.class_weight * cls_prob[:, tgt_cls] + c.bce_weight * bce + c.dice_weight * dice
        r, col = linear_sum_assignment(cost.cpu().numpy())
        return torch.as_tensor(r, dtype=torch.long), torch.as_tensor(col, dtype=torch.long)

    def __call__(self, model, pred: Prediction, targets: ClipTargets,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c = self.cfg
        n = pred.num_tracks
        B, T = targets.track_active.shape[:2]
        layers = range(len(pred.masks)) if c.deep_supervision else [len(pred.masks) - 1]
        totals = {"loss_class": 0.0, "loss_bce": 0.0, "loss_dice": 0.0}
        for li in layers:
            embs, masks = pred.embs[li], pred.masks[li]
            pm, tm = [], []  # matched (pred mask logits, target mask)
            ce_sum, ce_w = 0.0, 0.0
            for b in range(B):
                head = targets.heads[b]
                K = self._num_classes(model, head)
                logits_b = model.class_logits(embs[b], head).float()  # (T, Q, K+1)
                weight = torch.ones(K + 1, device=logits_b.device)
                weight[-1] = c.no_object_weight
                for k in range(T):
                    lg = logits_b[k]
                    tgt = torch.full((lg.shape[0],), K, dtype=torch.long, device=lg.device)
                    use = torch.zeros(lg.shape[0], dtype=torch.bool, device=lg.device)
                    # tracks: fixed slot assignment
                    act = targets.track_active[b, k] & targets.slot_valid[b]
                    for i in torch.nonzero(act).flatten().tolist():
                        use[i] = True
                        if targets.visible[b, k, i]:
                            tgt[i] = targets.classes[b, i] if K > 1 else 0
                            pm.append(masks[b, k, i])
                            tm.append(targets.masks[b, i, k])
                    # detections: Hungarian matching
                    if targets.det_enabled[b]:
                        use[n:] = True
                        gt = torch.nonzero(targets.det_target[b, k] & targets.slot_valid[b]).flatten()
                        if len(gt):
                            gcls = targets.classes[b, gt] if K > 1 else torch.zeros_like(gt)
                            r, col = self._match(lg[n:].softmax(-1), masks[b, k, n:], gcls,
                                                 targets.masks[b, gt, k], generator)
                            for qi, gi in zip(r.tolist(), col.tolist()):
                                tgt[n + qi] = gcls[gi]
                                pm.append(masks[b, k, n + qi])
                                tm.append(targets.masks[b, gt[gi], k])
                    if use.any():
                        w = weight[tgt[use]]
                        ce = F.cross_entropy(lg[use], tgt[use], reduction="none")
                        ce_sum = ce_sum + (ce * w).sum()
                        ce_w = ce_w + w.sum()
            if isinstance(ce_w, torch.Tensor):
                totals["loss_class"] = totals["loss_class"] + ce_sum / ce_w
            if pm:
                pm_t = torch.stack(pm).float()
                tm_t = torch.stack(tm).float()
                pts = uncertain_points(pm_t, c.num_points, c.oversample, c.importance, generator)
                pl = point_sample(pm_t, pts)
                with torch.no_grad():
                    tl = point_sample(tm_t, pts)
                num = max(len(pm), 1)
                totals["loss_bce"] = totals["loss_bce"] + bce_loss(pl, tl) / num
                totals["loss_dice"] = totals["loss_dice"] + dice_loss(pl, tl) / num
        out = {k: (v if isinstance(v, torch.Tensor) else torch.zeros(())) for k, v in totals.items()}
        out["loss"] = c.class_weight * out["loss_class"] + c.bce_weight * out["loss_bce"] + c.dice_weight * out["loss_dice"]
        return out
