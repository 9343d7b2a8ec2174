"""The segment job behind ``ausm segment``: inputs → streaming session → writers, with resume
snapshots, folder locking, temporary folders and atomic moves, so that a failed run leaves nothing
half-written and a killed one can continue (``--resume``).

Python entry point: ``run_segment(SegmentOptions(input=["video.mp4"], out="masks", prompt=["m.png"]))``
— the same job the CLI runs, with the same checks and errors (:class:`~ausm.errors.InputError` etc.).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .device import resolve_device
from .errors import CheckpointError, InputError

__all__ = ["SegmentOptions", "run_segment"]


@dataclass
class SegmentOptions:
    """The options of one segment job; each field is the ``ausm segment`` flag of the same name
    (``ausm segment --help`` and docs/INFERENCE.md describe them).

    Attributes:
        input: frame folders, video files, ``-``, cameras or stream URLs.
        out: output folder (written only when the whole run succeeds).
        prompt: mask PNGs or folders of index masks (one for all inputs or one per input).
        prompt_box / prompt_point: ``"x0,y0,x1,y1"`` / ``"x,y[,label]"`` strings, on ``frame`` as ``obj_id``.
        unprompted, replay, finetune (steps), compile: how to segment.
        format: output formats (palette | per-object | rle | boxes); overlay, keep_names, video_id: outputs.
        max_frames, input_format, input_option, stream_timeout: live sources.
        resume, snapshot_every: resuming. checkpoint, device, quiet: as everywhere.
        backend: ``"torch"`` (default) or ``"onnx"``; onnx: the exported ``.onnx`` file the ONNX back-end runs
            (``ausm export onnx``; giving it selects the ONNX back-end).
    """

    input: list[str]
    out: str | None = None
    prompt: list[str] | None = None
    prompt_box: list[str] | None = None
    prompt_point: list[str] | None = None
    frame: int | None = None
    obj_id: int | None = None
    unprompted: bool = False
    replay: bool = False
    finetune: int = 0
    compile: bool = False
    format: list[str] | None = None
    overlay: bool = True
    keep_names: bool = False
    video_id: int = 1
    max_frames: int | None = None
    input_format: str | None = None
    input_option: list[str] | None = None
    stream_timeout: float | None = None
    resume: bool = False
    snapshot_every: int = 50
    checkpoint: str | None = None
    device: str = "auto"
    quiet: bool = False
    backend: str = "torch"
    onnx: str | None = None
    demo: bool = field(default=False, repr=False)

    @classmethod
    def from_namespace(cls, ns) -> "SegmentOptions":
        """From parsed ``ausm segment`` arguments (extra attributes are ignored)."""
        import dataclasses

        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


def _floats(text: str, what: str, n: tuple[int, ...]) -> list[float]:
    import math

    try:
        vals = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        vals = []
    if len(vals) not in n or not all(math.isfinite(v) for v in vals):
        raise InputError(f"{what} {text!r}: expected {' or '.join(str(k) for k in n)} comma-separated numbers")
    return vals


def _geometric_prompts(args) -> list[tuple[int, int, str, object, object]]:
    """``--prompt-box`` / ``--prompt-point`` → [(frame, obj_id, "box" | "points", data, labels)].

    Box i gets object id ``--obj-id + i``; all points form one object, the id after the boxes'.
    Validation: :func:`~ausm.io.inputs.check_box` / :func:`~ausm.io.inputs.check_points`, as the API's.
    """
    from .io.inputs import check_box, check_points

    boxes = [_floats(b, "--prompt-box", (4,)) for b in (args.prompt_box or [])]
    points = [_floats(p, "--prompt-point", (2, 3)) for p in (args.prompt_point or [])]
    if not boxes and not points:
        for flag, v in (("--frame", args.frame), ("--obj-id", args.obj_id)):
            if v is not None:
                raise InputError(f"{flag} applies to --prompt-box / --prompt-point prompts; give one of them")
        return []
    frame = 0 if args.frame is None else int(args.frame)
    obj = 1 if args.obj_id is None else int(args.obj_id)
    if frame < 0:
        raise InputError(f"--frame must be >= 0, got {frame}")
    out = [(frame, obj + i, "box", check_box(b, "--prompt-box"), None) for i, b in enumerate(boxes)]
    if points:
        pts, labels = check_points([p[:2] for p in points], [1 if len(p) == 2 else p[2] for p in points],
                                   "--prompt-point")
        out.append((frame, obj + len(boxes), "points", pts, labels))
    for _, o, _, _, _ in out:
        if not 0 < o < 65536:
            raise InputError(f"object ids must be in 1..65535, got {o} (from --obj-id)")
    return out


def _check_geometric(geo, size: tuple[int, int], num_frames: int | None, what: str) -> None:
    """Prompts must lie in the frame (boxes overlap it, points inside) and before the end of the video."""
    from .io.inputs import check_geometric_in_frame
    for frame, o, kind, data, _ in geo:
        if num_frames is not None and frame >= num_frames:
            raise InputError(f"--frame {frame} is beyond the end of {what} ({num_frames} frames)")
        check_geometric_in_frame(kind, data, size, what, names=("--prompt-box", "--prompt-point"))


_PID_FILE = ".ausm-pid"


def _remove_stale_partials(out: Path) -> None:
    """Remove ``.OUT.partial-*`` folders beside ``out`` left by runs that were killed (their process,
    named in the folder's pid file, no longer exists); folders of live runs are left alone."""
    for d in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int((d / _PID_FILE).read_text())
            os.kill(pid, 0)
            continue  # that run is alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            if (d / _PID_FILE).exists() or time.time() - d.stat().st_mtime < 3600:
                continue  # unreadable pid file, or a folder too new to judge: keep it
        shutil.rmtree(d, ignore_errors=True)


def _check_snapshot_meta(meta: dict, inputs: list, readers: list, path) -> None:
    """A resume snapshot must fit the inputs it claims: its input index, frame (≤ the input's frame
    count when known), the per-input summaries done so far and the session's own frame index.

    Raises:
        InputError: naming the snapshot and the field that does not fit.
    """
    def bad(what):
        return InputError(f"--resume: the snapshot {path} does not fit the inputs ({what}); run without --resume")
    i, k, done = meta.get("input_index"), meta.get("frame"), meta.get("done")
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= len(inputs):
        raise bad(f"input index {i!r} of {len(inputs)} inputs")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise bad(f"frame {k!r}")
    if not isinstance(done, list) or len(done) != i:
        raise bad(f"{len(done) if isinstance(done, list) else done!r} finished inputs before input {i}")
    if i < len(inputs):
        num = readers[i].num_frames
        if num is not None and k > num:
            raise bad(f"frame {k} is past the end of {inputs[i]} ({num} frames)")
        sess = meta.get("session")
        if k > 0 and (not isinstance(sess, dict) or sess.get("frame_idx") != k):
            raise bad(f"the session state is at frame {sess.get('frame_idx') if isinstance(sess, dict) else None}, "
                      f"the snapshot at {k}")


def _input_options(items) -> dict:
    opts = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--input-option {item!r} is not key=value")
        k, v = item.split("=", 1)
        opts[k.strip()] = v
    return opts


class _LiveStop:
    """While a live source is read: the first Ctrl-C ends the stream after the current frame (its
    results are kept); a second one aborts as usual (no output, exit 130)."""

    def __init__(self, enabled: bool):
        import threading

        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nending the live source after this frame (Ctrl-C again aborts without output)", file=sys.stderr)

    def __enter__(self):
        if self.enabled:
            import signal

            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            import signal

            signal.signal(signal.SIGINT, self._old)
        return False


def _move_into(src: Path, dst: Path) -> None:
    """Move the contents of ``src`` into ``dst``, merging folders and replacing files."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        target = dst / f.name
        if f.is_dir() and target.is_dir():
            _move_into(f, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(f, target)


def _segment_one(model, reader, spec: str, folder: Path, masks, geo, args, formats, video_id, desc,
                 snap=None, restore=None) -> dict:
    """Segment one input into ``folder``; returns a summary for messages.

    ``snap``: a :class:`_Snapshots` that writes snapshots every ``--snapshot-every`` frames (file and
    folder inputs); ``restore``: ``(tensors, meta)`` of a snapshot of this input to continue from.
    """
    from .io import LiveReader

    live = isinstance(reader, LiveReader)
    what = getattr(reader, "display", None) or spec
    frames = iter(reader)  # opens a live source
    try:
        return _segment_frames(model, reader, frames, live, what, folder, masks, geo, args, formats, video_id, desc,
                               snap, restore)
    finally:
        frames.close()  # stop reading (closes the container of a video or live source)


class _Snapshots:
    """Writes the snapshots of one input of a resumable run (``OUT/.ausm-partial/snapshot.safetensors``)."""

    def __init__(self, partial, input_index: int, done: list, every: int):
        self.partial, self.input_index, self.done, self.every = partial, input_index, done, every

    def due(self, k: int, total: int | None) -> bool:
        """After ``k`` frames: time for a snapshot (not after the last frame: the run is about to end)?"""
        return bool(self.every) and k % self.every == 0 and (total is None or k < total)

    def save(self, session, writer, k: int) -> None:
        state = session.state_dict()
        self.partial.save({f"session.{n}": t for n, t in state["tensors"].items()},
                          {"input_index": self.input_index, "frame": k, "session": state["meta"],
                           "writer": writer.state_dict(), "done": self.done})


def _segment_frames(model, reader, frames, live, what, folder, masks, geo, args, formats, video_id, desc,
                    snap=None, restore=None) -> dict:
    """The frame loop of :func:`_segment_one`: prompts due on each frame, ``Session.step``, the writers."""
    from itertools import chain, islice

    from tqdm import tqdm

    from .inference.session import Session
    from .io import MaskPrompts

    first = next(frames, None)
    if first is None:
        raise InputError(f"{what} contains no video frames (an empty or unfinished recording?); check that it plays, "
                         "or export / re-encode it again")
    size = tuple(first.shape[:2])
    num = None if live else reader.num_frames
    plan = masks.frames(reader.names, num) if masks is not None else {}
    resized = MaskPrompts.check_sizes(plan, size)
    _check_geometric(geo, size, num, what)
    geo_at: dict[int, list] = {}
    for g in geo:
        geo_at.setdefault(g[0], []).append(g)

    from .train.finetune import as_finetune_config

    session = Session(model, detect_new_objects=bool(args.unprompted), adapt=as_finetune_config(args.finetune))
    stream = chain([first], frames)
    writer_kw = dict(overlay=args.overlay, fps=reader.fps, names=reader.names if args.keep_names else None,
                     video_id=video_id, resumable=snap is not None or restore is not None)
    writer, k0 = _open_result_writer(session, stream, folder, formats, writer_kw, snap, restore, args, what)
    n = k0
    total = num if not args.max_frames else (min(num, args.max_frames) if num else None)
    if args.max_frames:
        stream = islice(stream, max(0, args.max_frames - k0))
    try:
        with _LiveStop(live) as stop:
            if getattr(args, "replay", False):
                if live:
                    raise InputError("--replay needs a video file or a frame folder (it replays the frames)")
                if any(k != 0 for k in plan) or any(g[0] != 0 for g in geo):
                    raise InputError("--replay supports prompts on frame 0 only")
                _add_frame_prompts(session, 0, plan, resized, geo_at, size, args.quiet)
                n += _replay(session, list(stream), writer, desc, args.quiet)
            else:
                bar = tqdm(stream, total=total, initial=k0, desc=desc, unit="frame", disable=args.quiet)
                for k, frame in enumerate(bar, start=k0):
                    _add_frame_prompts(session, k, plan, resized, geo_at, size, args.quiet)
                    res = session.step(frame)
                    writer.write(k, frame, res)
                    n += 1
                    if snap is not None and snap.due(n, total):
                        snap.save(session, writer, n)
                    if stop.requested:
                        break
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    missed = sorted(k for k in set(plan) | set(geo_at) if k >= n)
    return {"name": what, "frames": n, "written": written, "missed": missed, "stopped": stop.requested,
            "end_reason": getattr(reader, "end_reason", None), "n_objects": len(session.obj_ids)}


def _open_result_writer(session, stream, folder, formats, writer_kw, snap, restore, args, what):
    """The :class:`~ausm.io.ResultWriter` of one input and the first frame to segment: with ``restore``
    (a ``--resume`` snapshot: (tensors, meta)) the session's state and the writer's files are restored
    and ``stream`` is advanced past the snapshot's frame; else a new writer (clearing a killed run's
    leftovers when snapshots are on). Raises InputError: the input is shorter than the snapshot."""
    from itertools import islice

    from .io import ResultWriter

    if restore is None:
        if snap is not None and folder.exists():
            shutil.rmtree(folder)  # leftovers of a killed run of this input before its first snapshot
        return ResultWriter(folder, formats, **writer_kw), 0
    tensors, meta = restore
    k0 = int(meta["frame"])
    session.load_state_dict({"tensors": {n[len("session."):]: t for n, t in tensors.items()
                                         if n.startswith("session.")}, "meta": meta["session"]})
    head = islice(stream, k0)
    writer = ResultWriter(folder, formats, restore=meta["writer"], frames=head, **writer_kw)
    skipped = sum(1 for _ in head)  # the frames before the snapshot that the overlay replay did not read
    if not args.overlay and skipped != k0:
        writer.abort()
        raise InputError(f"--resume: {what} has fewer frames than the snapshot ({k0}); run without --resume")
    return writer, k0


def _add_frame_prompts(session, k: int, plan: dict, resized: dict, geo_at: dict, size, quiet: bool) -> None:
    """Give ``session`` the prompts due on frame ``k``: the ``--prompt`` mask file planned for it (ids
    as objects) and the ``--prompt-box`` / ``--prompt-point`` prompts. Raises InputError: one object
    prompted twice on a frame."""
    from tqdm import tqdm

    from .io import MaskPrompts, object_ids

    prompted = set()
    if k in plan:
        ids, _ = MaskPrompts.load(plan[k], size)
        for o in object_ids(ids):
            session.add_prompt(k, o, ids == o)
            prompted.add(o)
        if plan[k] in resized and not quiet:
            h, w = resized[plan[k]]
            tqdm.write(f"note: prompt mask {plan[k]} is {h}x{w} (HxW); resized to the frame size "
                       f"{size[0]}x{size[1]} (nearest neighbour)", file=sys.stderr)
    for _, o, kind, data, labels in geo_at.get(k, []):
        if o in prompted:
            raise InputError(f"object {o} is prompted twice on frame {k} (by --prompt and by "
                             f"--prompt-{'box' if kind == 'box' else 'point'}); choose another --obj-id")
        if kind == "box":
            session.add_prompt(k, o, box=data)
        else:
            session.add_prompt(k, o, points=data, labels=labels)


def _replay(session, buf: list, writer, desc: str, quiet: bool) -> int:
    """Test-time replay (:func:`~ausm.inference.propagate.replay_steps`) of ``buf``, writing the last pass.
    Returns frames written."""
    from functools import partial

    from tqdm import tqdm

    from .inference.propagate import replay_steps

    for res in replay_steps(session, buf, partial(tqdm, desc=desc + " (replay)", unit="step", disable=quiet)):
        writer.write(res.frame_idx, buf[res.frame_idx], res)
    return len(buf)


def _segment_fingerprint(args, inputs, readers, masks, formats, device) -> dict[str, str]:
    """What identifies a run for ``--resume``: inputs, prompts, checkpoint, device and every option that
    changes the outputs (``--snapshot-every``, ``--quiet`` do not)."""
    from .inference.resume import checkpoint_signature, file_digest, json_digest as digest, path_signature
    from .io import IMAGE_EXTENSIONS

    ins = []
    for spec, r in zip(inputs, readers):
        files = None
        if r.kind == "folder":
            files = sorted(p for p in Path(r.path).iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_EXTENSIONS)
        ins.append([spec, r.kind, r.num_frames, path_signature(r.path, files)])
    prompts = [[str(m.path.resolve()), [[f.name, file_digest(f)] for f in m.files]] for m in masks]
    network = file_digest(Path(args.onnx)) if _uses_onnx(args) else checkpoint_signature(args.checkpoint)
    fp = {"inputs": digest(ins), "prompts": digest(prompts), "checkpoint": network, "device": device.type}
    for flag, value in (("--format", formats), ("--overlay", args.overlay), ("--keep-names", args.keep_names),
                        ("--video-id", args.video_id), ("--max-frames", args.max_frames),
                        ("--unprompted", args.unprompted), ("--prompt-box", args.prompt_box),
                        ("--prompt-point", args.prompt_point), ("--frame", args.frame), ("--obj-id", args.obj_id),
                        ("--input-format", args.input_format), ("--input-option", args.input_option)):
        fp[flag] = json.dumps(value, sort_keys=True, default=str)
    return fp


def _lock_folder(folder: Path):
    """An exclusive lock on ``folder`` for this process (POSIX ``flock``; nothing elsewhere): two runs
    writing the same output folder would mix their files and snapshots."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"another ausm segment is writing to --out {folder}; wait for it or choose another "
                         "folder") from None
    return fd


