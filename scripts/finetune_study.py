"""Test-time fine-tuning settings against semi-supervised J&F on a DAVIS-2016 split (a val subset by default;
for tuning defaults use the held-out TRAIN sequences: --split train --resolution 240p --sequences heldout).

Each argument is a JSON object of FinetuneConfig fields ({} = no fine-tuning); one JSON line per setting:

    python scripts/finetune_study.py --root ../shared/data/davis2016 '{}' '{"steps": 10}' '{"steps": 40, "lr": 3e-4}'
"""
import argparse
import json
import time

import torch

from ausm.checkpoint import load_model
from ausm.eval.benchmark import benchmark_davis
from ausm.train.finetune import FinetuneConfig

SUBSET = "blackswan,cows,car-shadow,dog,breakdance,goat"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="+", help="JSON objects of FinetuneConfig fields")
    ap.add_argument("--root", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--sequences", default=SUBSET,
                    help="comma-separated, 'all', or 'heldout' (the held-out train sequences of scripts/eval_checkpoints.py)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seqs = None if a.sequences == "all" else a.sequences.split(",")
    if a.sequences == "heldout":
        from eval_checkpoints import HELDOUT_DAVIS
        seqs = HELDOUT_DAVIS
    model = load_model(a.checkpoint)
    for spec in a.settings:
        kw = json.loads(spec)
        if "scale" in kw:
            kw["scale"] = tuple(kw["scale"])
        t = time.time()
        r = benchmark_davis(model, a.root, split=a.split, resolution=a.resolution, sequences=seqs, progress=False,
                            adapt=FinetuneConfig(**kw) if kw.get("steps") else None)
        print(json.dumps({"cfg": kw, "JF": round(100 * r["J&F-Mean"], 2), "J": round(100 * r["J-Mean"], 2),
                          "F": round(100 * r["F-Mean"], 2), "sec": round(time.time() - t),
                          "per": {k: round(100 * v, 1) for k, v in r["per_object"].items()}}), flush=True)


if __name__ == "__main__":
    main()
