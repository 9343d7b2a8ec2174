"""``ausm bench``: the speed and memory benchmarks' command line (accuracy: ``ausm benchmark``,
:mod:`ausm.eval.cli`)."""
from __future__ import annotations


from ..device import resolve_device
from ..errors import InputError


def cmd_bench(args) -> int:
    """``ausm bench train-speed | stream | vs-sam2``: speed and memory benchmarks."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bench_command == "train-speed":
        from .train_speed import run

        size = tuple(int(v) for v in args.size.split("x")) if args.size else None
        run(preset=args.config, frames_list=[int(v) for v in args.frames.split(",")], size=size, batch=args.batch,
            iters=args.iters, warmup=args.warmup, device=str(resolve_device(args.device)))
    elif args.bench_command == "stream":
        from .stream import run

        marks = [int(v) for v in args.report_at.split(",")]
        run(checkpoint=args.checkpoint, frames=args.frames, size=args.size, checkpoints=marks,
            internal_short_side=args.internal_short_side, video=args.video, device=str(resolve_device(args.device)),
            compile=args.compile, vs=args.vs, backends=_backends(args.backend), onnx=args.onnx)
    elif args.bench_command == "objects":
        from .objects import run

        run(objects=args.objects, size=args.size, frames=args.frames, warmup=args.warmup, checkpoint=args.checkpoint,
            sam2_side=args.sam2_side, sam2=not args.no_sam2, device=str(resolve_device(args.device)), seed=args.seed)
    elif args.bench_command == "vs-sam2":
        from .vs_sam2 import have_sam2, run

        ok, why = have_sam2()
        if not ok:
            raise InputError(f"ausm bench vs-sam2 needs transformers with SAM2 video support: {why}")
        run(size=args.size, frames=args.frames, warmup=args.warmup, sam2_sizes=args.sam2_sizes,
            large_frames=args.large_frames, prompt=args.prompt, checkpoint=args.checkpoint, order=args.order,
            device=str(resolve_device(args.device)), seed=args.seed)
    return 0


def _backends(text: str) -> tuple[str, ...]:
    """``--backend torch,onnx`` → ("torch", "onnx").

    Raises:
        InputError: an unknown or empty list.
    """
    names = tuple(dict.fromkeys(v.strip() for v in str(text).split(",") if v.strip()))
    if not names or any(n not in ("torch", "onnx") for n in names):
        raise InputError(f"--backend takes torch, onnx or torch,onnx; got {text!r}")
    return names


def add_bench_parser(sub) -> None:
    """``ausm bench``: speed and memory (the accuracy benchmarks are ``ausm benchmark``)."""
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
    st.add_argument("--vs", action="append", default=[], metavar="CHECKPOINT",
                    help="also measure this checkpoint, interleaved frame by frame in the same run (repeatable)")
    st.add_argument("--frames", type=int, default=1000)
    st.add_argument("--size", default="480p", help="240p | 360p | 480p | 720p | 1080p | HxW")
    st.add_argument("--report-at", default="100,1000,10000")
    st.add_argument("--internal-short-side", type=int, default=None, help="override the model input short side")
    st.add_argument("--video", default=None, help="loop a real video instead of synthetic frames")
    st.add_argument("--compile", action="store_true", help="torch.compile the per-frame network first "
                                                           "(compile time is reported as first_frame_s)")
    st.add_argument("--backend", default="torch", metavar="torch,onnx",
                    help="step back-ends to measure, interleaved in one run: torch, onnx or torch,onnx (the ONNX "
                         "back-end needs the export extra)")
    st.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                    help="the ONNX back-end's file (default: the --checkpoint exported for --size into a temporary folder)")
    vs = bsub.add_parser("vs-sam2", help="streaming latency of ausm vs transformers' SAM2 video model (Hiera-tiny, "
                                         "random weights), one prompted object, same run")
    vs.add_argument("--size", default="480p", help="frame size: 240p | 360p | 480p | 720p | 1080p | HxW")
    vs.add_argument("--frames", type=int, default=30, help="frames streamed per model (warm-up included)")
    vs.add_argument("--warmup", type=int, default=3, help="first frames not counted (the prompted frame is frame 0)")
    vs.add_argument("--sam2-sizes", default="default,auto",
                    help="comma-separated SAM2 square input sides: pixels (multiple of 32), 'default' (1024) or "
                         "'auto' (pixel count nearest to ausm's input; 320 for 480p)")
    vs.add_argument("--large-frames", type=int, default=12,
                    help="frame cap for SAM2 sides above 512 (several seconds per frame on a CPU); 0 = --frames")
    vs.add_argument("--prompt", choices=["mask", "point"], default="mask", help="frame-0 prompt of both models")
    vs.add_argument("--checkpoint", "--config", dest="checkpoint", default=None, help="ausm checkpoint (default: ausm-lite-mo)")
    vs.add_argument("--order", choices=["interleaved", "sequential"], default="interleaved",
                    help="interleaved: every model steps frame t before any steps t+1; sequential: one after another")
    vs.add_argument("--seed", type=int, default=0)
    ob = bsub.add_parser("objects", help="per-frame latency against the number of tracked objects, ausm and SAM2 "
                                         "interleaved in one run")
    ob.add_argument("--objects", default="1,2,4,8,16,32", help="comma-separated object counts ('max' = ID capacity)")
    ob.add_argument("--size", default="480p", help="frame size: 240p | 360p | 480p | 720p | 1080p | HxW")
    ob.add_argument("--frames", type=int, default=10, help="frames streamed per (model, count), warm-up included")
    ob.add_argument("--warmup", type=int, default=3)
    ob.add_argument("--checkpoint", default=None, help="ausm checkpoint (default: ausm-lite-mo)")
    ob.add_argument("--sam2-side", default="auto", help="SAM2 square input side: pixels, 'default' (1024) or "
                                                        "'auto' (the pixel count of ausm's input)")
    ob.add_argument("--no-sam2", action="store_true", help="measure ausm alone")
    ob.add_argument("--seed", type=int, default=0)
    for b_ in (ts, st, vs, ob):
        b_.add_argument("--device", default="cpu")
        b_.add_argument("--threads", type=int, default=0)
    bench.set_defaults(func=cmd_bench)
