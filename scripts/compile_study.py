"""torch.compile vs eager streaming, side by side in one process: two sessions of the shipped model (one
compiled with AUSMModel.compile_modules, one eager) step the same synthetic 480p frames, interleaved
frame by frame; prints the compile time and the per-frame p50 / p99 of both and their ratio.

    python scripts/compile_study.py [--frames 200] [--threads 2] [--size 480p]
"""
import argparse
import json
import time

import torch

from ausm.bench import machine_info, percentile
from ausm.speed.stream import SIZES, synthetic_frames, synthetic_prompt
from ausm.checkpoint import load_model
from ausm.inference.session import Session


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="480p")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    clip = synthetic_frames(SIZES[a.size])
    H, W = clip[0].shape[:2]
    prompt = synthetic_prompt(H, W)
    sessions = {"eager": Session(load_model()), "compiled": Session(load_model().compile_modules())}
    lat = {k: [] for k in sessions}
    first = {}
    for k, s in sessions.items():
        s.add_prompt(0, 1, prompt)
        t = time.perf_counter()
        s.step(clip[0])
        first[k] = time.perf_counter() - t
    for i in range(1, a.frames):
        for k, s in (sessions.items() if i % 2 else reversed(sessions.items())):
            t = time.perf_counter()
            s.step(clip[i % len(clip)])
            lat[k].append(time.perf_counter() - t)
    rec = {"bench": "compile", "frames": a.frames, "input": f"{H}x{W}", **machine_info(),
           "first_frame_s": first}
    for k in sessions:
        w = lat[k][5:]
        rec[k] = {"p50_ms": 1e3 * percentile(w, 0.5), "p99_ms": 1e3 * percentile(w, 0.99)}
    rec["p50_ratio_eager_over_compiled"] = rec["eager"]["p50_ms"] / rec["compiled"]["p50_ms"]
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
