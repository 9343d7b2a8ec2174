"""``ausm eval davis`` and ``ausm eval ytvis``: score predictions with the official metrics.

Wire into the main parser with ``add_eval_parser(subparsers)``; each command sets ``func`` and returns
an exit status. Bad input raises :class:`~ausm.errors.InputError` (``ausm``'s ``main`` turns it into a
one-line ``error:`` message and exit status 2). ``python -m ausm.eval.cli eval ...`` runs these commands
on their own.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_eval_parser", "cmd_eval_davis", "cmd_eval_ytvis", "main"]


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
