"""Unprompted, class-aware quality on generated videos: the demo's measurement (J&F of the
unsupervised protocol and the class accuracy of the matched tracks, ``shapes`` head) averaged over
several seeds, for comparing checkpoints.

    python scripts/eval_shapes.py [--checkpoint CKPT] [--seeds 100-109] [--threads 1]
"""
import argparse
import json
import tempfile

import numpy as np
import torch

from ausm.demo import run_demo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seeds", default="100-109", help="a range A-B (inclusive) or a comma list")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if "-" in a.seeds:
        lo, hi = (int(v) for v in a.seeds.split("-"))
        seeds = list(range(lo, hi + 1))
    else:
        seeds = [int(v) for v in a.seeds.split(",")]
    rows = []
    for s in seeds:
        with tempfile.TemporaryDirectory() as d:
            r = run_demo(d, checkpoint=a.checkpoint, seed=s, overlay=False, progress=False)
        u = r["unprompted"]
        rows.append({"seed": s, "objects": r["objects"], "prompted_JF": r["prompted"]["J&F-Mean"],
                     "unprompted_JF": u["J&F-Mean"], "class_accuracy": u.get("class_accuracy"), "tracks": u["tracks"]})
        print(json.dumps(rows[-1]), flush=True)
    summary = {k: round(float(np.mean([r[k] for r in rows])), 1) for k in ("prompted_JF", "unprompted_JF", "class_accuracy")}
    summary["videos"] = len(rows)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
