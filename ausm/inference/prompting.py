"""Prompts of a streaming session: their validation, the queue of prompts waiting for their frame, and
how a box or point prompt picks one of the model's own candidate masks (spec §3 [D]).

A prompt is one of: a mask ((H, W) bool at the frame resolution), a box (x0, y0, x1, y1) or points
((k, 2) of (x, y) with labels 1 = on the object, 0 = not on it), in input-frame pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..io.inputs import check_box, check_geometric_in_frame, check_points, prompt_mask_to_bool

__all__ = ["GeometricPrompt", "PromptQueue", "make_prompt", "select_candidate", "resolve_geometric", "box_of"]


@dataclass
class GeometricPrompt:
    """A box (``data`` = (x0, y0, x1, y1)) or points (``data`` (k, 2) of (x, y), ``labels`` (k,) 0/1) in
    input-frame pixels."""

    kind: str
    data: np.ndarray
    labels: np.ndarray | None = None


def box_of(masks: torch.Tensor) -> torch.Tensor:
    """(k, H, W) bool → (k, 4) boxes (x0, y0, x1, y1) in pixel-edge coordinates; zeros for empty masks."""
    k, H, W = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    ar_h = torch.arange(H, device=masks.device)
    ar_w = torch.arange(W, device=masks.device)
    big = H + W
    y0 = torch.where(rows, ar_h, big).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    x0 = torch.where(cols, ar_w, big).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    out = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(masks.flatten(1).any(1, keepdim=True), out, torch.zeros_like(out))


def select_candidate(prompt: GeometricPrompt, masks: torch.Tensor, scores: torch.Tensor,
                     min_box_iou: float = 0.5) -> tuple[torch.Tensor, str, int | None]:
    """Choose the model's candidate mask that best fits a box or point prompt (issue: universal prompts).

    Args:
        prompt: the box or points, already scaled to the candidates' resolution.
        masks: (Q, H, W) bool candidate masks (every query of the model on the prompted frame).
        scores: (Q,) foreground probabilities of the candidates.
        min_box_iou: a box prompt accepts a candidate only if the candidate's bounding box has at least
            this IoU with the prompt box.

    Rules:
        box — among the candidates whose bounding box has an IoU of at least ``min_box_iou`` with the
        box, the one with the highest (box IoU + foreground score): the box says where, the score which
        of several fitting candidates is a whole object (measured on 60 DUTS-TR *training* photos:
        55.7 → 72.8 mean IoU for a stage-3 ausm-lite checkpoint, 83.9 either way for stage 2; box IoU
        alone picked fragments that happened to span the box); fallback when no candidate reaches
        ``min_box_iou``: the filled box itself.
        points — candidates containing every positive point and no negative point, the highest
        score wins; else the candidate maximising (#positives inside − #negatives inside), if that is
        positive; else fallback: disks of radius 2 % of the shorter side around the positive points.

    Returns:
        ((H, W) bool mask, ``"candidate"`` or ``"fallback"``, the chosen candidate's index or None).
    """
    Q, H, W = masks.shape
    if prompt.kind == "box":
        x0, y0, x1, y1 = (float(v) for v in prompt.data)
        boxes = box_of(masks)
        ix = (torch.minimum(boxes[:, 2], torch.tensor(x1)) - torch.maximum(boxes[:, 0], torch.tensor(x0))).clamp(min=0)
        iy = (torch.minimum(boxes[:, 3], torch.tensor(y1)) - torch.maximum(boxes[:, 1], torch.tensor(y0))).clamp(min=0)
        inter = ix * iy
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / (area + (x1 - x0) * (y1 - y0) - inter).clamp(min=1e-9)
        iou = torch.where(masks.flatten(1).any(1), iou, torch.full_like(iou, -1.0))
        if Q and float(iou.max()) >= min_box_iou:
            fit = torch.where(iou >= min_box_iou, iou + scores.float().clamp(0, 1), torch.full_like(iou, -1.0))
            best = int(torch.argmax(fit))
            return masks[best], "candidate", best
        out = torch.zeros(H, W, dtype=torch.bool)
        out[max(0, int(round(y0))):max(0, int(round(y1))), max(0, int(round(x0))):max(0, int(round(x1)))] = True
        return out, "fallback", None
    pts, lab = prompt.data, prompt.labels
    xs = np.clip(np.round(pts[:, 0]).astype(int), 0, W - 1)
    ys = np.clip(np.round(pts[:, 1]).astype(int), 0, H - 1)
    inside = masks[:, ys, xs] if Q else torch.zeros(0, len(pts), dtype=torch.bool)  # (Q, k)
    pos = torch.from_numpy(lab == 1)
    n_pos = (inside & pos).sum(1)
    n_neg = (inside & ~pos).sum(1)
    valid = (n_pos == int(pos.sum())) & (n_neg == 0)
    if bool(valid.any()):
        s = torch.where(valid, scores.float(), torch.full_like(scores.float(), -1.0))
        best = int(torch.argmax(s))
        return masks[best], "candidate", best
    if Q and int((n_pos - n_neg).max()) > 0:
        best = int(torch.argmax((n_pos - n_neg).float() + scores.float().clamp(0, 1) * 1e-3))
        return masks[best], "candidate", best
    r = max(1.0, 0.02 * min(H, W))
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    out = torch.zeros(H, W, dtype=torch.bool)
    for x, y, l in zip(pts[:, 0], pts[:, 1], lab):
        if l == 1:
            out |= (xx - float(x)) ** 2 + (yy - float(y)) ** 2 <= r * r
    return out, "fallback", None



def resolve_geometric(geo: dict[int, GeometricPrompt], candidates: torch.Tensor, scores: torch.Tensor,
                      frame_size: tuple[int, int]) -> dict[int, tuple[torch.Tensor, str, int | None]]:
    """Resolve each box / point prompt (frame pixels) against the model's candidates of its frame.

    Args:
        geo: {obj_id: prompt} in pixels of the (H, W) = ``frame_size`` frame.
        candidates: (Q, Hm, Wm) bool candidate masks at the model input (every query).
        scores: (Q,) foreground probabilities.

    Returns:
        {obj_id: ((Hm, Wm) bool mask, "candidate" | "fallback", chosen query or None)} by
        :func:`select_candidate`, the prompts scaled to the candidates' resolution.
    """
    Hm, Wm = candidates.shape[-2:]
    sy, sx = Hm / frame_size[0], Wm / frame_size[1]
    out = {}
    for o, g in geo.items():
        if g.kind == "box":
            scaled = GeometricPrompt("box", g.data * np.array([sx, sy, sx, sy]))
        else:
            scaled = GeometricPrompt("points", g.data * np.array([sx, sy]), g.labels)
        out[o] = select_candidate(scaled, candidates, scores)
    return out

def make_prompt(obj_id, mask=None, box=None, points=None, labels=None,
                frame_size: tuple[int, int] | None = None, frame_idx: int | None = None) -> np.ndarray | GeometricPrompt:
    """Validate one prompt (exactly one of ``mask``, ``box``, ``points``) for object ``obj_id``.

    Args:
        obj_id: client object id, an integer in 1..65535.
        mask: (H, W) bool / integer / float-in-[0, 1] array or tensor (thresholded by
            :func:`~ausm.io.inputs.prompt_mask_to_bool`).
        box: (x0, y0, x1, y1) pixels; points: (k, 2) (x, y) pixels; labels: (k,) in {0, 1}.
        frame_size: (H, W) of the stream when known: the mask must have it, boxes and points must lie in it.
        frame_idx: the prompted frame, for the messages.

    Returns:
        the (H, W) bool mask, or a :class:`GeometricPrompt`.

    Raises:
        InputError: a bad id, not exactly one prompt kind, an empty or wrong-size mask, a degenerate
            box, bad points or labels, a prompt outside the frame.
    """
    if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, bool) or not 0 < int(obj_id) < 65536:
        raise InputError(f"obj_id must be an integer in 1..65535, got {obj_id!r}")
    if sum(x is not None for x in (mask, box, points)) != 1:
        raise InputError("give exactly one of mask=, box= or points= per prompt")
    if mask is not None:
        m = prompt_mask_to_bool(mask)
        if not m.any():
            where = "" if frame_idx is None else f" on frame {frame_idx}"
            raise InputError(f"prompt mask for object {obj_id}{where} is empty")
        if frame_size is not None and m.shape != tuple(frame_size):
            raise InputError(f"prompt mask size {m.shape} differs from the frame size {tuple(frame_size)}")
        return m
    if box is not None:
        entry = GeometricPrompt("box", check_box(box))
    else:
        entry = GeometricPrompt("points", *check_points(points, labels))
    if frame_size is not None:
        check_geometric_in_frame(entry.kind, entry.data, frame_size)
    return entry


class PromptQueue:
    """Prompts waiting for their frame: ``{frame_idx: {obj_id: mask | GeometricPrompt}}``; a later
    prompt for the same (frame, object) replaces the earlier one."""

    def __init__(self):
        self.pending: dict[int, dict[int, np.ndarray | GeometricPrompt]] = {}

    def add(self, frame_idx: int, obj_id: int, entry) -> None:
        self.pending.setdefault(int(frame_idx), {})[int(obj_id)] = entry

    def at(self, frame_idx: int) -> dict:
        """The prompts of a frame, without removing them."""
        return self.pending.get(frame_idx, {})

    def pop(self, frame_idx: int) -> tuple[dict[int, np.ndarray], dict[int, GeometricPrompt]]:
        """Remove and return a frame's prompts: (mask prompts, box / point prompts)."""
        entries = self.pending.pop(frame_idx, {})
        masks = {o: m for o, m in entries.items() if isinstance(m, np.ndarray)}
        geo = {o: g for o, g in entries.items() if isinstance(g, GeometricPrompt)}
        return masks, geo

    def reserved_ids(self) -> set[int]:
        """Object ids of every pending prompt (not to be given to discovered objects)."""
        return {o for objs in self.pending.values() for o in objs}

    def check_frame(self, frame_idx: int, size: tuple[int, int]) -> None:
        """A frame's prompts must fit its (H, W) size.

        Raises:
            InputError: a mask of another size, a box or point outside the frame.
        """
        for o, m in self.at(frame_idx).items():
            if isinstance(m, np.ndarray) and m.shape != tuple(size):
                raise InputError(f"prompt mask size {m.shape} differs from the frame size {tuple(size)}")
            if isinstance(m, GeometricPrompt):
                check_geometric_in_frame(m.kind, m.data, size, f"the stream (frame {frame_idx}, object {o})")

    # -- snapshots ----------------------------------------------------------------------------
    def state(self) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """(JSON-able records, mask tensors ``pending.<frame>.<obj>``) for a session snapshot."""
        records, tensors = [], {}
        for f, objs in sorted(self.pending.items()):
            for o, p in objs.items():
                if isinstance(p, GeometricPrompt):
                    records.append({"frame": f, "obj_id": o, "kind": p.kind, "data": p.data.tolist(),
                                    "labels": None if p.labels is None else p.labels.tolist()})
                else:
                    records.append({"frame": f, "obj_id": o, "kind": "mask"})
                    tensors[f"pending.{f}.{o}"] = torch.from_numpy(np.ascontiguousarray(p, dtype=bool))
        return records, tensors

    def load(self, records: list[dict], tensors: dict) -> None:
        """Restore from :meth:`state` (raises KeyError on a missing mask tensor)."""
        self.pending = {}
        for p in records:
            f, o = int(p["frame"]), int(p["obj_id"])
            if p["kind"] == "mask":
                entry = tensors[f"pending.{f}.{o}"].numpy().astype(bool)
            else:
                entry = GeometricPrompt(p["kind"], np.asarray(p["data"], np.float64),
                                        None if p["labels"] is None else np.asarray(p["labels"], np.int64))
            self.add(f, o, entry)
