"""Streaming inference (Algorithm 1): sessions, offline propagation."""
from .session import FrameResult, Session, SessionBatch, propagate

__all__ = ["FrameResult", "Session", "SessionBatch", "propagate"]
