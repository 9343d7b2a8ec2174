"""Compare ``ausm eval ytvis`` with the official YouTube-VIS API, side by side.

The official API (youtubevos/cocoapi ``ytvos.py`` / ``ytvoseval.py``) is not on PyPI; mmtrack's wheel
vendors an unmodified copy (``mmtrack/core/evaluation/ytvis.py``, ``ytviseval.py``) that needs only numpy
and pycocotools. Fetch it without its (Python-3.11-incompatible) dependencies and point this script at it:

    pip download --no-deps mmtrack==0.14.0 -d /tmp/mm
    python -m zipfile -e /tmp/mm/mmtrack-0.14.0-py3-none-any.whl /tmp/mm/x
    OMP_NUM_THREADS=1 python scripts/metric_checks/ytvis_vs_official.py --api-dir /tmp/mm/x/mmtrack/core/evaluation \\
        --gt GT.json --pred RESULTS.json [--fuzz 300]

Prints both sets of 12 statistics and the largest difference (also of the full precision / recall
arrays); ``--fuzz N`` adds N random ground truths / results (crowd tracks, absent frames, empty masks,
score ties, areas across the size ranges, up to ``--max-dets`` detections per video).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np


def load_official(api_dir: Path):
    if "float" not in np.__dict__:
        np.float = np.float64  # the vendored API still uses the alias removed in NumPy 1.24
    mods = {}
    for name in ("ytvis", "ytviseval"):
        spec = importlib.util.spec_from_file_location(f"_official_{name}", api_dir / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["ytvis"].YTVIS, mods["ytviseval"].YTVISeval


def official(api, gt: dict, res: list):
    YTVIS, YTVISeval = api
    with contextlib.redirect_stdout(io.StringIO()):
        g = YTVIS(None)
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        d = g.loadRes(copy.deepcopy(res))
        e = YTVISeval(g, d, "segm")
        e.params.vidIds = sorted(g.getVidIds())
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(v) for v in e.stats], e.eval["precision"], e.eval["recall"]


def random_case(seed: int, max_dets: int):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(20, 60, size=2))
    videos = [{"id": v + 1, "height": h, "width": w, "length": int(rng.integers(2, 6))}
              for v in range(int(rng.integers(1, 4)))]
    n_cat = int(rng.integers(1, 4))
    scale = float(rng.choice([0.3, 1, 10, 40]))  # listed areas across the 128² / 256² bounds

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        r["counts"] = r["counts"].decode("ascii")
        return r

    def track(n):
        segs, areas = [], []
        y, x = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
        for _ in range(n):
            if rng.random() < 0.25:
                segs.append(None)
                areas.append(None)
                continue
            m = np.zeros((h, w), bool)
            y = int(np.clip(y + rng.integers(-3, 4), 0, h - 2))
            x = int(np.clip(x + rng.integers(-3, 4), 0, w - 2))
            m[y:y + int(rng.integers(1, 15)), x:x + int(rng.integers(1, 15))] = True
            if rng.random() < 0.1:
                m[:] = False
            segs.append(rle(m))
            areas.append(int(m.sum() * scale) if m.any() else 0)
        return segs, areas

    anns, res = [], []
    for v in videos:
        for _ in range(int(rng.integers(0, 4))):
            s, a = track(v["length"])
            anns.append({"id": len(anns) + 1, "video_id": v["id"], "category_id": int(rng.integers(1, n_cat + 1)),
                         "iscrowd": int(rng.random() < 0.15), "segmentations": s, "areas": a})
        for _ in range(int(rng.integers(0, max_dets + 1))):
            own = [a for a in anns if a["video_id"] == v["id"]]
            base = own[int(rng.integers(0, len(own)))] if own and rng.random() < 0.5 else None
            s, _ = track(v["length"])
            if base is not None:
                s = [b if rng.random() < 0.8 else x for b, x in zip(base["segmentations"], s)]
            cat = base["category_id"] if base is not None else int(rng.integers(1, n_cat + 1))
            res.append({"video_id": v["id"], "category_id": cat, "score": float(rng.choice([0.5, 0.9, rng.random()])),
                        "segmentations": s})
    if not res:
        res.append({"video_id": 1, "category_id": 1, "score": 0.3, "segmentations": track(videos[0]["length"])[0]})
    return {"videos": videos, "categories": [{"id": c + 1, "name": str(c)} for c in range(n_cat)],
            "annotations": anns}, res


def compare(api, gt, res):
    from ausm.eval.ytvis import evaluate_ytvis

    ref, p_ref, r_ref = official(api, gt, res)
    mine = evaluate_ytvis(copy.deepcopy(gt), copy.deepcopy(res), return_arrays=True)
    diff = max(max(abs(a - b) for a, b in zip(ref, mine["stats"])), float(np.abs(p_ref - mine["precision"]).max()),
               float(np.abs(r_ref - mine["recall"]).max()))
    return ref, mine["stats"], diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-dir", type=Path, required=True, help="folder with the official ytvis.py and ytviseval.py")
    ap.add_argument("--gt", type=Path, help="ground truth (YouTube-VIS format)")
    ap.add_argument("--pred", type=Path, help="results JSON")
    ap.add_argument("--fuzz", type=int, default=0, help="random cases to compare as well")
    ap.add_argument("--max-dets", type=int, default=14, help="fuzz: most detections per video")
    args = ap.parse_args(argv)
    api = load_official(args.api_dir)
    worst = 0.0
    if args.gt and args.pred:
        ref, mine, diff = compare(api, json.loads(args.gt.read_text()), json.loads(args.pred.read_text()))
        print("official:", ref)
        print("ausm:    ", mine)
        print(f"largest difference: {diff:.3g}")
        worst = diff
    bad = 0
    for seed in range(args.fuzz):
        _, _, diff = compare(api, *random_case(seed, args.max_dets))
        bad += diff > 0
        worst = max(worst, diff)
    if args.fuzz:
        print(f"{args.fuzz} random cases: {bad} differ; largest difference {worst:.3g}")
    return 0 if worst <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