def _segment_options(args):
    """``ausm segment``'s prompt and output options, checked before any input is opened:
    (formats, geometric prompts, mask prompts, input specs)."""
    from .io import MaskPrompts, parse_formats

    formats = parse_formats(args.format)
    geo = _geometric_prompts(args)
    masks = [MaskPrompts(p) for p in (args.prompt or [])]
    if not masks and not geo and not args.unprompted:
        raise InputError("give --prompt MASK.png | MASK_FOLDER, --prompt-box, --prompt-point or --unprompted")
    if (masks or geo) and args.unprompted and not args.quiet:
        print("note: prompts and --unprompted: tracking the prompted objects and discovering new ones too",
              file=sys.stderr)
    inputs = [str(i) for i in args.input]
    if len(masks) not in (0, 1, len(inputs)):
        raise InputError(f"give one --prompt for all inputs or one per input ({len(inputs)} inputs, "
                         f"{len(masks)} prompts)")
    if sum(i == "-" for i in inputs) > 1:
        raise InputError("standard input ('-') can be read only once")
    if "palette" in formats and any(g[1] > 254 for g in geo):
        raise InputError("object ids above 254 do not fit palette PNGs; use --format per-object,rle or a "
                         "smaller --obj-id")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.snapshot_every < 0:
        raise InputError(f"--snapshot-every must be >= 0 (0: no snapshots), got {args.snapshot_every}")
    if args.video_id < 1:
        raise InputError(f"--video-id must be >= 1 (YouTube-VIS video ids are positive), got {args.video_id}")
    if args.stream_timeout is not None and not args.stream_timeout > 0:
        raise InputError(f"--stream-timeout must be > 0 seconds, got {args.stream_timeout:g}")
    if args.finetune < 0:
        raise InputError(f"--finetune needs steps >= 0 (0: off), got {args.finetune}")
    return formats, geo, masks, inputs


