"""The embedded demo (``ausm segment --demo``): a generated multi-object video with known ground truth,
segmented prompted and unprompted by a model, scored, and rendered as overlay videos.

Nothing outside the package is needed: the video comes from :func:`ausm.data.synthetic.render_video`
(textured shapes of six categories that move over a procedural outdoor scene, cast shadows, occlude each
other, enter and leave).

* **prompted** (semi-supervised VOS): each object is given by its ground-truth mask on the first
  frame where it is visible — objects that enter later are added mid-video, as in the judo example;
* **unprompted** (VIS): no prompt; the model finds and tracks the objects itself and names them with
  its ``"shapes"`` class head when it has one (the shipped models do), else the agnostic head.

Scores use the official J&F code of :mod:`ausm.eval.davis` with the YouTube-VOS layout (every object
scored from the first frame it appears in); unprompted tracks are matched to objects by the Hungarian
assignment of the unsupervised protocol. Class accuracy = the fraction of ground-truth objects whose
matched track carries the right category.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .data.synthetic import SHAPE_CLASSES, SHAPES_HEAD, render_video
from .errors import InputError

__all__ = ["run_demo", "DEMO_SEED"]

#: seed of the demo video (4 objects; one enters at frame 12, two leave before the end).
DEMO_SEED = 16


def _summ(objs) -> dict:
    from .eval.davis import summarize
    s = summarize(objs)
    return {k: round(100.0 * float(s[k]), 1) for k in ("J&F-Mean", "J-Mean", "F-Mean")}


def run_demo(out: str | os.PathLike = "ausm-demo", checkpoint=None, num_frames: int = 40,
             size: tuple[int, int] = (240, 432), seed: int = DEMO_SEED, num_objects: int = 4,
             device=None, overlay: bool = True, progress: bool = True, finetune=None) -> dict:
    """Generate the demo video, segment it prompted and unprompted, score both, write the results.

    Writes into ``out``: ``input/00000.png...`` (the frames), ``ground_truth/``, ``prompted/`` and
    ``unprompted/`` (palette index PNGs), ``prompted.mp4`` / ``unprompted.mp4`` (overlays with ids,
    class names and scores; skipped with ``overlay=False``) and ``scores.json`` (the returned dict).

    Args:
        out: output folder (created).
        checkpoint: model folder / hub id (``None`` = the shipped default ``ausm-lite-mo``).
        num_frames: frames of the video, ≥ 3.
        size: (H, W) of the frames.
        seed, num_objects: of :func:`~ausm.data.synthetic.render_video`.
        device: torch device (``None``: automatic, as :meth:`ausm.AUSM.from_pretrained`).
        finetune: test-time fine-tuning of the prompted run: a step count or a
            :class:`~ausm.train.finetune.FinetuneConfig` (the session's ``adapt``); None = off.

    Returns:
        ``{"prompted": {"J&F-Mean", "J-Mean", "F-Mean"}, "unprompted": {... , "class_accuracy",
        "tracks"}, "frames", "objects", "classes", "seconds": {...}, "out"}`` (J/F in percent).

    Raises:
        InputError: ``num_frames`` < 3; CheckpointError: a broken checkpoint.
    """
    from .api import AUSM
    from .train.finetune import as_finetune_config
    from .io.atomic import atomic_open

    if num_frames < 3:
        raise InputError(f"the demo needs at least 3 frames, got {num_frames}")
    out = Path(out)
    model = AUSM.from_pretrained(checkpoint, device=device)
    vid = render_video(num_frames, size, num_objects, seed=seed, scene="outdoor")
    _write_demo_inputs(out, vid)
    prompts: dict[int, dict[int, np.ndarray]] = {}
    for j, o in enumerate(vid.object_ids):
        f = int(vid.first_frame[j])
        if f >= 0:
            prompts.setdefault(f, {})[o] = vid.ids[f] == o
    head = SHAPES_HEAD if SHAPES_HEAD in model.model.class_heads else "agnostic"
    ft = as_finetune_config(finetune)
    runs = {"prompted": dict(prompts=prompts, adapt=ft), "unprompted": dict(prompts=None, class_head=head)}
    result: dict = {"finetune_steps": ft.steps if ft else 0, "frames": num_frames, "size": list(size),
                    "objects": len(vid.object_ids), "classes": [SHAPE_CLASSES[c] for c in vid.classes],
                    "seconds": {}, "out": str(out),
                    "entering_mid_video": [o for j, o in enumerate(vid.object_ids) if vid.first_frame[j] > 0]}
    for name, kw in runs.items():
        preds, labels, tracks, seconds = _run_demo_mode(model, vid, name, kw, progress)
        result["seconds"][name] = seconds
        _write_demo_outputs(out, name, vid, preds, labels, overlay)
        result[name] = _score_demo_mode(vid, name, preds, tracks, head == SHAPES_HEAD)
    with atomic_open(out / "scores.json", "w") as f:
        json.dump(result, f, indent=2)
    return result


def _write_demo_inputs(out: Path, vid) -> None:
    """``out/input/`` (RGB PNG frames) and ``out/ground_truth/`` (index PNGs); the result folders too."""
    from PIL import Image

    from .io.masks import save_index_png

    for sub in ("input", "ground_truth", "prompted", "unprompted"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for t in range(len(vid.frames)):
        Image.fromarray(vid.frames[t]).save(out / "input" / f"{t:05d}.png")
        save_index_png(out / "ground_truth" / f"{t:05d}.png", vid.ids[t])


def _run_demo_mode(model, vid, name: str, kw: dict, progress: bool):
    """Propagate the demo video in one mode (``prompted`` / ``unprompted``).

    Returns: (index masks (H, W) int64 per frame, overlay labels {id: text} per frame, the class name
    of each unprompted track {id: name}, seconds)."""
    import time

    from tqdm import tqdm

    preds, labels_per_frame, tracks = [], [], {}
    t0 = time.perf_counter()
    for res in tqdm(model.propagate(iter(vid.frames), **kw), total=len(vid.frames), desc=f"demo {name}",
                    disable=not progress):
        preds.append(res.index_mask.astype(np.int64))
        lab = {}
        for i, o in enumerate(res.obj_ids):
            cname = res.class_names[int(res.class_ids[i])] \
                if res.class_names and len(res.class_ids) > i and name == "unprompted" else None
            lab[o] = f"{o} {cname} {res.scores[i]:.2f}" if cname else f"{o} {res.scores[i]:.2f}"
            if cname:
                tracks[o] = cname
        labels_per_frame.append(lab)
    return preds, labels_per_frame, tracks, round(time.perf_counter() - t0, 2)


def _write_demo_outputs(out: Path, name: str, vid, preds, labels, overlay: bool) -> None:
    """``out/<name>/`` index PNGs and, with ``overlay``, ``out/<name>.mp4``."""
    from .io.masks import save_index_png
    from .io.overlay import OverlayWriter

    for t, p in enumerate(preds):
        save_index_png(out / name / f"{t:05d}.png", p.astype(np.uint16))
    if overlay:
        with OverlayWriter(out / f"{name}.mp4", fps=12) as w:
            for t, p in enumerate(preds):
                w.write(vid.frames[t], p.astype(np.uint16), labels=labels[t])


def _score_demo_mode(vid, name: str, preds, tracks: dict, score_classes: bool) -> dict:
    """J&F of one mode: prompted = semi-supervised; unprompted = the unsupervised protocol (proposals
    renumbered 1..K, Hungarian matching to the objects) plus, with ``score_classes``, the percentage of
    objects whose matched track carries the right shape class."""
    from .eval.davis import renumber_proposals, score_sequence

    gt = list(vid.ids)
    if name == "prompted":
        return _summ(score_sequence(gt, preds, task="semi", year=2017, layout="youtube", name="demo"))
    renum, remap = renumber_proposals(preds)
    objs = score_sequence(gt, renum, task="unsupervised", year=2017, layout="youtube", name="demo",
                          max_proposals=None)
    summary = {**_summ(objs), "tracks": len(remap)}
    if score_classes:
        inv = {k: v for v, k in remap.items()}
        correct = 0
        for ob in objs:
            track = inv.get(int(ob.proposal or 0))  # proposals beyond the tracks are empty
            gt_cls = SHAPE_CLASSES[int(vid.classes[int(ob.object_id) - 1])]
            correct += int(track is not None and tracks.get(track) == gt_cls)
        summary["class_accuracy"] = round(100.0 * correct / max(1, len(objs)), 1)
    return summary


def format_demo(result: dict) -> str:
    """A short human-readable summary of :func:`run_demo`'s result."""
    p, u = result["prompted"], result["unprompted"]
    lines = [f"demo video: {result['frames']} frames {result['size'][1]}x{result['size'][0]}, "
             f"{len(result['classes'])} objects ({', '.join(result['classes'])})"
             + (f", object(s) {result['entering_mid_video']} enter mid-video" if result["entering_mid_video"] else ""),
             "| run | J&F | J | F | tracks | class acc. | seconds |", "|---|---|---|---|---|---|---|",
             f"| prompted{' (fine-tuned %d steps)' % result['finetune_steps'] if result.get('finetune_steps') else ''}"
             f" | {p['J&F-Mean']} | {p['J-Mean']} | {p['F-Mean']} | | | {result['seconds']['prompted']} |",
             f"| unprompted | {u['J&F-Mean']} | {u['J-Mean']} | {u['F-Mean']} | {u.get('tracks', '')} | "
             f"{u.get('class_accuracy', 'n/a')} | {result['seconds']['unprompted']} |",
             f"results in {result['out']}/ (prompted.mp4, unprompted.mp4, scores.json)"]
    return "\n".join(lines)
