"""The one prepared GPU check (issue #16): run it on a GPU machine, bring back one JSON file.

    python scripts/gpu_check.py --out $OUT/gpu_check.json            # on the GPU (about 6-8 minutes)
    python scripts/gpu_check.py --dry-run --out /tmp/gpu_check.json  # the same steps, tiny, on the CPU (tested)

Sections, in priority order (each one's records or its error go into the JSON; when ``--budget-s`` is
spent the remaining sections are recorded as skipped, so a partial run still brings its numbers back):

1. ``parity`` — the core invariant on the device: the parallel (teacher-forced) forward over T frames
   against T streaming steps with the same history, float32, for the default preset and Swin-T
   (max |Δ| of the final mask logits); and bf16 streaming against float32 streaming of the shipped
   default model on real-looking frames (max |Δ| of the mask probabilities, mask IoU).
2. ``train_speed`` — ``ausm bench train-speed`` parallel vs iterative at T = 1, 4, 16 for the
   paper-size preset (Swin-T): the paper's 2.5× claim at 16 frames.
3. ``stream`` — ``ausm bench stream``: fps, p50 / p99 and ``torch.cuda.max_memory_allocated`` at 1k and
   10k frames for the default model at 480p (bf16) and for Swin-T (random weights) at its input size.
4. ``objects`` — ``ausm bench objects`` on the GPU (ausm and SAM2, 1..32 objects).

Everything else about the machine (GPU name, CUDA, torch) is in each record (``machine_info``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from ausm.checkpoint import load_model, save_model
from ausm.config import get_config
from ausm.inference import Session
from ausm.model import AUSMModel
from ausm.speed import machine_info

#: What each section runs, full size (GPU) and dry run (CPU, seconds).
FULL = {"parity_presets": ["ausm-lite", "ausm-swin-t"], "parity_T": 8, "parity_size": (256, 448),
        "bf16_frames": 20, "train_preset": "ausm-swin-t", "train_T": [1, 4, 16], "train_iters": 3,
        "stream_frames": 10_000, "stream_marks": (1000, 10_000), "swin_frames": 10_000,
        "objects": "1,2,4,8,16,32", "objects_frames": 12, "sam2": True}
DRY = {"parity_presets": ["ausm-tiny"], "parity_T": 3, "parity_size": (64, 96), "bf16_frames": 3,
       "train_preset": "ausm-tiny", "train_T": [1, 2], "train_iters": 1, "stream_frames": 12,
       "stream_marks": (6, 12), "swin_frames": 0, "objects": "1,2", "objects_frames": 3, "sam2": False,
       "train_size": (64, 96), "stream_size": "48x80", "objects_size": "48x80"}
SMALL_PARITY = dict(compressor_layers=2, history_decoder_layers=2, pixel_decoder_layers=2)


def parity(device: torch.device, s: dict) -> dict:
    """Parallel == streaming (float32) per preset, and bf16 vs float32 streaming of the shipped default."""
    out = {}
    H, W = s["parity_size"]
    T = s["parity_T"]
    for name in s["parity_presets"]:
        torch.manual_seed(0)
        model = AUSMModel(get_config(name, **SMALL_PARITY)).to(device).eval()
        n = 3
        frames = torch.rand(1, T, 3, H, W, device=device)
        ids = torch.tensor([[0, 2, 5]], device=device)
        active = torch.ones(1, T, n, dtype=torch.bool, device=device)
        active[:, 0, 2] = False  # object 3 starts on frame 1
        hist = torch.rand(1, T, n, (H // 8) * (W // 8), device=device) * active.unsqueeze(-1)
        with torch.no_grad():
            par = model(frames, ids, active, hist).final_masks
            state = model.init_state(1, (H // 8, W // 8), device=device)
            diffs = []
            for k in range(T):
                p, state = model.step(frames[:, k], state, ids, active[:, k], hist[:, k])
                diffs.append(float((par[:, k] - p.final_masks).abs().max()))
        out[name] = {"max_abs_diff": max(diffs), "T": T, "size": [H, W], "dtype": "float32"}
    out["bf16_vs_float32"] = _bf16_vs_float32(device, s)
    return out


def _bf16_vs_float32(device: torch.device, s: dict) -> dict:
    """The shipped default model streamed in float32 and in bf16 over the same synthetic video."""
    from ausm.data.synthetic import render_video

    if device.type != "cuda" or not torch.cuda.is_bf16_supported():
        return {"skipped": "bf16 needs a CUDA GPU with bf16"}
    vid = render_video(s["bf16_frames"], (480, 854), num_objects=3, seed=1, enter_leave=False)
    outs = {}
    for dt in (torch.float32, torch.bfloat16):
        model = load_model(None, device=device, dtype=dt)
        sess = Session(model)
        for o in vid.object_ids:
            sess.add_prompt(0, int(o), vid.ids[0] == o)
        outs[dt] = [sess.step(f) for f in vid.frames]
    dmax, ious = 0.0, []
    for a, b in zip(outs[torch.float32], outs[torch.bfloat16]):
        inter = np.logical_and(a.masks, b.masks).sum()
        union = np.logical_or(a.masks, b.masks).sum()
        ious.append(float(inter / union) if union else 1.0)
        dmax = max(dmax, float(np.abs(a.scores - b.scores).max()) if len(a.scores) else 0.0)
    return {"mask_iou_mean": float(np.mean(ious)), "mask_iou_min": float(np.min(ious)),
            "score_max_abs_diff": dmax, "frames": len(ious)}


def train_speed(device: torch.device, s: dict) -> list:
    from ausm.speed.train_speed import run

    return run(preset=s["train_preset"], frames_list=s["train_T"], size=s.get("train_size"), iters=s["train_iters"],
               warmup=1, device=str(device))


def stream(device: torch.device, s: dict) -> dict:
    from ausm.speed.stream import run

    out = {"default_480p": run(checkpoint=None, frames=s["stream_frames"], size=s.get("stream_size", "480p"),
                               checkpoints=s["stream_marks"], device=str(device))}
    if s["swin_frames"]:
        with tempfile.TemporaryDirectory() as d:  # Swin-T ships no weights: a random-init checkpoint
            torch.manual_seed(0)
            save_model(AUSMModel(get_config("ausm-swin-t")), Path(d) / "swin-t")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            out["swin_t"] = run(checkpoint=str(Path(d) / "swin-t"), frames=s["swin_frames"], size="480p",
                                checkpoints=s["stream_marks"], device=str(device))
    return out


def objects(device: torch.device, s: dict) -> list:
    from ausm.speed.objects import run

    return run(objects=s["objects"], size=s.get("objects_size", "480p"), frames=s["objects_frames"], warmup=2,
               sam2=s["sam2"], device=str(device))


SECTIONS = [("parity", parity), ("train_speed", train_speed), ("stream", stream), ("objects", objects)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.json"))
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what the test runs)")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting sections after this many seconds")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    s = DRY if args.dry_run else FULL
    result = {"dry_run": args.dry_run, "device": str(device), "machine": machine_info(), "settings": s,
              "sections": {}}
    t_start = time.perf_counter()
    for name, fn in SECTIONS:
        if time.perf_counter() - t_start > args.budget_s:
            result["sections"][name] = {"skipped": f"budget of {args.budget_s:g} s spent"}
            continue
        t0 = time.perf_counter()
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                value = fn(device, s)
            result["sections"][name] = {"ok": True, "result": value}
        except Exception as e:  # keep the other sections' numbers
            result["sections"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                        "traceback": traceback.format_exc()[-4000:]}
        result["sections"][name]["seconds"] = round(time.perf_counter() - t0, 1)
        result["sections"][name]["printed"] = log.getvalue()[-20000:]
        print(f"{name}: {'ok' if result['sections'][name].get('ok') else 'FAILED'} "
              f"({result['sections'][name]['seconds']} s)", file=sys.stderr)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))  # after every section
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0 if all(v.get("ok", True) for v in result["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
