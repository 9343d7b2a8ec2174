"""The video of one browser tab: opened with the CLI's :func:`~ausm.io.open_source` (same checks, same
errors), display frames cached as JPEGs on disk, exact frames streamed from the source again.

Nothing here holds more than a few frames in memory: scrubbing reads the JPEG cache, tracking and
previews decode the source itself (the pixels the CLI sees, not the JPEGs).
"""
from __future__ import annotations

import os
import threading
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..errors import InputError

__all__ = ["VideoSource", "DISPLAY_LONG_SIDE"]

#: Display frames are at most this many pixels on their long side (clicks are sent in source pixels).
DISPLAY_LONG_SIDE = 1280


class VideoSource:
    """A video file or frame folder opened for the app.

    Args:
        path: a video file or a frame folder (what ``ausm segment`` accepts, minus live sources).
        cache: folder for the display JPEGs (created).
        max_frames: use only the first ``max_frames`` frames (as ``ausm segment --max-frames``).
        display: name of the video in messages (e.g. the name of an uploaded file).

    Attributes:
        num_frames, size ((H, W)), fps, name; decoded: display frames cached so far.

    Raises:
        InputError: as ``ausm segment`` for the same input (missing, empty, corrupt, no frames), or a
            live source (cameras and streams have no frames to scrub back to).
    """

    def __init__(self, path: str | os.PathLike, cache: str | os.PathLike, max_frames: int | None = None,
                 display: str | None = None) -> None:
        from ..io import LiveReader, open_source

        spec = os.fspath(path)
        self.name = display or Path(spec).name
        if os.path.isfile(spec) and os.path.getsize(spec) == 0:
            raise InputError(f"{self.name} is an empty file (0 bytes), not a video: an interrupted download, copy "
                             "or recording? give the complete file")
        reader = open_source(spec)
        if isinstance(reader, LiveReader):
            raise InputError(f"{self.name}: the app opens video files and frame folders, not live sources "
                             "(use ausm segment for cameras and streams)")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"--max-frames must be >= 1, got {max_frames}")
        self.reader = reader
        n = reader.num_frames
        self.num_frames = min(n, max_frames) if max_frames else n
        if self.num_frames == 0 or reader.size is None:
            raise InputError(f"{self.name} contains no video frames (an empty or unfinished recording?); check that "
                             "it plays, or export / re-encode it again")
        self.size: tuple[int, int] = tuple(reader.size)
        self.fps = float(reader.fps)
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.decoded = 0
        self._exact: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    # -- frames ------------------------------------------------------------------------------------
    def frames(self) -> Iterator[np.ndarray]:
        """The source's (H, W, 3) uint8 RGB frames in order, decoded from disk (the first ``num_frames``)."""
        return islice(iter(self.reader), self.num_frames)

    def exact(self, k: int) -> np.ndarray:
        """Frame ``k`` as the tracker sees it (decoded from the source, a few kept in memory)."""
        self.check_index(k)
        with self._lock:
            if k in self._exact:
                return self._exact[k]
        it = iter(self.reader)
        try:
            frame = next(islice(it, k, k + 1), None)
        finally:
            getattr(it, "close", lambda: None)()
        if frame is None:
            raise InputError(f"{self.name} ended before frame {k}")
        with self._lock:
            if len(self._exact) >= 4:
                self._exact.pop(next(iter(self._exact)))
            self._exact[k] = frame
        return frame

    def check_index(self, k: int) -> None:
        """Raises InputError: ``k`` is not a frame of the video."""
        if not 0 <= k < self.num_frames:
            raise InputError(f"frame {k} is not in {self.name} (frames 0..{self.num_frames - 1})")

    # -- the display cache -------------------------------------------------------------------------
    @property
    def display_size(self) -> tuple[int, int]:
        """(h, w) of the display JPEGs."""
        H, W = self.size
        s = min(1.0, DISPLAY_LONG_SIDE / max(H, W))
        return max(1, round(H * s)), max(1, round(W * s))

    def jpeg_path(self, k: int) -> Path:
        return self.cache / f"{k:06d}.jpg"

    def decode_all(self, progress: Callable[[int], None] | None = None,
                   cancel: threading.Event | None = None) -> None:
        """Write every display JPEG (one pass over the source); ``progress(k)`` after frame k."""
        h, w = self.display_size
        for k, frame in enumerate(self.frames()):
            if cancel is not None and cancel.is_set():
                return
            im = Image.fromarray(frame)
            if (h, w) != self.size:
                im = im.resize((w, h), Image.BILINEAR)
            tmp = self.jpeg_path(k).with_suffix(".tmp")
            im.save(tmp, format="JPEG", quality=88)
            os.replace(tmp, self.jpeg_path(k))
            self.decoded = k + 1
            if progress is not None:
                progress(k + 1)
        if self.decoded < self.num_frames:
            raise InputError(f"{self.name} has {self.decoded} readable frames, not {self.num_frames}")

    def display(self, k: int) -> np.ndarray:
        """Display frame ``k`` (h, w, 3) from the cache.

        Raises:
            InputError: ``k`` is not a frame, or not decoded yet.
        """
        self.check_index(k)
        if k >= self.decoded:
            raise InputError(f"frame {k} is not decoded yet ({self.decoded} of {self.num_frames}); wait a moment")
        with Image.open(self.jpeg_path(k)) as im:
            return np.asarray(im.convert("RGB"))
