"""Object-id masks: the DAVIS palette, writing index PNGs, reading prompt masks.

An *index mask* is an ``(H, W)`` integer array whose value at each pixel is an
object id: ``0`` is background, ``1..254`` are objects and ``255`` is "void"
(ignored), following the DAVIS convention.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ausm.errors import InputError
from ausm.io.inputs import open_image
from ausm.io.atomic import atomic_open

__all__ = [
    "DAVIS_PALETTE",
    "PALETTE_ARRAY",
    "read_index_png",
    "VOID_ID",
    "save_index_png",
    "load_prompt_mask",
    "object_ids",
    "fit_mask_to_size",
    "check_mask_size",
    "SIZE_TOLERANCE",
]

#: Object id marking "void" / ignore pixels in DAVIS-style masks.
VOID_ID = 255


def _make_palette() -> bytes:
    """PASCAL VOC / DAVIS colour map: the bits of the index are spread over the
    high bits of R, G and B (bit 0 -> R, bit 1 -> G, bit 2 -> B, next three bits
    one position lower, and so on)."""
    out = bytearray()
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += bytes((r, g, b))
    return bytes(out)


#: The standard DAVIS (PASCAL VOC) 256-colour palette as 768 bytes
#: ``R0 G0 B0 R1 G1 B1 ...``: 0 = (0,0,0), 1 = (128,0,0), 2 = (0,128,0),
#: 3 = (128,128,0), 4 = (0,0,128), ..., 255 = (224,224,192).
DAVIS_PALETTE: bytes = _make_palette()

#: ``DAVIS_PALETTE`` as a read-only ``(256, 3)`` ``uint8`` array.
PALETTE_ARRAY: np.ndarray = np.frombuffer(DAVIS_PALETTE, dtype=np.uint8).reshape(256, 3)


_PALETTE_CODE = (PALETTE_ARRAY[:, 0].astype(np.int64) << 16) | (PALETTE_ARRAY[:, 1].astype(np.int64) << 8) \
    | PALETTE_ARRAY[:, 2].astype(np.int64)
_PALETTE_ORDER = np.argsort(_PALETTE_CODE)
_INDEX_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N")


def read_index_png(path, binary: bool = False, palette_rgb: bool = False,
                   max_id: int | None = None) -> np.ndarray:
    """Read an index mask PNG (palette, grayscale or 16-bit) as its pixel values (palette indices for
    palette images), like ``np.array(Image.open(path))`` in the official DAVIS tool.

    Args:
        binary: map every non-zero value to 1.
        palette_rgb: accept RGB(A) images whose colours are all DAVIS palette colours (mapped to their
            indices; data sets that ship colour masks); otherwise a colour image is refused.
        max_id: refuse values above it (``None``: any).

    Returns:
        (H, W) ``uint8`` ids; ``int64`` when a 16-bit mask holds values above 255 (and ``max_id`` allows).

    Raises:
        InputError: missing / unreadable file; a colour image (outside the palette with ``palette_rgb``);
            negative values or values above ``max_id``.
    """
    if not Path(os.fspath(path)).is_file():
        raise InputError(f"mask file does not exist: {path}")
    with open_image(path, "mask", "the file is truncated, corrupt or not an image") as im:
        if im.mode in _INDEX_MODES:
            a = np.asarray(im)
        elif palette_rgb:
            a = _palette_indices(np.asarray(im.convert("RGB")), path)
        else:
            raise InputError(f"{path} is a {im.mode} image; expected a single-channel index PNG "
                             "(palette or grayscale, pixel value = object id)")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.size and int(a.min()) < 0:
            raise InputError(f"{path} has negative values")
        a = a.astype(np.uint8) if a.size == 0 or int(a.max()) <= 255 else a.astype(np.int64)
    if binary:
        return (a != 0).astype(np.uint8)
    if max_id is not None and a.size and int(a.max()) > max_id:
        raise InputError(f"mask {path} has ids above {max_id}")
    return a


def _palette_indices(rgb: np.ndarray, path) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) DAVIS palette indices; InputError for a colour off the palette."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    ids = _PALETTE_ORDER[np.clip(np.searchsorted(_PALETTE_CODE[_PALETTE_ORDER], code), 0, 255)]
    if not np.array_equal(_PALETTE_CODE[ids], code):
        raise InputError(f"RGB mask {path} has colours outside the DAVIS palette; save index (P) PNGs")
    return ids.astype(np.uint8)


def _as_id_array(mask, what: str = "mask") -> np.ndarray:
    """Validate a 2-D integer mask with values in 0..255 and return it as uint8."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{what} must be 2-D (H, W), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{what} must contain integer object ids, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise InputError(
            f"{what} values must be in 0..255, got range {int(arr.min())}..{int(arr.max())}"
        )
    return arr.astype(np.uint8, copy=False)


