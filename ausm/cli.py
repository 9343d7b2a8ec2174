"""Command-line interface: ``ausm segment | train | benchmark | eval | bench | app | export``.

Exit codes (a one-line ``error:`` message on stderr, no traceback unless ``--debug``):
0 success, 1 unexpected internal error, 2 bad input (video, mask, prompt, paths; OS errors about a
path: permission denied, read-only file system, disk full, not a folder), 3 bad configuration, 4 missing
or broken checkpoint, 5 training cannot continue (repeated non-finite steps), 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import AUSMError, CheckpointError, ConfigError, InputError, TrainingError

#: Exit code of each error kind.
EXIT_CODES = {InputError: 2, ConfigError: 3, CheckpointError: 4, TrainingError: 5}


def exit_code(e: BaseException) -> int:
    for cls, code in EXIT_CODES.items():
        if isinstance(e, cls):
            return code
    return 2 if isinstance(e, AUSMError) or _file_system_error(e) else 1


def _file_system_error(e: BaseException) -> str | None:
    """One line for an OS error about a path the user gave or the machine's state (permission denied,
    read-only file system, disk full, not a folder, ...): these are exit 2, not internal errors."""
    import errno

    kinds = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
             errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.ETXTBSY}
    if not isinstance(e, OSError) or e.errno not in kinds:
        return None
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or type(e).__name__}{where} (check the path, its permissions and free space)"


# -- segment ------------------------------------------------------------------------------------
def cmd_segment(args) -> int:
    """``ausm segment``: :func:`ausm.segment.run_segment` (or the demo)."""
    from .segment import SegmentOptions, run_segment

    if args.demo:
        return cmd_demo(args)
    return run_segment(SegmentOptions.from_namespace(args))


def cmd_demo(args) -> int:
    """``ausm segment --demo``: :func:`ausm.demo.run_demo`."""
    from .demo import format_demo, run_demo

    if args.input:
        raise InputError("--demo takes no input (it generates its own video); drop the input or --demo")
    device = None if args.device == "auto" else args.device
    res = run_demo(args.out or "ausm-demo", checkpoint=args.checkpoint, device=device, progress=not args.quiet,
                   finetune=args.finetune)
    print(format_demo(res))
    return 0


_SEGMENT_EPILOG = """\
inputs (several may be given; each writes OUT/<input name>/ then, one writes OUT/ directly):
  FOLDER                  frames (jpg, png, ...) in natural order
  VIDEO                   any file PyAV / FFmpeg reads (mp4, mkv, avi, webm, ...)
  -                       a stream on standard input: ffmpeg ... -f mpegts - | ausm segment - ...
  /dev/video0, webcam:0   a camera (v4l2 on Linux, avfoundation on macOS)
  rtsp://, http(s)://, udp://, tcp://, rtmp://, srt://   a network stream
live sources are processed as frames arrive; Ctrl-C ends one and keeps its results.

prompts (or --unprompted):
  --prompt MASK.png       first-frame mask: binary (object 1) or index / palette (one object per id)
  --prompt FOLDER         index masks named by frame (00000.png, 00005.png, ...): each adds or replaces
                          the objects it contains on that frame
  --prompt-box x0,y0,x1,y1 / --prompt-point x,y[,label]   on --frame K as object --obj-id N

outputs (--format, repeatable or comma-separated): palette  %05d.png index PNGs | per-object
  <obj_id>/%05d.png | rle  results.json (YouTube-VIS results) | boxes  boxes.json; plus overlay.mp4
