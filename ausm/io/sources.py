"""Opening any input: frame folders, video files and live sources.

:func:`open_source` turns what a user typed into a reader that yields ``(H, W, 3)`` ``uint8`` RGB
frames:

========================================  =====================================================
input                                     reader
========================================  =====================================================
a folder of jpg / png / ... frames        :class:`~ausm.io.video.FrameReader` (natural sort)
a video file PyAV can read                :class:`~ausm.io.video.FrameReader`
``-`` (standard input) or ``pipe:N``      :class:`LiveReader` on the pipe (mpegts, y4m, nut, mkv…)
a named pipe (FIFO)                       :class:`LiveReader`
``/dev/videoN`` (Linux webcam)            :class:`LiveReader` with format ``v4l2``
``webcam:N``                              :class:`LiveReader`: ``v4l2`` on Linux, ``avfoundation``
                                          on macOS, ``dshow`` on Windows
``rtsp://``, ``http(s)://``, ``udp://``,  :class:`LiveReader` on the URL
``tcp://``, ``rtmp://``, ``srt://`` …
anything with ``input_format=``           :class:`LiveReader` with that FFmpeg format / device
                                          (``lavfi``, ``x11grab``, ``mjpeg`` …)
========================================  =====================================================

A live source is read once, frame by frame as the frames arrive: nothing is buffered beyond what
FFmpeg needs to demux and decode, and its length is unknown (``num_frames is None``).
"""
from __future__ import annotations

import os
import re
import stat
import sys
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Union

import av
import numpy as np

from ausm.errors import InputError
from ausm.io.video import _AV_ERRORS, DEFAULT_FPS, FrameReader

__all__ = ["LiveReader", "open_source", "is_live_spec", "source_name", "LIVE_DEFAULT_OPTIONS",
           "LIVE_URL_SCHEMES", "Reader"]

#: URL schemes opened as live streams (FFmpeg protocols).
LIVE_URL_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp", "http", "https",
                              "mmsh", "mmst", "hls"})

#: FFmpeg demuxer options used for live sources unless overridden: probe at most ~1 s / 1 MB of the
#: stream before the first frame (FFmpeg's defaults of 5 s / 5 MB delay the start of a live stream).
LIVE_DEFAULT_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WEBCAM = re.compile(r"^(?:webcam|camera):(\d+)$")


