"""Run a model over a DAVIS split and score it (``ausm benchmark davis2016``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..data.davis import DavisDataset
from ..errors import InputError
from ..inference import Session, propagate
from ..io.masks import save_index_png
from .davis import renumber_proposals, score_sequence, summarize, write_json


def benchmark_davis(model, root, split: str = "val", resolution: str = "480p", year: int = 2016,
                    task: str = "semi", out: str | os.PathLike | None = None, sequences: list[str] | None = None,
                    progress: bool = True, replay: bool = False, finetune=None) -> dict:
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
        replay: test-time replay (paper Table 3): stream forward, backward, forward and keep the last
            pass (:func:`~ausm.inference.propagate.propagate`); 3× the compute.
        finetune: semi-supervised only: a :class:`~ausm.train.finetune.FinetuneConfig` (or a step
            count) to adapt a copy of the model to each sequence's first-frame masks before segmenting it
            (OSVOS-style test-time fine-tuning, :func:`~ausm.train.finetune.finetune_on_prompt`);
            ``None`` / 0 = off. Uses only the first-frame annotation, as the protocol allows.

    Returns:
        ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"`` (fractions in
        [0, 1]), ``"per_object": {"seq/obj": J-Mean}``, ``"objects": {"seq_obj": {all statistics}}``,
        ``"num_objects", "task", "year", "sequences"`` (count)``}``.
    """
    from tqdm import tqdm

    from ..train.finetune import as_finetune_config

    ft = as_finetune_config(finetune)
    if ft is not None and task != "semi":
        raise InputError("test-time fine-tuning needs the first-frame masks: use it with task='semi'")
    ds = DavisDataset(root, split=split, resolution=resolution, year=year, sequences=sequences)
    rank, world = shard_info()
    scored = []
    seqs = tqdm(ds.sequences[rank::world], desc=f"davis{year} {task}" + (f" rank {rank}/{world}" if world > 1 else ""),
                disable=not progress)
    for seq in seqs:
        mask_paths = ds.mask_paths(seq)
        gts = [ds.read_mask(p) for p in mask_paths]
        preds = _segment_sequence(model, ds, seq, gts, task, replay, ft)
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
    if world > 1:  # rank 0 scores every sequence, in the order of a single-process run
        scored = gather_to_rank0(scored, ds.sequences, rank, world)
        if rank != 0:
            return {"rank": rank, "world_size": world}
    summary = summarize(scored)
    result = {k: summary[k] for k in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")}
    result.update(task=task, year=year, sequences=len(ds.sequences), num_objects=summary["num_objects"],
                  finetune=None if ft is None else dict(vars(ft)),
                  per_object={f"{o.sequence}/{o.object_id}": o.j_mean for o in scored},
                  objects=summary["per_object"])
    if out is not None:
        write_json(Path(out) / "results.json", result)
    return result


def _segment_sequence(model, ds, seq: str, gts: list, task: str, replay: bool, ft) -> list[np.ndarray]:
    """One DAVIS sequence through the model: index masks per annotated frame (semi-supervised: the
    first frame is the prompt, later frames keep only prompted ids; unsupervised: proposals renumbered
    1..K), uint8 where the ids fit."""
    objs = sorted({int(v) for v in np.unique(gts[0])} - {0, 255})
    prompts = {0: {o: gts[0] == o for o in objs}} if task == "semi" else None
    frames = (ds.read_frame(p) for p in ds.frame_paths(seq))
    results = propagate(model, frames, prompts, replay=replay, detect_new_objects=(task != "semi"), adapt=ft)
    preds = []
    for f, res in enumerate(sorted(results, key=lambda r: r.frame_idx) if replay else results):
        idx = np.asarray(res.index_mask).astype(np.int64)
        if task == "semi":
            idx = np.where(np.isin(idx, objs), idx, 0) if f else gts[0].astype(np.int64) * (gts[0] != 255)
        preds.append(idx)
    if len(preds) < len(gts):
        raise InputError(f"sequence {seq!r} has {len(gts)} masks but only {len(preds)} frames")
    preds = preds[:len(gts)]
    if task != "semi":  # renumber the proposals 1..K
        preds, _ = renumber_proposals(preds)
    return [p.astype(np.uint8) if p.max(initial=0) <= 255 else p for p in preds]


def shard_info() -> tuple[int, int]:
    """(rank, world size) of a ``torchrun`` launch (``RANK`` / ``WORLD_SIZE``), starting the process group
    (gloo on CPU, NCCL when CUDA is available) if needed; (0, 1) in a plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def gather_to_rank0(scored: list, sequences: list[str], rank: int, world: int) -> list:
    """Every rank's per-object scores on rank 0, ordered as a single process would produce them (rank r
    took ``sequences[r::world]``), so that the means are summed in the same order: the sharded result
    equals the single-process one exactly. Other ranks get ``[]``."""
    import torch.distributed as dist

    parts = [None] * world if rank == 0 else None
    dist.gather_object(scored, parts, dst=0)
    if rank != 0:
        return []
    by_seq: dict[str, list] = {}
    for part in parts:
        for o in part:
            by_seq.setdefault(o.sequence, []).append(o)
    return [o for seq in sequences for o in by_seq.get(seq, [])]


def _zip_folder(folder: Path, zip_path: Path, arc_root: str) -> None:
    """Zip ``folder`` as ``arc_root/...`` atomically (temp name, then rename)."""
    import zipfile

    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*.png")):
            z.write(p, f"{arc_root}/{p.relative_to(folder).as_posix()}")
    os.replace(tmp, zip_path)


def benchmark_vos(model, root, split: str = "valid", dataset: str = "ytvos2019", out: str | os.PathLike = "out",
                  videos: list[str] | None = None, progress: bool = True, score: bool | None = None) -> dict:
    """YouTube-VOS 2018/2019 or MOSE protocol: every object is given by its mask on the frame where it
    first appears (objects may start mid-video), and tracked from there.

    Writes the submission layout ``OUT/Annotations/<video>/<frame>.png`` (palette PNGs, every frame of
    ``JPEGImages``) and ``OUT/submission.zip``. The official benchmarks are scored by their servers; when
    the ground truth of ``split`` has more than the first-appearance masks (e.g. a held-out part of the
    training set), the predictions are also scored with the sparse-annotation J&F
    (:func:`ausm.eval.davis.evaluate_davis`, ``layout="youtube"``).

    Args:
        root: dataset root holding ``<split>/JPEGImages`` and ``<split>/Annotations``.
        dataset: ``ytvos2018`` | ``ytvos2019`` | ``mose`` (the name only changes the reader's meta lookup).
        score: force (True) or skip (False) scoring; ``None`` = when the ground truth allows it.

    Returns:
        {"dataset", "videos", "submission": path, "scored": bool, plus the J&F summary when scored}.
    """
    from tqdm import tqdm

    from ..data.ytvos import MOSEDataset, YouTubeVOSDataset, read_index_png
    from .davis import evaluate_davis

    cls = MOSEDataset if dataset == "mose" else YouTubeVOSDataset
    ds = cls(root, split=split, videos=videos, name=dataset)
    out = Path(out)
    ann_out = out / "Annotations"
    gt_beyond_first = False
    bar = tqdm(ds.videos, desc=f"{dataset} {split}", disable=not progress)
    for vid in bar:
        frames, masks = ds.frame_paths(vid), ds.mask_paths(vid)
        session = Session(model, detect_new_objects=False)
        seen: set[int] = set()
        d = ann_out / vid
        d.mkdir(parents=True, exist_ok=True)
        for k, (fp, mp) in enumerate(zip(frames, masks)):
            if mp is not None:
                gt = read_index_png(mp)
                ids = sorted(set(np.unique(gt).tolist()) - {0, 255})
                if any(o in seen for o in ids):
                    gt_beyond_first = True
                for o in ids:
                    if o not in seen:
                        session.add_prompt(k, int(o), gt == o)
                        seen.add(o)
            res = session.step(ds.read_frames(vid, [k])[0])
            idx = res.index_mask
            if idx.max(initial=0) > 255:
                raise InputError(f"{vid}: object id {int(idx.max())} does not fit a palette PNG")
            save_index_png(d / f"{fp.stem}.png", idx.astype(np.uint8))
    _zip_folder(ann_out, out / "submission.zip", "Annotations")
    result = {"dataset": dataset, "split": split, "videos": len(ds.videos), "submission": str(out / "submission.zip")}
    do_score = gt_beyond_first if score is None else score
    result["scored"] = bool(do_score)
    if do_score:
        res = evaluate_davis(Path(root) / split if split else Path(root), ann_out, task="semi", split=None,
                             sequences=ds.videos, layout="youtube")
        result.update({k: v for k, v in res.items() if k not in ("per_object",)})
    write_json(out / "results.json", result)
    return result


def benchmark_vis(model, ann_file, image_root=None, head: str = "ytvis2019", out: str | os.PathLike = "out",
                  top_k: int = 10, videos: list[str] | None = None, progress: bool = True,
                  fg_threshold: float | None = None) -> dict:
    """YouTube-VIS 2019/2021 / OVIS protocol: unprompted, every object detected, classified and tracked.

    Per video, every track t gets a class score per class c: the class probability maxed over
    frames (GenVIS) times the track's mean foreground score over the frames where its mask is
    non-empty; the ``top_k`` (track, class) pairs are kept (10 for YouTube-VIS, 20 for OVIS [P]).
    Writes ``OUT/results.json`` (YouTube-VIS results format, COCO RLE per frame, null where empty) and
    scores it with :func:`ausm.eval.ytvis.evaluate_ytvis` when ``ann_file`` has annotations.

    Raises:
        InputError: the model has no class head ``head``, or its class count differs from the JSON's.
    """
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    from ..data.ytvis import YTVISDataset
    from .ytvis import evaluate_ytvis, load_json

    ds = YTVISDataset(ann_file, image_root=image_root, head=head, videos=videos)
    if head not in model.class_heads:
        raise InputError(f"the model has no class head {head!r} (heads: {sorted(model.class_heads)})")
    K = model.class_heads[head].out_features - 1
    if K != ds.num_classes:
        raise InputError(f"class head {head!r} has {K} classes, {ann_file} has {ds.num_classes}")
    cat_ids = [int(c["id"]) for c in ds.categories]
    results = []
    for vid in tqdm(ds.videos, desc=f"{head} VIS", disable=not progress):
        info = ds.video_info(vid)
        n = ds.num_frames(vid)
        session = Session(model, detect_new_objects=True, class_head=head, fg_threshold=fg_threshold)
        segs: dict[int, list] = {}
        fg: dict[int, list[float]] = {}
        for k in range(n):
            r = session.step(ds.read_frames(vid, [k])[0])
            for i, o in enumerate(r.obj_ids):
                segs.setdefault(o, [None] * n)
                m = r.masks[i]
                if m.any():
                    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                    rle["counts"] = rle["counts"].decode("ascii")
                    segs[o][k] = rle
                    fg.setdefault(o, []).append(float(r.scores[i]))
        table = session.track_class_scores()
        cand = []
        for o, cls in table.items():
            if o not in fg:
                continue  # never visible
            q = float(np.mean(fg[o]))
            for c in range(K):
                cand.append((float(cls[c]) * q, o, c))
        cand.sort(key=lambda x: -x[0])
        for sc, o, c in cand[:top_k]:
            results.append({"video_id": info["id"], "category_id": cat_ids[c], "score": sc, "segmentations": segs[o]})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    summary = {"dataset": head, "videos": len(ds.videos), "results": str(out / "results.json"),
               "num_results": len(results)}
    gt = load_json(ann_file, "ground truth")
    if any(a.get("segmentations") for a in gt.get("annotations", [])):
        summary.update({k: v for k, v in evaluate_ytvis(gt, results).items() if k not in ("precision", "recall")})
    write_json(out / "summary.json", summary)
    return summary
