"""Mask prompts from files: one first-frame mask, or a folder of index masks named by frame.

A *prompt folder* holds index / palette / binary PNGs (any of :data:`~ausm.io.video.IMAGE_EXTENSIONS`)
named after the frame they apply to, e.g. ``00000.png``, ``00005.png``, ``00013.png`` (Cutie's
``examples/masks/judo``, YouTube-VOS ``Annotations/<video>/``). Each file adds the objects it contains
on that frame, or replaces the masks of objects that already exist (see
:meth:`ausm.inference.Session.add_prompt`); objects absent from the file are left alone.

Which frame a file names:

1. for a frame-folder input, the frame whose file stem equals the mask's stem
   (``00000693.png`` → the frame ``00000693.jpg``, whatever its position), else
2. the stem read as a 0-based frame index (``00005.png`` → frame 5; always so for video files and
   live sources).

Mask contents follow :func:`~ausm.io.masks.load_prompt_mask`; a mask whose size differs from the
frames by at most 1 % per side is resized (nearest neighbour), larger differences are errors
(:func:`~ausm.io.masks.fit_mask_to_size`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ausm.errors import InputError
from ausm.io.inputs import open_image
from ausm.io.masks import check_mask_size, fit_mask_to_size, load_prompt_mask
from ausm.io.video import IMAGE_EXTENSIONS, natural_sort_key

__all__ = ["MaskPrompts"]


class MaskPrompts:
    """Mask prompts given as one file (frame 0) or a folder of masks named by frame.

    Args:
        path: a mask image (the prompt of frame 0, whatever its name) or a folder of them.

    Attributes:
        path (pathlib.Path), is_folder (bool), files (list[pathlib.Path]: naturally sorted).

    Raises:
        InputError: the path does not exist, or a folder contains no mask image.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(os.fspath(path))
        if not self.path.exists():
            raise InputError(f"prompt mask file does not exist: {self.path}")
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            files = [p for p in self.path.iterdir()
                     if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                raise InputError(f"prompt folder {self.path} contains no mask images "
                                 f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
            self.files = sorted(files, key=lambda p: natural_sort_key(p.name))
        else:
            self.files = [self.path]

    def frames(self, names: list[str] | None = None, num_frames: int | None = None) -> dict[int, Path]:
        """``{frame index: mask file}`` for a video.

        Args:
            names: the input's frame file stems (frame folders), matched first.
            num_frames: the input's length when known: prompts beyond it are errors.

        Raises:
            InputError: a file name that is neither a frame name nor a frame number, two files for
                one frame, or a frame beyond the end of the video.
        """
        if not self.is_folder:
            return {0: self.path}
        by_name = {n: i for i, n in enumerate(names)} if names else {}
        out: dict[int, Path] = {}
        for f in self.files:
            if f.stem in by_name:
                k = by_name[f.stem]
            elif f.stem.isdigit():
                k = int(f.stem)
            else:
                raise InputError(f"prompt mask {f}: the name must be a frame number (00005.png) or the name of a "
                                 "frame of the input")
            if k in out:
                raise InputError(f"prompt masks {out[k].name} and {f.name} both name frame {k}")
            if num_frames is not None and k >= num_frames:
                raise InputError(f"prompt mask {f} is for frame {k} but the input has {num_frames} frames")
            out[k] = f
        return dict(sorted(out.items()))

    @staticmethod
    def check_sizes(plan: dict[int, Path], size: tuple[int, int]) -> dict[Path, tuple[int, int]]:
        """Check the image size of every mask of ``plan`` (headers only) against the frame size.

        Returns:
            ``{file: (h, w)}`` of the files that will be resized (off by at most 1 %).

        Raises:
            InputError: an unreadable file or a size off by more than 1 %.
        """
        resized = {}
        for f in plan.values():
            with open_image(f, "prompt mask") as im:
                w, h = im.size
            if check_mask_size((h, w), size, what=f"prompt mask {f}"):
                resized[f] = (h, w)
        return resized

    @staticmethod
    def load(path: str | os.PathLike, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
        """Read one prompt mask and fit it to the frame size.

        Returns:
            ``((H, W) uint8 object ids, resized?)``.

        Raises:
            InputError: unreadable, empty, or a size off by more than 1 %.
        """
        ids = load_prompt_mask(path)
        return fit_mask_to_size(ids, size, what=f"prompt mask {path}")

    def __repr__(self) -> str:
        return f"MaskPrompts({str(self.path)!r}, files={len(self.files)})"
