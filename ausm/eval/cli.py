"""``ausm eval davis`` and ``ausm eval ytvis``: score predictions with the official metrics;
``ausm benchmark DATASET``: segment a benchmark split with a model and score it (accuracy; the speed
benchmarks are ``ausm bench``, :mod:`ausm.speed.cli`).

Wire into the main parser with ``add_eval_parser(subparsers)``; each command sets ``func`` and returns
an exit status. Bad input raises :class:`~ausm.errors.InputError` (``ausm``'s ``main`` turns it into a
one-line ``error:`` message and exit status 2). ``python -m ausm.eval.cli eval ...`` runs these commands
on their own.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..device import resolve_device

__all__ = ["add_eval_parser", "add_benchmark_parser", "cmd_benchmark", "cmd_eval_davis", "cmd_eval_ytvis", "main"]


def cmd_eval_davis(args) -> int:
    from ..errors import InputError
    from ..io.paths import check_output_file
    from .davis import evaluate_davis, format_table, write_json

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if args.json:
        check_output_file(args.json, "--json")
    res = evaluate_davis(args.gt_root, args.pred, task=args.task, split=args.set, year=args.year,
                         resolution=args.resolution, sequences=args.sequences, layout=args.layout,
                         max_proposals=args.max_proposals or None, workers=args.workers,
                         progress=not args.quiet)
    print(format_table(res))
    if args.json:
        write_json(args.json, res)
        if not args.quiet:
            print(f"\nwrote {args.json}")
    return 0


def cmd_eval_ytvis(args) -> int:
    from ..io.paths import check_output_file
    from .davis import write_json
    from .ytvis import evaluate_ytvis, format_summary

    if args.json:
        check_output_file(args.json, "--json")
    res = evaluate_ytvis(args.gt, args.pred)
    print(format_summary(res))
    if args.json:
        write_json(args.json, res)
        if not args.quiet:
            print(f"\nwrote {args.json}")
    return 0


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval davis`` and ``eval ytvis`` on an ``argparse`` sub-parsers object."""
    e = subparsers.add_parser("eval", help="score predictions: DAVIS / YouTube-VOS / MOSE J&F, YouTube-VIS AP",
                              description="Score predictions with the official metrics.")
    esub = e.add_subparsers(dest="eval_command", required=True)

    d = esub.add_parser("davis", help="J&F of predicted index PNGs (DAVIS, YouTube-VOS or MOSE layout)",
                        description="J&F as the official DAVIS evaluator computes it. Values are printed in "
                                    "percent; --json writes fractions at full precision.")
    d.add_argument("--gt-root", required=True,
                   help="DAVIS root (Annotations/<res>/<seq>/, ImageSets/<year>/<set>.txt) or a YouTube-VOS / "
                        "MOSE root (Annotations/<video>/)")
    d.add_argument("--pred", required=True, help="folder of predicted index PNGs: PRED/<seq>/<frame>.png")
    d.add_argument("--task", choices=["semi", "unsupervised"], default="semi",
                   help="semi: frames 1..N-2, ids are object ids; unsupervised: all frames, void excluded, "
                        "proposals matched to objects (Hungarian on J and F)")
    d.add_argument("--set", default="val", help="image set (ImageSets/<year>/<set>.txt); default val")
    d.add_argument("--year", type=int, choices=[2016, 2017], default=2017,
                   help="2017: index masks with void 255; 2016: 0/255 masks, one object")
    d.add_argument("--resolution", default="480p")
    d.add_argument("--layout", choices=["auto", "davis", "youtube"], default="auto",
                   help="youtube: sparse annotations, each object scored from its first annotated frame")
    d.add_argument("--sequences", nargs="+", default=None, help="score only these sequences")
    d.add_argument("--max-proposals", type=int, default=20,
                   help="unsupervised: largest predicted id allowed (official 20; 0 = no limit)")
    d.add_argument("--workers", type=int, default=1,
                   help="processes scoring sequences in parallel (0: one per CPU core)")
    d.add_argument("--json", default=None, help="write the results (fractions, full precision) here")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_eval_davis)

    y = esub.add_parser("ytvis", help="video mask AP of a results JSON (YouTube-VIS 2019/2021, OVIS)",
                        description="Video mask AP as the official YouTube-VIS API computes it.")
    y.add_argument("--gt", required=True, help="ground truth in YouTube-VIS format (videos, annotations, categories)")
    y.add_argument("--pred", required=True, help="results JSON: [{video_id, category_id, score, segmentations}]")
    y.add_argument("--json", default=None, help="write the 12 statistics here")
    y.add_argument("--quiet", action="store_true")
    y.set_defaults(func=cmd_eval_ytvis)
    return e


def cmd_benchmark(args) -> int:
    """``ausm benchmark DATASET``: segment a benchmark split with a model and score it (accuracy); under
    ``torchrun`` the DAVIS sequences are sharded over the ranks (:func:`~ausm.eval.benchmark.shard_info`)."""
    import torch.distributed as dist

    ok = False
    try:
        rc = _run_benchmark(args)
        ok = True
        return rc
    finally:
        if dist.is_available() and dist.is_initialized():  # a clean exit for every rank (gloo aborts otherwise)
            if ok:
                dist.barrier()
            dist.destroy_process_group()


