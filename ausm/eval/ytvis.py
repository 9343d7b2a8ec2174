"""Video instance segmentation AP, computed as the official YouTube-VIS API (``youtubevos/cocoapi``,
``YTVOSeval``) computes it.

Semantics (spec §9):

* A track is a list of per-frame segmentations (RLE / polygons, ``None`` where absent). The video IoU of
  a detection ``d`` and a ground truth ``g`` is ``Σ_t |d_t ∩ g_t| / Σ_t |d_t ∪ g_t|`` over the frames of
  both lists (``zip``), where a frame with only one of them present adds its area to the union; a zero
  union gives 0.
* Per (video, category): detections sorted by score (stable), at most ``maxDets[-1] = 100``; COCO greedy
  matching at IoU thresholds ``.50:.05:.95``; crowd ground truths (``iscrowd``) are ignored and may be
  matched repeatedly; ground truths / unmatched detections whose *mean area over the frames where the
  track is present and non-empty* lies outside the area range are ignored.
* Precision at 101 recall points (interpolated), recall at ``maxDets`` 1 / 10 / 100, area ranges
  all / small (< 128²) / medium (128²–256²) / large (> 256²); the 12 statistics in the official order.
* Ground truth ``avg_area`` comes from the annotation's ``areas`` list (as the API does); results'
  areas are computed from their RLEs.

Differences from the official API, all on input it would reject or crash on: an empty results list
scores 0 instead of raising; results may use uncompressed RLE or polygons as well as compressed RLE; a
ground-truth annotation without ``areas`` gets them from its masks; a result mask whose size differs
from its video raises :class:`~ausm.errors.InputError` (the API silently scores it 0).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["STAT_NAMES", "STAT_LABELS", "Params", "evaluate_ytvis", "load_json", "format_summary",
           "video_iou_matrix"]

#: Keys of the 12 statistics, in the official order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class Params:
    """Evaluation parameters (the official defaults)."""

    iou_thrs: np.ndarray = None
    rec_thrs: np.ndarray = None
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_rng: tuple[tuple[float, float], ...] = ((0 ** 2, 1e5 ** 2), (0 ** 2, 128 ** 2), (128 ** 2, 256 ** 2),
                                                 (256 ** 2, 1e5 ** 2))
    area_lbl: tuple[str, ...] = ("all", "small", "medium", "large")

    def __post_init__(self):
        if self.iou_thrs is None:
            self.iou_thrs = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
        if self.rec_thrs is None:
            self.rec_thrs = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
        self.max_dets = tuple(sorted(self.max_dets))


#: (ap, iouThr, areaRng, maxDets index) of each statistic, in the official order.
_SUMMARY = ((1, None, "all", 2), (1, .5, "all", 2), (1, .75, "all", 2), (1, None, "small", 2),
            (1, None, "medium", 2), (1, None, "large", 2), (0, None, "all", 0), (0, None, "all", 1),
            (0, None, "all", 2), (0, None, "small", 2), (0, None, "medium", 2), (0, None, "large", 2))

#: The official summary line of each statistic (without the value).
STAT_LABELS = tuple(
    " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ]".format(
        "Average Precision" if ap else "Average Recall", "(AP)" if ap else "(AR)",
        "0.50:0.95" if thr is None else f"{thr:0.2f}", area, (1, 10, 100)[m])
    for ap, thr, area, m in _SUMMARY)


# -- input ------------------------------------------------------------------------------------------------
def load_json(path, what: str = "JSON file"):
    """Read a JSON file; :class:`InputError` when it is missing or not valid JSON."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p} does not exist")
    try:
        with open(p, "rb") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {what} {p}: {e}") from e


@dataclass
class _Track:
    id: int
    video_id: int
    category_id: int
    score: float
    iscrowd: int
    ignore: bool
    rles: list          # compressed RLE dict per frame, or None where absent
    areas: np.ndarray   # int64 per frame (0 where absent)
    avg_area: float


def _mask_api():
    from pycocotools import mask as mask_utils
    return mask_utils


