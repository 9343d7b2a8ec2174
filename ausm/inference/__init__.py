"""Streaming inference (Algorithm 1): sessions, offline propagation."""
from .session import FrameResult, Session, propagate

__all__ = ["FrameResult", "Session", "propagate"]
