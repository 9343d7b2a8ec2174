"""DAVIS region similarity J (spec §9) and a semi-supervised J benchmark over a DAVIS root.

J = |P ∧ G| / |P ∨ G| per object and frame, 1 when the union is empty; void pixels (255 in
DAVIS-2017 ground truth) are excluded from both. Semi-supervised protocol: frames 1..N−2 (the
first and the last frame are excluded). Global J-Mean averages over objects.
"""
from __future__ import annotations

import numpy as np


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J of one binary mask pair.

    Args:
        pred, gt: (H, W) bool masks.
        void: optional (H, W) bool, pixels excluded from both.

    Returns:
        J in [0, 1]; 1.0 when both masks are empty.

    Raises:
        ValueError: shapes differ.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    if void is not None:
        pred = pred & ~void
        gt = gt & ~void
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def sequence_j(pred_ids: list[np.ndarray], gt_ids: list[np.ndarray], objects: list[int],
               first_last_excluded: bool = True, void_id: int | None = 255) -> dict[int, float]:
    """Mean J per object over a sequence.

    Args:
        pred_ids, gt_ids: per-frame (H, W) integer index masks (same length).
        objects: ground-truth object ids to score.
        first_last_excluded: semi-supervised protocol (frames 1..N−2).

    Returns:
        {object id: mean J over the scored frames}.
    """
    if len(pred_ids) != len(gt_ids):
        raise ValueError(f"{len(pred_ids)} predicted frames vs {len(gt_ids)} ground-truth frames")
    frames = range(1, len(gt_ids) - 1) if first_last_excluded else range(len(gt_ids))
    out = {}
    for o in objects:
        js = []
        for f in frames:
            void = (gt_ids[f] == void_id) if void_id is not None else None
            js.append(jaccard(pred_ids[f] == o, gt_ids[f] == o, void))
        out[o] = float(np.mean(js)) if js else float("nan")
    return out
