"""Inference-resolution study: score one checkpoint on DAVIS-2016 val at several input sizes
(shorter side; longer side capped at 1.87x), semi-supervised, and print one JSON line per size.

    python scripts/resolution_study.py --checkpoint ausm/weights/ausm-tiny --root ../shared/data/davis2016 \
        --sizes 192,240,288,320 [--sequences a,b] [--task semi]
"""
import argparse
import json
import time

import torch

from ausm.checkpoint import load_model
from ausm.eval.benchmark import benchmark_davis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="ausm/weights/ausm-tiny")
    ap.add_argument("--root", required=True)
    ap.add_argument("--sizes", default="192,240,288,320")
    ap.add_argument("--sequences", default=None)
    ap.add_argument("--task", default="semi")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="val", help="DAVIS split (train + --sequences heldout: the held-out train videos)")
    ap.add_argument("--resolution", default="480p")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model(a.checkpoint)
    seqs = a.sequences.split(",") if a.sequences else None
    if a.sequences == "heldout":
        from eval_checkpoints import HELDOUT_DAVIS
        seqs = HELDOUT_DAVIS
    for s in [int(x) for x in a.sizes.split(",")]:
        model.cfg = model.cfg.replace(input_short_side=s, input_max_long_side=int(round(s * 1.87)))
        t0 = time.time()
        r = benchmark_davis(model, a.root, split=a.split, resolution=a.resolution, task=a.task, sequences=seqs,
                            progress=False)
        print(json.dumps({"short_side": s, "task": a.task, "sec": round(time.time() - t0, 1),
                          **{k: round(100 * r[k], 2) for k in ("J&F-Mean", "J-Mean", "F-Mean")}}), flush=True)


if __name__ == "__main__":
    main()
