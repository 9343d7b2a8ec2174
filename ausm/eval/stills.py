"""Still-image prompt benchmark (issue #13): how well a model keeps and finds an object on photos.

For every image of a salient-object data set (DUTS-TR layout, :class:`~ausm.data.salient.SalientImages`;
the held-out split by default) with its ground-truth mask G:

* ``mask``  — the image repeated ``clip_len`` times (a still clip), G as the mask prompt on frame 0;
  score = IoU of the object's mask on the **last** frame (frame 2 of 3) with G: does the model keep
  what it was given?
* ``box``   — the tight box of G as a box prompt on frame 0; IoU on frame 0.
* ``point`` — one positive point at the pixel of G farthest from its boundary (the SAM / interactive-
  segmentation convention, ``scipy.ndimage.distance_transform_edt``); IoU on frame 0.

IoU is computed at the image's own resolution; the mean over images is reported in percent. An empty
prediction scores 0 (an empty ground truth is skipped: the reader yields no object for it).
"""
from __future__ import annotations

import numpy as np

from ..data.salient import SalientImages
from ..inference.session import Session

__all__ = ["KINDS", "benchmark_stills", "center_point", "tight_box", "mask_iou"]

KINDS = ("mask", "box", "point")


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU in [0, 1] of two (H, W) bool masks (1.0 when both are empty)."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box of a non-empty (H, W) bool mask, x1 / y1 exclusive."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def center_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel of a non-empty (H, W) bool mask farthest from the background (first in
    row-major order on ties)."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(x), float(y)


def _object_mask(result, obj_id: int = 1) -> np.ndarray:
    return np.asarray(result.index_mask) == obj_id


def _run_one(model, img: np.ndarray, gt: np.ndarray, kind: str, clip_len: int) -> float:
    s = Session(model)
    if kind == "mask":
        s.add_prompt(0, 1, mask=gt)
        for _ in range(clip_len):
            r = s.step(img)
    elif kind == "box":
        s.add_prompt(0, 1, box=tight_box(gt))
        r = s.step(img)
    else:
        s.add_prompt(0, 1, points=[center_point(gt)], labels=[1])
        r = s.step(img)
    return mask_iou(_object_mask(r), gt)


def benchmark_stills(model, root, split: str = "holdout", holdout: int = 300, kinds=KINDS, clip_len: int = 3,
                     limit: int | None = None, progress: bool = True) -> dict:
    """Score mask / box / point prompts on still images (see module doc).

    Args:
        model: an :class:`~ausm.model.AUSMModel` in eval mode.
        root: DUTS-TR-layout folder; ``split`` / ``holdout`` as in :class:`SalientImages`.
        kinds: subset of ``("mask", "box", "point")``.
        clip_len: frames of the still clip for the mask prompt (score on the last).
        limit: score only the first ``limit`` images of the split (``None`` = all).

    Returns:
        ``{"<kind>_iou": mean IoU in percent, ..., "images": count, "per_image": {name: {kind: IoU}}}``.

    Raises:
        InputError: a bad folder or split (from the reader), an unknown kind.
    """
    from tqdm import tqdm

    from ..errors import InputError

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InputError(f"unknown prompt kinds {bad}; use {list(KINDS)}")
    reader = SalientImages(root, split=split, holdout=holdout)
    n = len(reader) if limit is None else min(limit, len(reader))
    per_image: dict[str, dict[str, float]] = {}
    for i in tqdm(range(n), desc=f"stills {split}", disable=not progress):
        gt = reader.read_mask(i)
        if not gt.any():
            continue
        img = reader.read_image(i)
        per_image[reader.images[i]["file_name"]] = {k: _run_one(model, img, gt, k, clip_len) for k in kinds}
    out = {f"{k}_iou": 100.0 * float(np.mean([v[k] for v in per_image.values()])) if per_image else 0.0
           for k in kinds}
    out.update(images=len(per_image), split=split, per_image=per_image)
    return out
