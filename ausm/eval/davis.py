"""DAVIS J&F, computed as the official DAVIS evaluator (``davis2017-evaluation``) computes it.

Metric semantics (spec §9):

* **J** (region similarity) per object and frame: ``|P ∧ G| / |P ∨ G|``, 1 when the union is empty.
* **F** (boundary accuracy): boundaries by the BSDS ``seg2bmap`` rule (a pixel is a boundary pixel
  when it differs from its right, lower or lower-right neighbour inside the image; the image border is
  not a boundary), tolerance ``r = ceil(0.008 · image diagonal)`` pixels (8 / 12 / 18 px at 480p /
  720p / 1080p), matching within a disk of radius ``r`` (offsets with ``dy² + dx² ≤ r²``);
  precision = predicted boundary pixels within ``r`` of a ground-truth boundary pixel over all
  predicted boundary pixels, recall the converse, ``F = 2PR / (P + R)``; both boundaries empty → 1,
  exactly one empty → 0.
* Per object: Mean, Recall (fraction of frames > 0.5) and Decay (mean of the first minus the last of
  4 quantile bins), exactly as the official ``db_statistics`` (including its ``uint8`` bin indices,
  which wrap for sequences longer than 256 scored frames). Global means average over **objects**;
  ``J&F = (J-Mean + F-Mean) / 2``.

Protocols (``task``):

* ``semi``: frames ``1..N−2`` (first and last excluded); objects ``1..max id of the first ground-truth
  frame``; void pixels are *not* excluded (the official semi-supervised evaluation passes no void
  mask); a predicted id above the number of objects is an error (as in the official tool).
* ``unsupervised``: all frames; void pixels (255) are excluded from both masks; the predicted ids
  ``1..max`` are proposals (at most 20), matched to ground-truth objects by the Hungarian assignment
  on ``(mean J + mean F) / 2``.

Layouts: ``davis`` (``ROOT/Annotations/<res>/<seq>/*.png``, every frame annotated, DAVIS-2017 index
masks with void 255, or DAVIS-2016 0/255 masks with ``year=2016`` where any non-zero value is the
object) and ``youtube`` (YouTube-VOS / MOSE: ``ROOT/Annotations/<video>/*.png``, sparse annotations;
only annotated frames are scored, each object from the first annotated frame in which it appears, and
predicted ids that are not ground-truth objects are ignored).

The computation is vectorised: one joint histogram per frame gives every intersection and area, and
boundary matching uses k-d trees over the boundary pixels (exactly equivalent to the official disk
dilation, and much faster).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_open
from ..io.masks import read_index_png

__all__ = [
    "VOID_ID", "BOUND_TH", "MEASURES", "jaccard", "sequence_j", "boundary_tolerance", "seg2bmap",
    "f_measure", "db_statistics", "score_sequence", "renumber_proposals", "ObjectScore", "summarize", "evaluate_davis",
    "read_index_png", "format_table", "write_json",
]

#: Ground-truth id marking void (ignored) pixels in DAVIS-2017 masks.
VOID_ID = 255
#: Boundary tolerance as a fraction of the image diagonal (official ``bound_th``).
BOUND_TH = 0.008
#: Global measures in the order of the official table.
MEASURES = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


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


# -- single-mask primitives ------------------------------------------------------------------------
def boundary_tolerance(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> int:
    """Boundary tolerance in pixels: ``ceil(bound_th · ‖(H, W)‖)`` (or ``bound_th`` itself if ≥ 1).

    480p (854×480) → 8, 720p (1280×720) → 12, 1080p (1920×1080) → 18.
    """
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(shape[:2])))


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """BSDS boundary map of a binary mask (``(H, W)`` bool).

    A pixel is a boundary pixel when it differs from its right, lower or lower-right neighbour;
    neighbours outside the image do not count (so the image border is never a boundary).
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"seg2bmap expects a 2-D mask, got shape {m.shape}")
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


def _label_boundaries(lab: np.ndarray, labels) -> dict[int, np.ndarray]:
    """BSDS boundary pixels of ``lab == l`` for every ``l`` in ``labels``, at once.

    A pixel ``p`` is on the boundary of label ``l`` iff some in-image neighbour ``q`` (right, lower,
    lower-right) has ``lab[q] != lab[p]`` and ``l in (lab[p], lab[q])``.

    Returns:
        {label: sorted flat indices (``y * W + x``) of its boundary pixels}; labels without boundary
        pixels are absent.
    """
    labels = [int(v) for v in labels]
    if not labels:
        return {}
    w = lab.shape[1]
    f = np.ascontiguousarray(lab).reshape(-1)
    ps, qs = [], []
    for off in (1, w, w + 1):  # right, lower, lower-right neighbours
        if off >= f.size:
            continue
        d = f[:-off] != f[off:]
        if off != w:
            d[w - 1::w] = False  # the last column has no right / lower-right neighbour
        p = np.flatnonzero(d)
        ps.append(p)
        qs.append(p + off)
    p = np.concatenate(ps) if ps else np.zeros(0, np.intp)
    if p.size == 0:
        return {}
    q = np.concatenate(qs)
    pix = np.concatenate([p, p])
    lbl = np.concatenate([f[p], f[q]])
    if lbl.dtype == np.uint8:
        lut = np.zeros(256, bool)
        lut[[v for v in labels if 0 <= v < 256]] = True
        keep = lut[lbl]
    else:
        keep = np.isin(lbl, labels)
    if not keep.any():
        return {}
    n = f.size
    if len(labels) == 1:  # one label: mark its boundary pixels (sorted and unique by construction)
        marks = np.zeros(n, bool)
        marks[pix[keep]] = True
        return {labels[0]: np.flatnonzero(marks)}
    key = np.sort(lbl[keep].astype(np.int64) * n + pix[keep])
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    lbl = key // n
    pix = key - lbl * n
    starts = np.concatenate([[0], np.flatnonzero(lbl[1:] != lbl[:-1]) + 1])
    ends = np.append(starts[1:], lbl.size)
    return {int(lbl[s]): pix[s:e] for s, e in zip(starts.tolist(), ends.tolist())}


