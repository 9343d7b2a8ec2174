"""One validation layer for what a user hands the model: frames, prompt masks and box / point prompts
(issue #15). The Python API (:class:`~ausm.inference.session.Session`) and the CLI both go through it,
so a frame or prompt is accepted, converted or refused the same way everywhere.

**Frames** (:func:`frame_to_tensor`). Canonical: a numpy ``(H, W, 3)`` ``uint8`` RGB array. Also
accepted, and converted exactly:

- numpy ``(H, W, 3)`` ``uint16`` (divided by 65535) or floating point in [0, 1];
- torch ``(3, H, W)`` (CHW, as torchvision gives them) of ``uint8`` (÷ 255) or floating point in [0, 1].

Refused with an :class:`~ausm.errors.InputError` naming what was given: any other shape or dtype
(``bool``, ``int32``/``int64``, ...), floating-point frames outside [0, 1] (a frame in [0, 255] stored as
float: divide by 255 first), and frames with NaN or infinite pixels — one poisoned frame would make
every later frame's state NaN, so it never enters a session.

**Prompt masks** (:func:`prompt_mask_to_bool`): ``bool`` as is; integers: non-zero is the object;
floating point (soft masks, probabilities) must lie in [0, 1] and are thresholded at 0.5.

**Boxes and points** (:func:`check_geometric_in_frame`): a box must overlap the frame, points must lie
inside it.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

__all__ = ["frame_to_tensor", "prompt_mask_to_bool", "check_box", "check_points", "check_frame_pixels", "check_geometric_in_frame",
           "open_image", "error_reason",
           "MAX_FRAME_PIXELS"]

#: Frames and masks above this many pixels are refused, from their header, before decoding (8K UHD is
#: 33 MP); the model resizes every frame to a few hundred pixels anyway.
MAX_FRAME_PIXELS = 80_000_000

_FLOAT_TOL = 1e-3  # rounding slack on the [0, 1] range of floating-point frames


def _check_float_range(t: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} has NaN or infinite pixels: refused (it would poison the stream's state)")
    lo, hi = float(t.min()), float(t.max())
    if lo < -_FLOAT_TOL or hi > 1 + _FLOAT_TOL:
        hint = " (values up to 255: divide by 255, or pass uint8)" if hi <= 255 + _FLOAT_TOL else ""
        raise InputError(f"{what} of floating point must lie in [0, 1], got [{lo:g}, {hi:g}]{hint}")


def frame_to_tensor(frame) -> torch.Tensor:
    """A frame in any accepted form (module doc) → (1, 3, H, W) float32 RGB in [0, 1] (CPU).

    Raises:
        InputError: another type, shape or dtype; floats outside [0, 1]; non-finite pixels.
    """
    if isinstance(frame, (np.ndarray, torch.Tensor)) and frame.ndim == 3 and 0 in tuple(frame.shape):
        raise InputError(f"frame is empty (shape {tuple(frame.shape)})")
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
        if frame.dtype == np.uint8 or frame.dtype == np.uint16:
            scale = 255.0 if frame.dtype == np.uint8 else 65535.0
            a = np.require(frame, requirements=["C", "W"])  # torch warns on read-only arrays (PIL)
            return (torch.from_numpy(a).permute(2, 0, 1).float() / scale).unsqueeze(0)
        if np.issubdtype(frame.dtype, np.floating):
            t = torch.from_numpy(np.require(frame, dtype=np.float32, requirements=["C", "W"])).permute(2, 0, 1)
            _check_float_range(t, "frame")
            return t.clamp(0, 1).unsqueeze(0)
        raise InputError(f"frame dtype {frame.dtype} is not accepted: give uint8 RGB (or uint16, or float in [0, 1])")
    if isinstance(frame, torch.Tensor):
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise InputError(f"frame tensor must be (3, H, W), got {tuple(frame.shape)}")
        t = frame.detach().cpu()
        if t.dtype == torch.uint8:
            return (t.float() / 255.0).unsqueeze(0)
        if t.is_floating_point():
            t = t.float()
            _check_float_range(t, "frame tensor")
            return t.clamp(0, 1).unsqueeze(0)
        raise InputError(f"frame tensor dtype {t.dtype} is not accepted: give uint8 or float in [0, 1]")
    raise InputError(f"frame must be a numpy array or a torch tensor, got {type(frame).__name__}")


def prompt_mask_to_bool(mask, what: str = "prompt mask") -> np.ndarray:
    """A 2-D prompt mask → (H, W) bool by the module doc's rule.

    Raises:
        InputError: not 2-D; floats outside [0, 1] or non-finite; an unsupported dtype.
    """
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"{what} must be 2-D (H, W), got shape {m.shape}")
    if m.dtype == bool:
        return m
    if np.issubdtype(m.dtype, np.integer):
        return m != 0
    if np.issubdtype(m.dtype, np.floating):
        if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise InputError(f"{what} of floating point must lie in [0, 1] (thresholded at 0.5), got "
                             f"[{np.nanmin(m):g}, {np.nanmax(m):g}]" if np.isfinite(m).any() else
                             f"{what} has no finite values")
        return m >= 0.5
    raise InputError(f"{what} dtype {m.dtype} is not accepted: give bool, integers or floats in [0, 1]")


def check_frame_pixels(frame) -> None:
    """Refuse an absurd frame from its shape alone, before any copy of it is made: (H, W, C) numpy
    arrays and (C, H, W) tensors above :data:`MAX_FRAME_PIXELS`.

    Raises:
        InputError: naming the size and how to downscale.
    """
    shape = getattr(frame, "shape", None)
    if shape is not None and len(shape) == 3:
        fh, fw = (shape[0], shape[1]) if isinstance(frame, np.ndarray) else (shape[1], shape[2])
        if fh * fw > MAX_FRAME_PIXELS:
            raise InputError(f"frame of {fw}x{fh} pixels is larger than {MAX_FRAME_PIXELS // 10**6} "
                             f"megapixels; downscale the video first (e.g. ffmpeg -vf scale=-2:1080)")


def check_box(box, what: str = "box") -> np.ndarray:
    """A box prompt (x0, y0, x1, y1) in pixels (x right, y down) → (4,) float64.

    Raises:
        InputError: not 4 finite numbers, or x1 <= x0 or y1 <= y0 (named ``what``).
    """
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be 4 numbers (x0, y0, x1, y1), got {box!r}") from None
    if b.shape != (4,) or not np.isfinite(b).all():
        raise InputError(f"{what} must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    if b[2] <= b[0] or b[3] <= b[1]:
        raise InputError(f"{what} {','.join(f'{v:g}' for v in b)}: need x1 > x0 and y1 > y0")
    return b


def check_points(points, labels=None, what: str = "points") -> tuple[np.ndarray, np.ndarray]:
    """Point prompts → ((k, 2) float64 (x, y) pixels, (k,) int64 labels: 1 on the object, 0 not on it).

    ``points`` is (k, 2) or one (2,) point; ``labels`` defaults to all positive.

    Raises:
        InputError: not (k, 2) finite numbers with k ≥ 1, labels not k values in {0, 1}, or no positive.
    """
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be (k, 2) numbers (x, y), got {points!r}") from None
    if pts.ndim == 1:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or not np.isfinite(pts).all():
        raise InputError(f"{what} must be (k, 2) finite numbers (x, y), got shape {pts.shape}")
    try:
        lab = np.ones(len(pts)) if labels is None else np.asarray(labels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what}: labels must be k values in {{0, 1}}, got {labels!r}") from None
    if lab.shape != (len(pts),) or not np.isin(lab, (0, 1)).all():
        raise InputError(f"{what}: labels must be 1 (on the object) or 0 (not on it), one per point, "
                         f"got {labels!r}")
    if not (lab == 1).any():
        raise InputError(f"{what}: at least one positive point (label 1) is needed")
    return pts, lab.astype(np.int64)


def check_geometric_in_frame(kind: str, data, size: tuple[int, int], what: str = "the stream",
                             names: tuple[str, str] = ("box", "point")) -> None:
    """A box (x0, y0, x1, y1) must overlap the (H, W) frame; points (k, 2) of (x, y) must lie inside it.
    ``names``: how the message calls a box and a point (the CLI passes its flags).

    Raises:
        InputError: naming the prompt and the frame size.
    """
    H, W = size
    if kind == "box":
        x0, y0, x1, y1 = (float(v) for v in data)
        if x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H:
            raise InputError(f"{names[0]} {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {W}x{H} (WxH) frames of {what}")
    else:
        for x, y in np.asarray(data, np.float64).reshape(-1, 2):
            if not (0 <= x < W and 0 <= y < H):
                raise InputError(f"{names[1]} {x:g},{y:g} lies outside the {W}x{H} (WxH) frames of {what}")


def error_reason(e: BaseException) -> str:
    """A library error as one short line: for ``OSError`` (FFmpeg errors included) its ``strerror``,
    without the errno and the file name, which the callers' messages already give."""
    if isinstance(e, UnidentifiedImageError):  # its text repeats the path
        return "not an image format Pillow can read"
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    log = getattr(e, "log", None)  # PyAV: (level, component, message) of FFmpeg's last log line, if kept
    if isinstance(log, tuple) and len(log) == 3 and log[2]:
        text = f"{text}: {str(log[2]).strip()}"
    return " ".join(str(text).split())


