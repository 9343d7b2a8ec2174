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

from ausm.checkpoint import load_model
from ausm.eval.benchmark import benchmark_davis
from ausm.eval.stills import benchmark_stills

#: DAVIS-2016 train sequences that no lite_stage*.json trains on
HELDOUT_DAVIS = ["bear", "dance-jump", "motocross-bumps", "stroller"]


def score(ck, a) -> dict:
    model = load_model(ck)
    rec = {}
    if a.davis_root:
        r = benchmark_davis(model, a.davis_root, split="train", resolution="240p", sequences=HELDOUT_DAVIS,
                            progress=False)
        rec.update({f"davis_{k}": v for k, v in r.items() if k in ("J&F-Mean", "J-Mean", "F-Mean")})
    if a.duts_root:
        r = benchmark_stills(model, a.duts_root, limit=a.duts_limit, progress=False)
        rec.update({f"duts_{k}": v for k, v in r.items() if k.endswith("_iou")})
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--davis-root", default=None)
    ap.add_argument("--duts-root", default=None)
    ap.add_argument("--duts-limit", type=int, default=100)
    ap.add_argument("--out", default=None, help="JSON file (default RUN/heldout_curve.json)")
    ap.add_argument("--threads", type=int, default=1)
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
