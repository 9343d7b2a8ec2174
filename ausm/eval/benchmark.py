"""Run a model over a DAVIS split and score it (``ausm benchmark davis2016``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.davis import DavisDataset
from ..errors import InputError
from ..inference.session import Session
from ..io.masks import save_index_png
from .davis import score_sequence, summarize, write_json


def benchmark_davis(model, root, split: str = "val", resolution: str = "480p", year: int = 2016,
                    task: str = "semi", out: str | os.PathLike | None = None, sequences: list[str] | None = None,
                    progress: bool = True) -> dict:
    """Segment every sequence of a DAVIS split and score it with the official J&F.

    Semi-supervised: the first-frame ground truth is the prompt; frames 1..N−2 are scored (predicted ids
    that are not prompted objects are dropped). Unsupervised: no prompt; the model's ids (renumbered
    1..K in increasing order) are proposals matched to ground-truth objects by the Hungarian assignment
    on (mean J + mean F) / 2, over all frames, void excluded (no limit on the number of proposals).
    Scoring is :func:`ausm.eval.davis.score_sequence`, the same code as ``ausm eval davis``: running
    that command on ``out`` gives the same numbers (for at most 20 proposals in unsupervised mode).

    Args:
        model: an :class:`~ausm.model.AUSMModel` in eval mode.
        root: DAVIS root; ``split``, ``resolution``, ``year`` as in :class:`DavisDataset`.
        task: ``"semi"`` or ``"unsupervised"``.
        out: optional folder for predicted palette PNGs ``OUT/<seq>/<frame>.png`` and ``results.json``.

    Returns:
        ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"`` (fractions in
        [0, 1]), ``"per_object": {"seq/obj": J-Mean}``, ``"objects": {"seq_obj": {all statistics}}``,
        ``"num_objects", "task", "year", "sequences"`` (count)``}``.
    """
    from tqdm import tqdm

    ds = DavisDataset(root, split=split, resolution=resolution, year=year, sequences=sequences)
    scored = []
    seqs = tqdm(ds.sequences, desc=f"davis{year} {task}", disable=not progress)
    for seq in seqs:
        mask_paths = ds.mask_paths(seq)
        gts = [ds.read_mask(p) for p in mask_paths]
        objs = sorted({int(v) for v in np.unique(gts[0])} - {0, 255})
        session = Session(model, detect_new_objects=(task != "semi"))
        if task == "semi":
            for o in objs:
                session.add_prompt(0, o, gts[0] == o)
        preds = []
        for f, path in enumerate(ds.frame_paths(seq)):
            res = session.step(ds.read_frame(path))
            idx = np.asarray(res.index_mask).astype(np.int64)
            if task == "semi":
                idx = np.where(np.isin(idx, objs), idx, 0) if f else gts[0].astype(np.int64) * (gts[0] != 255)
            preds.append(idx)
        if len(preds) < len(gts):
            raise InputError(f"sequence {seq!r} has {len(gts)} masks but only {len(preds)} frames")
        preds = preds[:len(gts)]
        if task != "semi":  # renumber the proposals 1..K
            ids = np.unique(np.concatenate([np.unique(p) for p in preds]))
            ids = ids[ids != 0]
            lut = {int(v): k + 1 for k, v in enumerate(ids.tolist())}
            if lut and max(lut) != len(lut):
                preds = [np.vectorize(lambda v: lut.get(int(v), 0), otypes=[np.int64])(p) if p.any() else p
                         for p in preds]
        preds = [p.astype(np.uint8) if p.max(initial=0) <= 255 else p for p in preds]
        scored += score_sequence(gts, preds, task=task, year=year, layout="davis", name=seq,
                                 frame_names=[p.stem for p in mask_paths], max_proposals=None)
        if out is not None:
            d = Path(out) / seq
            d.mkdir(parents=True, exist_ok=True)
            for mp, p in zip(mask_paths, preds):
                save_index_png(d / f"{mp.stem}.png", np.clip(p, 0, 255).astype(np.uint8))
        if scored:
            jf = (np.mean([o.j_mean for o in scored]) + np.mean([o.f_mean for o in scored])) / 2
            seqs.set_postfix(JF=f"{jf:.3f}")
    summary = summarize(scored)
    result = {k: summary[k] for k in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")}
    result.update(task=task, year=year, sequences=len(ds.sequences), num_objects=summary["num_objects"],
                  per_object={f"{o.sequence}/{o.object_id}": o.j_mean for o in scored},
                  objects=summary["per_object"])
    if out is not None:
        write_json(Path(out) / "results.json", result)
    return result
