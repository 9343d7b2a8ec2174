"""Time ``ausm eval davis`` against the ``vos-benchmark`` package on the same folders, side by side.

Both score the semi-supervised protocol (first and last frames skipped) of every sequence of the ground
truth root against the same predicted PNGs; runs alternate between the two tools; the script prints
every run, the best and the median, the ratio, and checks that both give the same J&F.

    OMP_NUM_THREADS=1 python scripts/metric_checks/eval_speed.py                 # both in one process
    OMP_NUM_THREADS=1 python scripts/metric_checks/eval_speed.py --processes 0   # both on every core

Defaults: the 13-sequence DAVIS-2017-format root and the OSVOS predictions in ``../shared/data``.
Needs ``pip install vos-benchmark`` (the ``dev`` extra).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_GT = SHARED / "derived" / "davis2017_singleobj_root"
DEFAULT_PRED = SHARED / "davis2017_val_predictions__davis2017-evaluation" / "results" / "semi-supervised" / "osvos"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt-root", type=Path, default=DEFAULT_GT, help="DAVIS root (Annotations/480p/<seq>/)")
    ap.add_argument("--pred", type=Path, default=DEFAULT_PRED, help="predicted PNGs: PRED/<seq>/<frame>.png")
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each tool")
    ap.add_argument("--processes", type=int, default=1,
                    help="processes for both tools (0: one per core, vos-benchmark's default)")
    args = ap.parse_args(argv)

    try:
        from vos_benchmark.benchmark import benchmark
    except ImportError:
        print("vos-benchmark is not installed: pip install vos-benchmark", file=sys.stderr)
        return 2
    from ausm.eval.davis import evaluate_davis

    ann = args.gt_root / "Annotations" / args.resolution
    if not ann.is_dir() or not args.pred.is_dir():
        print(f"missing {ann} or {args.pred}", file=sys.stderr)
        return 2
    seqs = sorted(p.name for p in ann.iterdir() if p.is_dir())
    n_frames = sum(len(list((ann / s).glob("*.png"))) for s in seqs)

    with tempfile.TemporaryDirectory() as tmp:
        # vos-benchmark wants exactly the ground-truth sequences and writes results.csv into the folder
        masks = Path(tmp) / "pred"
        masks.mkdir()
        for s in seqs:
            os.symlink((args.pred / s).resolve(), masks / s)

        def run_ausm():
            t = time.perf_counter()
            r = evaluate_davis(args.gt_root, masks, task="semi", split=None, sequences=seqs,
                               resolution=args.resolution, workers=args.processes)
            return time.perf_counter() - t, 100 * r["J&F-Mean"], 100 * r["J-Mean"], 100 * r["F-Mean"]

        def run_vos():
            t = time.perf_counter()
            jf, j, f, _ = benchmark([str(ann)], [str(masks)], num_processes=args.processes or None, verbose=False)
            return time.perf_counter() - t, float(jf[0]), float(j[0]), float(f[0])

        times = {"ausm": [], "vos-benchmark": []}
        scores = {}
        for i in range(args.repeat):
            order = [("ausm", run_ausm), ("vos-benchmark", run_vos)]
            for name, fn in (order if i % 2 == 0 else order[::-1]):
                dt, jf, j, f = fn()
                times[name].append(dt)
                scores[name] = (jf, j, f)
                print(f"run {i + 1} {name:>13}: {dt:7.2f} s   J&F {jf:.4f}  J {j:.4f}  F {f:.4f}", flush=True)

    procs = "one per core" if args.processes == 0 else str(args.processes)
    print(f"\n{len(seqs)} sequences, {n_frames} frames ({args.gt_root}), processes: {procs}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    for name, ts in times.items():
        print(f"{name:>13}: best {min(ts):6.2f} s   median {statistics.median(ts):6.2f} s   "
              f"({n_frames / min(ts):.0f} frames/s)")
    print(f"speed-up of ausm over vos-benchmark: best {min(times['vos-benchmark']) / min(times['ausm']):.2f}x, "
          f"median {statistics.median(times['vos-benchmark']) / statistics.median(times['ausm']):.2f}x")
    diff = max(abs(a - b) for a, b in zip(scores["ausm"], scores["vos-benchmark"]))
    print(f"J&F / J / F agree to {diff:.1e} (percent)")
    return 0 if diff < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
