"""COCO instance segmentation as pseudo-videos (spec §6, Stage 1), and the COCO segmentation decoder
shared by the YouTube-VIS and SA-V readers.

* :class:`COCOInstances` reads ``instances_*.json`` + the image folder: polygons, compressed RLE and
  uncompressed RLE (``counts`` as a list) are all decoded with ``pycocotools``; crowd annotations
  (``iscrowd = 1``) are excluded [D, as Mask2Former's instance training]; ``classes`` = position of
  ``category_id`` in the sorted category ids (COCO: 80 contiguous classes out of ids 1..90).
* :class:`PseudoVideoClips` turns one image into a clip of T frames, **each an independently
  augmented copy** [P]: random resize (zoom ``scale`` × the size that just covers the crop), random
  crop, horizontal flip, small rotation (uniform in ±``rotation`` degrees) [D for the ranges]; the
  masks go through exactly the same per-frame geometric transform (nearest), so they stay aligned
  with the image content. Pixels that fall outside the image are black / background.
"""
from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..io.paths import safe_join
from ..io.video import image_to_rgb
from .clips import resize_nearest

__all__ = ["decode_segmentation", "COCOInstances", "PseudoVideoClips"]


def _decode(rle) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' numpy-2 ``copy=False`` deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(rle).astype(bool)


def decode_segmentation(seg, h: int, w: int) -> np.ndarray:
    """Decode one COCO-style segmentation into an (h, w) bool mask.

    Accepts a polygon list ``[[x0, y0, x1, y1, ...], ...]``, a compressed RLE
    ``{"size": [h, w], "counts": str | bytes}``, an uncompressed RLE ``{"size": [h, w], "counts":
    [int, ...]}``, or ``None`` / ``[]`` (empty mask).

    Raises:
        InputError: an unknown format, or an RLE whose size is not (h, w).
    """
    if seg is None or (isinstance(seg, (list, tuple)) and len(seg) == 0):
        return np.zeros((h, w), dtype=bool)
    if isinstance(seg, dict):
        size = [int(v) for v in seg.get("size", (h, w))]
        if size != [h, w]:
            raise InputError(f"RLE of size {size} where {[h, w]} was expected")
        counts = seg.get("counts")
        if isinstance(counts, list):
            rle = mask_util.frPyObjects(seg, h, w)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise InputError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
        return _decode(rle)
    if isinstance(seg, (list, tuple)):
        polys = [list(map(float, p)) for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((h, w), dtype=bool)
        rle = mask_util.merge(mask_util.frPyObjects(polys, h, w))
        return _decode(rle)
    raise InputError(f"unknown segmentation format: {type(seg).__name__}")


class COCOInstances:
    """Images and instance masks of a COCO ``instances_*.json``.

    Args:
        ann_file: the annotation JSON.
        image_root: folder of the images (``file_name`` is relative to it); default = the JSON's
            folder.
        head: class-head name (``"coco"``).
        name: dataset name written into samples.
        skip_empty: drop images without any non-crowd annotation.

    Attributes:
        images: list of image dicts (``id``, ``file_name``, ``height``, ``width``) in file order.
        categories: category dicts sorted by id; ``classes`` index this list.

    Raises:
        InputError: unreadable JSON or missing keys.
    """

    exhaustive = True

    def __init__(self, ann_file, image_root=None, head: str = "coco", name: str = "coco",
                 skip_empty: bool = True):
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root) if image_root is not None else self.ann_file.parent
        self.head, self.name = head, name
        try:
            data = json.loads(self.ann_file.read_text())
            images, anns, cats = data["images"], data.get("annotations", []), data["categories"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"cannot read COCO annotations {self.ann_file}: {e}") from e
        self.categories = sorted(cats, key=lambda c: c["id"])
        self.class_of = {c["id"]: k for k, c in enumerate(self.categories)}
        self._anns: dict = {}
        for a in anns:
            if a.get("iscrowd", 0):
                continue
            if a.get("category_id") not in self.class_of:
                raise InputError(f"annotation {a.get('id')} has unknown category {a.get('category_id')}")
            self._anns.setdefault(a["image_id"], []).append(a)
        self.images = [im for im in images if not skip_empty or self._anns.get(im["id"])]

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def class_names(self) -> list[str]:
        return [c.get("name", str(c["id"])) for c in self.categories]

    def __len__(self) -> int:
        return len(self.images)

    def read_image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of image ``i``."""
        p = safe_join(self.image_root, self.images[i]["file_name"])
        try:
            with Image.open(p) as im:
                return image_to_rgb(im)
        except OSError as e:
            raise InputError(f"cannot read image {p}: {e}") from e

    def read_annotations(self, i: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(masks (n, H, W) bool, classes (n,) int64, annotation ids) of image ``i``; crowd and empty
        masks excluded."""
        im = self.images[i]
        h, w = int(im["height"]), int(im["width"])
        masks, classes, ids = [], [], []
        for a in self._anns.get(im["id"], []):
            m = decode_segmentation(a.get("segmentation"), h, w)
            if m.any():
                masks.append(m)
                classes.append(self.class_of[a["category_id"]])
                ids.append(a.get("id"))
        masks = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)
        return masks, np.asarray(classes, dtype=np.int64), ids


