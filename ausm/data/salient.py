"""Salient-object image datasets (DUTS-TR layout) as an image dataset for Stage-1 pseudo-videos
(spec §6; the first training stage of STM / XMem / Cutie uses static images the same way).

Layout: ``ROOT/list.txt`` (one name per line), ``ROOT/images/<name>.{webp,jpg,png}`` (RGB) and
``ROOT/masks/<name>.png`` (binary: non-zero = the salient object(s)). A mask may cover several touching
objects as one; it is read as **one** object of class 0 (class-agnostic head). The data set is
treated as exhaustive: the salient object is *the* object of the image (what DAVIS-2016's
unsupervised protocol asks the model to find) [D].

Splits [D]: ``holdout`` = the last ``holdout`` names of ``list.txt`` (kept out of training for
checkpoint selection), ``train`` = the others, ``all`` = every name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.video import image_to_rgb
from ..model.ausm import AGNOSTIC

__all__ = ["SalientImages"]

_IMAGE_EXTS = (".webp", ".jpg", ".jpeg", ".png")


class SalientImages:
    """Images + binary salient-object masks (DUTS-TR layout), the image-dataset interface of
    :class:`~ausm.data.coco.PseudoVideoClips` (``images``, ``read_image``, ``read_annotations``).

    Args:
        root: the data set folder.
        split: ``"train"``, ``"holdout"`` or ``"all"`` (see module doc).
        holdout: number of names (the last ones of ``list.txt``) in the held-out split.
        name: dataset name written into samples.

    Raises:
        InputError: missing ``list.txt`` / folders, an unknown split, or an empty split.
    """

    head = AGNOSTIC
    exhaustive = True

    def __init__(self, root, split: str = "train", holdout: int = 300, name: str = "duts"):
        self.root = Path(root)
        self.name = name
        lst = self.root / "list.txt"
        if not lst.is_file():
            raise InputError(f"{self.root}: no list.txt (expected the DUTS-TR layout: list.txt, images/, masks/)")
        names = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
        if split not in ("train", "holdout", "all"):
            raise InputError(f"unknown split {split!r} for {self.root}; use train, holdout or all")
        if not isinstance(holdout, int) or holdout < 0 or holdout >= len(names):
            raise InputError(f"holdout must be an integer in [0, {len(names)}), got {holdout!r}")
        cut = len(names) - holdout
        names = {"train": names[:cut], "holdout": names[cut:], "all": names}[split]
        if not names:
            raise InputError(f"{self.root}: split {split!r} is empty")
        self.split = split
        self.images = [{"file_name": n} for n in names]

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, i: int) -> Path:
        """Path of image ``i`` (the first of .webp/.jpg/.jpeg/.png that exists).

        Raises:
            InputError: no image file for that name.
        """
        n = self.images[i]["file_name"]
        for ext in _IMAGE_EXTS:
            p = self.root / "images" / f"{n}{ext}"
            if p.is_file():
                return p
        raise InputError(f"{self.root}/images: no image for {n!r} (looked for {', '.join(_IMAGE_EXTS)})")

    def read_image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of image ``i``.

        Raises:
            InputError: a missing or unreadable file.
        """
        p = self.image_path(i)
        try:
            with Image.open(p) as im:
                return image_to_rgb(im)
        except OSError as e:
            raise InputError(f"cannot read image {p}: {e}") from e

    def read_mask(self, i: int) -> np.ndarray:
        """(H, W) bool salient-object mask of image ``i``.

        Raises:
            InputError: a missing or unreadable mask.
        """
        p = self.root / "masks" / f"{self.images[i]['file_name']}.png"
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L") if im.mode not in ("1", "L", "P", "I;16") else im)
        except OSError as e:
            raise InputError(f"cannot read mask {p}: {e}") from e
        return a > (127 if a.dtype == np.uint8 and a.max() > 1 else 0)

    def read_annotations(self, i: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """((n, H, W) bool masks with n = 1, or 0 for an empty mask; (n,) int64 classes (0); ids [1])."""
        m = self.read_mask(i)
        if not m.any():
            return np.zeros((0, *m.shape), dtype=bool), np.zeros(0, dtype=np.int64), []
        return m[None], np.zeros(1, dtype=np.int64), [1]
