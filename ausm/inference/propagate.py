"""Offline use of a streaming session: :func:`propagate` over a whole video, and test-time replay
(paper Table 3)."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import InputError
from ..model.ausm import AUSMModel
from .results import FrameResult
from .session import Session

__all__ = ["propagate", "replay_order", "replay_steps"]


def replay_order(T: int) -> list[int]:
    """Frame order of test-time replay (paper Table 3): I_1..I_T, I_{T-1}..I_1, I_2..I_T (0-based);
    the last T steps cover every frame once."""
    if T <= 1:
        return list(range(T))
    return list(range(T)) + list(range(T - 2, -1, -1)) + list(range(1, T))


def propagate(model: AUSMModel, frames: Iterable, prompts: dict[int, dict[int, np.ndarray]] | None = None,
              replay: bool = False, **session_kwargs) -> Iterator[FrameResult]:
    """Offline convenience built on :meth:`Session.step`: yields one :class:`FrameResult` per frame,
    in frame order.

    Args:
        model: the network or a step back-end (:mod:`ausm.inference.backends`).
        frames: an iterable of (H, W, 3) uint8 RGB frames (e.g. a :class:`~ausm.io.FrameReader`).
        prompts: ``{frame_idx: {obj_id: mask (H, W)}}``; ``None`` or empty = unprompted.
        replay: test-time compute scaling (paper Table 3): stream forward, backward, forward
            (:func:`replay_order`) and keep the last T predictions. Buffers the frames; prompts must be
            on frame 0 (a prompt on a later frame would be seen at a different point of the replay).
        session_kwargs: passed to :class:`Session`.

    Raises:
        InputError: ``replay`` with prompts on frames other than 0.
    """
    session = Session(model, **session_kwargs)
    prompts = prompts or {}
    if replay and any(f != 0 for f in prompts):
        raise InputError("test-time replay supports prompts on frame 0 only")
    for f_idx, objs in prompts.items():
        for o, m in objs.items():
            session.add_prompt(f_idx, o, m)
    if not replay:
        for frame in frames:
            yield session.step(frame)
        return
    yield from replay_steps(session, list(frames))


def replay_steps(session: Session, frames: list, progress: Callable[[Iterable], Iterable] | None = None
                 ) -> Iterator[FrameResult]:
    """Test-time replay (paper Table 3) of buffered ``frames`` through ``session``: step in
    :func:`replay_order` and yield the results of the last pass, in frame order, with ``frame_idx`` set
    to the frame's index. ``progress`` wraps the step order (e.g. ``tqdm``)."""
    order = replay_order(len(frames))
    keep_from = len(order) - len(frames)
    for j, f in enumerate(progress(order) if progress else order):
        res = session.step(frames[f])
        if j >= keep_from:
            res.frame_idx = f
            yield res