def _open_inputs(args, inputs: list[str], masks, geo) -> list:
    """Open every input; inputs of known size are checked against the prompts (before the model loads)."""
    from .io import MaskPrompts, is_live_spec, open_source

    options = _input_options(args.input_option)
    readers = []
    for spec in inputs:
        if args.input_format is None and os.path.isfile(spec) and os.path.getsize(spec) == 0:
            raise InputError(f"{spec} is an empty file (0 bytes), not a video: an interrupted download, copy or "
                             "recording? give the complete file")
        timeout = args.stream_timeout
        if timeout is None and "://" in spec and is_live_spec(spec, args.input_format):
            timeout = 30.0  # network streams: a stalled server ends the stream instead of hanging
        readers.append(open_source(spec, input_format=args.input_format, options=options, timeout=timeout))
    # early checks for inputs of known size (before loading the model): prompt names and sizes
    for i, r in enumerate(readers):
        m = masks[i] if len(masks) == len(inputs) else (masks[0] if masks else None)
        if r.kind != "live" and r.size is not None:
            if m is not None:
                MaskPrompts.check_sizes(m.frames(r.names, r.num_frames), r.size)
            _check_geometric(geo, r.size, r.num_frames, inputs[i])

    return readers


def _subdir_names(inputs: list[str]) -> list[str]:
    """One output sub-folder name per input (its source name; repeats get -2, -3, ...)."""
    from .io import source_name

    subdirs: list[str] = []
    for spec in inputs:
        name = source_name(spec)
        base, j = name, 2
        while name in subdirs:
            name, j = f"{base}-{j}", j + 1
        subdirs.append(name)
    return subdirs


