"""Visualising object-id masks: colouring, blending over frames, writing videos."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ausm.errors import InputError
from ausm.io.masks import PALETTE_ARRAY, _as_id_array
from .atomic import apply_umask

__all__ = ["colorize", "overlay", "draw_labels", "OverlayWriter"]


def _as_object_ids(mask, what: str = "index_mask") -> np.ndarray:
    """Validate a 2-D integer id mask with values in 0..65535 (ids above 255 are allowed in overlays)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{what} must be 2-D (H, W), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        return _as_id_array(arr, what)  # floats holding integers, or a clear error
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
        raise InputError(f"{what} values must be in 0..65535, got range {int(arr.min())}..{int(arr.max())}")
    return arr


def _colour_index(ids: np.ndarray) -> np.ndarray:
    """Palette index of each id: the id itself up to 255, larger ids cycle through 1..255."""
    if ids.dtype == np.uint8:
        return ids
    ids = ids.astype(np.int64)
    return np.where(ids > 255, (ids - 1) % 255 + 1, ids).astype(np.uint8)


def colorize(index_mask: np.ndarray) -> np.ndarray:
    """Colour an object-id mask with the DAVIS palette.

    Args:
        index_mask: ``(H, W)`` integer object ids in ``0..255``.

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB image; pixel ``(y, x)`` is
        ``DAVIS_PALETTE`` colour ``index_mask[y, x]`` (background 0 is black).

    Raises:
        InputError: if the mask is not 2-D or not integer ids in ``0..255``.
    """
    ids = _as_id_array(index_mask, "index_mask")
    return PALETTE_ARRAY[ids]