def _redact(url: str) -> str:
    """``rtsp://user:secret@host/x`` → ``rtsp://***@host/x`` (no credentials in messages)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", url)


class LiveReader:
    """Frames of a live source (stream, device or pipe) read through PyAV as they arrive.

    Args:
        url: what FFmpeg opens: a URL, ``pipe:0``, a device path or name, or a path.
        format: FFmpeg input format / device (``"v4l2"``, ``"avfoundation"``, ``"lavfi"``, ``"mpegts"`` …);
            ``None`` lets FFmpeg probe.
        options: FFmpeg options (``{"rtsp_transport": "tcp", "video_size": "640x480"}``); they are
            added to :data:`LIVE_DEFAULT_OPTIONS`.
        timeout: seconds to wait for the source to open and for each read (``None``: FFmpeg's
            default, i.e. wait for ever).
        display: a name for messages (default ``url``).

    Attributes:
        kind (str): ``"live"``.
        num_frames: always ``None`` (unknown length).
        fps (float): the stream's frame rate once opened (``24.0`` when it reports none).
        size: ``(H, W)`` of the first frame once read; every later frame is resized to it if the
            stream changes resolution.
        names: ``None``.
        frames_read (int): frames yielded so far.
        end_reason (str | None): why the stream ended early (a decoding error or a stall after at
            least one frame); ``None`` after a normal end of stream.

    The reader can be iterated once. A failure to open the source or a stream without frames raises
    :class:`InputError`; an error after the first frame ends the stream (the frames read so far
    are valid; ``end_reason`` says why).
    """

    kind = "live"
    num_frames = None
    names = None

    def __init__(self, url: str, *, format: str | None = None, options: dict | None = None,
                 timeout: float | None = None, display: str | None = None) -> None:
        self.url = str(url)
        self.path = self.url
        self.format = format
        self.options = {**LIVE_DEFAULT_OPTIONS, **{str(k): str(v) for k, v in (options or {}).items()}}
        self.timeout = timeout
        self.display = display or _redact(self.url)
        self.fps: float = DEFAULT_FPS
        self.size: tuple[int, int] | None = None
        self.frames_read = 0
        self.end_reason: str | None = None
        self._container = None
        self._used = False

    # ------------------------------------------------------------------ opening
    def open(self) -> "LiveReader":
        """Open the source (done by the first iteration when not called before)."""
        if self._container is not None:
            return self
        try:
            container = av.open(self.url, mode="r", format=self.format, options=dict(self.options),
                                timeout=self.timeout)
        except _AV_ERRORS as e:
            hint = ""
            if self.format in ("v4l2", "video4linux2", "avfoundation", "dshow"):
                hint = " (is the camera connected and not used by another program?)"
            raise InputError(f"cannot open live source {self.display}: {self._msg(e)}{hint}") from e
        except Exception as e:  # e.g. an unknown format name
            raise InputError(f"cannot open live source {self.display}: {type(e).__name__}: {self._msg(e)}") from e
        if not container.streams.video:
            container.close()
            raise InputError(f"live source {self.display} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or getattr(stream, "guessed_rate", None) or getattr(stream, "base_rate", None)
        try:
            fps = float(Fraction(rate)) if rate else 0.0
        except (TypeError, ValueError, ZeroDivisionError):
            fps = 0.0
        if 0 < fps < 1000 and np.isfinite(fps):
            self.fps = fps
        self._container = container
        return self

    def _msg(self, e: BaseException) -> str:
        return str(e).replace(self.url, _redact(self.url))

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None

    # ------------------------------------------------------------------ protocol
    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise InputError(f"live source {self.display} can be read only once")
        self._used = True
        self.open()
        return self._frames()

    def _frames(self) -> Iterator[np.ndarray]:
        container = self._container
        try:
            stream = container.streams.video[0]
            it = container.decode(stream)
            while True:
                try:
                    frame = next(it)
                    if self.size is not None and (frame.height, frame.width) != self.size:
                        frame = frame.reformat(width=self.size[1], height=self.size[0])
                    arr = frame.to_ndarray(format="rgb24")
                except StopIteration:
                    break
                except _AV_ERRORS as e:
                    if self.frames_read == 0:
                        raise InputError(f"cannot decode live source {self.display}: {self._msg(e)}") from e
                    self.end_reason = f"{type(e).__name__}: {self._msg(e)}"
                    break
                if self.size is None:
                    self.size = (int(arr.shape[0]), int(arr.shape[1]))
                self.frames_read += 1
                yield np.ascontiguousarray(arr, dtype=np.uint8)
        finally:
            self.close()
        if self.frames_read == 0:
            raise InputError(f"live source {self.display} delivered no frames")

    def __repr__(self) -> str:
        return f"LiveReader(url={self.url!r}, format={self.format!r})"

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


Reader = Union[FrameReader, LiveReader]


def _webcam(index: int) -> tuple[str, str]:
    """(url, format) of camera ``index`` on this platform."""
    if sys.platform == "darwin":
        return f"{index}:none", "avfoundation"
    if sys.platform.startswith("win"):
        raise InputError("webcam:N is not supported on Windows; use --input-format dshow with the input "
                         "'video=<camera name>' (list them with: ffmpeg -list_devices true -f dshow -i dummy)")
    return f"/dev/video{index}", "v4l2"


def is_live_spec(spec: str, input_format: str | None = None) -> bool:
    """Whether ``spec`` (as typed on the command line) names a live source (see :func:`open_source`)."""
    spec = str(spec)
    if input_format:
        return not Path(spec).is_dir()
    if spec == "-" or spec.startswith("pipe:") or _WEBCAM.match(spec):
        return True
    m = _URL.match(spec)
    if m:
        return m.group(1).lower() != "file"
    try:
        mode = os.stat(spec).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def open_source(spec: str | os.PathLike, *, input_format: str | None = None, options: dict | None = None,
                timeout: float | None = None) -> Reader:
    """Open what the user named as input (see the module docstring for the accepted inputs).

    Args:
        spec: a frame folder, a video file, ``-`` (stdin), ``pipe:N``, a FIFO, ``/dev/videoN``,
            ``webcam:N``, or a URL.
        input_format: force an FFmpeg input format / device; anything but a folder is then opened as
            a live source with it (e.g. ``lavfi`` with ``testsrc=size=640x480:rate=25``).
        options: FFmpeg options for live sources (ignored for folders and files).
        timeout: open / read timeout in seconds for live sources.

    Returns:
        A :class:`~ausm.io.video.FrameReader` (folders, video files: known length, re-iterable) or a
        :class:`LiveReader` (single pass, unknown length). Live sources are opened lazily, at the
        first iteration (or :meth:`LiveReader.open`).

    Raises:
        InputError: a path that does not exist, a folder without frames, a corrupt file…
    """
    spec = os.fspath(spec)
    kw = dict(options=options, timeout=timeout)
    if input_format:
        if Path(spec).is_dir():
            return FrameReader(spec)
        return LiveReader(spec, format=input_format, display=spec, **kw)
    if spec == "-":
        return LiveReader("pipe:0", display="stdin", **kw)
    if spec.startswith("pipe:"):
        return LiveReader(spec, **kw)
    m = _WEBCAM.match(spec)
    if m:
        url, fmt = _webcam(int(m.group(1)))
        if fmt == "v4l2" and not os.path.exists(url):
            raise InputError(f"{spec}: camera device {url} does not exist")
        return LiveReader(url, format=fmt, display=spec, **kw)
    m = _URL.match(spec)
    if m:
        if m.group(1).lower() == "file":
            return FrameReader(spec[len(m.group(0)):])
        return LiveReader(spec, **kw)
    try:
        mode = os.stat(spec).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISCHR(mode):
        fmt = "v4l2" if sys.platform.startswith("linux") and re.search(r"/video\d+$", spec) else None
        return LiveReader(spec, format=fmt, **kw)
    if mode is not None and stat.S_ISFIFO(mode):
        return LiveReader(spec, **kw)
    return FrameReader(spec)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def source_name(spec: str | os.PathLike) -> str:
    """A file-system-safe name for an input, used as its output sub-folder.

    ``-`` → ``stdin``; ``pipe:3`` → ``pipe3``; ``webcam:0`` → ``webcam0``; ``/dev/video0`` → ``video0``;
    a URL → its last path component without extension, else its host; a folder → its name; a file →
    its stem.
    """
    spec = os.fspath(spec)
    if spec == "-":
        return "stdin"
    if spec.startswith("pipe:"):
        name = "pipe" + spec[5:]
    elif _WEBCAM.match(spec):
        name = spec.replace(":", "")
    elif _URL.match(spec):
        rest = spec[len(_URL.match(spec).group(0)):]
        rest = rest.split("?", 1)[0].split("#", 1)[0]
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1]  # drop credentials
        last = [p for p in path.split("/") if p]
        name = Path(last[-1]).stem if last else host
        name = name or host
    else:
        p = Path(spec)
        name = p.name if p.is_dir() or not p.suffix else p.stem
        if not name:  # "/" or "."
            name = p.resolve().name
    name = _UNSAFE.sub("_", name).strip("._") or "input"
    return name
