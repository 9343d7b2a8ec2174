"""DAVIS-format reader (spec §8): ``JPEGImages/<res>/<seq>/%05d.jpg``,
``Annotations/<res>/<seq>/%05d.png``, ``ImageSets/...``.

* ``year=2016``: one object per sequence, masks 0/255 (any non-zero value is the object).
* ``year=2017``: palette index PNGs, 0 = background, 1..254 object ids, 255 = void.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.video import natural_sort_key, read_rgb_frames

VOID = 255


def _find_image_set(root: Path, year: int, split: str) -> Path | None:
    for cand in (root / "ImageSets" / str(year) / f"{split}.txt", root / "ImageSets" / f"{split}.txt",
                 root / "ImageSets" / "480p" / f"{split}.txt"):
        if cand.is_file():
            return cand
    return None


def _sequence_name(line: str) -> str:
    """Sequence name of an ImageSets line: ``bear`` (2017 style) or a frame/mask path pair
    ``/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png`` (2016 style)."""
    parts = line.split()[0].strip("/").split("/")
    if len(parts) >= 2 and "." in parts[-1]:  # a file path: the sequence is its folder
        return parts[-2]
    return parts[-1]


class DavisDataset:
    """Sequences of a DAVIS root.

    Args:
        root: the DAVIS root folder.
        split: image-set name (``train``, ``val``) read from ``ImageSets``; ``None`` = every sequence
            folder with annotations.
        resolution: sub-folder name (``480p``, ``240p``, ``Full-Resolution``).
        year: 2016 (binary masks) or 2017 (index masks with void 255).
        sequences: explicit sequence names (overrides ``split``).

    Raises:
        InputError: missing root, image set, or sequence folders.
    """

    def __init__(self, root, split: str | None = "train", resolution: str = "480p", year: int = 2016,
                 sequences: list[str] | None = None):
        self.root = Path(root)
        if year not in (2016, 2017):
            raise InputError(f"DAVIS year must be 2016 or 2017, got {year}")
        self.year, self.resolution = year, resolution
        ann_root = self.root / "Annotations" / resolution
        if not ann_root.is_dir():
            raise InputError(f"DAVIS root {self.root} has no Annotations/{resolution}")
        if sequences is None:
            if split is None:
                sequences = sorted(p.name for p in ann_root.iterdir() if p.is_dir())
            else:
                f = _find_image_set(self.root, year, split)
                if f is None:
                    raise InputError(f"no ImageSets file for split {split!r} under {self.root}")
                sequences = [_sequence_name(ln) for ln in f.read_text().splitlines() if ln.strip()]
                sequences = list(dict.fromkeys(sequences))
        self.sequences = list(sequences)
        for s in self.sequences:
            if not (ann_root / s).is_dir():
                raise InputError(f"sequence {s!r} has no annotations in {ann_root}")

    def __len__(self):
        return len(self.sequences)

    def frame_paths(self, seq: str) -> list[Path]:
        d = self.root / "JPEGImages" / self.resolution / seq
        files = sorted((p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
                       key=lambda p: natural_sort_key(p.name)) if d.is_dir() else []
        if not files:
            raise InputError(f"no frames in {d}")
        return files

    def mask_paths(self, seq: str) -> list[Path]:
        d = self.root / "Annotations" / self.resolution / seq
        return sorted(d.glob("*.png"), key=lambda p: natural_sort_key(p.name))

    def read_frame(self, path) -> np.ndarray:
        """(H, W, 3) uint8 RGB.

        Raises:
            InputError: the file cannot be decoded."""
        return read_rgb_frames([path], str(path))[0]

    def read_mask(self, path) -> np.ndarray:
        """(H, W) uint8 ids: 2016 → {0, 1}; 2017 → ids with 255 = void."""
        with Image.open(path) as im:
            a = np.asarray(im)
        if a.ndim == 3:
            a = a[..., 0]
        if self.year == 2016:
            return (a > 0).astype(np.uint8)
        return a.astype(np.uint8)

    def object_ids(self, seq: str) -> list[int]:
        """Object ids present in any annotated frame (void excluded)."""
        ids: set[int] = set()
        for p in self.mask_paths(seq):
            ids.update(int(v) for v in np.unique(self.read_mask(p)))
        ids.discard(0)
        ids.discard(VOID)
        return sorted(ids)
