"""Several streams advanced by one network call per frame: :class:`SessionBatch`."""
from __future__ import annotations

import torch

from ..errors import InputError
from ..model.ausm import StreamState
from .results import FrameResult
from .session import Session

__all__ = ["SessionBatch"]


class SessionBatch:
    """Several independent streams advanced together: one network call per step for all of them
    (batched frames, padded track queries), each stream with its own objects, prompts and state.

    Args:
        sessions: the :class:`Session` objects (same model); create them with ``Session(model, ...)``.

    Every stream's frames must map to the same model input size (e.g. the same video resolution).
    Results equal stepping each session alone (tested).
    """

    def __init__(self, sessions: list[Session]):
        if not sessions:
            raise InputError("SessionBatch needs at least one session")
        if len({id(s.backend.network) for s in sessions}) != 1:
            raise InputError("all sessions of a batch must share one model")
        if any(s.adapt is not None for s in sessions):
            raise InputError("test-time fine-tuning gives each session its own weights; it cannot be used in a "
                             "SessionBatch (step those sessions one by one)")
        self.sessions = list(sessions)
        self.backend = sessions[0].backend

    def __len__(self):
        return len(self.sessions)

    def state_nbytes(self) -> int:
        return sum(s.state_nbytes() for s in self.sessions)

    @torch.inference_mode()
    def step(self, frames: list) -> list[FrameResult]:
        """Advance every stream by one frame (``frames[i]`` for stream i).

        Raises:
            InputError: wrong number of frames, or streams whose model input sizes differ.
        """
        if len(frames) != len(self.sessions):
            raise InputError(f"{len(frames)} frames for {len(self.sessions)} streams")
        inputs = [s.prepare_frame(f) for s, f in zip(self.sessions, frames)]
        sizes = {tuple(fi.x.shape[-2:]) for fi in inputs}
        if len(sizes) != 1:
            raise InputError(f"streams of one batch need the same model input size, got {sorted(sizes)}")
        queries = [s.track_queries() for s in self.sessions]
        ns = [len(ids) for ids, _ in queries]
        n, s0 = max(ns), self.sessions[0]
        B, P = len(self.sessions), queries[0][1].shape[1]
        ids = torch.zeros(B, n, dtype=torch.long, device=s0.device)  # padded with inactive queries
        active = torch.zeros(B, n, dtype=torch.bool, device=s0.device)
        hist = torch.zeros(B, n, P, dtype=s0.dtype, device=s0.device)
        for b, ((ib, hb), nb) in enumerate(zip(queries, ns)):
            ids[b, :nb], active[b, :nb], hist[b, :nb] = ib.to(s0.device), True, hb
        old = [s.stream_state for s in self.sessions]
        res = self.backend.step(torch.cat([fi.x for fi in inputs]), StreamState.cat(old), ids, active, hist)
        out = []
        for b, (s, fi, nb, st) in enumerate(zip(self.sessions, inputs, ns, res.state.split())):
            st.t = old[b].t + 1
            s.stream_state = st
            keep = torch.cat([torch.arange(nb), torch.arange(n, res.masks.shape[1])])
            out.append(s.finish_frame(fi, res.masks[b, keep], res.class_logits[s.class_head][b, keep]))
        return out
