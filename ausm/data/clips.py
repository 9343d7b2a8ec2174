"""Clip sampling for training: T frames in order with a random stride, clip-consistent random
resize / crop / flip (spec §6 [D]).

A clip sample is a dict:
    ``frames``  (T, 3, H, W) float32 RGB in [0, 1]
    ``masks``   (n, T, H, W) float32 in {0, 1}, one row per instance visible somewhere in the clip
    ``classes`` (n,) long category index (0 for class-agnostic data)
    ``head``    class-head name (``"agnostic"`` for data without classes)
    ``exhaustive`` bool, every object of interest is labelled (detection loss allowed)
    ``dataset``, ``sequence``, ``frame_indices``
"""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ..model.ausm import AGNOSTIC
from .davis import VOID, DavisDataset


class DavisClips(torch.utils.data.Dataset):
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
        self.davis, self.clip_len, self.max_stride = davis, clip_len, max_stride
        self.size, self.scale, self.flip = size, scale, flip
        self.exhaustive, self.samples_per_epoch, self.seed = exhaustive, samples_per_epoch, seed
        self._frames = {s: davis.frame_paths(s) for s in davis.sequences}
        self._masks = {s: davis.mask_paths(s) for s in davis.sequences}

    def __len__(self):
        return self.samples_per_epoch

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + i)
        seq = rng.choice(self.davis.sequences)
        n_frames = min(len(self._frames[seq]), len(self._masks[seq]))
        T = self.clip_len
        stride = rng.randint(1, max(1, min(self.max_stride, (n_frames - 1) // max(T - 1, 1))))
        span = (T - 1) * stride
        start = rng.randint(0, max(0, n_frames - 1 - span))
        idx = [min(start + j * stride, n_frames - 1) for j in range(T)]
        if rng.random() < 0.5:  # play the clip backwards half of the time
            idx = idx[::-1]
        frames = np.stack([self.davis.read_frame(self._frames[seq][j]) for j in idx])
        ids = np.stack([self.davis.read_mask(self._masks[seq][j]) for j in idx])
        return self._augment(frames, ids, rng, seq, idx)

    def _augment(self, frames, ids, rng, seq, idx):
        T, H0, W0 = ids.shape
        Ht, Wt = self.size
        s = max(Ht / H0, Wt / W0) * rng.uniform(*self.scale)
        H1, W1 = max(Ht, round(H0 * s)), max(Wt, round(W0 * s))
        fr = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        fr = F.interpolate(fr, size=(H1, W1), mode="bilinear", align_corners=False, antialias=True)
        idm = F.interpolate(torch.from_numpy(ids).float().unsqueeze(1), size=(H1, W1), mode="nearest")[:, 0].long()
        y0, x0 = rng.randint(0, H1 - Ht), rng.randint(0, W1 - Wt)
        fr = fr[:, :, y0:y0 + Ht, x0:x0 + Wt]
        idm = idm[:, y0:y0 + Ht, x0:x0 + Wt]
        if rng.random() < self.flip:
            fr, idm = fr.flip(-1), idm.flip(-1)
        obj = [int(v) for v in torch.unique(idm).tolist() if v not in (0, VOID)]
        masks = torch.stack([(idm == o).float() for o in obj]) if obj else torch.zeros(0, T, Ht, Wt)
        return {"frames": fr.clamp(0, 1).contiguous(), "masks": masks, "classes": torch.zeros(len(obj), dtype=torch.long),
                "head": AGNOSTIC, "exhaustive": self.exhaustive, "dataset": f"davis{self.davis.year}",
                "sequence": seq, "frame_indices": idx}


def collate_clips(batch: list[dict]) -> list[dict]:
    """Keep samples as a list (instance counts differ); frames are stacked by the trainer."""
    return batch