def run_segment(args) -> int:
    """Segment every input of ``args`` (a :class:`SegmentOptions` or the parsed ``ausm segment`` flags)
    into ``args.out`` and print the report; returns 0. The whole job: inputs → session → writers, with
    resume snapshots, folder locking and atomic outputs (nothing half-written on failure).

    Raises:
        InputError, CheckpointError, ...: as the CLI maps to exit codes (:mod:`ausm.cli`).
    """
    formats, geo, masks, inputs, readers, out = _check_job(args)
    subdirs = _subdir_names(inputs)
    device = resolve_device("cpu" if _uses_onnx(args) else args.device)
    # file and folder inputs can be continued after a kill (--resume): the run works in OUT/.ausm-partial/
    # (fine-tuned weights are not part of the snapshot, so --finetune runs are not resumable)
    resumable = not args.replay and not args.finetune and all(r.kind != "live" for r in readers)
    if args.resume and not resumable:
        raise InputError("--resume needs video files or frame folders as inputs (live sources cannot be read "
                         "again), no --replay and no --finetune")
    partial, snapshot = _partial_run(args, out, inputs, readers, masks, formats, device) if resumable else (None, None)
    model = _job_model(args, device)
    # folders this run creates are removed again if it fails (no output on error)
    new_parents = [p for p in ((out,) if resumable else ()) + (out.parent, *out.parent.parents) if not p.exists()]
    try:
        (out if resumable else out.parent).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {'--out' if resumable else 'the parent folder of --out'} {out}: {e}") from e
    # one run at a time per output folder; taken before anything in it is touched
    lock = _lock_folder(out) if partial is not None else None
    tmp = None
    ok = keep_partial = False
    summaries: list[dict] = []
    try:
        tmp = _open_work_folder(out, partial, snapshot)
        summaries = _segment_inputs(model, inputs, readers, masks, geo, args, formats, tmp, subdirs, partial, snapshot)
        if "rle" in formats and len(inputs) > 1:  # one results file for all videos, as benchmarks expect
            _merge_results_json(tmp, subdirs)
        (tmp / _PID_FILE).unlink(missing_ok=True)
        _move_into(tmp, out)
        ok = True
    except KeyboardInterrupt:
        if partial is not None and partial.has_snapshot():  # Ctrl-C on a long run: it can be continued
            keep_partial = True
            print(f"note: the run so far is kept in {partial.root}; continue it with the same command and "
                  "--resume", file=sys.stderr)
        raise
    finally:
        _clean_up(partial, tmp, lock, None if ok or keep_partial else new_parents, keep_partial)
    _report(summaries, out, subdirs if len(inputs) > 1 else None, formats, args.quiet)
    return 0