def _run_benchmark(args) -> int:
    from ..checkpoint import load_model
    from .benchmark import benchmark_davis, benchmark_vis, benchmark_vos

    local = os.environ.get("LOCAL_RANK")  # torchrun: one device per rank; the videos are sharded
    model = load_model(args.checkpoint, device=resolve_device(args.device, int(local) if local else None))
    ds = args.dataset
    if ds in ("davis2016", "davis2017"):
        year = 2016 if ds == "davis2016" else 2017
        res = benchmark_davis(model, args.root, split=args.split, resolution=args.resolution, year=year,
                              task=args.task, out=args.out, progress=not args.quiet, replay=args.replay,
                              finetune=args.finetune)
        if "J&F-Mean" not in res:  # a rank other than 0 of a sharded run: rank 0 reports
            return 0
        print(json.dumps({k: v for k, v in res.items() if k not in ("per_object", "objects")}))
        print(f"J&F-Mean {100 * res['J&F-Mean']:.1f}  J-Mean {100 * res['J-Mean']:.1f}  "
              f"F-Mean {100 * res['F-Mean']:.1f}  over {len(res['per_object'])} objects ({args.task})")
        return 0
    from ..errors import InputError

    if args.finetune:
        raise InputError("--finetune is implemented for the DAVIS benchmarks only")
    if ds == "duts":
        from .stills import benchmark_stills

        res = benchmark_stills(model, args.root, split="holdout" if args.split == "val" else args.split,
                               holdout=args.holdout, limit=args.limit, progress=not args.quiet)
        if args.out:
            from .davis import write_json

            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_json(Path(args.out) / "stills.json", res)
        print(json.dumps({k: v for k, v in res.items() if k != "per_image"}))
        print(f"mask-prompt IoU at frame 2 {res['mask_iou']:.1f}  box IoU {res['box_iou']:.1f}  "
              f"point IoU {res['point_iou']:.1f}  over {res['images']} images ({res['split']})")
        return 0
    if args.out is None:
        raise InputError(f"--out is required for {ds} (the submission / results files are written there)")
    if ds in ("ytvos2018", "ytvos2019", "mose"):
        res = benchmark_vos(model, args.root, split=args.split if args.split != "val" else "valid", dataset=ds,
                            out=args.out, progress=not args.quiet)
    else:
        head = {"ytvis2019": "ytvis2019", "ytvis2021": "ytvis2021", "ovis": "ovis"}[ds]
        if not args.ann_file:
            raise InputError(f"--ann-file (the {ds} JSON) is required")
        res = benchmark_vis(model, args.ann_file, image_root=args.root, head=head, out=args.out,
                            top_k=20 if ds == "ovis" else 10, progress=not args.quiet)
    print(json.dumps({k: v for k, v in res.items() if k not in ("objects", "per_object", "stats")}))
    return 0


def add_benchmark_parser(sub) -> None:
    """``ausm benchmark``: accuracy on a benchmark split (the speed benchmarks are ``ausm bench``)."""
    b = sub.add_parser("benchmark", help="run a model over a benchmark split and score it")
    b.add_argument("dataset", choices=["davis2016", "davis2017", "ytvos2018", "ytvos2019", "mose",
                                       "ytvis2019", "ytvis2021", "ovis", "duts"],
                   help="duts: still-image mask/box/point prompts on a DUTS-TR-layout folder "
                        "(split holdout by default; docs/EVAL.md)")
    b.add_argument("--root", required=True)
    b.add_argument("--split", default="val", help="DAVIS image set, or the YouTube-VOS/MOSE split folder")
    b.add_argument("--ann-file", default=None, help="YouTube-VIS / OVIS JSON (--root = its JPEGImages folder)")
    b.add_argument("--resolution", default="480p")
    b.add_argument("--task", choices=["semi", "unsupervised"], default="semi")
    b.add_argument("--replay", action="store_true",
                   help="DAVIS: test-time replay (forward, backward, forward; paper Table 3), 3x the compute")
    b.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="DAVIS semi-supervised: adapt a copy of the model to each sequence's first-frame masks "
                        "for STEPS training steps before segmenting it (OSVOS-style test-time fine-tuning; "
                        "not in the paper; 0 = off)")
    b.add_argument("--limit", type=int, default=None, help="duts: score only the first N images")
    b.add_argument("--holdout", type=int, default=300,
                   help="duts: size of the held-out split (the last N names of list.txt; default 300)")
    b.add_argument("--checkpoint", default=None)
    b.add_argument("--out", default=None)
    b.add_argument("--device", default="auto")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_benchmark)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m ausm.eval.cli eval davis ...``)."""
    from ..errors import AUSMError

    p = argparse.ArgumentParser(prog="ausm")
    add_eval_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except AUSMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
