"""Run a model over a DAVIS split and score it (``ausm benchmark davis2016``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..data.davis import DavisDataset
from ..inference.session import Session
from ..io.masks import save_index_png
from .davis import sequence_j


def benchmark_davis(model, root, split: str = "val", resolution: str = "480p", year: int = 2016,
                    task: str = "semi", out: str | os.PathLike | None = None, sequences: list[str] | None = None,
                    progress: bool = True) -> dict:
    """Segment every sequence of a DAVIS split and compute J per object.

    Semi-supervised: the first-frame ground truth is the prompt, frames 1..N−2 are scored.
    Unsupervised: no prompt; every object id the model finds is kept, and the predicted index mask's
    objects are matched to ground-truth objects by the best J (a full Hungarian J&F matching is
    ``ausm eval davis --task unsupervised``); all frames are scored.

    Args:
        model: an :class:`~ausm.model.AUSMModel` in eval mode.
        root: DAVIS root; ``split``, ``resolution``, ``year`` as in :class:`DavisDataset`.
        task: ``"semi"`` or ``"unsupervised"``.
        out: optional folder for predicted palette PNGs ``OUT/<seq>/%05d.png`` and ``results.json``.

    Returns:
        {"J-Mean": float in [0, 1], "per_object": {"seq/obj": J}, "task", "sequences"}.
    """
    from tqdm import tqdm
    from scipy.optimize import linear_sum_assignment

    from .davis import jaccard

    ds = DavisDataset(root, split=split, resolution=resolution, year=year, sequences=sequences)
    per_object: dict[str, float] = {}
    seqs = tqdm(ds.sequences, desc=f"davis{year} {task}", disable=not progress)
    for seq in seqs:
        gts = [ds.read_mask(p) for p in ds.mask_paths(seq)]
        objs = sorted({int(v) for g in gts for v in np.unique(g)} - {0, 255})
        session = Session(model, detect_new_objects=(task != "semi"))
        if task == "semi":
            for o in objs:
                if (gts[0] == o).any():
                    session.add_prompt(0, o, gts[0] == o)
        preds = []
        for f, path in enumerate(ds.frame_paths(seq)):
            res = session.step(ds.read_frame(path))
            idx = res.index_mask.astype(np.int64)
            if task == "semi" and f == 0:
                idx = gts[0].astype(np.int64) * (gts[0] != 255)
            preds.append(idx)
        if task != "semi":
            pids = sorted({int(v) for p in preds for v in np.unique(p)} - {0})
            if pids:
                cost = np.array([[np.mean([jaccard(p == pi, g == gi, g == 255) for p, g in zip(preds, gts)])
                                  for pi in pids] for gi in objs])
                r, c = linear_sum_assignment(-cost)
                remap = {pids[ci]: objs[ri] for ri, ci in zip(r, c)}
                preds = [np.vectorize(lambda v: remap.get(int(v), 0), otypes=[np.int64])(p) if p.any() else p
                         for p in preds]
        js = sequence_j(preds, gts, objs, first_last_excluded=(task == "semi"))
        for o, j in js.items():
            per_object[f"{seq}/{o}"] = j
        if out is not None:
            d = Path(out) / seq
            d.mkdir(parents=True, exist_ok=True)
            for f, p in enumerate(preds):
                save_index_png(d / f"{f:05d}.png", np.clip(p, 0, 255).astype(np.uint8))
        seqs.set_postfix(J=f"{np.mean(list(per_object.values())):.3f}")
    result = {"task": task, "sequences": len(ds.sequences), "J-Mean": float(np.mean(list(per_object.values()))),
              "per_object": per_object}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        tmp = Path(out) / ".results.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, Path(out) / "results.json")
    return result
