"""Input/output helpers: frame reading (folders, video files, live sources), mask files, prompt
folders, overlay videos and result writers.

All functions raise :class:`ausm.errors.InputError` for bad input.
"""

from ausm.io.masks import (
    DAVIS_PALETTE,
    PALETTE_ARRAY,
    SIZE_TOLERANCE,
    VOID_ID,
    fit_mask_to_size,
    load_prompt_mask,
    object_ids,
    save_index_png,
)
from ausm.io.outputs import FORMATS, ResultWriter, mask_box, mask_to_rle, parse_formats
from ausm.io.overlay import OverlayWriter, colorize, draw_labels, overlay
from ausm.io.prompts import MaskPrompts
from ausm.io.sources import LiveReader, is_live_spec, open_source, source_name
from ausm.io.video import IMAGE_EXTENSIONS, FrameReader, natural_sort_key, read_frames

__all__ = [
    "DAVIS_PALETTE",
    "PALETTE_ARRAY",
    "VOID_ID",
    "SIZE_TOLERANCE",
    "IMAGE_EXTENSIONS",
    "FrameReader",
    "LiveReader",
    "open_source",
    "is_live_spec",
    "source_name",
    "read_frames",
    "natural_sort_key",
    "save_index_png",
    "load_prompt_mask",
    "fit_mask_to_size",
    "object_ids",
    "MaskPrompts",
    "colorize",
    "overlay",
    "draw_labels",
    "OverlayWriter",
    "FORMATS",
    "parse_formats",
    "ResultWriter",
    "mask_to_rle",
    "mask_box",
]
