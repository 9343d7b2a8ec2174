"""Readers of palette-PNG VOS folders: YouTube-VOS 2018/2019, MOSE, DAVIS-style and custom folders
(spec §8).

Layout (``<base>`` = ``root/split`` or ``root`` when ``split`` is ``None``)::

    <base>/JPEGImages/<video>/<frame>.jpg     every frame of the video (or every 5th: YouTube-VOS train)
    <base>/Annotations/<video>/<frame>.png    palette index PNGs, for the annotated frames only
    <base>/meta.json  or  root/meta_<split>.json     optional

* A frame is **annotated** iff a PNG with the same file stem exists in ``Annotations/<video>``
  (YouTube-VOS train labels every 5th frame; ``train_all_frames`` has 5× more JPEGs than PNGs).
* PNG values are object ids: 0 = background, 1..254 objects, 255 = void (DAVIS convention, ignored).
  Grey-level (``L``) PNGs are read the same way; RGB PNGs are mapped through the DAVIS palette.
  ``binary=True`` reads any non-zero value as object 1 (DAVIS-2016 0/255 masks).
* ``meta.json`` (``{"videos": {vid: {"objects": {"1": {"category": "...", "frames": [...]}}}}}``)
  gives the video list and object categories (kept as :meth:`YouTubeVOSDataset.objects`); VOS data
  is class-agnostic, so ``classes`` are 0 and the head is ``"agnostic"``. Without a meta file the
  video list is every folder of ``Annotations`` that has frames.
* Objects may first appear on a later frame: a clip's objects are those present in its annotated
  frames, whatever the first frame shows.
* YouTube-VOS **valid/test** ``Annotations`` hold only the first-appearance masks (prompts, not
  exhaustive per-frame labels): train on the ``train`` split.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.masks import read_index_png as _read_index_png
from ..io.video import IMAGE_EXTENSIONS, natural_sort_key, read_rgb_frames
from .clips import ClipData, VideoReader, resize_nearest
from .davis import VOID

__all__ = ["YouTubeVOSDataset", "MOSEDataset", "VOSFolderDataset", "read_index_png"]

def read_index_png(path, binary: bool = False) -> np.ndarray:
    """A data set's (H, W) uint8 mask: :func:`ausm.io.masks.read_index_png` with DAVIS-palette RGB
    masks accepted and ids up to 255. Raises InputError (unreadable file, colours off the palette)."""
    return _read_index_png(path, binary=binary, palette_rgb=True, max_id=255)


def _find_meta(root: Path, base: Path, split: str | None) -> Path | None:
    cands = [base / "meta.json"]
    if split:
        cands += [root / f"meta_{split}.json", base / f"meta_{split}.json", root / split / "meta.json"]
    cands += [root / "meta.json"]
    for c in cands:
        if c.is_file():
            return c
    return None


class YouTubeVOSDataset(VideoReader):
    """A palette-PNG VOS folder: YouTube-VOS 2018/2019, MOSE, or any DAVIS-style folder.

    Args:
        root: dataset root.
        split: sub-folder of ``root`` holding ``JPEGImages``/``Annotations`` (``"train"``,
            ``"valid"``); ``None`` = ``root`` itself.
        image_dir, ann_dir: frame and mask folder names relative to the split folder (absolute paths
            allowed), e.g. ``"JPEGImages/480p"`` for DAVIS or ``"images"``/``"masks"``.
        meta: path of the meta JSON; ``None`` = look for ``meta.json`` / ``meta_<split>.json``;
            ``False`` = do not use one.
        videos: explicit video names (overrides the listing).
        name: dataset name written into samples (``"ytvos2019"``, ``"mose"``, ``"custom"``...).
        binary: read masks as binary (any non-zero value = object 1).

    Raises:
        InputError: missing folders, unreadable meta, or videos without frames or annotations.
    """

    head = "agnostic"
    exhaustive = False

    def __init__(self, root, split: str | None = "train", image_dir: str = "JPEGImages",
                 ann_dir: str = "Annotations", meta=None, videos: list[str] | None = None,
                 name: str = "ytvos", binary: bool = False):
        self.root = Path(root)
        self.split, self.name, self.binary = split, name, binary
        base = self.root / split if split else self.root
        self.image_root, self.ann_root = base / image_dir, base / ann_dir
        for d, what in ((self.image_root, "frame"), (self.ann_root, "annotation")):
            if not d.is_dir():
                raise InputError(f"{what} folder {d} does not exist")
        meta_path = None if meta is False else (Path(meta) if meta else _find_meta(self.root, base, split))
        self._meta: dict = {}
        if meta_path is not None:
            try:
                self._meta = json.loads(Path(meta_path).read_text()).get("videos", {})
            except (OSError, ValueError, AttributeError) as e:
                raise InputError(f"cannot read meta file {meta_path}: {e}") from e
        self.meta_path = meta_path
        if videos is None:
            if self._meta:
                videos = sorted(v for v in self._meta if (self.image_root / v).is_dir())
            else:
                videos = sorted((p.name for p in self.ann_root.iterdir()
                                 if p.is_dir() and (self.image_root / p.name).is_dir()), key=natural_sort_key)
        self.videos = list(videos)
        for v in self.videos:
            if not (self.image_root / v).is_dir():
                raise InputError(f"video {v!r} has no frame folder in {self.image_root}")
        self._cache: dict = {}

    # ------------------------------------------------------------- listing
    def _listing(self, vid: str):
        """(frame paths, mask path or None per frame), cached."""
        if vid not in self._cache:
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[vid] = self._list(vid)
        return self._cache[vid]

    def _list(self, vid: str):
        fd = self.image_root / vid
        frames = sorted((p for p in fd.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                         and not p.name.startswith(".")), key=lambda p: natural_sort_key(p.name)) \
            if fd.is_dir() else []
        if not frames:
            raise InputError(f"no frames in {fd}")
        ad = self.ann_root / vid
        pngs = {p.stem: p for p in ad.glob("*.png")} if ad.is_dir() else {}
        masks = [pngs.get(p.stem) for p in frames]
        return frames, masks

    def frame_paths(self, vid: str) -> list[Path]:
        return list(self._listing(vid)[0])

    def mask_paths(self, vid: str) -> list[Path | None]:
        """One entry per frame: the mask PNG, or ``None`` for an unannotated frame."""
        return list(self._listing(vid)[1])

    def num_frames(self, vid):
        return len(self._listing(vid)[0])

    def annotated_frames(self, vid):
        return [k for k, m in enumerate(self._listing(vid)[1]) if m is not None]

    def objects(self, vid: str) -> dict:
        """The meta file's objects of ``vid`` (``{"1": {"category": ..., "frames": [...]}}``), or
        ``{}`` without a meta file."""
        return dict(self._meta.get(vid, {}).get("objects", {}))

    def object_ids(self, vid: str) -> list[int]:
        """Object ids of ``vid``: from the meta file, else from every annotated frame."""
        obj = self.objects(vid)
        if obj:
            return sorted(int(k) for k in obj)
        ids: set[int] = set()
        for m in self.mask_paths(vid):
            if m is not None:
                ids.update(int(v) for v in np.unique(read_index_png(m, self.binary)))
        ids.discard(0)
        ids.discard(VOID)
        return sorted(ids)

    # ------------------------------------------------------------- loading
    def read_frames(self, vid, indices):
        paths = self._listing(vid)[0]
        return read_rgb_frames([paths[k] for k in indices], vid)

    def read_annotations(self, vid, indices):
        masks = self._listing(vid)[1]
        read = {k: read_index_png(masks[k], self.binary) for k in set(indices) if masks[k] is not None}
        if read:
            hw = next(iter(read.values())).shape
        else:  # no annotated frame: size of the first frame
            with Image.open(self._listing(vid)[0][indices[0]]) as im:
                hw = (im.height, im.width)
        ids = np.zeros((len(indices), *hw), dtype=np.uint8)
        for j, k in enumerate(indices):
            if k in read:
                a = read[k]
                if a.shape != hw:
                    a = resize_nearest(a, hw)
                ids[j] = a
        annotated = np.array([masks[k] is not None for k in indices], dtype=bool)
        obj = sorted(int(v) for v in np.unique(ids) if v not in (0, VOID))
        return ClipData(frames=None, annotated=annotated, object_ids=obj,
                        classes=np.zeros(len(obj), dtype=np.int64), ids=ids)


class MOSEDataset(YouTubeVOSDataset):
    """MOSE (YouTube-VOS-like layout: ``<split>/JPEGImages``, ``<split>/Annotations``,
    ``meta_<split>.json``); every training frame is annotated."""

    def __init__(self, root, split: str | None = "train", **kw):
        kw.setdefault("name", "mose")
        super().__init__(root, split=split, **kw)


def VOSFolderDataset(root, image_dir: str = "JPEGImages", ann_dir: str = "Annotations", name: str = "custom",
                     **kw) -> YouTubeVOSDataset:
    """A custom DAVIS-style folder (``root/JPEGImages/<seq>``, ``root/Annotations/<seq>`` palette PNGs,
    possibly sparse): :class:`YouTubeVOSDataset` with ``split=None``."""
    return YouTubeVOSDataset(root, split=None, image_dir=image_dir, ann_dir=ann_dir, name=name, **kw)
