"""Score every kept checkpoint of a run (OUT/ckpts/step_N) on DAVIS-2016 val: semi-supervised J
(and J&F when the full evaluator is available) per step, for the training curve.

    python scripts/eval_checkpoints.py runs/tiny-v1 --root ../shared/data/davis2016 [--sequences a,b] [--out curve.json]
"""
import argparse
import json
import os
from pathlib import Path

import torch

from ausm.checkpoint import load_model
from ausm.eval.benchmark import benchmark_davis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--root", required=True)
    ap.add_argument("--sequences", default=None, help="comma-separated subset (default: the whole val split)")
    ap.add_argument("--out", default=None, help="JSON file (default RUN/val_curve.json); existing steps are kept")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out or Path(a.run) / "val_curve.json")
    curve = json.loads(out.read_text()) if out.exists() else {}
    seqs = a.sequences.split(",") if a.sequences else None
    for ck in sorted(Path(a.run, "ckpts").glob("step_*")):
        step = str(int(ck.name.split("_")[1]))
        if step in curve:
            continue
        r = benchmark_davis(load_model(ck), a.root, split="val", sequences=seqs, progress=False)
        curve[step] = {k: v for k, v in r.items() if k != "per_object"}
        print(step, json.dumps(curve[step]), flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(curve, indent=2))
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