class _Boundary:
    """Boundary pixels of one object in one frame (sorted flat indices in an image of width ``w``),
    with a lazily built k-d tree."""

    __slots__ = ("keys", "pts", "y0", "y1", "x0", "x1", "_tree")

    def __init__(self, keys: np.ndarray, w: int):
        self.keys = keys
        ys, xs = keys // w, keys % w
        self.pts = np.column_stack([ys, xs]).astype(np.float64)
        self.y0, self.y1 = int(ys[0]), int(ys[-1])  # keys are sorted
        self.x0, self.x1 = int(xs.min()), int(xs.max())
        self._tree = None

    def __len__(self):
        return len(self.keys)

    @property
    def tree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree
            self._tree = cKDTree(self.pts)
        return self._tree

    def near(self, other: "_Boundary", r: int) -> bool:
        """Whether the bounding boxes are within ``r`` of each other (else nothing can match)."""
        return (self.y0 - other.y1 <= r and other.y0 - self.y1 <= r and self.x0 - other.x1 <= r
                and other.x0 - self.x1 <= r)

    def count_within(self, other: "_Boundary", r: int) -> int:
        """How many of ``other``'s pixels lie within Euclidean distance ``r`` of one of ours
        (the official "boundary pixels of ``other`` inside our boundary dilated by a disk of radius r")."""
        pts, keys = other.pts, other.keys
        if (other.y0 < self.y0 - r or other.y1 > self.y1 + r or other.x0 < self.x0 - r
                or other.x1 > self.x1 + r):  # pixels outside our box grown by r cannot match
            sel = ((pts[:, 0] >= self.y0 - r) & (pts[:, 0] <= self.y1 + r) & (pts[:, 1] >= self.x0 - r)
                   & (pts[:, 1] <= self.x1 + r))
            pts, keys = pts[sel], keys[sel]
            if not len(keys):
                return 0
        k = np.searchsorted(self.keys, keys)
        same = self.keys[np.minimum(k, len(self.keys) - 1)] == keys  # distance 0
        n = int(np.count_nonzero(same))
        if n < len(keys):
            d, _ = self.tree.query(pts[~same], k=1, distance_upper_bound=r + 0.5)
            # d = sqrt(integer): sqrt(k) <= r  <=>  k <= r² exactly for an integer r
            n += int(np.count_nonzero(d <= r))
        return n


