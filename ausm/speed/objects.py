"""``ausm bench objects``: per-frame streaming latency against the number of tracked objects, ausm and
SAM2 (transformers ``Sam2VideoModel``, Hiera-tiny sizes, random weights) in one run.

AUSM decodes every object in one pass (the objects are queries of one Pixel Decoder call); SAM2 runs
its memory attention and mask decoder once per object, so its time grows with the object count
(sam2 issues #382, #367). For each count n, both models stream the same synthetic video with the same
n objects prompted by their masks on frame 0 (n boxes tiled over the frame); all streams are stepped
interleaved frame by frame (every (model, n) steps frame t before any steps t + 1), so a change of the
machine's load falls on all of them alike. The first ``warmup`` frames (with the prompted frame) are
not counted. Per frame: the wall time from the uint8 frame to the full-resolution masks of every
object (ausm: :meth:`~ausm.inference.session.Session.step`; SAM2: preprocessing, the model call, the
upsampling of every object's mask).

Records: one JSON line per (model, n) with p50 / p99 ms and ``ratio_to_1`` (p50 at n over p50 at 1
object of the same model), then a markdown table. ``--no-sam2`` measures ausm alone.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from . import emit, machine_info, markdown_table, percentile, sync
from .vs_sam2 import parse_size


def object_masks(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``n`` non-overlapping boxes tiled over an (H, W) frame (a ceil(√n)-column grid, each box the
    middle 60 % of its cell), as (H, W) bool masks."""
    H, W = size
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        y0, y1 = r * H // rows, (r + 1) * H // rows
        x0, x1 = c * W // cols, (c + 1) * W // cols
        m = np.zeros((H, W), bool)
        dy, dx = (y1 - y0) // 5, (x1 - x0) // 5
        m[y0 + dy:y1 - dy, x0 + dx:x1 - dx] = True
        out.append(m)
    return out


def parse_counts(text: str, capacity: int) -> list[int]:
    """``"1,2,4"`` → [1, 2, 4]; ``max`` means the model's ID capacity.

    Raises:
        InputError: not positive integers, or a count above the capacity.
    """
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            n = capacity if part == "max" else int(part)
        except ValueError:
            raise InputError(f"--objects takes comma-separated counts (or 'max'), got {text!r}") from None
        if not 1 <= n <= capacity:
            raise InputError(f"object count {n} is outside 1..{capacity} (the model's ID capacity)")
        out.append(n)
    return sorted(set(out))


def run(objects: str = "1,2,4,8,16,32", size: str = "480p", frames: int = 10, warmup: int = 3, checkpoint=None,
        sam2_side: str = "auto", sam2: bool = True, device: str = "cpu", seed: int = 0) -> list[dict]:
    """Measure ausm (and SAM2) at each object count; print one JSON record per (model, count) and a
    markdown table; return the records.

    Args:
        objects: comma-separated object counts (``max`` = the ausm model's ``num_ids``).
        size: frame size (``480p``, ``HxW``, ...); frames: streamed per stream; warmup: not counted.
        sam2_side: SAM2's square input side (pixels, ``default`` = 1024 or ``auto`` = the pixel count of
            ausm's input, as ``ausm bench vs-sam2``).

    Raises:
        InputError: bad counts, sizes or frame numbers. RuntimeError: ``sam2`` without SAM2 support.
    """
    from ..checkpoint import load_model
    from ..data.synthetic import render_video
    from .vs_sam2 import AusmStream, Sam2Stream, have_sam2, sam2_sides

    if frames < 1 or not 0 <= warmup < frames:
        raise InputError(f"need frames >= 1 and 0 <= warmup < frames, got frames={frames}, warmup={warmup}")
    if sam2:
        ok, why = have_sam2()
        if not ok:
            raise RuntimeError(why)
    dev = torch.device(device)
    H, W = parse_size(size)
    model = load_model(checkpoint, device=dev)
    counts = parse_counts(objects, model.cfg.num_ids)
    side = sam2_sides(sam2_side, tuple(model.input_size(H, W)))[0][0] if sam2 else None
    video = render_video(frames, (H, W), seed=seed, enter_leave=False)
    streams = []
    for n in counts:
        masks = object_masks(n, (H, W))
        kinds = [("ausm", lambda: AusmStream(model))] + ([("sam2", lambda: Sam2Stream(side, dev, seed))] if sam2 else [])
        for name, make in kinds:
            obj = make()
            obj.add_mask_prompts((H, W), masks)
            streams.append({"model": name, "objects": n, "obj": obj, "lat": []})
    _measure(streams, video.frames, dev)
    records = _records(streams, warmup, {"input": f"{H}x{W}", "ausm_internal": "x".join(map(str, model.input_size(H, W))),
                                         "sam2_internal": f"{side}x{side}" if side else None,
                                         "checkpoint": str(checkpoint) if checkpoint else "shipped default",
                                         "frames": frames, "warmup": warmup, "device": str(dev), **machine_info()})
    for r in records:
        emit(r)
    print()
    print(markdown_table(_rows(records), ["objects", "ausm p50 ms", "ausm ×1", "SAM2 p50 ms", "SAM2 ×1",
                                          "SAM2 / ausm"]))
    return records


def _measure(streams: list[dict], frames: list[np.ndarray], dev) -> None:
    """Step every stream through ``frames``, interleaved frame by frame; wall time per step."""
    import time

    with torch.inference_mode():
        for frame in frames:
            for s in streams:
                sync(dev)
                t0 = time.perf_counter()
                s["obj"].step(frame)
                sync(dev)
                s["lat"].append(time.perf_counter() - t0)


def _records(streams: list[dict], warmup: int, info: dict) -> list[dict]:
    """One record per stream, with the p50 ratio to the same model at its smallest object count."""
    base: dict[str, float] = {}
    out = []
    for s in streams:
        lat = s["lat"][warmup:]
        p50 = float(np.median(lat))
        base.setdefault(s["model"], p50)
        out.append({"bench": "objects", "model": s["model"], "objects": s["objects"], "p50_ms": 1e3 * p50,
                    "p99_ms": 1e3 * percentile(lat, 0.99), "measured_frames": len(lat),
                    "ratio_to_1": p50 / base[s["model"]], "state_nbytes": s["obj"].state_nbytes(), **info})
    return out


def _rows(records: list[dict]) -> list[dict]:
    by = {(r["model"], r["objects"]): r for r in records}
    rows = []
    for n in sorted({r["objects"] for r in records}):
        a, s = by[("ausm", n)], by.get(("sam2", n))
        rows.append({"objects": n, "ausm p50 ms": f"{a['p50_ms']:.1f}", "ausm ×1": f"{a['ratio_to_1']:.2f}",
                     "SAM2 p50 ms": f"{s['p50_ms']:.1f}" if s else "-", "SAM2 ×1": f"{s['ratio_to_1']:.2f}" if s else "-",
                     "SAM2 / ausm": f"{s['p50_ms'] / a['p50_ms']:.2f}" if s else "-"})
    return rows