class PseudoVideoClips(torch.utils.data.Dataset):
    """Pseudo-video clips from an image dataset (spec §6, Stage 1): T independently augmented copies of
    one image. Output is the clip sample dict of :mod:`ausm.data.clips` (every frame annotated,
    ``frame_indices`` = ``[0] * T``, ``sequence`` = the image's file name).

    Args:
        images: a :class:`COCOInstances` (or any object with ``images``, ``read_image``,
            ``read_annotations``, ``head``, ``name``).
        clip_len: T (3 in Stage 1).
        size: output (H, W).
        scale: zoom range relative to the size that just covers the crop.
        rotation: maximum absolute rotation in degrees.
        flip: horizontal flip probability, per frame.
        samples_per_epoch: virtual length.
        seed: sample ``i`` uses ``random.Random(seed * 1_000_003 + i)``.
        retries: re-draw an image whose clip ends up without any instance (at most this many times).
        max_objects: keep a random subset of at most this many instances.
    """

    def __init__(self, images: COCOInstances, clip_len: int = 3, size: tuple[int, int] = (224, 384),
                 scale: tuple[float, float] = (0.8, 1.25), rotation: float = 10.0, flip: float = 0.5,
                 samples_per_epoch: int = 10000, seed: int = 0, retries: int = 3, max_objects: int | None = None):
        if len(images) == 0:
            raise InputError(f"{getattr(images, 'name', 'image dataset')!r} has no images")
        self.reader, self.clip_len, self.size = images, clip_len, tuple(size)
        self.scale, self.rotation, self.flip = tuple(scale), float(rotation), flip
        self.samples_per_epoch, self.seed, self.retries, self.max_objects = samples_per_epoch, seed, retries, max_objects
        self.exhaustive = getattr(images, "exhaustive", True)

    def __len__(self):
        return self.samples_per_epoch

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + i)
        for attempt in range(self.retries + 1):
            k = rng.randrange(len(self.reader))
            img = self.reader.read_image(k)
            masks, classes, _ = self.reader.read_annotations(k)
            if masks.shape[1:] != img.shape[:2]:
                masks = resize_nearest(masks, img.shape[:2])
            sample = self.make_clip(img, masks, classes, rng)
            sample["sequence"] = str(self.reader.images[k].get("file_name", k))
            if sample["masks"].shape[0] > 0:
                break
        return sample

    def transform(self, img: torch.Tensor, masks: torch.Tensor, rng: random.Random):
        """One random geometric transform of (3, H, W) float ``img`` and (n, H, W) float ``masks``.

        Returns:
            ((3, Ht, Wt) image, (n, Ht, Wt) masks), masks exactly {0, 1}.
        """
        H0, W0 = img.shape[-2:]
        Ht, Wt = self.size
        s = max(Ht / H0, Wt / W0) * rng.uniform(*self.scale)
        H1, W1 = max(1, round(H0 * s)), max(1, round(W0 * s))
        im = F.interpolate(img[None], size=(H1, W1), mode="bilinear", align_corners=False, antialias=True)
        mk = F.interpolate(masks[None], size=(H1, W1), mode="nearest") if masks.shape[0] else \
            torch.zeros(1, 0, H1, W1)
        # integer crop origin (negative = centred padding when the zoomed image is smaller)
        y0 = rng.randint(0, H1 - Ht) if H1 >= Ht else (H1 - Ht) // 2
        x0 = rng.randint(0, W1 - Wt) if W1 >= Wt else (W1 - Wt) // 2
        angle = math.radians(rng.uniform(-self.rotation, self.rotation)) if self.rotation else 0.0
        flip = rng.random() < self.flip
        # output pixel centre (j + .5, i + .5), relative to the crop centre → zoomed-image coordinates
        v, u = torch.meshgrid(torch.arange(Ht, dtype=torch.float64) + 0.5 - Ht / 2,
                              torch.arange(Wt, dtype=torch.float64) + 0.5 - Wt / 2, indexing="ij")
        if flip:
            u = -u
        c, sn = math.cos(angle), math.sin(angle)
        x = x0 + Wt / 2 + c * u - sn * v
        y = y0 + Ht / 2 + sn * u + c * v
        grid = torch.stack([x / W1 * 2 - 1, y / H1 * 2 - 1], -1).float()[None]
        im = F.grid_sample(im, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        mk = F.grid_sample(mk, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0] \
            if mk.shape[1] else torch.zeros(0, Ht, Wt)
        return im.clamp(0, 1), (mk > 0.5).float()

    def make_clip(self, img: np.ndarray, masks: np.ndarray, classes: np.ndarray, rng: random.Random) -> dict:
        """The clip sample dict of T augmented copies of ``img`` (H, W, 3) uint8 with ``masks``
        (n, H, W) bool and ``classes`` (n,)."""
        T = self.clip_len
        im = torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(2, 0, 1).float() / 255.0
        mk = torch.from_numpy(np.ascontiguousarray(masks)).float()
        frames, rows = [], []
        for _ in range(T):
            f, m = self.transform(im, mk, rng)
            frames.append(f)
            rows.append(m)
        frames = torch.stack(frames)
        out = torch.stack(rows, 1) if len(masks) else torch.zeros(0, T, *self.size)  # (n, T, H, W)
        keep = [k for k in range(out.shape[0]) if bool(out[k].any())]
        if self.max_objects is not None and len(keep) > self.max_objects:
            keep = sorted(rng.sample(keep, self.max_objects))
        return {"frames": frames.contiguous(), "masks": out[keep] if keep else torch.zeros(0, T, *self.size),
                "classes": torch.as_tensor(np.asarray(classes, dtype=np.int64)[keep], dtype=torch.long)
                if keep else torch.zeros(0, dtype=torch.long),
                "head": self.reader.head, "exhaustive": self.exhaustive, "dataset": self.reader.name,
                "sequence": "", "frame_indices": [0] * T, "annotated": torch.ones(T, dtype=torch.bool)}