def _to_rle(seg, h: int, w: int, where: str):
    """A segmentation (compressed / uncompressed RLE or polygons) as a compressed RLE, or ``None``."""
    mu = _mask_api()
    if not seg:
        return None
    try:
        if isinstance(seg, list):
            return mu.merge(mu.frPyObjects(seg, h, w))
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise InputError(f"{where}: a segmentation must be an RLE dict with 'size' and 'counts', "
                             "a polygon list or null")
        if isinstance(seg["counts"], list):
            return mu.frPyObjects(seg, h, w)
        counts = seg["counts"]
        return {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    except InputError:
        raise
    except Exception as e:  # pycocotools raises TypeError / ValueError / ... on malformed input
        raise InputError(f"{where}: invalid segmentation: {e}") from e


def _parse_gt(gt: dict):
    if not isinstance(gt, dict):
        raise InputError("ground truth must be a JSON object with 'videos', 'annotations' and 'categories'")
    for key in ("videos", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise InputError(f"ground truth has no {key!r} list")
    try:
        videos = {v["id"]: (int(v["height"]), int(v["width"])) for v in gt["videos"]}
        lengths = {v["id"]: int(v.get("length") or len(v.get("file_names") or [])) or None for v in gt["videos"]}
        cat_ids = sorted({c["id"] for c in gt["categories"]})
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"ground truth videos / categories are malformed: {e!r}") from e
    mu = _mask_api()
    tracks = []
    for n, ann in enumerate(gt["annotations"]):
        try:
            vid, cat, segs = ann["video_id"], ann["category_id"], ann["segmentations"]
            ann_id = ann["id"]
        except (KeyError, TypeError) as e:
            raise InputError(f"ground-truth annotation #{n} lacks {e}") from e
        if vid not in videos:
            continue  # the API only loads annotations of listed videos
        h, w = videos[vid]
        rles = [_to_rle(s, h, w, f"ground-truth annotation {ann_id} frame {t}") for t, s in enumerate(segs)]
        present = [r for r in rles if r is not None]
        areas = np.zeros(len(rles), dtype=np.int64)
        if present:
            areas[[t for t, r in enumerate(rles) if r is not None]] = mu.area(present)
        if "areas" in ann and ann["areas"] is not None:
            listed = [a for a in ann["areas"] if a]
        else:
            listed = [a for a in areas.tolist() if a]
        avg = float(np.array(listed).mean()) if listed else 0
        crowd = int(ann.get("iscrowd", 0) or 0)
        tracks.append(_Track(ann_id, vid, cat, 0.0, crowd, bool(crowd), rles, areas, avg))
    return videos, cat_ids, tracks, lengths


def _parse_results(results, videos: dict, cat_ids=None, lengths=None) -> list[_Track]:
    """Results checked as strictly as the official tools read them: finite scores, known categories,
    one segmentation per frame of the video (when the ground truth gives its length), valid RLEs."""
    if isinstance(results, dict) and isinstance(results.get("annotations"), list):
        results = results["annotations"]
    if not isinstance(results, list):
        raise InputError("results must be a JSON list of {video_id, category_id, score, segmentations}")
    mu = _mask_api()
    tracks = []
    unknown = set()
    for n, r in enumerate(results):
        if not isinstance(r, dict):
            raise InputError(f"result #{n} is not an object")
        try:
            vid, cat, score, segs = r["video_id"], r["category_id"], float(r["score"]), r["segmentations"]
        except KeyError as e:
            raise InputError(f"result #{n} lacks {e}") from e
        except (TypeError, ValueError) as e:
            raise InputError(f"result #{n} has an invalid score: {e}") from e
        if not np.isfinite(score):
            raise InputError(f"result #{n} (video {vid}) has a non-finite score {score}")
        if vid not in videos:
            unknown.add(vid)
            continue
        if cat_ids is not None and cat not in cat_ids:
            raise InputError(f"result #{n} (video {vid}): category_id {cat!r} is not a ground-truth category")
        if not isinstance(segs, list) or not segs:
            raise InputError(f"result #{n} (video {vid}): 'segmentations' must be a non-empty list (one entry per frame)")
        num = (lengths or {}).get(vid)
        if num is not None and len(segs) != num:
            raise InputError(f"result #{n} (video {vid}): {len(segs)} segmentations for a video of {num} frames")
        h, w = videos[vid]
        rles = [_to_rle(s, h, w, f"result #{n} frame {t}") for t, s in enumerate(segs)]
        for t, rle in enumerate(rles):
            if rle is not None and [int(v) for v in rle["size"]] != [h, w]:
                raise InputError(f"result #{n} (video {vid}) frame {t}: mask size {rle['size'][0]}x{rle['size'][1]} "
                                 f"(HxW) differs from the video size {h}x{w}")
        present_t = [t for t, x in enumerate(rles) if x is not None]
        areas = np.zeros(len(rles), dtype=np.int64)
        if present_t:
            try:
                areas[present_t] = mu.area([rles[t] for t in present_t])
            except Exception as e:  # pycocotools on malformed counts
                raise InputError(f"result #{n} (video {vid}): invalid RLE counts: {e}") from e
            if (areas < 0).any() or (areas > h * w).any():
                t = int(np.nonzero((areas < 0) | (areas > h * w))[0][0])
                raise InputError(f"result #{n} (video {vid}) frame {t}: invalid RLE counts (area {areas[t]} for a "
                                 f"{h}x{w} frame)")
        listed = [a for a in areas[present_t].tolist() if a]
        avg = float(np.array(listed).mean()) if listed else 0
        tracks.append(_Track(n + 1, vid, cat, score, 0, False, rles, areas, avg))
    if unknown:
        raise InputError(f"results refer to {len(unknown)} video id(s) that are not in the ground truth: "
                         f"{sorted(unknown, key=str)[:5]}")
    return tracks


# -- video IoU ------------------------------------------------------------------------------------------
def video_iou_matrix(dts: Sequence[_Track], gts: Sequence[_Track]) -> np.ndarray:
    """``(D, G)`` video IoUs ``Σ_t |d ∩ g| / Σ_t |d ∪ g|`` over ``t < min(len(d), len(g))``."""
    D, G = len(dts), len(gts)
    if D == 0 or G == 0:
        return np.zeros((D, G))
    mu = _mask_api()
    ld = np.array([len(d.rles) for d in dts])
    lg = np.array([len(g.rles) for g in gts])
    inter = np.zeros((D, G), dtype=np.int64)
    union = np.zeros((D, G), dtype=np.int64)
    for t in range(int(max(ld.max(), lg.max()))):
        vd, vg = ld > t, lg > t
        valid = vd[:, None] & vg[None, :]
        if not valid.any():
            continue
        ad = np.array([d.areas[t] if vd[i] else 0 for i, d in enumerate(dts)], dtype=np.int64)
        ag = np.array([g.areas[t] if vg[j] else 0 for j, g in enumerate(gts)], dtype=np.int64)
        di = [i for i, d in enumerate(dts) if vd[i] and d.rles[t] is not None]
        gi = [j for j, g in enumerate(gts) if vg[j] and g.rles[t] is not None]
        it = np.zeros((D, G), dtype=np.int64)
        if di and gi:
            # with iscrowd=1 pycocotools returns |d ∩ g| / |d| exactly; recover the integer intersection
            o = np.asarray(mu.iou([dts[i].rles[t] for i in di], [gts[j].rles[t] for j in gi], [1] * len(gi)),
                           dtype=np.float64).reshape(len(di), len(gi))
            it[np.ix_(di, gi)] = np.rint(o * ad[di][:, None]).astype(np.int64)
        inter += np.where(valid, it, 0)
        union += np.where(valid, ad[:, None] + ag[None, :] - it, 0)
    out = np.zeros((D, G))
    np.divide(inter, union, out=out, where=union > 0)
    return out


# -- evaluation -----------------------------------------------------------------------------------------
def _evaluate_video(gt: list[_Track], dt: list[_Track], ious: np.ndarray, a_rng, max_det: int, thrs: np.ndarray):
    """Greedy matching of one (video, category) for one area range (the API's ``evaluateVid``)."""
    if not gt and not dt:
        return None
    g_ign = np.array([g.ignore or g.avg_area < a_rng[0] or g.avg_area > a_rng[1] for g in gt], dtype=bool)
    g_order = np.argsort(g_ign.astype(np.int64), kind="mergesort")
    gt = [gt[i] for i in g_order]
    g_ign = g_ign[g_order]
    dt = dt[:max_det]  # already sorted by score
    crowd = [bool(g.iscrowd) for g in gt]
    ious = ious[:len(dt)][:, g_order] if ious.size else ious
    T, G, D = len(thrs), len(gt), len(dt)
    gtm = np.zeros((T, G))
    dtm = np.zeros((T, D))
    d_ign = np.zeros((T, D), dtype=bool)
    if ious.size:
        for ti, thr in enumerate(thrs):
            for di in range(D):
                best = min(thr, 1 - 1e-10)
                m = -1
                for gi in range(G):
                    if gtm[ti, gi] > 0 and not crowd[gi]:
                        continue  # already matched and not a crowd
                    if m > -1 and not g_ign[m] and g_ign[gi]:
                        break  # matched a regular gt; the rest are ignored ones
                    if ious[di, gi] < best:
                        continue
                    best = ious[di, gi]
                    m = gi
                if m == -1:
                    continue
                d_ign[ti, di] = g_ign[m]
                dtm[ti, di] = gt[m].id
                gtm[ti, m] = dt[di].id
    out_of_range = np.array([d.avg_area < a_rng[0] or d.avg_area > a_rng[1] for d in dt], dtype=bool)
    d_ign = d_ign | ((dtm == 0) & out_of_range[None, :])
    return {"scores": np.array([d.score for d in dt], dtype=np.float64), "dtm": dtm, "d_ign": d_ign, "g_ign": g_ign}


def _accumulate(ev: dict, cat_ids: list, vid_ids: list, p: Params):
    T, R, K, A, M = len(p.iou_thrs), len(p.rec_thrs), len(cat_ids), len(p.area_rng), len(p.max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, cat in enumerate(cat_ids):
        for a in range(A):
            E = [ev[cat, a, v] for v in vid_ids if ev.get((cat, a, v)) is not None]
            if not E:
                continue
            for m, max_det in enumerate(p.max_dets):
                scores = np.concatenate([e["scores"][:max_det] for e in E])
                order = np.argsort(-scores, kind="mergesort")
                dtm = np.concatenate([e["dtm"][:, :max_det] for e in E], axis=1)[:, order]
                d_ign = np.concatenate([e["d_ign"][:, :max_det] for e in E], axis=1)[:, order]
                g_ign = np.concatenate([e["g_ign"] for e in E])
                npig = int(np.count_nonzero(g_ign == 0))
                if npig == 0:
                    continue
                tps = (dtm != 0) & ~d_ign
                fps = (dtm == 0) & ~d_ign
                tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
                fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
                for t in range(T):
                    tp, fp = tp_sum[t], fp_sum[t]
                    nd = len(tp)
                    rc = tp / npig
                    pr = tp / (fp + tp + np.spacing(1))
                    recall[t, k, a, m] = rc[-1] if nd else 0
                    # make precision monotonically decreasing (right-to-left running maximum)
                    pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
                    inds = np.searchsorted(rc, p.rec_thrs, side="left")
                    q = np.zeros(R)
                    ok = inds < nd
                    # the API fills recall points in order until the first one past the last detection
                    stop = int(np.argmin(ok)) if not ok.all() else R
                    q[:stop] = pr[inds[:stop]]
                    precision[t, :, k, a, m] = q
    return precision, recall


def _summarize(precision, recall, p: Params) -> list[float]:
    stats = []
    for ap, thr, area, m in _SUMMARY:
        a = p.area_lbl.index(area)
        s = precision if ap else recall
        if thr is not None:
            s = s[np.where(thr == p.iou_thrs)[0]]
        s = s[..., a, m]
        valid = s[s > -1]
        stats.append(float(np.mean(valid)) if valid.size else -1.0)
    return stats


def evaluate_ytvis(gt, results, params: Params | None = None, return_arrays: bool = False) -> dict:
    """Video mask AP of ``results`` against ``gt`` (both loaded JSON objects, or paths).

    Args:
        gt: YouTube-VIS ground truth: ``{"videos": [{id, height, width, ...}], "categories": [...],
            "annotations": [{id, video_id, category_id, iscrowd, segmentations, areas}]}``.
        results: ``[{video_id, category_id, score, segmentations}]`` (one entry per predicted track,
            one segmentation per frame, ``null`` where absent).

    Returns:
        ``{"AP": .., "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
        "stats": [12 values in the official order], "num_videos", "num_results"}`` (fractions; ``-1``
        where a statistic has no ground truth, as the API reports); with ``return_arrays`` also
        ``precision`` ``[T, R, K, A, M]`` and ``recall`` ``[T, K, A, M]``.

    Raises:
        InputError: unreadable or malformed input, results for unknown videos, masks of the wrong size.
    """
    p = params or Params()
    if isinstance(gt, (str, Path)):
        gt = load_json(gt, "ground-truth file")
    if isinstance(results, (str, Path)):
        results = load_json(results, "results file")
    videos, cat_ids, gts, lengths = _parse_gt(gt)
    dts = _parse_results(results, videos, set(cat_ids), lengths)
    vid_ids = sorted(videos)
    cat_set = set(cat_ids)
    by_g: dict = {}
    by_d: dict = {}
    for g in gts:
        if g.category_id in cat_set:
            by_g.setdefault((g.video_id, g.category_id), []).append(g)
    for d in dts:
        if d.category_id in cat_set:
            by_d.setdefault((d.video_id, d.category_id), []).append(d)
    ev = {}
    max_det = p.max_dets[-1]
    for key in set(by_g) | set(by_d):
        vid, cat = key
        g = by_g.get(key, [])
        d = by_d.get(key, [])
        order = np.argsort([-x.score for x in d], kind="mergesort")
        d = [d[i] for i in order][:max_det]
        ious = video_iou_matrix(d, g)
        for a, rng in enumerate(p.area_rng):
            ev[cat, a, vid] = _evaluate_video(g, d, ious, rng, max_det, p.iou_thrs)
    precision, recall = _accumulate(ev, cat_ids, vid_ids, p)
    stats = _summarize(precision, recall, p)
    out = dict(zip(STAT_NAMES, stats))
    out.update(stats=stats, num_videos=len(vid_ids), num_results=len(dts))
    if return_arrays:
        out.update(precision=precision, recall=recall)
    return out


def format_summary(res: dict) -> str:
    """The API's 12 summary lines (``... ] = 0.xxx``)."""
    return "\n".join(f"{label} = {v:0.3f}" for label, v in zip(STAT_LABELS, res["stats"]))
