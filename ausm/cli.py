"""Command-line interface: ``ausm segment | train | benchmark``.

Exit codes (a one-line ``error:`` message on stderr, no traceback unless ``--debug``):
0 success, 1 unexpected internal error, 2 bad input (video, mask, prompt, paths), 3 bad configuration,
4 missing or broken checkpoint, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import AUSMError, CheckpointError, ConfigError, InputError

#: Exit code of each error kind.
EXIT_CODES = {InputError: 2, ConfigError: 3, CheckpointError: 4}


def exit_code(e: BaseException) -> int:
    for cls, code in EXIT_CODES.items():
        if isinstance(e, cls):
            return code
    return 2 if isinstance(e, AUSMError) else 1


def pick_device(name: str = "auto"):
    """``auto`` → CUDA if available, else MPS, else CPU; or the named device."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# -- segment ------------------------------------------------------------------------------------
def cmd_segment(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from .checkpoint import load_model
    from .errors import InputError
    from .inference.session import Session
    from .io import OverlayWriter, load_prompt_mask, object_ids, read_frames, save_index_png

    if args.prompt is None and not args.unprompted:
        raise InputError("give --prompt MASK.png (first-frame mask) or --unprompted")
    reader = read_frames(args.input)
    prompt = None
    if args.prompt is not None:
        size = reader.size
        if size is None:
            first = next(iter(reader))
            size = first.shape[:2]
        prompt = load_prompt_mask(args.prompt, expected_size=tuple(size))
        if len(object_ids(prompt)) > 254:
            raise InputError("at most 254 objects can be written as palette PNGs")
    model = load_model(args.checkpoint, device=pick_device(args.device))
    session = Session(model, detect_new_objects=True if args.unprompted else None)
    if prompt is not None:
        for o in object_ids(prompt):
            session.add_prompt(0, o, prompt == o)

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    # parent folders this run creates are removed again if it fails (no output on error)
    new_parents = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the parent folder of --out {out}: {e}") from e
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    n_written = 0
    ok = False
    try:
        total = len(reader)
        with OverlayWriter(tmp / "overlay.mp4", fps=reader.fps) as ov:
            for i, frame in enumerate(tqdm(reader, total=total, desc="segment", unit="frame",
                                           disable=args.quiet)):
                res = session.step(frame)
                idx = res.index_mask
                if idx.max(initial=0) > 254:
                    raise InputError(f"object id {int(idx.max())} does not fit a palette PNG (ids 1..254)")
                idx = idx.astype(np.uint8)
                save_index_png(tmp / f"{i:05d}.png", idx)
                ov.write(frame, idx)
                n_written += 1
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            for p in new_parents:  # deepest first; stops at the first non-empty one
                try:
                    p.rmdir()
                except OSError:
                    break
    if not args.quiet:
        print(f"wrote {n_written} masks and overlay.mp4 to {out}")
    return 0


# -- train --------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    import dataclasses

    from .errors import ConfigError
    from .train.trainer import TrainConfig, train

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    kw = {}
    if args.config and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config, *args.overrides]  # no config file: the first word is an override
        args.config = None
    if args.config:
        try:
            kw.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read config {args.config}: {e}") from e
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        k, v = item.split("=", 1)
        if k not in fields:
            raise ConfigError(f"unknown training option {k!r}; known: {sorted(fields)}")
        try:
            kw[k] = json.loads(v)
        except json.JSONDecodeError:
            kw[k] = v
    if args.mode:
        kw["mode"] = args.mode
    unknown = set(kw) - set(fields)
    if unknown:
        raise ConfigError(f"unknown training options {sorted(unknown)}")
    tc = TrainConfig(**kw)
    out = train(tc, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"checkpoint: {out / 'last'}")
    return 0


# -- benchmark ----------------------------------------------------------------------------------
def cmd_benchmark(args) -> int:
    from .checkpoint import load_model
    from .eval.benchmark import benchmark_davis

    model = load_model(args.checkpoint, device=pick_device(args.device))
    year = 2016 if args.dataset == "davis2016" else 2017
    res = benchmark_davis(model, args.root, split=args.split, resolution=args.resolution, year=year,
                          task=args.task, out=args.out, progress=not args.quiet)
    print(json.dumps({k: v for k, v in res.items() if k != "per_object"}))
    print(f"J-Mean {100 * res['J-Mean']:.1f} over {len(res['per_object'])} objects ({args.task})")
    return 0


