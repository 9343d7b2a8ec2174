"""Reading video frames from a folder of images or from a video file.

The single entry point is :class:`FrameReader` (or :func:`read_frames`), which
yields every frame as an ``np.ndarray`` of shape ``(H, W, 3)``, dtype
``uint8``, RGB channel order, values in ``0..255``.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from ausm.errors import InputError
from ausm.io.inputs import error_reason, open_image

__all__ = ["IMAGE_EXTENSIONS", "natural_sort_key", "image_to_rgb", "FrameReader", "read_frames", "read_rgb_frames"]

#: File extensions (lower case) recognised as frames inside a folder.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

#: Frame rate reported when it is unknown (folders, or containers without a rate).
DEFAULT_FPS = 24.0

_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(s: str) -> tuple:
    """Key for natural ("human") sorting of strings.

    Runs of decimal digits compare by numeric value and the remaining text
    compares case-insensitively, so ``"2.jpg" < "10.jpg"`` and
    ``"frame9" < "Frame10"``.  Strings that are equal under these rules are
    ordered by the original string, so the order is total and deterministic.

    Args:
        s: any string (typically a file name).

    Returns:
        A tuple usable as ``key=`` for :func:`sorted`.
    """
    parts = _DIGITS.split(s)
    # re.split with a capturing group alternates text (even indices) and
    # digit runs (odd indices), so element types line up between keys.
    key = tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))
    return (key, s)


def _ffmpeg_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [OSError, ValueError, EOFError]
    ff = getattr(av, "FFmpegError", None) or getattr(getattr(av, "error", None), "FFmpegError", None)
    if ff is not None:
        errs.insert(0, ff)
    return tuple(errs)


_AV_ERRORS = _ffmpeg_errors()


def _gray_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Single-channel 16-bit / 32-bit integer / float pixel values as 8-bit gray.

    * ``I;16*`` (16-bit): the high byte (``value >> 8``), as Pillow reads 16-bit RGB PNGs, so a
      16-bit gray image and its 16-bit RGB copy give the same frame;
    * ``I`` (32-bit integers): values already in ``0..255`` are kept; otherwise the values are taken
      as 16-bit (clipped to ``0..65535``) and their high byte is used;
    * ``F`` (floats): values in ``0..1`` are scaled by 255, values up to 255 are kept (rounded), larger
      ones are taken as 16-bit like ``I``; NaN and negative values become 0.
    """
    if mode.startswith("I;16"):
        return (a.astype(np.uint16) >> 8).astype(np.uint8)
    a = a.astype(np.float64) if mode == "F" else a.astype(np.int64)
    if mode == "F":
        a = np.nan_to_num(a, nan=0.0, posinf=65535.0, neginf=0.0)
    top = float(a.max()) if a.size else 0.0
    if mode == "F" and top <= 1.0:
        a = a * 255.0
    elif top > 255:
        return (np.clip(np.rint(a), 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def image_to_rgb(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image as an ``(H, W, 3)`` ``uint8`` RGB array (the frame format of this module).

    8-bit modes (``RGB``, ``RGBA``/``LA`` [alpha ignored], ``L``, ``P``, ``1``, ``CMYK``, ``YCbCr``…)
    go through ``Image.convert("RGB")``. Single-channel 16-bit (``I;16``), 32-bit integer (``I``) and
    float (``F``) images are first brought to 8 bits by scaling (see :func:`_gray_to_uint8`), because
    ``convert("RGB")`` clips them to 255 (a 16-bit gray frame would read as all white).
    """
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        g = _gray_to_uint8(np.asarray(im), mode)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


_FRAME_HINT = ("the file is truncated or corrupt; replace or remove it "
               "(all frame images of a folder must be readable)")


class FrameReader:
    """Frames of a video, read from a folder of images or from a video file.

    Args:
        path: either

            * a folder of frame images with extension ``.jpg``, ``.jpeg``,
              ``.png``, ``.bmp`` or ``.webp`` (case-insensitive; hidden files
              starting with ``.`` and other files are ignored), ordered by
              :func:`natural_sort_key` on the file name; or
            * a video file that PyAV (FFmpeg) can open; the first video stream
              is used.

    Attributes:
        path (pathlib.Path): the input path.
        kind (str): ``"folder"`` or ``"video"``.
        fps (float): frames per second; from the video stream's
            ``average_rate`` (falling back to ``guessed_rate``), and
            ``24.0`` for folders or when the container does not know it.
        names (list[str] | None): for folders, the frame file stems in
            reading order (e.g. ``["00000", "00001", ...]``); ``None`` for
            videos.
        size (tuple[int, int] | None): ``(H, W)`` of the frames; known at
            construction for folders and videos (``None`` only if the video
            stream does not report it).

    ``len(reader)`` is the number of frames: the number of image files for a
    folder; for a video the stream's ``frames`` field if positive, otherwise
    the count obtained by decoding the whole video once (cached).

    Iterating yields ``np.ndarray`` frames of shape ``(H, W, 3)``, dtype
    ``uint8``, RGB, values ``0..255``.  A reader can be iterated several
    times; each iteration re-reads from disk.

    Raises:
        InputError: if the path does not exist; a folder contains no frame
            images; a folder's frame images do not all have the same size
            (the message names the offending file and both sizes); a frame
            image cannot be decoded (the message names the file, raised at
            construction when the header is unreadable, otherwise during
            iteration); a file cannot be opened by PyAV (corrupt or not a
            video); a video has no video stream; or decoding fails mid-stream
            (during iteration or ``len()``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(os.fspath(path))
        self.fps: float = DEFAULT_FPS
        self.names: list[str] | None = None
        self.size: tuple[int, int] | None = None
        self._files: list[Path] = []
        self._len: int | None = None

        if not self.path.exists():
            raise InputError(f"input path does not exist: {self.path}")
        if self.path.is_dir():
            self.kind = "folder"
            self._init_folder()
        else:
            self.kind = "video"
            self._init_video()

    # ------------------------------------------------------------------ folder
    def _init_folder(self) -> None:
        files = [
            p
            for p in self.path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not files:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise InputError(f"folder contains no frame images ({exts}): {self.path}")
        files.sort(key=lambda p: natural_sort_key(p.name))
        size: tuple[int, int] | None = None
        first: Path | None = None
        for f in files:
            with open_image(f, "frame image", _FRAME_HINT) as im:  # headers only: sizes checked before decoding
                w, h = im.size
            if size is None:
                size, first = (h, w), f
            elif (h, w) != size:
                raise InputError(
                    f"frames have inconsistent sizes: {f.name} is {h}x{w} (HxW) "
                    f"but {first.name} is {size[0]}x{size[1]} (HxW) in {self.path}"
                )
        self._files = files
        self.names = [f.stem for f in files]
        self.size = size
        self._len = len(files)

    def _iter_folder(self) -> Iterator[np.ndarray]:
        for f in self._files:
            with open_image(f, "frame image", _FRAME_HINT) as im:
                arr = image_to_rgb(im)
            if arr.shape[:2] != self.size:
                raise InputError(
                    f"frame {f} has size {arr.shape[0]}x{arr.shape[1]} (HxW), "
                    f"expected {self.size[0]}x{self.size[1]}"
                )
            yield arr

    # ------------------------------------------------------------------- video
    def _open(self):
        try:
            container = av.open(str(self.path), mode="r")
        except _AV_ERRORS as e:
            if isinstance(e, EOFError):  # FFmpeg's AVERROR_EOF: the file ends inside or right after its header
                raise InputError(
                    f"cannot open video file {self.path}: it ends before its first video frame ({error_reason(e)}), "
                    "so it has no video frames (an unfinished recording or an interrupted copy?); "
                    "re-encode or export the video again"
                ) from e
            raise InputError(
                f"cannot open video file {self.path} (corrupt or not a video?): {error_reason(e)}; "
                "check that it plays, and re-encode or export it again if it does not"
            ) from e
        if not container.streams.video:
            container.close()
            raise InputError(f"file has no video stream: {self.path}")
        return container

    def _init_video(self) -> None:
        container = self._open()
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or getattr(stream, "guessed_rate", None)
            if rate:
                fps = float(Fraction(rate))
                if fps > 0 and np.isfinite(fps):
                    self.fps = fps
            frames = int(stream.frames or 0)
            if frames > 0:
                self._len = frames
            w = stream.codec_context.width
            h = stream.codec_context.height
            if w and h:
                self.size = (int(h), int(w))
        finally:
            container.close()

    def _iter_video(self) -> Iterator[np.ndarray]:
        container = self._open()
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            it = container.decode(stream)
            while True:
                try:
                    frame = next(it)
                    arr = frame.to_ndarray(format="rgb24")
                except StopIteration:
                    return
                except _AV_ERRORS as e:
                    raise _decode_error(self.path, e) from e
                yield np.ascontiguousarray(arr, dtype=np.uint8)

    # ---------------------------------------------------------------- protocol
    def __len__(self) -> int:
        if self._len is None:
            n = 0
            container = self._open()
            with container:
                stream = container.streams.video[0]
                try:
                    for _ in container.decode(stream):
                        n += 1
                except _AV_ERRORS as e:
                    raise _decode_error(self.path, e) from e
            self._len = n
        return self._len

    @property
    def num_frames(self) -> int:
        """The number of frames (``len(self)``); live sources (:class:`~ausm.io.sources.LiveReader`)
        have ``None`` here."""
        return len(self)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kind == "folder":
            return self._iter_folder()
        return self._iter_video()

    def __repr__(self) -> str:
        return f"FrameReader(path={str(self.path)!r}, kind={self.kind!r}, fps={self.fps:g})"


def _decode_error(path: Path, e: BaseException) -> InputError:
    return InputError(f"error while decoding video {path}: {error_reason(e)}; the file is damaged: re-encode it, "
                      "or cut it before the damaged part")


def read_frames(path: str | os.PathLike) -> FrameReader:
    """Open ``path`` (a frame folder or a video file) as a :class:`FrameReader`.

    See :class:`FrameReader` for the accepted inputs, the frame format
    (``(H, W, 3)`` ``uint8`` RGB arrays) and the :class:`~ausm.errors.InputError`
    cases.
    """
    return FrameReader(path)


def read_rgb_frames(paths, what: str = "video") -> np.ndarray:
    """Decode image files into a (T, H, W, 3) uint8 RGB stack (dataset readers' shared frame loader).

    Each file is converted by :func:`image_to_rgb` (so 16-bit gray images are scaled, not clipped).

    Raises:
        InputError: a file cannot be decoded (the message names it), or the frames differ in size.
    """
    out = []
    for p in paths:
        with open_image(p, "frame image", _FRAME_HINT) as im:
            out.append(image_to_rgb(im))
    if len({f.shape for f in out}) > 1:
        raise InputError(f"frames of {what!r} have different sizes")
    return np.stack(out)
