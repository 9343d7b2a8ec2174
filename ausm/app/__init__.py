"""``ausm app``: an interactive web app over the streaming session (docs/APP.md).

A local FastAPI server and one static page: open a video (path or upload; frame folders too), click
positive / negative points or drag a box on any frame (the mask appears at once), press Track (one
streaming pass with the CLI's :class:`~ausm.inference.Session` and :class:`~ausm.io.ResultWriter`,
with a progress bar and live preview), remove or correct objects, and download palette PNGs (zip),
RLE ``results.json`` or ``overlay.mp4``. Needs the ``app`` extra: ``pip install -e ".[app]"``.
"""
from __future__ import annotations

__all__ = ["create_app", "serve", "is_loopback"]


def __getattr__(name):  # FastAPI is imported only when the app is used
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
