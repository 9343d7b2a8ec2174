"""Prompts of the app and the two model calls on them: the one-frame preview shown at once after a
click, and "Track": one streaming pass over the video with the CLI's :class:`~ausm.inference.Session`
and :class:`~ausm.io.ResultWriter` (the same prompts give the same files as ``ausm segment``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError

__all__ = ["Prompt", "Cancelled", "check_prompt", "preview", "track", "MAX_OBJ_ID", "RESULT_FORMATS"]

#: Object ids of the app (palette PNGs hold ids 1..254, as ``ausm segment``).
MAX_OBJ_ID = 254

#: What "Track" writes (the downloads): palette PNGs, results.json (RLE) and overlay.mp4.
RESULT_FORMATS = ("palette", "rle")


class Cancelled(Exception):
    """The user stopped the run."""


@dataclass
class Prompt:
    """The prompt of one object on one frame: a box or points (+ labels), in source pixels."""

    kind: str  # "box" | "points"
    box: list[float] | None = None
    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def add_to(self, session, frame_idx: int, obj_id: int) -> None:
        """``session.add_prompt`` with this prompt (validated there, as the CLI's)."""
        if self.kind == "box":
            session.add_prompt(frame_idx, obj_id, box=self.box)
        else:
            session.add_prompt(frame_idx, obj_id, points=self.points, labels=self.labels)

    def as_json(self) -> dict:
        if self.kind == "box":
            return {"kind": "box", "box": self.box}
        return {"kind": "points", "points": self.points, "labels": self.labels}


def check_prompt(obj_id, kind: str, data, size: tuple[int, int]) -> None:
    """Validate one click or box with the CLI's checks (:func:`~ausm.io.inputs.check_box`,
    :func:`~ausm.io.inputs.check_points`, :func:`~ausm.io.inputs.check_geometric_in_frame`).

    Args:
        obj_id: 1..:data:`MAX_OBJ_ID`; kind: ``"point"`` (data = (x, y)) or ``"box"`` (data = (x0, y0, x1, y1)).
        size: (H, W) of the video.

    Raises:
        InputError: a bad object id, kind, box or point, or one outside the frame.
    """
    from ..io.inputs import check_box, check_geometric_in_frame, check_points

    if not isinstance(obj_id, int) or isinstance(obj_id, bool) or not 0 < obj_id <= MAX_OBJ_ID:
        raise InputError(f"object ids must be in 1..{MAX_OBJ_ID} (palette PNGs), got {obj_id!r}")
    if kind == "box":
        check_geometric_in_frame("box", check_box(data, "box"), size, "the video")
    elif kind == "point":
        pts, _ = check_points(data, None, "point")
        if len(pts) != 1:
            raise InputError(f"point must be 2 numbers (x, y), got {data!r}")
        check_geometric_in_frame("points", pts, size, "the video")
    else:
        raise InputError(f"prompt kind must be 'point' or 'box', got {kind!r}")


def _session(model):
    from ..inference.session import Session

    return Session(model, detect_new_objects=False)  # as ``ausm segment`` without --unprompted


def preview(model, frame: np.ndarray, prompts: dict[int, Prompt]) -> np.ndarray:
    """The masks of ``prompts`` ({obj_id: Prompt}, all on this frame) as the model picks them on this one
    frame: a session started on it. On frame 0 this is exactly what "Track" gives on frame 0; on a
    later frame "Track" also uses the history of the frames before.

    Returns:
        (H, W) uint16 index mask (0 = background).
    """
    session = _session(model)
    for o, p in prompts.items():
        p.add_to(session, 0, o)
    return np.asarray(session.step(frame).index_mask, dtype=np.uint16)


def track(model, frames, prompts: dict[tuple[int, int], Prompt], folder: Path, fps: float,
          progress: Callable[[int], None] | None = None, cancel: threading.Event | None = None) -> list[str]:
    """One streaming pass from frame 0, as ``ausm segment`` runs it: each prompt is given to the session
    on its frame, every frame's result goes to a :class:`~ausm.io.ResultWriter` in ``folder``
    (palette PNGs ``%05d.png``, ``results.json``, ``overlay.mp4``).

    Args:
        frames: the video's frames in order (streamed: one in memory at a time).
        prompts: {(frame, obj_id): Prompt}; a later prompt of a tracked object corrects it on its frame.
        progress: called with the number of frames written so far (live preview, progress bar).
        cancel: set it to stop after the current frame.

    Returns:
        the written formats (``ResultWriter.close``).

    Raises:
        Cancelled: ``cancel`` was set (the writer is aborted; the caller removes ``folder``).
        InputError: as ``ausm segment`` (e.g. a frame of another size).
    """
    from ..io import ResultWriter

    by_frame: dict[int, list[tuple[int, Prompt]]] = {}
    for (k, o), p in sorted(prompts.items()):
        by_frame.setdefault(k, []).append((o, p))
    session = _session(model)
    writer = ResultWriter(folder, RESULT_FORMATS, overlay=True, fps=fps)
    try:
        for k, frame in enumerate(frames):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            for o, p in by_frame.get(k, ()):
                p.add_to(session, k, o)
            writer.write(k, frame, session.step(frame))
            if progress is not None:
                progress(k + 1)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        getattr(frames, "close", lambda: None)()