def _contour(ids: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)`` map of object pixels (id > 0) that have an
    8-neighbour with a different id (pixels outside the image count as equal)."""
    padded = np.pad(ids, 1, mode="edge")
    h, w = ids.shape
    edge = np.zeros(ids.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            edge |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != ids
    return edge & (ids > 0)


def _check_frame(frame) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"frame must have shape (H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise InputError(f"frame must have dtype uint8, got {arr.dtype}")
    return arr


def overlay(frame: np.ndarray, index_mask: np.ndarray, alpha: float = 0.5,
            labels: dict[int, str] | None = None) -> np.ndarray:
    """Blend coloured objects over a frame and outline each object.

    Pixels with ``index_mask > 0`` become
    ``(1 - alpha) * frame + alpha * colour`` (colour from ``DAVIS_PALETTE``);
    background pixels are unchanged.  Every object is outlined with a 1-pixel
    contour (its inner boundary, i.e. object pixels having an 8-neighbour with
    another id) drawn in the object's full palette colour; where two objects
    touch the two outlines form a 2-pixel line.

    Args:
        frame: ``(H, W, 3)`` ``uint8`` RGB image.
        index_mask: ``(H, W)`` integer object ids in ``0..65535`` (0 =
            background; ids above 255 reuse the palette colours 1..255).
        alpha: opacity of the object colour, in ``[0, 1]``.
        labels: optional ``{object id: text}``; each text is drawn as a small
            label at the top-left corner of its object's visible pixels (see
            :func:`draw_labels`). Objects not visible in ``index_mask`` get no
            label.

    Returns:
        New ``(H, W, 3)`` ``uint8`` RGB image (the input is not modified).

    Raises:
        InputError: for a wrongly shaped/typed frame or mask, mismatching
            ``(H, W)``, mask values outside ``0..255``, or ``alpha`` outside
            ``[0, 1]``.
    """
    img = _check_frame(frame)
    ids = _as_object_ids(index_mask, "index_mask")
    if ids.shape != img.shape[:2]:
        raise InputError(
            f"index_mask size {ids.shape[0]}x{ids.shape[1]} does not match frame size "
            f"{img.shape[0]}x{img.shape[1]} (HxW)"
        )
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    out = img.copy()
    fg = ids > 0
    if not fg.any():
        return out
    colors = PALETTE_ARRAY[_colour_index(ids)]
    blended = (1.0 - alpha) * img[fg].astype(np.float32) + alpha * colors[fg].astype(np.float32)
    out[fg] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    edge = _contour(ids)
    out[edge] = colors[edge]
    if labels:
        out = draw_labels(out, ids, labels)
    return out


_FONTS: dict = {}


def _font(size: int):
    """Pillow's default font at ``size`` px (a scalable font in Pillow >= 10.1, else the bitmap one)."""
    if size not in _FONTS:
        from PIL import ImageFont

        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: no size argument
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def draw_labels(image: np.ndarray, index_mask: np.ndarray, labels: dict[int, str]) -> np.ndarray:
    """Draw small text labels over objects.

    For each ``{object id: text}`` whose object has pixels in ``index_mask``, the text is drawn with
    Pillow's default font (height about 1/40 of the image height, at least 10 px) on a box filled
    with the object's palette colour, at the top-left corner of the object's bounding box (moved
    inside the image where needed). The text is white on dark colours and black on light ones.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB image (not modified).
        index_mask: ``(H, W)`` integer object ids (0 = background).
        labels: ``{object id: text}``.

    Returns:
        A new ``(H, W, 3)`` ``uint8`` RGB image.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage

    img = _check_frame(image)
    ids = _as_object_ids(index_mask, "index_mask")
    if ids.shape != img.shape[:2]:
        raise InputError("index_mask and image sizes differ")
    H, W = ids.shape
    if not labels or not ids.any():
        return img.copy()
    wanted = {int(k): str(v) for k, v in labels.items() if 0 < int(k) <= int(ids.max()) and str(v)}
    if not wanted:
        return img.copy()
    lab = ids if ids.dtype != np.uint8 else ids.astype(np.int32)
    slices = ndimage.find_objects(lab, max_label=max(wanted))
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = _font(max(10, round(H / 40)))
    pad = 2
    for oid, text in sorted(wanted.items()):
        sl = slices[oid - 1] if oid - 1 < len(slices) else None
        if sl is None:
            continue
        y0, x0 = sl[0].start, sl[1].start
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l + 2 * pad, b - t + 2 * pad
        x = min(max(0, x0), max(0, W - tw))
        y = y0 - th if y0 - th >= 0 else min(y0, max(0, H - th))
        colour = tuple(int(c) for c in PALETTE_ARRAY[_colour_index(np.array([oid]))[0]])
        lum = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        draw.rectangle([x, y, x + tw - 1, y + th - 1], fill=colour)
        draw.text((x + pad - l, y + pad - t), text, font=font, fill=(0, 0, 0) if lum > 140 else (255, 255, 255))
    return np.asarray(pil, dtype=np.uint8).copy()


def _pick_codec() -> str:
    for name in ("libx264", "mpeg4"):
        try:
            av.Codec(name, "w")
            return name
        except Exception:  # unknown codec / no encoder in this FFmpeg build
            continue
    raise InputError("no usable video encoder (libx264 or mpeg4) in this PyAV build")


class OverlayWriter:
    """Write mask overlays (see :func:`overlay`) as a video file.

    Usage::

        with OverlayWriter("out.mp4", fps=reader.fps) as w:
            for frame, mask in zip(reader, masks):
                w.write(frame, mask)

    Encoding uses H.264 (``libx264``, pixel format ``yuv420p``) through PyAV,
    or ``mpeg4`` if this FFmpeg build has no ``libx264`` encoder (the codec
    actually used is in :attr:`codec`).  Because ``yuv420p`` needs even
    dimensions, frames with odd width/height are padded by one pixel
    (replicating the last row/column) on the bottom/right.

    The video is written to a hidden temporary file next to ``path`` and moved
    to ``path`` with :func:`os.replace` only when :meth:`close` (or leaving the
    ``with`` block normally) succeeds.  If an exception leaves the ``with``
    block, or :meth:`abort` is called, the temporary file is deleted and no
    output is left (an existing file at ``path`` is not touched).

    Args:
        path: output file; the container format is taken from its extension
            (``.mp4`` when it has none).
        fps: frame rate, > 0.
        alpha: overlay opacity passed to :func:`overlay`.

    Attributes:
        path (pathlib.Path), fps (float), codec (str | None: set at the first
        frame), frames_written (int), size (tuple[int, int] | None: ``(H, W)``
        of the input frames, set at the first frame).

    Raises:
        InputError: ``fps <= 0``; from :meth:`write` for bad frames/masks or
            a frame size different from the first frame's; from :meth:`close`
            when no frame was written (no file is produced).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 24.0, alpha: float = 0.5) -> None:
        self.path = Path(os.fspath(path))
        fps = float(fps)
        if not (fps > 0 and np.isfinite(fps)):
            raise InputError(f"fps must be a positive number, got {fps}")
        self.fps = fps
        self.alpha = float(alpha)
        self.codec: str | None = None
        self.size: tuple[int, int] | None = None
        self.frames_written = 0
        self._container = None
        self._stream = None
        self._tmp: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ intern
    def _open(self, h: int, w: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = self.path.suffix or ".mp4"
        fmt = None if self.path.suffix else "mp4"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{suffix}", dir=self.path.parent)
        os.close(fd)
        apply_umask(tmp)
        self._tmp = tmp
        codec = _pick_codec()
        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            container = av.open(tmp, mode="w", format=fmt)
        except Exception as e:
            self._remove_tmp()
            raise InputError(f"cannot create video file for {self.path}: {e}") from e
        try:
            try:
                stream = container.add_stream(codec, rate=rate)
            except Exception:
                if codec == "mpeg4":
                    raise
                codec = "mpeg4"
                stream = container.add_stream(codec, rate=rate)
            stream.width = w + (w % 2)
            stream.height = h + (h % 2)
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                # mbtree=0: no macroblock-tree rate control, so identical frames give identical bytes
                stream.options = {"crf": "20", "preset": "veryfast", "x264-params": "mbtree=0"}
            else:
                stream.bit_rate = int(max(1_000_000, stream.width * stream.height * self.fps * 0.3))
        except BaseException:
            container.close()
            self._remove_tmp()
            raise
        self._container = container
        self._stream = stream
        self.codec = codec
        self.size = (h, w)

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    # ------------------------------------------------------------------ public
    def write(self, frame: np.ndarray, index_mask: np.ndarray, labels: dict[int, str] | None = None) -> None:
        """Append one frame with its mask overlaid.

        Args:
            frame: ``(H, W, 3)`` ``uint8`` RGB image; all frames must have the
                same ``(H, W)``.
            index_mask: ``(H, W)`` integer object ids in ``0..65535``.
            labels: optional ``{object id: text}`` drawn over the objects
                (see :func:`draw_labels`).

        Raises:
            InputError: bad frame/mask (see :func:`overlay`), frame size
                differing from the first frame, or writer already closed.
        """
        if self._closed:
            raise InputError("OverlayWriter is closed")
        img = overlay(frame, index_mask, self.alpha, labels=labels)
        h, w = img.shape[:2]
        if self.size is None:
            self._open(h, w)
        elif (h, w) != self.size:
            raise InputError(
                f"all frames must have the same size: got {h}x{w}, expected "
                f"{self.size[0]}x{self.size[1]} (HxW)"
            )
        if h % 2 or w % 2:
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        vf.pts = self.frames_written
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and move it to :attr:`path`.

        Calling it again is a no-op.

        Raises:
            InputError: if no frame was written (no file is produced).
        """
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            raise InputError(f"no frames were written; {self.path} was not created")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop writing and delete the temporary file; no output is produced."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        self._remove_tmp()

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False

    def __del__(self) -> None:  # best effort: never leave temp files behind
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass
