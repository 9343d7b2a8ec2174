"""Clip sampling for training: T frames in order with a random stride, clip-consistent random
resize / crop / flip (spec §6 [D]), for any :class:`VideoReader`.

A clip sample is a dict:
    ``frames``  (T, 3, H, W) float32 RGB in [0, 1]
    ``masks``   (n, T, H, W) float32 in {0, 1}, one row per instance visible in at least one
                annotated frame of the clip (rows are all-zero on frames that carry no labels)
    ``classes`` (n,) long category index (0 for class-agnostic data)
    ``head``    class-head name (``"agnostic"`` for data without classes)
    ``exhaustive`` bool, every object of interest is labelled (detection loss allowed)
    ``annotated`` (T,) bool, which frames carry labels (all True unless sampled with
                ``frames="all"`` on sparsely annotated data)
    ``dataset``, ``sequence``, ``frame_indices``

Readers (:class:`VideoReader` subclasses) only list videos and load frames + labels for chosen frame
indices; :class:`VideoClips` does the sampling and the augmentation for all of them.
:class:`DavisClips` is :class:`VideoClips` over a :class:`DavisVideos` adapter.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.ausm import AGNOSTIC
from .davis import VOID, DavisDataset

__all__ = ["ClipData", "VideoReader", "VideoClips", "DavisVideos", "DavisFrames", "DavisClips", "collate_clips",
           "resize_nearest"]


@dataclass
class ClipData:
    """Frames and labels of chosen frames of one video, as a reader returns them.

    Exactly one of ``ids`` / ``masks`` is set.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB, or ``None`` (annotation-only reads).
        annotated: (T,) bool, frame k carries labels.
        object_ids: the n object ids (labels of the rows of ``masks``, or values in ``ids``).
        classes: (n,) int64 contiguous category index (0 for class-agnostic data).
        ids: (T, H, W) integer id map (0 = background, 255 = void); zero on unannotated frames.
        masks: (n, T, H, W) bool per-instance masks (may overlap); zero on unannotated frames.
    """

    frames: np.ndarray | None
    annotated: np.ndarray
    object_ids: list
    classes: np.ndarray
    ids: np.ndarray | None = None
    masks: np.ndarray | None = None

    @property
    def label_size(self) -> tuple[int, int]:
        a = self.ids if self.ids is not None else self.masks
        return tuple(a.shape[-2:])

    def instance_masks(self) -> np.ndarray:
        """(n, T, H, W) bool, whichever representation the reader used."""
        if self.masks is not None:
            return self.masks
        return np.stack([self.ids == o for o in self.object_ids]) if self.object_ids else \
            np.zeros((0, *self.ids.shape), dtype=bool)


def resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes of an integer/bool array."""
    if tuple(a.shape[-2:]) == tuple(size):
        return a
    lead = a.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(a).astype(np.uint8) if a.dtype == bool else np.ascontiguousarray(a))
    t = t.reshape(-1, 1, *a.shape[-2:])
    dtype = t.dtype
    if dtype not in (torch.uint8, torch.float32):
        t = t.float()
    t = F.interpolate(t, size=tuple(size), mode="nearest")
    out = t.to(dtype).reshape(*lead, *size).numpy()
    return out.astype(bool) if a.dtype == bool else out.astype(a.dtype)


class VideoReader:
    """Interface of a video dataset reader.

    A reader lists videos (``videos``, names) and loads frames and labels for chosen frame indices.
    Subclasses implement :meth:`num_frames`, :meth:`read_frames` and :meth:`read_annotations`, and
    :meth:`annotated_frames` when not every frame is annotated.

    Attributes:
        name: source-dataset name written into samples (``"ytvos2019"``, ``"sav"``, ...).
        head: class-head name (``"agnostic"`` for data without classes).
        exhaustive: every object of interest is labelled (detection loss allowed).
        videos: video names.
    """

    name: str = "video"
    head: str = AGNOSTIC
    exhaustive: bool = False
    videos: list

    def __len__(self) -> int:
        return len(self.videos)

    def num_frames(self, vid: str) -> int:
        raise NotImplementedError

    def annotated_frames(self, vid: str) -> list[int]:
        """Indices (into the video's frames) of the frames that carry labels."""
        return list(range(self.num_frames(vid)))

    def read_frames(self, vid: str, indices) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames at ``indices``."""
        raise NotImplementedError

    def read_annotations(self, vid: str, indices) -> ClipData:
        """Labels at ``indices`` (``frames`` left ``None``)."""
        raise NotImplementedError

    def load(self, vid: str, indices) -> ClipData:
        """Frames and labels at ``indices``; labels whose size differs from the frames' are resized
        (nearest) to the frame size."""
        indices = [int(k) for k in indices]
        clip = self.read_annotations(vid, indices)
        clip.frames = self.read_frames(vid, indices)
        hw = tuple(clip.frames.shape[1:3])
        if clip.label_size != hw:
            if clip.ids is not None:
                clip.ids = resize_nearest(clip.ids, hw)
            else:
                clip.masks = resize_nearest(clip.masks, hw)
        return clip


def _object_ids(ids: np.ndarray) -> list[int]:
    """The object ids present in DAVIS index masks (background 0 and void excluded), sorted."""
    return sorted(int(v) for v in np.unique(ids) if v not in (0, VOID))


class DavisVideos(VideoReader):
    """:class:`~ausm.data.davis.DavisDataset` as a :class:`VideoReader` (every frame annotated;
    2016: one object id 1; 2017: palette ids, 255 = void)."""

    def __init__(self, davis: DavisDataset):
        self.davis = davis
        self.name = f"davis{davis.year}"
        self.videos = list(davis.sequences)
        self._frames = {s: davis.frame_paths(s) for s in davis.sequences}
        self._masks = {s: davis.mask_paths(s) for s in davis.sequences}

    def num_frames(self, vid):
        return min(len(self._frames[vid]), len(self._masks[vid]))

    def read_frames(self, vid, indices):
        return np.stack([self.davis.read_frame(self._frames[vid][j]) for j in indices])

    def read_annotations(self, vid, indices):
        ids = np.stack([self.davis.read_mask(self._masks[vid][j]) for j in indices])
        obj = _object_ids(ids)
        return ClipData(frames=None, annotated=np.ones(len(indices), dtype=bool), object_ids=obj,
                        classes=np.zeros(len(obj), dtype=np.int64), ids=ids)


class DavisFrames:
    """The frames of a DAVIS split as an *image* dataset, for Stage-1-style pseudo-videos
    (:class:`~ausm.data.coco.PseudoVideoClips`: T independently augmented copies of one frame) and as
    real backgrounds of :class:`~ausm.data.synthetic.SyntheticClips`.

    Args:
        davis: the :class:`~ausm.data.davis.DavisDataset`.
        every: keep every ``every``-th frame of each sequence (consecutive frames are near-duplicates).

    Attributes:
        images: ``[{"file_name": "<seq>/<frame>", "seq": ..., "index": ...}]``.
    """

    head = AGNOSTIC
    exhaustive = True

    def __init__(self, davis: DavisDataset, every: int = 1):
        if every < 1:
            raise InputError(f"every must be >= 1, got {every}")
        self.davis = davis
        self.name = f"davis{davis.year}-frames"
        self.images = []
        self._paths = {}
        for seq in davis.sequences:
            fr, mk = davis.frame_paths(seq), davis.mask_paths(seq)
            self._paths[seq] = (fr, mk)
            for j in range(0, min(len(fr), len(mk)), every):
                self.images.append({"file_name": f"{seq}/{fr[j].stem}", "seq": seq, "index": j})

    def __len__(self) -> int:
        return len(self.images)

    def read_image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of image ``i``."""
        im = self.images[i]
        return self.davis.read_frame(self._paths[im["seq"]][0][im["index"]])

    def read_annotations(self, i: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """((n, H, W) bool masks, (n,) int64 classes (all 0), object ids) of image ``i``."""
        im = self.images[i]
        ids = self.davis.read_mask(self._paths[im["seq"]][1][im["index"]])
        clip = ClipData(frames=None, annotated=np.ones(1, bool), object_ids=_object_ids(ids),
                        classes=np.zeros(0, np.int64), ids=ids[None])
        return clip.instance_masks()[:, 0], np.zeros(len(clip.object_ids), dtype=np.int64), clip.object_ids


class VideoClips(torch.utils.data.Dataset):
    """Random training clips from a :class:`VideoReader`.

    Sample ``i`` is drawn with ``random.Random(seed * 1_000_003 + i)``: a video uniformly, a stride
    uniformly in ``1..max_stride`` (shrunk for short videos), a start, T frames in order (played
    backwards with probability ``reverse``), then one random zoom/crop/flip for the whole clip.

    Args:
        reader: the video reader.
        clip_len: T.
        max_stride: largest stride (in frames of the sampled pool, see ``frames``).
        size: output (H, W), multiples of 32.
        scale: random zoom range applied before the crop (1.0 = the image just covers the crop).
        flip: horizontal flip probability (one decision per clip).
        exhaustive: override the reader's ``exhaustive`` flag (``None`` = the reader's).
        samples_per_epoch: virtual length.
        seed: base seed.
        reverse: probability of playing the clip backwards.
        frames: ``"annotated"`` (default) samples only among annotated frames, so every frame of the
            clip carries labels (the stride counts annotated frames: every 5th video frame on
            YouTube-VOS, every 4th on SA-V); ``"all"`` samples among all frames, the clip always
            contains at least one annotated frame, and ``annotated`` marks which.
        retries: re-draw (with the same generator) a clip that ends up without any instance, at
            most this many times; the last draw is returned even if empty.
        max_objects: keep a random subset of at most this many instances (``None`` = all).
    """

    def __init__(self, reader: VideoReader, clip_len: int = 4, max_stride: int = 3,
                 size: tuple[int, int] = (224, 384), scale: tuple[float, float] = (1.0, 1.3),
                 flip: float = 0.5, exhaustive: bool | None = None, samples_per_epoch: int = 10000,
                 seed: int = 0, reverse: float = 0.5, frames: str = "annotated", retries: int = 3,
                 max_objects: int | None = None):
        if frames not in ("annotated", "all"):
            raise InputError(f"frames must be 'annotated' or 'all', got {frames!r}")
        if clip_len < 1 or max_stride < 1:
            raise InputError(f"clip_len and max_stride must be >= 1, got {clip_len}, {max_stride}")
        if len(reader) == 0:
            raise InputError(f"reader {getattr(reader, 'name', reader)!r} has no videos")
        self.reader, self.clip_len, self.max_stride = reader, clip_len, max_stride
        self.size, self.scale, self.flip = tuple(size), tuple(scale), flip
        self.exhaustive = reader.exhaustive if exhaustive is None else bool(exhaustive)
        self.samples_per_epoch, self.seed = samples_per_epoch, seed
        self.reverse, self.frames, self.retries, self.max_objects = reverse, frames, retries, max_objects

    def __len__(self):
        return self.samples_per_epoch

    # ---------------------------------------------------------------- sampling
    def _draw_indices(self, rng: random.Random, vid: str) -> list[int] | None:
        T = self.clip_len
        ann = self.reader.annotated_frames(vid)
        if not ann:
            return None
        if self.frames == "annotated":
            pool = ann
            n = len(pool)
            stride = rng.randint(1, max(1, min(self.max_stride, (n - 1) // max(T - 1, 1))))
            span = (T - 1) * stride
            start = rng.randint(0, max(0, n - 1 - span))
            idx = [pool[min(start + j * stride, n - 1)] for j in range(T)]
        else:
            n = self.reader.num_frames(vid)
            stride = rng.randint(1, max(1, min(self.max_stride, (n - 1) // max(T - 1, 1))))
            span = (T - 1) * stride
            a = rng.choice(ann)  # an annotated frame the clip must contain
            last_start = max(0, n - 1 - span)
            offs = [j for j in range(T) if 0 <= a - j * stride <= last_start]
            start = a - rng.choice(offs) * stride if offs else 0
            idx = [min(start + j * stride, n - 1) for j in range(T)]
        if rng.random() < self.reverse:
            idx = idx[::-1]
        return idx

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + i)
        videos = self.reader.videos
        sample = None
        for attempt in range(self.retries + 1):
            vid = rng.choice(videos)
            idx = self._draw_indices(rng, vid)
            if idx is None:  # a video without any annotated frame
                continue
            sample = self.sample(vid, idx, rng)
            if sample["masks"].shape[0] > 0:
                break
        if sample is None:
            raise InputError(f"no annotated frames found in {self.retries + 1} draws from "
                             f"{self.reader.name!r}")
        return sample

    def sample(self, vid: str, indices, rng: random.Random | None = None) -> dict:
        """The clip sample of frames ``indices`` of video ``vid``, augmented with ``rng`` (default: a
        generator seeded with ``seed``)."""
        rng = rng if rng is not None else random.Random(self.seed)
        idx = [int(k) for k in indices]
        out = self._augment(self.reader.load(vid, idx), rng)
        out.update(sequence=vid, frame_indices=idx)
        return out

    # ------------------------------------------------------------ augmentation
    def _augment(self, clip: ClipData, rng: random.Random) -> dict:
        frames = clip.frames
        T, H0, W0 = frames.shape[:3]
        Ht, Wt = self.size
        s = max(Ht / H0, Wt / W0) * rng.uniform(*self.scale)
        H1, W1 = max(Ht, round(H0 * s)), max(Wt, round(W0 * s))
        fr = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        fr = F.interpolate(fr, size=(H1, W1), mode="bilinear", align_corners=False, antialias=True)
        if clip.ids is not None:
            lab = F.interpolate(torch.from_numpy(np.ascontiguousarray(clip.ids)).float().unsqueeze(1),
                                size=(H1, W1), mode="nearest")[:, 0].long()  # (T, H1, W1)
        else:
            n = clip.masks.shape[0]
            m = np.ascontiguousarray(clip.masks)
            m = torch.from_numpy(m.view(np.uint8) if m.dtype == bool else m.astype(np.uint8)).reshape(n * T, 1, H0, W0)
            lab = F.interpolate(m, size=(H1, W1), mode="nearest").reshape(n, T, H1, W1)
        y0, x0 = rng.randint(0, H1 - Ht), rng.randint(0, W1 - Wt)
        fr = fr[:, :, y0:y0 + Ht, x0:x0 + Wt]
        lab = lab[..., y0:y0 + Ht, x0:x0 + Wt]
        if rng.random() < self.flip:
            fr, lab = fr.flip(-1), lab.flip(-1)
        ann = torch.from_numpy(np.asarray(clip.annotated, dtype=bool).copy())
        if clip.ids is not None:
            rows = [(lab == o) for o in clip.object_ids]
        else:
            rows = list(lab.bool())
        keep = [k for k, r in enumerate(rows) if bool(r[ann].any())]
        if self.max_objects is not None and len(keep) > self.max_objects:
            keep = sorted(rng.sample(keep, self.max_objects))
        masks = torch.stack([rows[k].float() * ann[:, None, None] for k in keep]) if keep \
            else torch.zeros(0, T, Ht, Wt)
        classes = torch.as_tensor(np.asarray(clip.classes, dtype=np.int64)[keep], dtype=torch.long) if keep \
            else torch.zeros(0, dtype=torch.long)
        return {"frames": fr.clamp(0, 1).contiguous(), "masks": masks, "classes": classes,
                "head": self.reader.head, "exhaustive": self.exhaustive, "dataset": self.reader.name,
                "annotated": ann}


class DavisClips(VideoClips):
    """Random clips from a :class:`DavisDataset` with every frame annotated.

    Args:
        davis: the dataset.
        clip_len: T.
        max_stride: stride drawn uniformly in 1..max_stride (shrunk for short sequences).
        size: output (H, W), multiples of 32.
        scale: random zoom range applied before the crop (1.0 = shorter side equals the crop's).
        flip: random horizontal flip probability.
        exhaustive: mark samples as exhaustively labelled (detection loss on).
        samples_per_epoch: virtual length (sequences are drawn uniformly).
        seed: base seed; sample i uses ``seed + i`` so that epochs and resumes are reproducible.
    """

    def __init__(self, davis: DavisDataset, clip_len: int = 4, max_stride: int = 3,
                 size: tuple[int, int] = (224, 384), scale: tuple[float, float] = (1.0, 1.3),
                 flip: float = 0.5, exhaustive: bool = False, samples_per_epoch: int = 10000, seed: int = 0):
        self.davis = davis
        super().__init__(DavisVideos(davis), clip_len=clip_len, max_stride=max_stride, size=size, scale=scale,
                         flip=flip, exhaustive=exhaustive, samples_per_epoch=samples_per_epoch, seed=seed,
                         reverse=0.5, frames="annotated", retries=0)


def collate_clips(batch: list[dict]) -> list[dict]:
    """Keep samples as a list (instance counts differ); frames are stacked by the trainer."""
    return batch