def _f_value(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    """The official precision / recall / F with its empty cases."""
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _f_from_boundaries(bp: _Boundary | None, bg: _Boundary | None, r: int) -> float:
    """Official ``f_measure`` from the boundary pixels of a prediction and a ground truth."""
    n_fg = 0 if bp is None else len(bp)
    n_gt = 0 if bg is None else len(bg)
    if n_fg == 0 or n_gt == 0 or not bp.near(bg, r):
        return _f_value(n_fg, n_gt, 0, 0)
    return _f_value(n_fg, n_gt, bg.count_within(bp, r), bp.count_within(bg, r))


def _f_many(bps: dict[int, _Boundary], pids: Sequence[int], bg: _Boundary | None, r: int) -> np.ndarray:
    """F of many predicted objects against one ground-truth boundary."""
    out = np.empty(len(pids))
    n_gt = 0 if bg is None else len(bg)
    cand = []
    for k, pid in enumerate(pids):
        bp = bps.get(pid)
        n_fg = 0 if bp is None else len(bp)
        if n_fg == 0 or n_gt == 0 or not bp.near(bg, r):
            out[k] = _f_value(n_fg, n_gt, 0, 0)
        else:
            cand.append((k, bp))
    if len(cand) == 1:
        k, bp = cand[0]
        out[k] = _f_from_boundaries(bp, bg, r)
    elif cand:
        # every (ground-truth pixel, predicted pixel) pair within r, for all candidates at once
        from scipy.spatial import cKDTree

        pts = np.concatenate([bp.pts for _, bp in cand])
        owner = np.repeat(np.arange(len(cand)), [len(bp) for _, bp in cand])
        pairs = bg.tree.sparse_distance_matrix(cKDTree(pts), r + 0.5, output_type="ndarray")
        ok = pairs["v"] <= r  # sqrt(k) <= r  <=>  k <= r² for an integer r
        gi, pj = pairs["i"][ok], pairs["j"][ok]
        fg_hit = np.zeros(len(pts), bool)
        fg_hit[pj] = True
        fg_match = np.bincount(owner[fg_hit], minlength=len(cand))
        gt_hit = np.zeros((len(cand), n_gt), bool)
        gt_hit[owner[pj], gi] = True
        gt_match = gt_hit.sum(axis=1)
        for c, (k, bp) in enumerate(cand):
            out[k] = _f_value(len(bp), n_gt, int(fg_match[c]), int(gt_match[c]))
    return out


def _boundaries(lab: np.ndarray, labels) -> dict[int, _Boundary]:
    w = lab.shape[1]
    return {k: _Boundary(v, w) for k, v in _label_boundaries(lab, labels).items()}


def f_measure(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None,
              bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of one binary mask pair (official ``f_measure``).

    Args:
        pred, gt: ``(H, W)`` masks (non-zero = object).
        void: optional ``(H, W)`` bool; void pixels are removed from both masks first.
        bound_th: tolerance as a fraction of the diagonal (or in pixels when ≥ 1).

    Raises:
        ValueError: the shapes differ.
    """
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if void is not None:
        pred = pred & ~void
        gt = gt & ~void
    r = boundary_tolerance(pred.shape, bound_th)
    bp = _boundaries(pred.astype(np.uint8), [1]).get(1)
    bg = _boundaries(gt.astype(np.uint8), [1]).get(1)
    return _f_from_boundaries(bp, bg, r)


def db_statistics(per_frame_values) -> tuple[float, float, float]:
    """Mean, Recall (fraction > 0.5) and Decay of per-frame values, as the official ``db_statistics``.

    Decay = mean of the first minus mean of the last of 4 bins with edges
    ``round(linspace(1, N, 5)) − 1`` (cast to ``uint8`` as upstream does).
    """
    v = np.asarray(per_frame_values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        m = np.nanmean(v)
        o = np.nanmean(v > 0.5)
        ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.uint8)
        bins = [v[ids[i]: ids[i + 1] + 1] for i in range(4)]
        d = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(m), float(o), float(d)


# -- one frame, many objects -------------------------------------------------------------------------
def _crop(pred: np.ndarray, gt: np.ndarray):
    """Both label images cropped to the box of their non-zero pixels grown by one pixel on each side
    (boundaries of non-zero labels computed inside it are exactly those of the full image), or
    ``None`` when both are empty."""
    m = (pred | gt) if (pred.dtype == np.uint8 and gt.dtype == np.uint8) else ((pred != 0) | (gt != 0))
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    h, w = gt.shape
    ys = slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h))
    xs = slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w))
    return pred[ys, xs], gt[ys, xs]


def _pair_counts(pred: np.ndarray, gt: np.ndarray):
    """Joint histogram of (pred id, gt id).

    Returns ``(hist, pred_ids, gt_ids)``: ``hist[i, j]`` counts pixels with pred id ``pred_ids[i]`` and
    gt id ``gt_ids[j]``; with ``None`` ids the histogram is indexed by the ids themselves (0..255).
    """
    if pred.dtype == np.uint8 and gt.dtype == np.uint8:
        key = (pred.astype(np.int32) << 8 | gt).reshape(-1)
        return np.bincount(key, minlength=65536).reshape(256, 256), None, None
    pu, pi = np.unique(pred.reshape(-1), return_inverse=True)
    gu, gi = np.unique(gt.reshape(-1), return_inverse=True)
    hist = np.bincount(pi.reshape(-1) * len(gu) + gi.reshape(-1), minlength=len(pu) * len(gu))
    return hist.reshape(len(pu), len(gu)), pu, gu


@dataclass
class _FrameScores:
    """Scores of one frame: J and F for the (present prediction id, gt object) pairs evaluated, plus
    the ground-truth areas and boundary sizes that give the scores of absent predictions."""

    pred_ids: np.ndarray          # (P,) predicted ids evaluated (diagonal: = gt_ids)
    gt_ids: np.ndarray            # (G,) ground-truth objects evaluated
    j: np.ndarray                 # (P, G), or (G,) when diagonal
    f: np.ndarray
    gt_area: np.ndarray           # (G,)
    gt_nbound: np.ndarray         # (G,)


def _score_frame(pred: np.ndarray, gt: np.ndarray, gt_ids: Sequence[int], r: int,
                 pred_ids: Sequence[int] | str | None = None) -> _FrameScores:
    """J and F of one frame.

    Args:
        pred, gt: ``(H, W)`` integer label images (void already removed where it must be).
        gt_ids: ground-truth objects to score (sorted).
        r: boundary tolerance in pixels (from the full image size).
        pred_ids: predicted ids to score against every object (unsupervised; ``"present"``: every
            non-zero id of ``pred``); ``None`` scores each object only against the predicted id equal to
            it (semi-supervised, "diagonal").
    """
    gt_ids = np.asarray(list(gt_ids), dtype=np.int64)
    diagonal = pred_ids is None
    cand = gt_ids if diagonal else np.zeros(0, np.int64) if isinstance(pred_ids, str) else \
        np.asarray(list(pred_ids), dtype=np.int64)
    crop = _crop(pred, gt)
    if crop is None:  # both empty: J = F = 1 for every pair
        ones = np.ones(len(gt_ids)) if diagonal else np.ones((0, len(gt_ids)))
        zeros = np.zeros(len(gt_ids), dtype=np.int64)
        return _FrameScores(cand if diagonal else cand[:0], gt_ids, ones, ones.copy(), zeros, zeros)
    pred, gt = crop
    hist, pu, gu = _pair_counts(pred, gt)
    if isinstance(pred_ids, str):  # every non-zero predicted id
        cand = np.flatnonzero(hist.sum(axis=1)) if pu is None else pu[hist.sum(axis=1) > 0]
        cand = cand[cand != 0].astype(np.int64)

    def index(u, ids):
        if u is None:
            ok = (ids >= 0) & (ids < 256)
            return np.where(ok, ids, 0), ok
        k = np.minimum(np.searchsorted(u, ids), len(u) - 1)
        return k, u[k] == ids

    gk, gok = index(gu, gt_ids)
    gt_area = np.where(gok, hist.sum(axis=0)[gk], 0)
    pk, pok = index(pu, cand)
    parea = np.where(pok, hist.sum(axis=1)[pk], 0)
    present = parea > 0

    need_p = cand[present].tolist()
    need_g = gt_ids[gt_area > 0].tolist()
    bp = _boundaries(pred, need_p) if need_p else {}
    bg = _boundaries(gt, need_g) if need_g else {}
    gt_nbound = np.array([len(bg[g]) if g in bg else 0 for g in gt_ids.tolist()], dtype=np.int64)

    if diagonal:
        inter = np.where(pok & gok, hist[pk, gk], 0)
        union = parea + gt_area - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            j = inter / union
        j[union == 0] = 1
        f = np.array([_f_from_boundaries(bp.get(o), bg.get(o), r) for o in gt_ids.tolist()], dtype=np.float64)
        return _FrameScores(cand, gt_ids, j, f, gt_area, gt_nbound)

    pkp = pk[present]
    inter = hist[np.ix_(pkp, gk)] * gok[None, :]
    union = parea[present][:, None] + gt_area[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    j[union == 0] = 1
    f = np.empty(j.shape)
    for b, gid in enumerate(gt_ids.tolist()):
        f[:, b] = _f_many(bp, need_p, bg.get(gid), r)
    return _FrameScores(cand[present], gt_ids, j, f, gt_area, gt_nbound)


# -- one sequence ---------------------------------------------------------------------------------------
@dataclass
class ObjectScore:
    """Statistics of one ground-truth object of one sequence (values are fractions in [0, 1])."""

    sequence: str
    object_id: int
    j: np.ndarray = field(repr=False)   # per scored frame
    f: np.ndarray = field(repr=False)
    frames: list[str] = field(default_factory=list, repr=False)
    proposal: int | None = None        # unsupervised: the matched predicted id (0: none)

    def __post_init__(self):
        self.j_mean, self.j_recall, self.j_decay = db_statistics(self.j)
        self.f_mean, self.f_recall, self.f_decay = db_statistics(self.f)

    @property
    def name(self) -> str:
        return f"{self.sequence}_{self.object_id}"

    def as_dict(self) -> dict:
        d = {"J&F-Mean": (self.j_mean + self.f_mean) / 2, "J-Mean": self.j_mean, "J-Recall": self.j_recall,
             "J-Decay": self.j_decay, "F-Mean": self.f_mean, "F-Recall": self.f_recall,
             "F-Decay": self.f_decay, "frames": int(len(self.j))}
        if self.proposal is not None:
            d["proposal"] = int(self.proposal)
        return d


def _prepare(gt: np.ndarray, pred: np.ndarray | None, year: int, exclude_void: bool, where: str):
    """Normalise one frame: binarise (2016), remove void from the ground truth (and from the
    prediction when ``exclude_void``)."""
    if pred is not None and pred.shape != gt.shape:
        raise InputError(f"{where}: predicted mask is {pred.shape[0]}x{pred.shape[1]} (HxW) but the ground "
                         f"truth is {gt.shape[0]}x{gt.shape[1]}")
    if year == 2016:
        g = (gt != 0).astype(np.uint8)
        p = None if pred is None else (pred != 0).astype(np.uint8)
        return g, p
    void = gt == VOID_ID
    if void.any():
        gt = np.where(void, 0, gt).astype(gt.dtype)
        if exclude_void and pred is not None:
            pred = np.where(void, 0, pred).astype(pred.dtype)
    return gt, pred


def score_sequence(gt_frames: Sequence[np.ndarray], pred_frames: Sequence[np.ndarray | None], *,
                   task: str = "semi", year: int = 2017, layout: str = "davis", name: str = "seq",
                   frame_names: Sequence[str] | None = None, max_proposals: int | None = 20,
                   skip_first_last: bool | None = None, bound_th: float = BOUND_TH) -> list[ObjectScore]:
    """Score one sequence.

    Args:
        gt_frames: ground-truth index masks (``(H, W)`` integers, 255 = void), one per annotated frame
            (a list, or any sequence that reads frames lazily on indexing).
        pred_frames: predicted index masks aligned with ``gt_frames`` (entries of unscored frames may
            be ``None``; they are not read).
        task: ``"semi"`` or ``"unsupervised"``.
        year: 2017 (index masks, void 255) or 2016 (any non-zero value is the single object).
        layout: ``"davis"`` (objects are ``1..max id`` of the first ground-truth frame, scored on every
            scored frame) or ``"youtube"`` (objects are all ids of any annotated frame, each scored from
            the first annotated frame in which it appears; predicted ids that are not objects are
            ignored).
        max_proposals: unsupervised: the largest predicted id allowed (official: 20); ``None``: any.
        skip_first_last: exclude the first and last frames (default: ``task == "semi"``).

    Returns:
        One :class:`ObjectScore` per object in the official order (unsupervised, ``davis`` layout:
        the order of the matched proposals, as the official tool lists them).

    Raises:
        InputError: sizes differ; a predicted id above the number of objects (semi, ``davis`` layout);
            a predicted id above ``max_proposals`` (unsupervised).
    """
    _check_score_args(task, layout, year)
    n_frames = len(gt_frames)
    if len(pred_frames) != n_frames:
        raise InputError(f"{name}: {len(pred_frames)} predicted frames for {n_frames} ground-truth frames")
    names = list(frame_names) if frame_names is not None else [f"{i:05d}" for i in range(n_frames)]
    semi = task == "semi"
    skip = semi if skip_first_last is None else skip_first_last
    scored = list(range(1, n_frames - 1)) if skip else list(range(n_frames))
    scored_set = set(scored)

    frames: dict[int, _FrameScores] = {}
    first_seen: dict[int, int] = {}
    n_objects = 0
    max_pred = 0
    r = None
    for t in range(n_frames):
        if not (t == 0 or t in scored_set or layout == "youtube"):
            continue
        where = f"{name}/{names[t]}"
        gt_raw, pred_raw = _read_frame_pair(gt_frames, pred_frames, t, t in scored_set, where)
        g, p = _prepare(gt_raw, pred_raw, year, not semi, where)
        if layout == "davis":
            if t == 0:
                n_objects = 1 if year == 2016 else int(g.max(initial=0))
            objs = list(range(1, n_objects + 1))
        else:
            for o in np.unique(g).tolist():
                if o != 0 and o not in first_seen:
                    first_seen[o] = t
            objs = sorted(first_seen)
        if p is None:
            continue
        if r is None:
            r = boundary_tolerance(g.shape, bound_th)
        pmax = int(p.max(initial=0))
        max_pred = max(max_pred, pmax)
        _check_pred_ids(pmax, semi, layout, n_objects, max_proposals, where)
        frames[t] = _score_frame(p, g, objs, r, None if semi else "present")

    if layout == "davis":
        objects = list(range(1, n_objects + 1))
        obj_frames = {o: scored for o in objects}
    else:
        objects = sorted(first_seen)
        obj_frames = {o: [t for t in scored if t >= first_seen[o]] for o in objects}
        objects = [o for o in objects if obj_frames[o]]
    if semi:
        return [_semi_object_score(name, o, obj_frames[o], frames, names) for o in objects]
    return _match_unsupervised(name, objects, obj_frames, max_pred, frames, names, layout)


def _check_score_args(task: str, layout: str, year: int) -> None:
    """Raises InputError for a task, layout or year :func:`score_sequence` does not know."""
    if task not in ("semi", "unsupervised"):
        raise InputError(f"task must be 'semi' or 'unsupervised', got {task!r}")
    if layout not in ("davis", "youtube"):
        raise InputError(f"layout must be 'davis' or 'youtube', got {layout!r}")
    if year not in (2016, 2017):
        raise InputError(f"year must be 2016 or 2017, got {year}")


def _read_frame_pair(gt_frames, pred_frames, t: int, scored: bool, where: str):
    """Frame ``t``'s ground truth and (on a scored frame) prediction as 2-D arrays; the prediction is
    ``None`` on an unscored frame. Raises InputError for a missing or non-2-D mask."""
    gt_raw = np.asarray(gt_frames[t])
    if gt_raw.ndim != 2:
        raise InputError(f"{where}: ground truth must be a single-channel index mask")
    if not scored:
        return gt_raw, None
    pred_raw = pred_frames[t]
    if pred_raw is None:
        raise InputError(f"{where}: the predicted mask is missing")
    pred_raw = np.asarray(pred_raw)
    if pred_raw.ndim != 2:
        raise InputError(f"{where}: predicted mask must be a single-channel index mask, got shape {pred_raw.shape}")
    return gt_raw, pred_raw


def _check_pred_ids(pmax: int, semi: bool, layout: str, n_objects: int, max_proposals: int | None,
                    where: str) -> None:
    """The official evaluator's limits on predicted ids (see :func:`score_sequence`'s Raises)."""
    if semi and layout == "davis" and pmax > n_objects:
        raise InputError(f"{where}: predicted id {pmax} but the sequence has only "
                         f"{n_objects} object(s) in its first frame (the official evaluator refuses "
                         "ids above the number of objects)")
    if not semi and max_proposals is not None and pmax > max_proposals:
        raise InputError(f"{where}: predicted id {pmax} is above the maximum number of "
                         f"proposals ({max_proposals})")


def _object_values(fs: _FrameScores, o: int, pid: int) -> tuple[float, float]:
    """J and F of predicted id ``pid`` against object ``o`` on one scored frame (an absent
    prediction scores 1 only where the object is absent too)."""
    b = int(np.searchsorted(fs.gt_ids, o))
    if pid in fs.pred_ids.tolist():
        if fs.j.ndim == 1:
            return fs.j[b], fs.f[b]
        a = fs.pred_ids.tolist().index(pid)
        return fs.j[a, b], fs.f[a, b]
    return (1.0 if fs.gt_area[b] == 0 else 0.0), (1.0 if fs.gt_nbound[b] == 0 else 0.0)


def _semi_object_score(name: str, o: int, ts: list[int], frames: dict[int, _FrameScores],
                       names: list[str]) -> ObjectScore:
    """Semi-supervised: object ``o`` scored against the predicted id ``o`` over frames ``ts``."""
    if not ts:
        return ObjectScore(name, o, np.zeros(0), np.zeros(0), [])
    jf = np.array([_object_values(frames[t], o, o) for t in ts], dtype=np.float64).reshape(len(ts), 2)
    return ObjectScore(name, o, np.ascontiguousarray(jf[:, 0]), np.ascontiguousarray(jf[:, 1]),
                       [names[t] for t in ts])


def _dense(frames: dict[int, _FrameScores], ts: list[int], o: int, n_prop: int, which: str) -> np.ndarray:
    """(n_prop, len(ts)) J or F of proposals 1..n_prop against object ``o`` over frames ``ts``."""
    out = np.empty((n_prop, len(ts)))
    for k, t in enumerate(ts):
        fs = frames[t]
        b = int(np.searchsorted(fs.gt_ids, o))
        if which == "j":
            out[:, k] = 1.0 if fs.gt_area[b] == 0 else 0.0
            src = fs.j
        else:
            out[:, k] = 1.0 if fs.gt_nbound[b] == 0 else 0.0
            src = fs.f
        for a, pid in enumerate(fs.pred_ids.tolist()):
            if 1 <= pid <= n_prop:
                out[pid - 1, k] = src[a, b]
    return out


def _match_unsupervised(name, objects, obj_frames, max_pred, frames, names, layout) -> list[ObjectScore]:
    """Hungarian matching of proposals ``1..max(max_pred, n_objects)`` to objects on (mean J + mean F)/2."""
    from scipy.optimize import linear_sum_assignment

    n = len(objects)
    if n == 0:
        return []
    n_prop = max(max_pred, n)  # the official tool pads the proposals with empty masks up to n
    if layout == "davis":
        ts = obj_frames[objects[0]]
        j = np.zeros((n_prop, n, len(ts)))
        f = np.zeros((n_prop, n, len(ts)))
        for b, o in enumerate(objects):
            j[:, b, :] = _dense(frames, ts, o, n_prop, "j")
            f[:, b, :] = _dense(frames, ts, o, n_prop, "f")
        all_metrics = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
        rows, cols = linear_sum_assignment(-all_metrics)
        return [ObjectScore(name, objects[c], j[r_, c, :].copy(), f[r_, c, :].copy(), [names[t] for t in ts],
                            proposal=int(r_ + 1)) for r_, c in zip(rows, cols)]
    per_obj = {}
    all_metrics = np.zeros((n_prop, n))
    for b, o in enumerate(objects):
        ts = obj_frames[o]
        jj = _dense(frames, ts, o, n_prop, "j")
        ff = _dense(frames, ts, o, n_prop, "f")
        per_obj[o] = (jj, ff, ts)
        all_metrics[:, b] = (np.mean(jj, axis=1) + np.mean(ff, axis=1)) / 2
    rows, cols = linear_sum_assignment(-all_metrics)
    out = []
    for r_, c in zip(rows, cols):
        jj, ff, ts = per_obj[objects[c]]
        out.append(ObjectScore(name, objects[c], jj[r_].copy(), ff[r_].copy(), [names[t] for t in ts],
                               proposal=int(r_ + 1)))
    return out


def renumber_proposals(preds: Sequence[np.ndarray]) -> tuple[list[np.ndarray], dict[int, int]]:
    """Renumber the predicted ids of a sequence to 1..K (increasing order of the original ids), as the
    unsupervised protocol expects of proposals.

    Args:
        preds: (H, W) integer index masks, 0 = background.

    Returns:
        (the renumbered int64 masks, ``{original id: new id}``).
    """
    ids = sorted({int(v) for p in preds for v in np.unique(p)} - {0})
    mapping = {v: k + 1 for k, v in enumerate(ids)}
    lut = np.zeros(max(ids, default=0) + 1, dtype=np.int64)
    for v, k in mapping.items():
        lut[v] = k
    return [lut[np.asarray(p, dtype=np.int64)] for p in preds], mapping


# -- aggregation ----------------------------------------------------------------------------------------
def summarize(objects: Sequence[ObjectScore], **meta) -> dict:
    """Global statistics over objects (object-weighted means, official order) and a per-object table.

    Returns:
        ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"`` (fractions),
        ``"num_objects", "num_sequences", "per_object": {"<seq>_<id>": {...}}, **meta}``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        jm = np.mean([o.j_mean for o in objects]) if objects else float("nan")
        fm = np.mean([o.f_mean for o in objects]) if objects else float("nan")
        res = {
            "J&F-Mean": float((jm + fm) / 2.0),
            "J-Mean": float(jm),
            "J-Recall": float(np.mean([o.j_recall for o in objects])) if objects else float("nan"),
            "J-Decay": float(np.mean([o.j_decay for o in objects])) if objects else float("nan"),
            "F-Mean": float(fm),
            "F-Recall": float(np.mean([o.f_recall for o in objects])) if objects else float("nan"),
            "F-Decay": float(np.mean([o.f_decay for o in objects])) if objects else float("nan"),
        }
    # list objects by sequence, then object id (the unsupervised official order is by proposal)
    order = {}
    for o in objects:
        order.setdefault(o.sequence, []).append(o)
    per = {o.name: o.as_dict() for s in order for o in sorted(order[s], key=lambda x: x.object_id)}
    res.update(num_objects=len(objects), num_sequences=len(order), per_object=per)
    res.update(meta)
    return res


