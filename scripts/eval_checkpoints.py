"""Score every kept checkpoint of a run (RUN/ckpts/step_N, and RUN/last) on HELD-OUT TRAINING data, for
checkpoint selection and the training curve (issue #13: never select on DAVIS val).

    python scripts/eval_checkpoints.py runs/lite-stage2 --davis-root ../shared/data/davis2016 \
        --duts-root ../shared/data/duts_tr__aviroshkovan_DUTS-TR [--duts-limit 100] [--threads 2]

Held out from every lite_stage*.json mixture: the DAVIS-2016 train sequences in HELDOUT_DAVIS (240p,
semi-supervised J&F) and the last 300 names of DUTS-TR's list.txt (mask prompt kept to frame 2, box and
point prompts on frame 0; ausm.eval.stills). Results go to RUN/heldout_curve.json (existing steps kept).
"""
import argparse
import json
import os
from pathlib import Path

import torch

import numpy as np

from ausm.checkpoint import load_model
from ausm.eval.benchmark import benchmark_davis
from ausm.eval.stills import benchmark_stills

#: DAVIS-2016 train sequences that no lite_stage*.json trains on
HELDOUT_DAVIS = ["bear", "dance-jump", "motocross-bumps", "stroller"]


def heldout_multi_videos(davis_root, duts_root, num_frames: int = 16):
    """Multi-object held-out videos (index masks): 4 generated outdoor scenes (4 objects, seeds 9000+) and,
    with the data, copy-paste videos: DUTS hold-out objects pasted on the HELDOUT_DAVIS sequences."""
    from ausm.data.mixing import build_clip_dataset
    from ausm.data.synthetic import render_video
    vids = []
    for k in range(4):
        v = render_video(num_frames, (240, 432), 4, seed=9000 + k, scene="outdoor")
        vids.append((list(v.frames), [i.astype(np.int64) for i in v.ids]))
    if davis_root and duts_root:
        spec = {"type": "copy_paste", "num_objects": [2, 2], "objects": {"type": "duts", "root": duts_root,
                "split": "holdout", "holdout": 300},
                "base": {"type": "davis", "root": davis_root, "split": "train", "resolution": "240p", "year": 2016,
                         "sequences": HELDOUT_DAVIS, "clip": {"max_stride": 1, "scale": [1.0, 1.0], "flip": 0.0}}}
        ds = build_clip_dataset(spec, clip_len=num_frames, size=(240, 432), max_stride=1, seed=4242)
        for i in range(4):
            s = ds[i]
            fr = (s["frames"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            ids = np.zeros((num_frames, *fr.shape[1:3]), np.int64)
            for j in range(s["masks"].shape[0]):
                ids[s["masks"][j].numpy() > 0] = j + 1
            vids.append((list(fr), list(ids)))
    return vids


def score_multi(model, vids) -> dict:
    """Prompted J&F (every object prompted on its first visible frame, streaming) on multi-object videos."""
    from ausm.api import AUSM
    from ausm.eval.davis import score_sequence, summarize
    m = AUSM(model) if not isinstance(model, AUSM) else model
    objs = []
    for n, (frames, gt) in enumerate(vids):
        prompts = {}
        for o in sorted(set(np.unique(np.stack(gt)).tolist()) - {0}):
            f = next(t for t in range(len(gt)) if (gt[t] == o).any())
            prompts.setdefault(f, {})[o] = gt[f] == o
        preds = [r.index_mask.astype(np.int64) for r in m.propagate(iter(frames), prompts=prompts)]
        objs += score_sequence(gt, preds, task="semi", year=2017, layout="youtube", name=f"multi{n}")
    r = summarize(objs)
    return {k: r[k] for k in ("J&F-Mean", "J-Mean", "F-Mean")}


def score(ck, a) -> dict:
    model = load_model(ck)
    rec = {}
    if a.davis_root and not a.no_single:
        r = benchmark_davis(model, a.davis_root, split="train", resolution="240p", sequences=HELDOUT_DAVIS,
                            progress=False)
        rec.update({f"davis_{k}": v for k, v in r.items() if k in ("J&F-Mean", "J-Mean", "F-Mean")})
    if a.duts_root and not a.no_single:
        r = benchmark_stills(model, a.duts_root, limit=a.duts_limit, progress=False)
        rec.update({f"duts_{k}": v for k, v in r.items() if k.endswith("_iou")})
    if a.multi:
        r = score_multi(model, heldout_multi_videos(a.davis_root, a.duts_root))
        rec.update({f"multi_{k}": v for k, v in r.items()})
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--davis-root", default=None)
    ap.add_argument("--duts-root", default=None)
    ap.add_argument("--duts-limit", type=int, default=100)
    ap.add_argument("--out", default=None, help="JSON file (default RUN/heldout_curve.json)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--multi", action="store_true", help="also score multi-object held-out videos (multi_*)")
    ap.add_argument("--no-single", action="store_true", help="skip the DAVIS / DUTS single-object scores")
    ap.add_argument("--only-last", action="store_true", help="score RUN/last only")
    ap.add_argument("--steps", default=None, help="comma-separated steps to score (default: every kept one)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out or Path(a.run) / "heldout_curve.json")
    curve = json.loads(out.read_text()) if out.exists() else {}
    cks = [] if a.only_last else sorted(Path(a.run, "ckpts").glob("step_*"))
    if Path(a.run, "trainer_state.pt").exists():
        last_step = int(torch.load(Path(a.run, "trainer_state.pt"), weights_only=True)["step"])
        cks.append((Path(a.run, "last"), last_step))
    for ck in cks:
        ck, step = ck if isinstance(ck, tuple) else (ck, int(ck.name.split("_")[1]))
        if str(step) in curve or (a.steps and str(step) not in a.steps.split(",")):
            continue
        curve[str(step)] = score(ck, a)
        print(step, json.dumps(curve[str(step)]), flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(curve, indent=2))
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
