"""Track the objects of a first-frame mask with an exported ausm ONNX file and nothing but numpy, Pillow
and onnxruntime: no torch, no ausm (a template for deployments in other languages; docs/EXPORT.md).

    python scripts/onnx_minimal.py ausm-lite.onnx FRAME_DIR FIRST_MASK.png OUT_DIR [--frames N]

It does the prompted part of ``ausm.inference.Session`` for mask prompts on frame 0 (no detection of new
objects, no box / point prompts): the objects of the index mask take ID slots 0..K-1; the prompt is the
History Marker mask M_0 and the output of frame 0; afterwards each object's mask is its slot's logits > 0
and its history the area average of that mask on the stride-8 grid. Writes OUT_DIR/%05d.png index masks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def to_grid(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(K, H', W') {0, 1} masks at the model input → (K, h·w) area averages on the stride-8 grid."""
    K, H, W = masks.shape
    h, w = grid
    return masks.reshape(K, h, H // h, w, W // w).mean(axis=(2, 4)).reshape(K, h * w).astype(np.float32)


def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) float logits → (K, H, W), bilinear (half-pixel centres, as torch's align_corners=False)."""
    return np.stack([np.asarray(Image.fromarray(m).resize(size[::-1], Image.BILINEAR)) for m in logits]) \
        if len(logits) else np.zeros((0, *size), np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("frames", help="folder of frames (sorted by name)")
    ap.add_argument("mask", help="first-frame index mask (0 = background, 1..K = objects, 255 = void; a 0/255 "
                                 "binary mask is object 1)")
    ap.add_argument("out")
    ap.add_argument("--frames", dest="limit", type=int, default=None)
    args = ap.parse_args(argv)
    c = json.loads(Path(args.onnx + ".json").read_text())
    net = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    (H, W), grid, N = c["input_size"], tuple(c["grid"]), c["num_ids"]
    shapes = {r["name"]: r["shape"] for r in c["inputs"]}
    state = {s["input"]: np.zeros(shapes[s["input"]], np.float32) for s in c["state"]}
    state["x_prev"][:] = np.asarray(c["initial_state"]["start_token"], np.float32)  # X_0 tiled over h·w

    prompt = np.asarray(Image.open(args.mask).convert("L") if Image.open(args.mask).mode not in ("P", "L") else
                        Image.open(args.mask))
    if set(np.unique(prompt)) <= {0, 255}:  # a binary 0/255 mask (DAVIS-2016) is object 1, as in ausm
        prompt = (prompt > 0).astype(np.uint8)
    objs = [int(v) for v in np.unique(prompt) if v not in (0, 255)][:N]
    K = len(objs)
    small = np.asarray(Image.fromarray(prompt).resize((W, H), Image.NEAREST))
    hist = np.zeros((1, N, grid[0] * grid[1]), np.float32)
    hist[0, :K] = to_grid(np.stack([small == o for o in objs]).astype(np.float32), grid)
    active = np.zeros((1, N), bool)
    active[0, :K] = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(args.frames).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for k, f in enumerate(files[:args.limit]):
        img = Image.open(f).convert("RGB")
        x = np.asarray(img.resize((W, H), Image.BILINEAR), np.float32).transpose(2, 0, 1)[None] / 255.0
        feeds = {"frame": x, "track_ids": np.arange(N, dtype=np.int64)[None], "track_active": active,
                 "hist_masks": hist, **state}
        res = dict(zip([o.name for o in net.get_outputs()], net.run(None, feeds)))
        state = {s["input"]: res[s["output"]] for s in c["state"]}
        logits = res["mask_logits"][0, :K]  # the track slots of the objects; rows N.. are detections
        if k == 0:  # the prompted frame: the output and the next history are the prompt itself
            index = np.where(np.isin(prompt, objs), prompt, 0).astype(np.uint8)
        else:
            on_input = resize_logits(logits, (H, W)) > 0
            hist[0, :K] = to_grid(on_input.astype(np.float32), grid)
            full = resize_logits(logits, (img.height, img.width))
            best = full.argmax(0) if K else np.zeros((img.height, img.width), int)
            index = np.where(full.max(0, initial=-1) > 0, np.asarray(objs)[best] if K else 0, 0).astype(np.uint8)
        Image.fromarray(index).save(out / f"{k:05d}.png")
    print(f"wrote {min(len(files), args.limit or len(files))} masks of {K} objects to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