def _check_job(args):
    """Every check that needs no model: options, prompts, inputs (opened), ``--out`` apart from the
    inputs. Returns (formats, geometric prompts, mask prompts, input specs, readers, out)."""
    from .io.paths import check_output_separate

    if not args.input:
        raise InputError("give an input (video file, frame folder, stream) or --demo")
    if not args.out:
        raise InputError("give --out OUTPUT_FOLDER")
    _uses_onnx(args)  # back-end options
    formats, geo, masks, inputs = _segment_options(args)
    readers = _open_inputs(args, inputs, masks, geo)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    check_output_separate(out, inputs + [str(p) for p in (args.prompt or [])])
    return formats, geo, masks, inputs, readers, out


def _uses_onnx(args) -> bool:
    """Whether the job runs the ONNX back-end (``--backend onnx`` or ``--onnx FILE``).

    Raises:
        InputError: an unknown back-end, ``--backend onnx`` without ``--onnx``, or options that need the
            PyTorch network (``--finetune``, ``--compile``, ``--checkpoint``).
    """
    backend = getattr(args, "backend", "torch") or "torch"
    onnx = getattr(args, "onnx", None)
    if backend not in ("torch", "onnx"):
        raise InputError(f"--backend must be torch or onnx, got {backend!r}")
    if not onnx and backend == "onnx":
        raise InputError("--backend onnx needs --onnx MODEL.onnx (write one with: ausm export onnx --out MODEL.onnx)")
    if not onnx:
        return False
    for flag, v in (("--finetune", args.finetune), ("--compile", args.compile), ("--checkpoint", args.checkpoint)):
        if v:
            raise InputError(f"{flag} needs the PyTorch back-end; the ONNX file already holds its weights "
                             f"(drop {flag} or --onnx)")
    if args.device not in ("auto", "cpu"):
        raise InputError(f"the ONNX back-end runs on the CPU here; drop --device {args.device}")
    if not Path(onnx).is_file():
        raise CheckpointError(f"ONNX file not found: {onnx}")
    return True


