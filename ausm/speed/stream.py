"""``ausm bench stream``: streaming latency (p50 / p99), frames per second, the session's
``state_nbytes`` and the process RSS after N frames; FLOPs per frame and achieved GFLOP/s against this
machine's measured matmul peak."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..checkpoint import load_model
from ..device import default_dtype
from ..inference.session import Session
from . import count_flops, current_rss_mb, emit, machine_info, markdown_table, peak_rss_mb, sync

SIZES = {"240p": (240, 427), "360p": (360, 640), "480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}


def matmul_peak_gflops(n: int = 1024, reps: int = 5, dtype=torch.float32) -> float:
    """Measured dense matmul throughput of this machine (GFLOP/s), best of ``reps``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def flops_per_frame(session: Session, frame: np.ndarray) -> int:
    """FLOPs of one :meth:`Session.step` (matmuls, convolutions and attention: :func:`count_flops`)."""
    return count_flops(lambda: session.step(frame))


def synthetic_frames(size: tuple[int, int], n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """A looped clip of moving rectangles over noise, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    H, W = size
    out = []
    for t in range(n):
        f = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
        y, x = H // 4 + t * H // 64, W // 4 + t * W // 64
        f[y:y + H // 3, x:x + W // 4] = (220, 40, 40)
        out.append(f)
    return out


def synthetic_prompt(height: int, width: int) -> np.ndarray:
    """The benchmarks' object prompt: a (height, width) bool rectangle over the middle-left of the frame."""
    prompt = np.zeros((height, width), bool)
    prompt[height // 4: height // 4 + height // 3, width // 4: width // 4 + width // 4] = True
    return prompt


def _model_label(model, checkpoint) -> str:
    return f"{model.cfg.name} ({checkpoint})" if checkpoint else model.cfg.name


def _onnx_backend(model, label: str, onnx: str | None, frame_size: tuple[int, int], tmp: str):
    """(label, :class:`~ausm.export.runtime.OnnxStep`) of ``onnx``, or of ``model`` exported into ``tmp``."""
    from ..export.onnx import export_onnx
    from ..export.runtime import OnnxStep

    if onnx is None:
        onnx = f"{tmp}/model.onnx"
        export_onnx(model, onnx, size=frame_size)  # exports a CPU float32 copy; ``model`` stays as it is
    return f"{label} [onnx]", OnnxStep(onnx)


def run(checkpoint=None, frames: int = 1000, size: str = "480p", checkpoints=(100, 1000, 10000),
        internal_short_side: int | None = None, video: str | None = None, device: str = "cpu",
        compile: bool = False, vs=(), backends=("torch",), onnx: str | None = None) -> list[dict]:
    """Stream ``frames`` frames through a prompted session and report at each checkpoint count
    (``first_frame_s``: the first frame's time, which includes compilation with ``compile``).

    ``vs``: other checkpoints measured in the same run, **interleaved** frame by frame with the first
    (model A frame t, model B frame t, ...) so that every model sees the same machine conditions; each
    report row names its ``model`` and carries ``fps_ratio`` = its fps / the first model's.
    ``backends``: ``"torch"`` and / or ``"onnx"`` (issue #17): the ONNX back-end runs ``onnx`` (an exported
    file) or, without one, the first checkpoint exported for this frame size into a temporary folder; it is
    interleaved with the others like a ``vs`` model. ``rss_mb`` is the whole process's (all models)."""
    import tempfile

    dev = torch.device(device)
    if video:
        from ..io.video import read_frames

        clip = [f for _, f in zip(range(64), read_frames(video))]
    else:
        clip = synthetic_frames(SIZES[size] if size in SIZES else tuple(int(v) for v in size.split("x")))
    H, W = clip[0].shape[:2]
    entries = []  # (label, model or step back-end)
    for c in (checkpoint, *vs):
        model = load_model(c, device=dev, dtype=default_dtype(dev))
        if compile:
            model.compile_modules()
        if internal_short_side:
            model.cfg = model.cfg.replace(input_short_side=internal_short_side,
                                          input_max_long_side=max(model.cfg.input_max_long_side,
                                                                  internal_short_side * 2))
        entries.append((_model_label(model, c), model))
    with tempfile.TemporaryDirectory() as tmp:
        if "onnx" in backends:
            entries.append(_onnx_backend(entries[0][1], entries[0][0], onnx, (H, W), tmp))
        if "torch" not in backends:
            entries = entries[-1:]
        return _stream(entries, clip, frames, checkpoints, dev, compile)


def _stream(entries, clip, frames: int, checkpoints, dev, compile: bool) -> list[dict]:
    """The interleaved streaming loop of :func:`run` over ``entries`` [(label, model or back-end)]."""
    H, W = clip[0].shape[:2]
    sessions = []
    for _, net in entries:
        sessions.append(Session(net))
        sessions[-1].add_prompt(0, 1, synthetic_prompt(H, W))
    labels = [label for label, _ in entries]
    models = [s.backend for s in sessions]
    info = machine_info()
    peak = matmul_peak_gflops()
    fl = [None] * len(models)
    lat = [np.zeros(frames) for _ in models]  # preallocated: the benchmark itself must not grow (soak runs)
    first = [0.0] * len(models)
    rows = []
    marks = sorted(c for c in checkpoints if c <= frames) or [frames]
    for t in range(frames):
        f = clip[t % len(clip)]
        for k, session in enumerate(sessions):
            sync(dev)
            t0 = time.perf_counter()
            if t == 5 and models[k].kind == "torch":  # FLOPs are counted on PyTorch's dispatch
                fl[k] = flops_per_frame(session, f)
            else:
                session.step(f)
            sync(dev)
            lat[k][t] = time.perf_counter() - t0
            if t == 0:
                first[k] = lat[k][0]
        if t + 1 in marks:
            base_fps = None
            rss = current_rss_mb()  # before any statistics are computed
            for k, (model, session) in enumerate(zip(models, sessions)):
                window = lat[k][min(5, t):t + 1]
                p50, p99 = (float(v) for v in np.percentile(window, [50, 99]))  # linear, as speed.percentile
                base_fps = base_fps or 1.0 / p50
                rec = {"bench": "stream", "model": labels[k], "frames": t + 1, "input": f"{H}x{W}",
                       "internal": "x".join(map(str, model.input_size(H, W))), "p50_ms": 1e3 * p50,
                       "backend": model.kind,
                       "p99_ms": 1e3 * p99, "fps": 1.0 / p50, "fps_ratio": (1.0 / p50) / base_fps,
                       "state_nbytes": session.state_nbytes(),
                       "rss_mb": rss, "peak_rss_mb": peak_rss_mb(), "flops_per_frame": fl[k],
                       "gflops_achieved": fl[k] / p50 / 1e9 if fl[k] else None, "matmul_peak_gflops": peak,
                       "first_frame_s": first[k], "compiled": bool(compile), "interleaved_with": len(models) - 1,
                       "dtype": str(model.dtype).replace("torch.", ""),
                       "cuda_max_memory_allocated": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
                       **info}
                emit(rec)
                rows.append(rec)
    print(markdown_table(rows, ["model", "backend", "frames", "input", "internal", "p50_ms", "p99_ms", "fps", "fps_ratio",
                                "state_nbytes", "rss_mb", "peak_rss_mb", "gflops_achieved", "matmul_peak_gflops"]))
    return rows
