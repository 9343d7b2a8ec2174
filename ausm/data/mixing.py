"""Weighted mixing of clip datasets (spec §6: Stage 2/3 mix COCO pseudo-videos, MOSE, SA-V,
YouTube-VIS 2019/2021, OVIS, DAVIS) and a builder from plain config dicts.

:class:`MixedClips` sample ``i`` picks dataset k with probability ``weights[k] / sum(weights)`` using a
generator seeded from (seed, i) alone, then returns sample ``i`` of dataset k: the result depends only
on (seed, i), whatever the order of access, the process or the worker.
"""
from __future__ import annotations

import bisect
import random
from typing import Sequence

import torch

from ..errors import ConfigError

__all__ = ["MixedClips", "build_reader", "build_clip_dataset", "build_mixture", "READER_TYPES", "IMAGE_TYPES"]


class MixedClips(torch.utils.data.Dataset):
    """Draw clips from several clip datasets with given weights.

    Args:
        datasets: clip datasets (:class:`~ausm.data.clips.VideoClips`,
            :class:`~ausm.data.coco.PseudoVideoClips`, ...) whose samples are the clip dict.
        weights: non-negative sampling weights (default: equal), normalised internally.
        samples_per_epoch: virtual length (default: the sum of the datasets' lengths).
        seed: base seed of the dataset choice.

    Raises:
        ConfigError: no datasets, weights of the wrong length, negative or all-zero weights.
    """

    def __init__(self, datasets: Sequence, weights: Sequence[float] | None = None,
                 samples_per_epoch: int | None = None, seed: int = 0):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ConfigError("MixedClips needs at least one dataset")
        w = [1.0] * len(self.datasets) if weights is None else [float(x) for x in weights]
        if len(w) != len(self.datasets):
            raise ConfigError(f"{len(w)} weights for {len(self.datasets)} datasets")
        if any(x < 0 or x != x for x in w) or sum(w) <= 0:
            raise ConfigError(f"weights must be non-negative with a positive sum, got {w}")
        total = sum(w)
        self.weights = [x / total for x in w]
        self._cum = []
        acc = 0.0
        for x in self.weights:
            acc += x
            self._cum.append(acc)
        self._cum[-1] = 1.0
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch if samples_per_epoch is not None else \
            sum(len(d) for d in self.datasets)

    def __len__(self):
        return self.samples_per_epoch

    def choose(self, i: int) -> int:
        """Index of the dataset that sample ``i`` comes from (deterministic in (seed, i))."""
        u = random.Random(f"ausm-mix:{self.seed}:{int(i)}").random()  # str seeds hash with sha512
        k = bisect.bisect_right(self._cum, u)
        k = min(k, len(self.datasets) - 1)
        while self.weights[k] == 0:  # u landed exactly on a boundary of an empty slot
            k -= 1
        return k

    def __getitem__(self, i: int) -> dict:
        return self.datasets[self.choose(i)][i]


# ---------------------------------------------------------------------------- builders
def _davis(root, split="train", resolution="480p", year=2017, sequences=None, **kw):
    from .clips import DavisVideos
    from .davis import DavisDataset
    if kw:
        raise ConfigError(f"unknown DAVIS options {sorted(kw)}")
    return DavisVideos(DavisDataset(root, split=split, resolution=resolution, year=year, sequences=sequences))


def _ytvos(root, split="train", **kw):
    from .ytvos import YouTubeVOSDataset
    kw.setdefault("name", "ytvos")
    return YouTubeVOSDataset(root, split=split, **kw)


def _mose(root, split="train", **kw):
    from .ytvos import MOSEDataset
    return MOSEDataset(root, split=split, **kw)


def _folder(root, **kw):
    from .ytvos import VOSFolderDataset
    return VOSFolderDataset(root, **kw)


def _sav(root, **kw):
    from .sav import SAVDataset
    return SAVDataset(root, **kw)


def _ytvis(ann_file, image_root=None, **kw):
    from .ytvis import YTVISDataset
    return YTVISDataset(ann_file, image_root, **kw)


def _ovis(ann_file, image_root=None, **kw):
    from .ytvis import YTVISDataset
    kw.setdefault("head", "ovis")
    return YTVISDataset(ann_file, image_root, **kw)


def _davis_frames(root, split="train", resolution="480p", year=2017, sequences=None, every=1, **kw):
    from .clips import DavisFrames
    from .davis import DavisDataset
    if kw:
        raise ConfigError(f"unknown DAVIS options {sorted(kw)}")
    return DavisFrames(DavisDataset(root, split=split, resolution=resolution, year=year, sequences=sequences),
                       every=every)


def _duts(root, split="train", holdout=300, **kw):
    from .salient import SalientImages
    return SalientImages(root, split=split, holdout=holdout, **kw)


def _coco(ann_file, image_root=None, **kw):
    from .coco import COCOInstances
    return COCOInstances(ann_file, image_root, **kw)


#: ``type`` of a dataset spec → reader constructor (keyword arguments = the spec's other keys).
READER_TYPES = {"davis": _davis, "ytvos": _ytvos, "mose": _mose, "folder": _folder, "sav": _sav,
                "ytvis": _ytvis, "ovis": _ovis, "coco": _coco, "davis_frames": _davis_frames,
                "duts": _duts}