"""


def _add_segment_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("segment", help="segment videos, frame folders or live streams",
                       epilog=_SEGMENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("input", nargs="*",
                   help="frame folder, video file, '-' (stdin), /dev/videoN, webcam:N or a stream URL; several "
                        "inputs write OUT/<input name>/")
    s.add_argument("--demo", action="store_true",
                   help="no input: generate a multi-object video (shapes that move, occlude, enter and leave), "
                        "segment it prompted and unprompted, score both against its ground truth and write "
                        "overlays to --out (default ausm-demo)")
    g = s.add_argument_group("prompts")
    g.add_argument("--prompt", action="extend", nargs="+", metavar="MASK",
                   help="first-frame mask PNG (binary: object 1; index/palette: one object per id) or a folder of "
                        "index masks named by frame (00000.png, 00005.png, ...) that add or replace objects on "
                        "those frames; one for all inputs or one per input")
    g.add_argument("--prompt-box", action="append", metavar="x0,y0,x1,y1",
                   help="box prompt in pixels (repeatable: box i is object --obj-id + i)")
    g.add_argument("--prompt-point", action="append", metavar="x,y[,label]",
                   help="point prompt in pixels, label 1 (default: on the object) or 0 (not on it); repeatable: "
                        "all points describe one object")
    g.add_argument("--frame", type=int, default=None, metavar="K",
                   help="0-based frame of the box / point prompts (default 0)")
    g.add_argument("--obj-id", type=int, default=None, metavar="N",
                   help="object id of the first box / point prompt (default 1)")
    g.add_argument("--unprompted", action="store_true",
                   help="detect and track objects without a prompt; together with prompts: track the prompted "
                        "objects and also discover new ones")
    g.add_argument("--replay", action="store_true",
                   help="test-time replay: run forward, backward, forward and keep the last pass (paper Table 3); "
                        "file/folder inputs, prompts on frame 0 only")
    g.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="test-time fine-tuning: on each prompted frame, adapt the model to the prompted objects "
                        "for STEPS training steps (OSVOS-style, not in the paper; 40 steps: DAVIS-2016 J&F 38.6 -> "
                        "54.8 for ausm-tiny, 66.5 -> 69.5 for ausm-lite, ~0.7 s per step on one CPU thread; 0 = off, the default)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the per-frame network (the first frame compiles for minutes on a CPU; "
                        "see docs/PERFORMANCE.md for when it pays off)")
    o = s.add_argument_group("outputs")
    o.add_argument("--out", default=None, help="output folder (written only when the whole run succeeds); required except with --demo")
    o.add_argument("--format", action="append", metavar="FMT",
                   help="palette | per-object | rle | boxes; repeatable or comma-separated (default palette)")
    o.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                   help="write overlay.mp4 with object ids, class names and scores (default on)")
    o.add_argument("--keep-names", action="store_true",
                   help="name per-frame files after the input frames (frame folders) instead of %%05d")
    o.add_argument("--video-id", type=int, default=1,
                   help="video_id of the first input in results.json (the next inputs count up; default 1)")
    i = s.add_argument_group("live sources")
    i.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop each input after N frames")
    i.add_argument("--input-format", default=None, metavar="FMT",
                   help="force an FFmpeg input format or device (v4l2, avfoundation, dshow, lavfi, mpegts, ...)")
    i.add_argument("--input-option", action="append", metavar="KEY=VALUE",
                   help="FFmpeg option for live sources, e.g. rtsp_transport=tcp, video_size=640x480, "
                        "framerate=30, probesize=32 (repeatable)")
    i.add_argument("--stream-timeout", type=float, default=None, metavar="SECONDS",
                   help="end a live source that delivers nothing for this long (default: 30 for network URLs, "
                        "none for pipes and cameras)")
    r = s.add_argument_group("resuming (video files and frame folders)")
    r.add_argument("--resume", action="store_true",
                   help="continue a run that was killed, from its last snapshot in OUT/.ausm-partial/ (same "
                        "inputs, prompts, checkpoint and options; without a snapshot it starts from the beginning)")
    r.add_argument("--snapshot-every", type=int, default=50, metavar="N",
                   help="write a snapshot for --resume every N frames (default 50; 0: none)")
    s.add_argument("--checkpoint", default=None, help="checkpoint folder, shipped name or hub id (default ausm-lite-mo)")
    s.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="what runs the network: torch (default) or onnx (an exported --onnx file run by onnxruntime; "
                        "same session logic and outputs; needs the export extra)")
    s.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="the file of `ausm export onnx` (with its MODEL.onnx.json beside it); selects --backend onnx")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_segment)
    return s
    return s


# -- train --------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    """``ausm train``: :meth:`TrainConfig.load <ausm.train.config.TrainConfig.load>` then
    :func:`ausm.train.trainer.train`."""
    from .train.config import TrainConfig
    from .train.trainer import train

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not Path(args.config).exists():
        overrides, args.config = [args.config, *overrides], None  # no config file: the first word is an override
    if args.mode:
        overrides.append(f"mode={args.mode}")
    out = train(TrainConfig.load(args.config, overrides), resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"checkpoint: {out / 'last'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .eval.cli import add_benchmark_parser, add_eval_parser
    from .speed.cli import add_bench_parser

    p = argparse.ArgumentParser(prog="ausm", description="AUSM: streaming universal video segmentation")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    _add_segment_parser(sub)
    _add_train_parser(sub)
    add_benchmark_parser(sub)
    add_eval_parser(sub)
    add_bench_parser(sub)
    _add_app_parser(sub)
    _add_export_parser(sub)
    return p


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model (teacher-forced parallel training)")
    t.add_argument("config", nargs="?", help="JSON file of TrainConfig fields")
    t.add_argument("overrides", nargs="*", help="key=value overrides of TrainConfig fields")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last + OUT/trainer_state.pt")
    t.add_argument("--mode", choices=["parallel", "iterative"], default=None,
                   help="parallel (teacher-forced, Algorithm 2) or iterative (frame-by-frame baseline)")
    t.set_defaults(func=cmd_train)


# -- app ----------------------------------------------------------------------------------------
def cmd_app(args) -> int:
    """``ausm app``: :func:`ausm.app.serve` (the interactive web app; needs the ``app`` extra)."""
    try:
        from .app.server import serve
    except ImportError as e:
        raise InputError(f"ausm app needs the app extra ({e.name or e} is missing): pip install -e \".[app]\"") from e
    from .checkpoint import load_model
    from .device import resolve_device

    if args.video is not None:  # the CLI's checks and errors, before the model loads
        import tempfile

        from .app.video import VideoSource

        with tempfile.TemporaryDirectory() as d:
            VideoSource(args.video, d, args.max_frames)
    model = load_model(args.checkpoint, device=resolve_device(args.device))
    serve(model, args.video, args.host, args.port, max_frames=args.max_frames, max_upload_mb=args.max_upload_mb,
          quiet=args.quiet)
    return 0


def _add_app_parser(sub) -> None:
    a = sub.add_parser("app", help="interactive web app: click objects, track, correct, download the masks")
    a.add_argument("video", nargs="?", default=None, help="video file or frame folder every new tab opens (optional)")
    a.add_argument("--checkpoint", default=None, help="checkpoint folder, shipped name or hub id (default ausm-lite-mo)")
    a.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    a.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    a.add_argument("--max-frames", type=int, default=None, metavar="N", help="use only the first N frames of a video")
    a.add_argument("--max-upload-mb", type=int, default=2048, metavar="MB", help="upload size limit (default 2048)")
    a.add_argument("--quiet", action="store_true", help="no request log")
    a.set_defaults(func=cmd_app)


# -- export -------------------------------------------------------------------------------------
def cmd_export(args) -> int:
    """``ausm export onnx``: :func:`ausm.export.onnx.export_onnx` of a checkpoint."""
    from .checkpoint import load_model, resolve_checkpoint
    from .export.onnx import check_size, contract_path, export_onnx
    from .io.paths import check_output_file

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out {out}: give a file name ending in .onnx (its contract goes to {out.name}.onnx.json)")
    check_output_file(out, "--out")
    ckpt = resolve_checkpoint(args.checkpoint)
    if Path(os.path.realpath(out)).is_relative_to(os.path.realpath(ckpt if ckpt.is_dir() else ckpt.parent)):
        raise InputError(f"--out {out} lies inside the checkpoint {ckpt}; give a path outside it (nothing was written)")
    H, W = check_size(args.size)
    model = load_model(args.checkpoint, device="cpu")
    if not args.quiet:
        print(f"exporting {model.cfg.name} for {H}x{W} frames (model input "
              f"{'x'.join(map(str, model.cfg.input_size(H, W)))}) ...", file=sys.stderr)
    c = export_onnx(model, out, size=(H, W), opset=args.opset, source=str(args.checkpoint or "ausm-lite-mo"))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, opset {c['opset']}, input "
          f"{c['input_size'][0]}x{c['input_size'][1]}, {c['num_ids']} ID slots) and {contract_path(out)}")
    return 0


def _add_export_parser(sub) -> None:
    e = sub.add_parser("export", help="export the streaming step for deployment (ONNX)")
    fmt = e.add_subparsers(dest="format", required=True)
    o = fmt.add_parser("onnx", help="the per-frame step with its fixed-size state as an ONNX graph (docs/EXPORT.md)")
    o.add_argument("--checkpoint", default=None, help="checkpoint folder, shipped name or hub id (default ausm-lite-mo)")
    o.add_argument("--out", required=True, metavar="MODEL.onnx", help="the .onnx file; the contract goes beside it")
    o.add_argument("--size", type=int, nargs=2, default=[480, 854], metavar=("H", "W"),
                   help="frame size of the videos it will run on (default 480 854); the graph's model input is "
                        "fixed to the size those frames are resized to (256x416 for the default ausm-lite-mo)")
    o.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 18)")
    o.add_argument("--quiet", action="store_true")
    o.set_defaults(func=cmd_export)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler ending the job): unwinds like Ctrl-C, so temporary outputs are
    removed and a resumable run keeps its snapshot."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    from .device import tune_cpu_allocator

    args = build_parser().parse_args(argv)
    tune_cpu_allocator()
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure: one line, a distinct exit code
        if args.debug:
            import traceback

            traceback.print_exc()
        if isinstance(e, AUSMError):
            print(f"error: {e}", file=sys.stderr)
        elif _file_system_error(e):
            print(f"error: {_file_system_error(e)}", file=sys.stderr)
        else:
            print(f"error: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                  file=sys.stderr)
        return exit_code(e)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())