def save_index_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write an object-id mask as a palette (mode ``'P'``) PNG with :data:`DAVIS_PALETTE`.

    The file is written atomically: the PNG is written to a temporary file in
    the destination directory and then moved over ``path`` with
    :func:`os.replace`, so readers never see a partial file.  Missing parent
    directories are created.

    Args:
        path: destination file (should end in ``.png``).
        mask: ``(H, W)`` array of integer object ids in ``0..255`` (any integer
            dtype, ``bool``, or floats holding integral values).  Pixel values
            are stored unchanged as palette indices.

    Raises:
        InputError: if ``mask`` is not 2-D, is not integer-valued, or has values
            outside ``0..255``.
    """
    arr = _as_id_array(mask)
    # Build the 'P' image directly from the bytes so the indices are stored
    # verbatim (converting an 'L' image to 'P' would re-quantise).
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    img.putpalette(DAVIS_PALETTE)

    dest = Path(os.fspath(path))
    with atomic_open(dest, "wb") as f:
        img.save(f, format="PNG")


def _values_text(u: list[int], limit: int = 8) -> str:
    """The distinct values ``u`` (sorted) for a message, shortened to ``limit`` values."""
    shown = ", ".join(str(v) for v in u[:limit])
    return shown + (f", … ({len(u)} distinct values)" if len(u) > limit else "")


def _single_channel_to_ids(values: np.ndarray, what: str = "prompt mask", wide: str = "") -> np.ndarray:
    """Apply the grayscale / index rules of :func:`load_prompt_mask` to a 2-D
    single-channel integer array (values >= 0).

    Args:
        values: the pixel values.
        what: how to name the mask in error messages (``"prompt mask <path>"``).
        wide: for images with more than 8 bits per pixel, their depth for messages (``"16-bit"``,
            ``"32-bit"``, ``"float"``; ``""`` for 8-bit images). Values up to 255 are then object ids
            (never anti-aliased gray), a single non-zero value above 255 is a binary mask (object 1),
            and other values above 255 are refused.
    """
    uniq = np.unique(values)
    u = set(int(v) for v in uniq)
    if u <= {0, 1} or u <= {0, 255}:
        return (values != 0).astype(np.uint8)
    nonzero = sorted(u - {0})
    if wide or max(u) > 255:
        if len(nonzero) == 1 and nonzero[0] > 255:  # binary 16-bit mask (0 / 65535, 0 / 1000…): object 1
            return (values != 0).astype(np.uint8)
        if max(u) > 255:
            raise InputError(
                f"{what} ({wide or 'wide'} image) has the values {_values_text(sorted(u))}: neither a binary "
                "mask (0 and one other value) nor an index mask (object ids 1..254); save it as an 8-bit "
                "index/palette PNG (pixel value = object id, e.g. with ausm.io.save_index_png) or as a "
                "binary mask (0 / 255, or 0 / 65535 at 16 bits)"
            )
    else:
        core = [v for v in u if v not in (0, VOID_ID)]
        if len(u) > 2 and core and max(core) > 64:
            # Anti-aliased / soft grayscale mask: threshold at mid-grey.
            return (values > 127).astype(np.uint8)
    ids = values.astype(np.uint8)
    ids[ids == VOID_ID] = 0
    return ids


def _mask_image_ids(im: Image.Image, p: Path) -> np.ndarray:
    """The object ids of an opened mask image, by the mode rules of :func:`load_prompt_mask`."""
    im.load()
    mode = im.mode
    if mode in ("P", "PA"):
        raw = np.asarray(im if mode == "P" else im.getchannel(0))
        ids = raw.astype(np.uint8)
        ids[ids == VOID_ID] = 0
    elif mode == "1":
        ids = np.asarray(im).astype(np.uint8)
    elif mode in ("L", "LA") or mode.startswith("I") or mode == "F":
        ch = im.getchannel(0) if mode == "LA" else im
        vals = np.asarray(ch)
        if vals.dtype.kind == "f":
            if not (np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)) and vals.min() >= 0):
                raise InputError(f"prompt mask {p} has non-integer float values; save it as an "
                                 "index/palette PNG (pixel value = object id) or a binary 0 / 255 PNG")
        vals = vals.astype(np.int64)
        if vals.size and vals.min() < 0:
            raise InputError(f"prompt mask {p} has negative values; save it as an index/palette PNG "
                             "(pixel value = object id) or a binary 0 / 255 PNG")
        depth = "" if mode in ("L", "LA") else (
            "float" if mode == "F" else "16-bit" if mode.startswith("I;16") else "32-bit")
        ids = _single_channel_to_ids(vals, f"prompt mask {p}", wide=depth)
    else:
        rgb = np.asarray(im.convert("RGB") if mode not in ("RGB", "RGBA") else im)[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            raise InputError(
                f"prompt mask {p} is a colour ({mode}) image; colours cannot be mapped to "
                "object ids reliably. Use an index/palette PNG (mode 'P', pixel value = "
                "object id, e.g. written by ausm.io.save_index_png) or a binary grayscale PNG"
            )
        ids = _single_channel_to_ids(rgb[..., 0].astype(np.int64), f"prompt mask {p}")
    return ids


def load_prompt_mask(
    path: str | os.PathLike, expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Read a prompt mask image and return its object ids.

    Returns:
        ``(H, W)`` ``uint8`` array; ``0`` is background and ``1..254`` are
        object ids.  The void id ``255`` is never returned (it is mapped to
        ``0``, i.e. ignored).

    Interpretation rules, by image mode:

    1. Palette image (mode ``'P'``/``'PA'``): the palette *indices* are the
       object ids, whatever the palette colours; index ``255`` (void) -> ``0``.
    2. Bilevel image (mode ``'1'``): white pixels -> object ``1``.
    3. Single-channel image (``'L'``, ``'LA'`` [alpha ignored], 16-bit ``'I'``/
       ``'I;16'``), let ``U`` be the set of distinct values:

       a. *binary*: ``U`` ⊆ {0, 1} or ``U`` ⊆ {0, 255} -> object ``1`` where the
          value is non-zero;
       b. *16-bit binary* (``'I;16'``, ``'I'``, ``'F'`` images only): 0 and a single
          value above 255 (e.g. 0 / 65535) -> object ``1`` where the value is non-zero;
       c. *anti-aliased grayscale* (8-bit images only): ``U`` has more than 2 values
          and the largest value other than 0 and 255 is greater than 64 ->
          threshold: object ``1`` where value > 127;
       d. otherwise the values are object ids (so ``{0, 1, 2, 255}`` gives
          objects 1 and 2 with 255 treated as void -> 0, and ``{0, 200}`` gives
          object 200; in 16-bit images ``{0, 1, 2, 40, 200}`` gives those ids).
          Other values above 255 (e.g. 16-bit ``{0, 300, 65535}``) raise
          :class:`InputError`.

    4. Colour image (``'RGB'``, ``'RGBA'`` [alpha ignored], and other modes
       converted to RGB): if every pixel is gray (R == G == B) the gray channel
       is handled by rule 3; otherwise :class:`InputError` is raised, because
       colours cannot be mapped to ids reliably (save an index/palette PNG
       instead, e.g. with :func:`save_index_png`).

    Args:
        path: image file (normally PNG).
        expected_size: optional ``(H, W)`` the mask must have (usually the video
            frame size).

    Raises:
        InputError: if the file is missing or cannot be decoded; the image is a
            non-gray colour image; 16-bit values are neither binary nor ids up to 255; the size differs
            from ``expected_size`` (message states both sizes, as HxW); or the
            mask contains no object (all background/void).
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        raise InputError(f"prompt mask file does not exist: {p}")
    with open_image(p, "prompt mask", "the file is truncated, corrupt or not an image; replace it with a PNG mask"
                    ) as im:
        ids = _mask_image_ids(im, p)

    ids = np.ascontiguousarray(ids, dtype=np.uint8)
    if expected_size is not None:
        eh, ew = int(expected_size[0]), int(expected_size[1])
        if ids.shape != (eh, ew):
            raise InputError(
                f"prompt mask {p} has size {ids.shape[0]}x{ids.shape[1]} (HxW) "
                f"but the video frames are {eh}x{ew} (HxW)"
            )
    if not ids.any():
        raise InputError(f"prompt mask {p} contains no object (all pixels are background 0 or void 255); "
                         "a prompt needs at least one object (pixels with an object id 1..254, or white "
                         "pixels in a binary mask)")
    return ids


def object_ids(mask: np.ndarray) -> list[int]:
    """Sorted object ids present in ``mask``.

    Args:
        mask: integer array of any shape (normally ``(H, W)``) of object ids.

    Returns:
        Sorted list of Python ``int`` ids, excluding background ``0`` and void
        ``255``.
    """
    arr = np.asarray(mask)
    return [int(v) for v in np.unique(arr) if int(v) != 0 and int(v) != VOID_ID]


#: Largest relative difference per side between a prompt mask and the frames that
#: :func:`fit_mask_to_size` repairs by resizing (1 %: e.g. 853 vs 854 px).
SIZE_TOLERANCE = 0.01


def fit_mask_to_size(
    ids: np.ndarray, size: tuple[int, int], what: str = "prompt mask", tolerance: float = SIZE_TOLERANCE
) -> tuple[np.ndarray, bool]:
    """Bring an object-id mask to the frame size ``(H, W)``.

    A mask whose height and width each differ from the frame's by at most ``tolerance`` (relative,
    1 % by default, e.g. a 480x853 mask for 480x854 frames as in Cutie's judo
    example) is resized with nearest-neighbour interpolation, which keeps the ids exact; a larger
    difference is an error, because it most likely means the mask belongs to another video.

    Args:
        ids: ``(h, w)`` integer object ids.
        size: ``(H, W)`` of the frames.
        what: how to name the mask in the error message (e.g. its path).
        tolerance: the largest relative size difference per side that is repaired.

    Returns:
        ``(mask of shape (H, W) with the dtype of ids, resized?)``.

    Raises:
        InputError: the size differs by more than ``tolerance`` (the message states both sizes as HxW).
    """
    arr = np.asarray(ids)
    H, W = int(size[0]), int(size[1])
    h, w = arr.shape[:2]
    if (h, w) == (H, W):
        return arr, False
    check_mask_size((h, w), (H, W), what, tolerance)
    # nearest neighbour with pixel centres aligned (as PIL's NEAREST): exact ids, no new values
    ys = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return np.ascontiguousarray(arr[ys[:, None], xs[None, :]]), True


def check_mask_size(mask_size: tuple[int, int], size: tuple[int, int], what: str = "prompt mask",
                    tolerance: float = SIZE_TOLERANCE) -> bool:
    """Check a mask size ``(h, w)`` against the frame size ``(H, W)`` by the rule of
    :func:`fit_mask_to_size`, without reading the mask.

    Returns:
        ``True`` if the mask will be resized, ``False`` if the sizes are equal.

    Raises:
        InputError: the sizes differ by more than ``tolerance`` on a side.
    """
    (h, w), (H, W) = (int(v) for v in mask_size), (int(v) for v in size)
    if (h, w) == (H, W):
        return False
    if not (abs(h - H) <= tolerance * H and abs(w - W) <= tolerance * W):
        raise InputError(
            f"{what} has size {h}x{w} (HxW) but the video frames are {H}x{W} (HxW); "
            f"sizes that differ by at most {tolerance:.0%} per side are resized, larger differences are errors"
        )
    return True
