"""Input/output helpers: frame reading, mask files and overlay videos.

All functions raise :class:`ausm.errors.InputError` for bad input.
"""

from ausm.io.masks import (
    DAVIS_PALETTE,
    PALETTE_ARRAY,
    VOID_ID,
    load_prompt_mask,
    object_ids,
    save_index_png,
)
from ausm.io.overlay import OverlayWriter, colorize, overlay
from ausm.io.video import IMAGE_EXTENSIONS, FrameReader, natural_sort_key, read_frames

__all__ = [
    "DAVIS_PALETTE",
    "PALETTE_ARRAY",
    "VOID_ID",
    "IMAGE_EXTENSIONS",
    "FrameReader",
    "read_frames",
    "natural_sort_key",
    "save_index_png",
    "load_prompt_mask",
    "object_ids",
    "colorize",
    "overlay",
    "OverlayWriter",
]