# -- files ------------------------------------------------------------------------------------------------
class _LazyMasks:
    """A sequence of mask files decoded on indexing; with an ``executor``, the next ``ahead`` files are
    decoded in the background (PNG decoding releases the GIL) while the current frame is scored."""

    def __init__(self, paths: list[Path | None], what: str, executor=None, ahead: int = 4):
        self.paths = paths
        self.what = what
        self.executor = executor
        self.ahead = ahead
        self._futures: dict[int, object] = {}

    def __len__(self):
        return len(self.paths)

    def _read(self, i):
        p = self.paths[i]
        if p is None:
            return None
        if not p.is_file():
            raise InputError(f"{self.what}: {p} does not exist")
        return read_index_png(p)

    def __getitem__(self, i):
        if self.executor is None:
            return self._read(i)
        for k in range(i, min(i + self.ahead + 1, len(self.paths))):
            if k not in self._futures and self.paths[k] is not None:
                self._futures[k] = self.executor.submit(self._read, k)
        for k in [k for k in self._futures if k < i]:  # frames skipped by the protocol
            self._futures.pop(k)
        fut = self._futures.pop(i, None)
        return self._read(i) if fut is None else fut.result()


def _detect_layout(gt_root: Path, resolution: str) -> str:
    if (gt_root / "Annotations" / resolution).is_dir():
        return "davis"
    if (gt_root / "Annotations").is_dir():
        return "youtube"
    raise InputError(f"{gt_root} has neither Annotations/{resolution}/ (DAVIS layout) nor Annotations/ "
                     "(YouTube-VOS / MOSE layout)")


