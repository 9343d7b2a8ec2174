"""Streaming inference (Algorithm 1): the session and its parts, batched streams, offline propagation.

* :mod:`.session` — :class:`Session`, one stream: Algorithm 1's step.
* :mod:`.objects` — the object table (ID vectors, history masks, class scores).
* :mod:`.prompting` — prompt validation, the prompt queue, box / point candidate selection.
* :mod:`.results` — :class:`FrameResult`.
* :mod:`.batch` — :class:`SessionBatch`, several streams in one network call.
* :mod:`.propagate` — :func:`propagate` and test-time replay.
* :mod:`.resume` — snapshots of a session on disk.
"""
from .batch import SessionBatch
from .propagate import propagate, replay_order
from .results import FrameResult
from .session import Session

__all__ = ["FrameResult", "Session", "SessionBatch", "propagate", "replay_order"]