#: image datasets: their clips are pseudo-videos (:class:`~ausm.data.coco.PseudoVideoClips`)
IMAGE_TYPES = ("coco", "davis_frames", "duts")


def build_reader(spec: dict):
    """Reader of one dataset spec ``{"type": ..., <reader kwargs>}`` (``weight``/``clip`` ignored)."""
    spec = dict(spec)
    typ = spec.pop("type", None)
    spec.pop("weight", None)
    spec.pop("clip", None)
    if typ not in READER_TYPES:
        raise ConfigError(f"unknown dataset type {typ!r}; one of {sorted([*READER_TYPES, 'synthetic', 'copy_paste'])}")
    try:
        return READER_TYPES[typ](**spec)
    except TypeError as e:
        raise ConfigError(f"bad options for dataset type {typ!r}: {e}") from e


def build_clip_dataset(spec: dict, clip_len: int = 4, size=(224, 384), max_stride: int = 3,
                       samples_per_epoch: int = 10000, seed: int = 0):
    """Clip dataset of one spec: :class:`~ausm.data.coco.PseudoVideoClips` for the image datasets
    (``coco``, ``davis_frames``, ``duts``), :class:`~ausm.data.synthetic.SyntheticClips` for ``synthetic``,
    :class:`~ausm.data.copypaste.CopyPasteClips` for ``copy_paste`` (see :func:`_copy_paste`)
    (options: ``num_objects``, ``background`` = an image-dataset spec for real backgrounds,
    ``background_prob``, ``speed``, ``max_objects``), :class:`~ausm.data.clips.VideoClips` otherwise.
    ``spec["clip"]`` (a dict) overrides clip options (``max_stride``, ``scale``, ``flip``, ``frames``,
    ``max_objects``, ``rotation``...)."""
    from .clips import VideoClips
    from .coco import PseudoVideoClips
    from .synthetic import SyntheticClips
    if spec.get("type") == "copy_paste":
        return _copy_paste(spec, clip_len, size, max_stride, samples_per_epoch, seed)
    if spec.get("type") == "synthetic":
        kw = {k: v for k, v in spec.items() if k not in ("type", "weight", "clip")}
        bg = kw.pop("background", None)
        try:
            return SyntheticClips(clip_len=clip_len, size=tuple(size), samples_per_epoch=samples_per_epoch, seed=seed,
                                  backgrounds=build_reader(bg) if bg else None, **kw)
        except TypeError as e:
            raise ConfigError(f"bad options for dataset type 'synthetic': {e}") from e
    reader = build_reader(spec)
    opts = dict(spec.get("clip") or {})
    try:
        if spec.get("type") in IMAGE_TYPES:
            return PseudoVideoClips(reader, **{"clip_len": clip_len, "size": tuple(size),
                                               "samples_per_epoch": samples_per_epoch, "seed": seed, **opts})
        return VideoClips(reader, **{"clip_len": clip_len, "size": tuple(size), "max_stride": max_stride,
                                     "samples_per_epoch": samples_per_epoch, "seed": seed, **opts})
    except TypeError as e:
        raise ConfigError(f"bad clip options {opts}: {e}") from e


def _copy_paste(spec: dict, clip_len, size, max_stride, samples_per_epoch, seed):
    """``{"type": "copy_paste", "base": <clip-dataset spec>, "objects": <image-dataset spec with
    read_mask, e.g. duts>, "num_objects": [1, 3], "size_range": [0.25, 0.6], "speed": 0.06}``."""
    from .copypaste import CopyPasteClips
    kw = {k: v for k, v in spec.items() if k not in ("type", "weight", "clip", "base", "objects")}
    if not isinstance(spec.get("base"), dict) or not isinstance(spec.get("objects"), dict):
        raise ConfigError("copy_paste needs 'base' (a clip-dataset spec) and 'objects' (an image-dataset spec)")
    base = build_clip_dataset(spec["base"], clip_len=clip_len, size=size, max_stride=max_stride,
                              samples_per_epoch=samples_per_epoch, seed=seed)
    objects = build_reader(spec["objects"])
    if not hasattr(objects, "read_mask"):
        raise ConfigError(f"copy_paste objects must be a salient-object dataset (duts), got {spec['objects'].get('type')!r}")
    try:
        return CopyPasteClips(base, objects, seed=seed + 7919, **kw)
    except TypeError as e:
        raise ConfigError(f"bad options for dataset type 'copy_paste': {e}") from e


def build_mixture(specs: Sequence[dict], clip_len: int = 4, size=(224, 384), max_stride: int = 3,
                  samples_per_epoch: int = 10000, seed: int = 0) -> MixedClips:
    """:class:`MixedClips` over ``specs`` (each ``{"type": ..., "weight": w, "clip": {...}, ...}``;
    weight default 1). Dataset k gets seed ``seed + k``."""
    if not specs:
        raise ConfigError("no datasets given")
    ds = [build_clip_dataset(s, clip_len=clip_len, size=size, max_stride=max_stride,
                             samples_per_epoch=samples_per_epoch, seed=seed + k) for k, s in enumerate(specs)]
    return MixedClips(ds, [float(s.get("weight", 1.0)) for s in specs], samples_per_epoch=samples_per_epoch,
                      seed=seed)