def _job_model(args, device):
    """The network of the job: the checkpoint's model (compiled with ``--compile``), or the ONNX back-end
    of ``--onnx`` (:class:`ausm.export.runtime.OnnxStep`, on the CPU)."""
    from .checkpoint import load_model

    if _uses_onnx(args):
        from .export.runtime import OnnxStep

        return OnnxStep(args.onnx)

    model = load_model(args.checkpoint, device=device)
    if args.compile:
        if args.finetune:
            raise InputError("--compile and --finetune cannot be combined (fine-tuning trains a copy of the weights)")
        model.compile_modules()
    return model


def _open_work_folder(out: Path, partial, snapshot) -> Path:
    """The folder the run writes into before it becomes ``out``: the resumable work folder in
    ``OUT/.ausm-partial/`` or a fresh temporary ``.OUT.partial-*`` beside ``out``."""
    from .io.atomic import apply_umask

    _remove_stale_partials(out)  # what a killed (kill -9) earlier run into this --out left beside it
    if partial is not None:
        if snapshot is None:
            partial.clear()  # an earlier run's leftovers are replaced (without --resume)
        partial.work.mkdir(parents=True, exist_ok=True)
        return partial.work
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    apply_umask(tmp, folder=True)  # it becomes --out
    (tmp / _PID_FILE).write_text(str(os.getpid()))
    return tmp