def _list_sequences(gt_root: Path, ann_root: Path, layout: str, split: str | None, year: int) -> list[str]:
    from ..data.davis import _find_image_set, _sequence_name

    if split is not None:
        f = _find_image_set(gt_root, year, split)
        if f is None and layout == "youtube":
            f = next((c for c in (gt_root / "ImageSets" / f"{split}.txt",) if c.is_file()), None)
        if f is not None:
            seqs = [_sequence_name(ln) for ln in f.read_text().splitlines() if ln.strip()]
            return list(dict.fromkeys(seqs))
        if layout == "davis":
            raise InputError(f"no ImageSets file for set {split!r} under {gt_root} "
                             f"(looked for ImageSets/{year}/{split}.txt and ImageSets/{split}.txt)")
    return sorted(p.name for p in ann_root.iterdir() if p.is_dir())


def evaluate_davis(gt_root, pred_root, *, task: str = "semi", split: str | None = "val", year: int = 2017,
                   resolution: str = "480p", sequences: Sequence[str] | None = None, layout: str = "auto",
                   max_proposals: int | None = 20, workers: int = 1, progress: bool = False,
                   bound_th: float = BOUND_TH) -> dict:
    """Score a folder of predicted index PNGs (``PRED/<seq>/<frame>.png``) against a DAVIS-style root.

    Args:
        gt_root: DAVIS root (``Annotations/<resolution>/<seq>/``, ``ImageSets/<year>/<set>.txt``), or
            a YouTube-VOS / MOSE root (``Annotations/<video>/``) with ``layout="youtube"``.
        pred_root: folder of predicted sequences.
        task: ``"semi"`` or ``"unsupervised"`` (unsupervised reads ``Annotations_unsupervised`` when
            the root has it, as the official tool does).
        split: image set (``val``...); ``None`` = every annotated sequence.
        year: 2017 (index masks, void 255) or 2016 (0/255 masks, one object).
        sequences: explicit sequence names (override ``split``).
        layout: ``"auto"`` (``davis`` when ``Annotations/<resolution>`` exists), ``"davis"``, ``"youtube"``.
        workers: processes scoring sequences in parallel (``0``: one per CPU core).

    Returns:
        :func:`summarize`'s dict plus ``task``, ``year``, ``set``, ``layout``, ``sequences``.

    Raises:
        InputError: missing folders, a predicted sequence or frame missing, a mask of the wrong size,
            unreadable masks, ids the protocol refuses.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if task not in ("semi", "unsupervised"):
        raise InputError(f"task must be 'semi' or 'unsupervised', got {task!r}")
    if year not in (2016, 2017):
        raise InputError(f"DAVIS year must be 2016 or 2017, got {year}")
    if not gt_root.is_dir():
        raise InputError(f"ground-truth root {gt_root} does not exist")
    if not pred_root.is_dir():
        raise InputError(f"prediction folder {pred_root} does not exist")
    if layout == "auto":
        layout = _detect_layout(gt_root, resolution)
    if layout == "davis":
        ann_root = gt_root / "Annotations" / resolution
        if task == "unsupervised" and (gt_root / "Annotations_unsupervised" / resolution).is_dir():
            ann_root = gt_root / "Annotations_unsupervised" / resolution
    elif layout == "youtube":
        ann_root = gt_root / "Annotations"
    else:
        raise InputError(f"layout must be 'auto', 'davis' or 'youtube', got {layout!r}")
    if not ann_root.is_dir():
        raise InputError(f"{ann_root} does not exist")
    seqs = list(sequences) if sequences is not None else _list_sequences(gt_root, ann_root, layout, split, year)
    if not seqs:
        raise InputError(f"no sequences to evaluate under {ann_root}")
    missing_gt = [s for s in seqs if not (ann_root / s).is_dir()]
    if missing_gt:
        raise InputError(f"{len(missing_gt)} sequence(s) have no ground truth in {ann_root}: {missing_gt[:5]}")
    missing = [s for s in seqs if not (pred_root / s).is_dir()]
    if missing:
        raise InputError(f"{len(missing)} predicted sequence(s) missing in {pred_root}: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")

    run = partial(_score_sequence_files, ann_root, pred_root, task=task, year=year, layout=layout,
                  max_proposals=max_proposals, bound_th=bound_th)
    if workers is not None and workers <= 0:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers or 1), len(seqs)))
    if workers > 1:  # processes: the per-frame work holds the GIL most of the time
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            results = list(_progress(ex.map(run, seqs), len(seqs), progress))
    else:
        results = [run(s) for s in _progress(seqs, len(seqs), progress)]
    objects = [o for r in results for o in r]
    return summarize(objects, task=task, year=year, set=split, layout=layout, resolution=resolution,
                     sequences=list(seqs))


def _score_sequence_files(ann_root: Path, pred_root: Path, seq: str, *, task: str, year: int, layout: str,
                          max_proposals: int | None, bound_th: float) -> list[ObjectScore]:
    """Score ``pred_root/seq/<frame>.png`` against ``ann_root/seq/<frame>.png``."""
    gts = sorted((ann_root / seq).glob("*.png"))
    if not gts:
        raise InputError(f"no ground-truth masks in {ann_root / seq}")
    names = [p.stem for p in gts]
    n = len(gts)
    pred_paths: list[Path | None] = [pred_root / seq / f"{nm}.png" for nm in names]
    if task == "semi":  # the official tool does not read the first and last predicted frames
        pred_paths = [p if 0 < i < n - 1 else None for i, p in enumerate(pred_paths)]
    for p in pred_paths:
        if p is not None and not p.is_file():
            raise InputError(f"predicted mask missing: {p} (sequence {seq!r}, frame {p.stem})")
    with ThreadPoolExecutor(max_workers=2) as io:  # decode ahead while scoring
        return score_sequence(_LazyMasks(list(gts), seq, io), _LazyMasks(pred_paths, seq, io), task=task,
                              year=year, layout=layout, name=seq, frame_names=names,
                              max_proposals=max_proposals, bound_th=bound_th)


def _progress(it, total, enabled):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc="J&F", unit="seq")


# -- output -----------------------------------------------------------------------------------------------
def format_table(res: dict, split: str | None = None) -> str:
    """The official-style tables (values in percent, one decimal)."""
    split = split if split is not None else res.get("set") or ""
    cols = list(MEASURES)
    w = max(len(c) for c in cols) + 2
    lines = [f"--------------------------- Global results for {split} ---------------------------", "",
             "".join(f"{c:>{w}}" for c in cols),
             "".join(f"{_pct(res[c]):>{w}}" for c in cols), "",
             f"---------- Per sequence results for {split} ----------", ""]
    names = list(res["per_object"])
    nw = max([len("Sequence")] + [len(n) for n in names]) + 2
    lines.append(f"{'Sequence':>{nw}}{'J-Mean':>10}{'F-Mean':>10}")
    for n in names:
        o = res["per_object"][n]
        lines.append(f"{n:>{nw}}{_pct(o['J-Mean']):>10}{_pct(o['F-Mean']):>10}")
    return "\n".join(lines)


def _pct(v) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON atomically (full float precision; NaN → null)."""
    with atomic_open(path, "w") as f:
        json.dump(_jsonable(obj), f, indent=2)
        f.write("\n")