# -- bench --------------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bench_command == "train-speed":
        from .bench.train_speed import run

        size = tuple(int(v) for v in args.size.split("x")) if args.size else None
        run(preset=args.config, frames_list=[int(v) for v in args.frames.split(",")], size=size, batch=args.batch,
            iters=args.iters, warmup=args.warmup, device=str(pick_device(args.device)))
    elif args.bench_command == "stream":
        from .bench.stream import run

        marks = [int(v) for v in args.report_at.split(",")]
        run(checkpoint=args.checkpoint, frames=args.frames, size=args.size, checkpoints=marks,
            internal_short_side=args.internal_short_side, video=args.video, device=str(pick_device(args.device)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ausm", description="AUSM: streaming universal video segmentation")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="segment a video (frame folder or video file)")
    s.add_argument("input", help="frame folder (jpg/png) or a video file")
    s.add_argument("--prompt", help="first-frame mask PNG: binary (object 1) or index/palette (one object per id)")
    s.add_argument("--unprompted", action="store_true", help="detect and track objects without a prompt")
    s.add_argument("--out", required=True, help="output folder: %%05d.png index masks + overlay.mp4")
    s.add_argument("--checkpoint", default=None, help="checkpoint folder, shipped name or hub id (default ausm-tiny)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_segment)

    t = sub.add_parser("train", help="train a model (teacher-forced parallel training)")
    t.add_argument("config", nargs="?", help="JSON file of TrainConfig fields")
    t.add_argument("overrides", nargs="*", help="key=value overrides of TrainConfig fields")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last + OUT/trainer_state.pt")
    t.add_argument("--mode", choices=["parallel", "iterative"], default=None,
                   help="parallel (teacher-forced, Algorithm 2) or iterative (frame-by-frame baseline)")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("benchmark", help="run a model over a benchmark split and score it")
    b.add_argument("dataset", choices=["davis2016", "davis2017"])
    b.add_argument("--root", required=True)
    b.add_argument("--split", default="val")
    b.add_argument("--resolution", default="480p")
    b.add_argument("--task", choices=["semi", "unsupervised"], default="semi")
    b.add_argument("--checkpoint", default=None)
    b.add_argument("--out", default=None)
    b.add_argument("--device", default="auto")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_benchmark)
    bench = sub.add_parser("bench", help="speed and memory benchmarks (JSON lines + a markdown table)")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    ts = bsub.add_parser("train-speed", help="parallel vs iterative seconds per training iteration")
    ts.add_argument("--config", default="ausm-tiny", help="model preset")
    ts.add_argument("--frames", default="1,2,4,8,16", help="comma-separated clip lengths T")
    ts.add_argument("--size", default=None, help="HxW training resolution (default: the preset's input size)")
    ts.add_argument("--batch", type=int, default=1)
    ts.add_argument("--iters", type=int, default=5)
    ts.add_argument("--warmup", type=int, default=2)
    st = bsub.add_parser("stream", help="streaming latency, fps, state size and RSS over a long stream")
    st.add_argument("--checkpoint", "--config", dest="checkpoint", default=None)
    st.add_argument("--frames", type=int, default=1000)
    st.add_argument("--size", default="480p", help="240p | 360p | 480p | 720p | 1080p | HxW")
    st.add_argument("--report-at", default="100,1000,10000")
    st.add_argument("--internal-short-side", type=int, default=None, help="override the model input short side")
    st.add_argument("--video", default=None, help="loop a real video instead of synthetic frames")
    for b_ in (ts, st):
        b_.add_argument("--device", default="cpu")
        b_.add_argument("--threads", type=int, default=0)
    bench.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure: one line, a distinct exit code
        if args.debug:
            import traceback

            traceback.print_exc()
        if isinstance(e, AUSMError):
            print(f"error: {e}", file=sys.stderr)
        else:
            print(f"error: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                  file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