_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError)


@contextlib.contextmanager
def open_image(path, what: str = "image", hint: str = "the file is truncated, corrupt or not an image"):
    """``with open_image(p, "frame image") as im:`` — PIL's lazy open with the size checked from the
    header first: an image above :data:`MAX_FRAME_PIXELS` (or a decompression bomb) is refused before
    it is decoded. Decoding errors inside the ``with`` block become one-line :class:`InputError`s.

    Raises:
        InputError: too many pixels; or the file cannot be opened or decoded
            (``"cannot decode {what} {path} ({reason}): {hint}"``). An ``InputError`` raised by the
            caller's block passes through unchanged.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below decides
            try:
                im = Image.open(path)
            except Image.DecompressionBombError as e:
                raise InputError(f"{what} {path} declares more than {MAX_FRAME_PIXELS // 10**6} megapixels in "
                                 f"its header (a decompression bomb?): refused without decoding") from e
        with im:
            w, h = im.size
            if w * h > MAX_FRAME_PIXELS:
                raise InputError(f"{what} {path} is {w}x{h} pixels, more than {MAX_FRAME_PIXELS // 10**6} "
                                 "megapixels: refused before decoding; downscale it first (e.g. ffmpeg -vf "
                                 "scale=-2:1080)")
            yield im
    except InputError:
        raise
    except _DECODE_ERRORS as e:
        raise InputError(f"cannot decode {what} {path} ({error_reason(e)}): {hint}") from e