def _segment_inputs(model, inputs, readers, masks, geo, args, formats, tmp: Path, subdirs, partial, snapshot):
    """Each input into ``tmp`` (one input) or ``tmp/<name>/``, continuing from ``snapshot``; returns the
    per-input summaries."""
    start = int(snapshot[1]["input_index"]) if snapshot is not None else 0
    summaries = list(snapshot[1]["done"]) if snapshot is not None else []
    single = len(inputs) == 1
    for i, (spec, reader) in enumerate(zip(inputs, readers)):
        if i < start:
            continue  # finished before the snapshot: its outputs are in the work folder
        folder = tmp if single else tmp / subdirs[i]
        m = masks[i] if len(masks) == len(inputs) else (masks[0] if masks else None)
        restore = snapshot if snapshot is not None and i == start and snapshot[1]["frame"] > 0 else None
        snap = _Snapshots(partial, i, list(summaries), args.snapshot_every) if partial is not None else None
        summaries.append(_segment_one(model, reader, spec, folder, m, geo, args, formats, args.video_id + i,
                                      "segment" if single else subdirs[i], snap=snap, restore=restore))
        if snap is not None and snap.every and i + 1 < len(inputs):  # input i is done
            partial.save({}, {"input_index": i + 1, "frame": 0, "done": summaries})
    return summaries


def _clean_up(partial, tmp, lock, new_parents, keep_partial: bool) -> None:
    """After the run: the work folder goes (unless kept for ``--resume``), the lock is released, and
    after a failure the folders this run created are removed (``new_parents``; None after success)."""
    if partial is not None:
        if not keep_partial:
            shutil.rmtree(partial.root, ignore_errors=True)
    elif tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    if lock is not None:
        os.close(lock)
    for p in new_parents or ():  # deepest first; stops at the first non-empty one
        try:
            p.rmdir()
        except OSError:
            break


def _partial_run(args, out: Path, inputs, readers, masks, formats, device):
    """The resumable run's work folder (:class:`~ausm.inference.resume.PartialRun`) and, with
    ``--resume``, its checked snapshot ((tensors, meta) or ``None``: none yet). Raises InputError: a
    snapshot of another run or one that does not fit the inputs (before the model is loaded)."""
    from .inference.resume import PartialRun

    partial = PartialRun(out, _segment_fingerprint(args, inputs, readers, masks, formats, device))
    if not args.resume:
        return partial, None
    snapshot = partial.load()
    if snapshot is None:
        print(f"note: --resume: no snapshot in {partial.root}; starting from the beginning", file=sys.stderr)
        return partial, None
    meta = snapshot[1]
    _check_snapshot_meta(meta, inputs, readers, partial.snapshot_path)
    print(f"note: --resume: continuing {inputs[meta['input_index']]} from frame {meta['frame']}", file=sys.stderr)
    return partial, snapshot


def _merge_results_json(tmp: Path, subdirs: list[str]) -> None:
    """One ``results.json`` for all videos (YouTube-VIS results format), from each ``<subdir>/results.json``."""
    with open(tmp / "results.json", "w", encoding="utf-8") as f:
        f.write("[")
        j = 0
        for name in subdirs:
            for entry in json.loads((tmp / name / "results.json").read_text()):
                f.write(("" if j == 0 else ",") + "\n" + json.dumps(entry))
                j += 1
        f.write("\n]\n")


def _report(summaries: list[dict], out: Path, subdirs: list[str] | None, formats, quiet: bool) -> None:
    """Warnings (stream ended early, prompts never reached) on stderr and, unless ``quiet``, what was
    written where; ``subdirs`` = the per-input folders (``None``: one input wrote ``out``)."""
    for i, s in enumerate(summaries):
        dest = out if subdirs is None else out / subdirs[i]
        if s["end_reason"]:
            print(f"warning: {s['name']}: the stream ended early after {s['frames']} frames: {s['end_reason']}",
                  file=sys.stderr)
        if s["missed"]:
            print(f"warning: {s['name']}: prompts for frames {s['missed']} were never reached "
                  f"({s['frames']} frames processed)", file=sys.stderr)
        if not quiet:
            extra = [f for f in s["written"] if f not in ("palette", "overlay.mp4")]
            what = ("masks" if "palette" in formats else "frames") + (
                f" ({', '.join(['palette'] * ('palette' in formats) + extra)})" if extra else "")
            ov = " and overlay.mp4" if "overlay.mp4" in s["written"] else ""
            print(f"wrote {s['frames']} {what}{ov} to {dest}" + (" (stopped by Ctrl-C)" if s["stopped"] else ""))
