"""Multi-object training clips by copy-paste: salient objects cut from still images (DUTS-TR) are
pasted, each with its own smooth motion, onto the frames of another clip (a DAVIS video or a DUTS
pseudo-video) [D].

Why: DAVIS-2016 and DUTS label one object per clip, so a model trained on them learns "the marked
pixels are the object" and predicts the *union* of several prompted objects for every track (measured
on ``ausm-lite`` stage 2: 2-object generated clips, own IoU 0.40 vs union 0.65). Telling objects
apart needs clips where several marked objects move differently — the multi-object static-image
stage of STM / XMem / Cutie builds them the same way (objects of several images merged into one).

Identical copies of one object (``duplicate_prob``) leave the history as the only cue of which is
which: without them a model can bind an ID vector to "the most salient object" and still score well.

Pasted objects are in front of the base clip: the base masks lose the pixels a pasted object covers,
a later pasted object occludes earlier ones. Classes of pasted objects are 0 (class-agnostic head);
the base clip must use the agnostic head.
"""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError
from ..model.ausm import AGNOSTIC

__all__ = ["CopyPasteClips"]


class CopyPasteClips(torch.utils.data.Dataset):
    """Clips of ``base`` with ``num_objects`` salient objects from ``objects`` pasted on top.

    Each pasted object is the bounding-box cut-out of one image's salient mask, scaled so its longer
    side is ``size_range`` × the clip's shorter side, moving on a straight line (per-frame
    displacement up to ``speed`` × the shorter side) with a slow zoom (±5 % per frame) and an
    optional horizontal flip; its alpha is the mask blurred by a 3×3 box (soft edges), its label the
    alpha ≥ 0.5.

    Args:
        base: a clip dataset (sample dicts of :mod:`ausm.data.clips`: frames (T, 3, H, W) float in
            [0, 1], masks (n, T, H, W) float {0, 1}), agnostic head.
        objects: an image dataset with ``read_image(i)`` → (H, W, 3) uint8 and ``read_mask(i)`` →
            (H, W) bool (e.g. :class:`~ausm.data.salient.SalientImages`).
        num_objects: (min, max) pasted objects per clip, inclusive.
        size_range: (min, max) longer side of a pasted object relative to the clip's shorter side.
        speed: maximum displacement per frame relative to the shorter side.
        duplicate_prob: probability that a pasted object (after the first) is another copy of the
            previous one (same cut-out, own size and motion): two identical objects can only be told
            apart by their history.
        seed: sample ``i`` uses ``random.Random(seed * 1_000_003 + i)`` for the pasting.

    Raises:
        ConfigError: bad ranges, or an empty object dataset.
    """

    def __init__(self, base, objects, num_objects: tuple[int, int] = (1, 3),
                 size_range: tuple[float, float] = (0.25, 0.6), speed: float = 0.06, duplicate_prob: float = 0.0,
                 seed: int = 0):
        lo, hi = (int(v) for v in num_objects)
        if not 0 <= lo <= hi:
            raise ConfigError(f"num_objects must be (min, max) with 0 <= min <= max, got {num_objects}")
        a, b = (float(v) for v in size_range)
        if not 0 < a <= b:
            raise ConfigError(f"size_range must be (min, max) with 0 < min <= max, got {size_range}")
        if len(objects) == 0:
            raise ConfigError("copy_paste: the object dataset is empty")
        self.base, self.objects = base, objects
        if not 0.0 <= float(duplicate_prob) <= 1.0:
            raise ConfigError(f"duplicate_prob must be in [0, 1], got {duplicate_prob}")
        self.num_objects, self.size_range, self.speed, self.seed = (lo, hi), (a, b), float(speed), seed
        self.duplicate_prob = float(duplicate_prob)
        self.name = "copy_paste"

    def __len__(self):
        return len(self.base)

    def _cutout(self, rng: random.Random):
        """(3, h, w) float image and (1, h, w) float mask of one object's bounding box."""
        for _ in range(5):
            k = rng.randrange(len(self.objects))
            m = self.objects.read_mask(k)
            if m.sum() >= 0.01 * m.size:
                break
        else:
            raise InputError("copy_paste: no object with a mask of at least 1 % of its image found")
        img = self.objects.read_image(k)
        if img.shape[:2] != m.shape:
            raise InputError(f"copy_paste: image {k} is {img.shape[:2]} but its mask {m.shape}")
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        im = torch.from_numpy(np.require(img[y0:y1, x0:x1], requirements=["C", "W"])).permute(2, 0, 1).float() / 255.0
        mk = torch.from_numpy(np.require(m[y0:y1, x0:x1], requirements=["C", "W"]))[None].float()
        return im, mk

    def _paste_one(self, frames: torch.Tensor, rng: random.Random, cutout=None):
        """Paste one moving object into ``frames`` (T, 3, H, W) in place (``cutout``: reuse this
        (image, mask) pair instead of drawing one). Returns its (T, H, W) label and the cutout."""
        T, _, H, W = frames.shape
        if cutout is None:
            im, mk = self._cutout(rng)
            if rng.random() < 0.5:
                im, mk = im.flip(-1), mk.flip(-1)
            im = (im * rng.uniform(0.8, 1.2)).clamp(0, 1)  # brightness jitter
            cutout = (im, mk)
        im, mk = cutout
        short = min(H, W)
        long0 = rng.uniform(*self.size_range) * short
        s0 = long0 / max(im.shape[-2:])
        zoom = rng.uniform(-0.05, 0.05)
        cy, cx = rng.uniform(0.15, 0.85) * H, rng.uniform(0.15, 0.85) * W
        ang = rng.uniform(0, 2 * np.pi)
        v = rng.uniform(0, self.speed) * short
        vy, vx = v * np.sin(ang), v * np.cos(ang)
        label = torch.zeros(T, H, W)
        for t in range(T):
            s = s0 * (1 + zoom) ** t
            h, w = max(2, round(im.shape[1] * s)), max(2, round(im.shape[2] * s))
            pim = F.interpolate(im[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
            pa = F.interpolate(mk[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            pa = F.avg_pool2d(pa, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
            top, left = round(cy + vy * t - h / 2), round(cx + vx * t - w / 2)
            fy0, fx0, fy1, fx1 = max(0, top), max(0, left), min(H, top + h), min(W, left + w)
            if fy0 >= fy1 or fx0 >= fx1:
                continue  # moved out of the frame
            py0, px0 = fy0 - top, fx0 - left
            a = pa[py0:py0 + fy1 - fy0, px0:px0 + fx1 - fx0]
            region = frames[t, :, fy0:fy1, fx0:fx1]
            frames[t, :, fy0:fy1, fx0:fx1] = region * (1 - a) + pim[:, py0:py0 + fy1 - fy0, px0:px0 + fx1 - fx0] * a
            label[t, fy0:fy1, fx0:fx1] = (a >= 0.5).float()
        return label, cutout

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.base[i])
        if sample.get("head", AGNOSTIC) != AGNOSTIC:
            raise ConfigError(f"copy_paste needs a base clip with the {AGNOSTIC!r} head, got {sample['head']!r}")
        rng = random.Random(self.seed * 1_000_003 + int(i))
        frames = sample["frames"].clone()
        masks = list(sample["masks"].unbind(0))
        cutout = None
        pairs = list(zip(sample["masks"].unbind(0), sample["classes"].tolist()))  # (mask, class), base first
        for _ in range(rng.randint(*self.num_objects)):
            same = cutout is not None and rng.random() < self.duplicate_prob
            lab, cutout = self._paste_one(frames, rng, cutout if same else None)
            pairs = [(m * (1 - lab), c) for m, c in pairs] + [(lab, 0)]
        pairs = [(m, c) for m, c in pairs if bool(m.any())]
        T, H, W = frames.shape[0], frames.shape[-2], frames.shape[-1]
        out = torch.stack([m for m, _ in pairs]) if pairs else torch.zeros(0, T, H, W)
        classes = torch.tensor([c for _, c in pairs], dtype=torch.long)
        sample.update(frames=frames.contiguous(), masks=out, classes=classes, dataset=self.name)
        return sample
