"""Procedurally generated multi-object videos with categories (issue #5, spec §6 [D]).

Textured shapes of six categories move across a background, rotate, change size, occlude each other
(a fixed depth order per video), enter and leave the frame. The generator knows the exact ground
truth, so it serves three purposes:

* training data for the unprompted, class-aware path (:class:`SyntheticClips`, class head
  ``"shapes"``, every object labelled: ``exhaustive``);
* the embedded demo of ``ausm segment --demo`` (:func:`render_video`, no data files needed);
* tests that need a multi-object video with objects entering mid-video.

Everything is a pure function of the seed: ``render_video(..., seed=s)`` gives the same pixels on
every machine (numpy ``default_rng``).

Backgrounds are smooth random colour fields, or crops of real images when a ``backgrounds`` reader
(anything with ``read_image(i)`` and ``len()``, e.g. :class:`~ausm.data.clips.DavisFrames`) is given.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["SHAPE_CLASSES", "SHAPES_HEAD", "SyntheticVideo", "render_video", "SyntheticClips"]

#: Category names of the ``"shapes"`` class head, in class-index order.
SHAPE_CLASSES = ("disc", "square", "triangle", "star", "ring", "cross")
#: Name of the class head the synthetic data trains.
SHAPES_HEAD = "shapes"


@dataclass
class SyntheticVideo:
    """One rendered video.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        ids: (T, H, W) uint8 index masks: 0 background, k = object id ``object_ids[k-1]`` (1..n).
        object_ids: the object ids, 1..n (some may be invisible on some or all frames).
        classes: (n,) int64 index into :data:`SHAPE_CLASSES` per object.
        first_frame: (n,) int64 first frame on which each object is visible (-1 = never visible).
    """

    frames: np.ndarray
    ids: np.ndarray
    object_ids: list
    classes: np.ndarray
    first_frame: np.ndarray


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of category ``cls`` in object coordinates (unit radius)."""
    rho = np.sqrt(u * u + v * v)
    if cls == 0:  # disc
        return rho <= 1.0
    if cls == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if cls == 2:  # equilateral triangle
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = math.pi / 2 + 2 * math.pi * k / 3
            inside &= (u * math.cos(a) + v * math.sin(a)) <= 0.5
        return inside
    if cls == 3:  # five-pointed star (polar outline)
        th = np.arctan2(v, u)
        return rho <= 0.55 + 0.45 * np.abs(np.cos(2.5 * th)) ** 1.5
    if cls == 4:  # ring
        return (rho <= 1.0) & (rho >= 0.55)
    if cls == 5:  # cross
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    raise ValueError(cls)


def _smooth_field(rng: np.random.Generator, H: int, W: int, cells: int) -> np.ndarray:
    """(H, W, 3) float smooth random colour field in [0, 1] (bilinear upsampling of a coarse grid)."""
    g = torch.from_numpy(rng.random((1, 3, cells, max(2, int(cells * W / H))), dtype=np.float32))
    return F.interpolate(g, size=(H, W), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _background(rng: np.random.Generator, H: int, W: int, backgrounds=None) -> np.ndarray:
    if backgrounds is not None and len(backgrounds) > 0:
        img = backgrounds.read_image(int(rng.integers(len(backgrounds))))
        h, w = img.shape[:2]
        s = max(H / h, W / w) * rng.uniform(1.0, 1.4)
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        t = F.interpolate(t, size=(max(H, round(h * s)), max(W, round(w * s))), mode="bilinear",
                          align_corners=False, antialias=True)[0]
        y0 = int(rng.integers(t.shape[1] - H + 1))
        x0 = int(rng.integers(t.shape[2] - W + 1))
        return t[:, y0:y0 + H, x0:x0 + W].permute(1, 2, 0).numpy()
    base = _smooth_field(rng, H, W, int(rng.integers(2, 6)))
    detail = _smooth_field(rng, H, W, int(rng.integers(8, 24)))
    return np.clip(0.7 * base + 0.3 * detail, 0, 1)


def _smooth_curve(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    """(n,) smooth random curve in [0, 1]: ``knots`` random values, linearly interpolated, then box-blurred."""
    c = np.interp(np.linspace(0, knots - 1, n), np.arange(knots), rng.random(knots))
    k = max(1, n // (2 * knots))
    return np.convolve(np.pad(c, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")


def _outdoor_scene(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: a procedural outdoor scene — sky gradient with soft clouds, distant
    hills, textured ground that fades into haze at the horizon (the demo's backdrop)."""
    y = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.38, 0.52)
    top = np.array([0.30, 0.52, 0.85]) + rng.normal(0, 0.03, 3)
    haze = np.array([0.80, 0.87, 0.94]) + rng.normal(0, 0.02, 3)
    t = np.clip(y / horizon, 0, 1)
    img = np.broadcast_to(top * (1 - t) + haze * t, (H, W, 3)).astype(np.float32).copy()
    cloud = 0.65 * _smooth_field(rng, H, W, int(rng.integers(3, 6)))[..., :1] + \
        0.35 * _smooth_field(rng, H, W, int(rng.integers(10, 18)))[..., :1]
    cloud = np.clip((cloud - 0.55) * 3.5, 0, 1) * (y < horizon)
    img = img * (1 - 0.85 * cloud) + 0.97 * 0.85 * cloud
    xs = np.arange(W)
    ridge = horizon - (0.04 + 0.10 * _smooth_curve(rng, W, int(rng.integers(3, 7))))  # far hills
    hills_col = np.array([0.42, 0.52, 0.55]) + rng.normal(0, 0.03, 3)
    hill = (y[..., 0] >= ridge[None, xs]).astype(np.float32)[..., None]
    img = img * (1 - hill) + hills_col * hill
    ground_col = [np.array([0.33, 0.47, 0.22]), np.array([0.74, 0.66, 0.48]),
                  np.array([0.48, 0.39, 0.29])][int(rng.integers(3))] + rng.normal(0, 0.03, 3)
    grain = 0.8 + 0.25 * _smooth_field(rng, H, W, int(rng.integers(20, 40)))[..., :1] + \
        0.1 * _smooth_field(rng, H, W, int(rng.integers(4, 8)))[..., :1]
    depth = np.clip((y - horizon) / (1 - horizon), 0, 1)  # 0 at the horizon, 1 at the bottom
    ground = ground_col * grain * (0.8 + 0.35 * depth)
    ground = ground * (1 - 0.5 * (1 - depth) ** 6) + haze * 0.5 * (1 - depth) ** 6
    g = (y >= horizon).astype(np.float32)
    return np.clip(img * (1 - g) + ground * g, 0, 1)


def _sample_objects(rng: np.random.Generator, n: int, H: int, W: int, num_frames: int, enter_leave: bool,
                    speed: float) -> list[dict]:
    """Draw the n objects of a video (category, size, path, spawn frame, texture, depth)."""
    short = min(H, W)
    objs = []
    for k in range(n):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        r = rng.uniform(0.06, 0.22) * short
        v = rng.normal(0, 0.012 * W * speed, size=2)
        spawn = 0
        if enter_leave and rng.random() < 0.35:  # enters from a side
            side = int(rng.integers(4))
            cx = [-r, W + r, rng.uniform(0, W), rng.uniform(0, W)][side]
            cy = [rng.uniform(0, H), rng.uniform(0, H), -r, H + r][side]
            tgt = np.array([rng.uniform(0.25, 0.75) * W, rng.uniform(0.25, 0.75) * H])
            d = tgt - np.array([cx, cy])
            v = d / max(1.0, num_frames * rng.uniform(0.3, 0.8))
        else:
            cx, cy = rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.9) * H
            if enter_leave and num_frames > 2 and rng.random() < 0.2:  # pops up mid-video
                spawn = int(rng.integers(1, num_frames))
        c1, c2 = rng.random(3), rng.random(3)
        if np.abs(c1 - c2).sum() < 0.6:
            c2 = 1.0 - c1
        objs.append(dict(cls=cls, r=r, c=np.array([cx, cy]), v=v, ang=rng.uniform(0, 2 * math.pi),
                         w=rng.normal(0, 0.08 * speed), grow=rng.uniform(-0.01, 0.01), spawn=spawn,
                         c1=c1, c2=c2, freq=rng.uniform(2.0, 7.0), pat_ang=rng.uniform(0, math.pi),
                         blob=rng.random() < 0.4, z=rng.random()))
    return objs


def _paint_object(img: np.ndarray, idm: np.ndarray, o: dict, label: int, t: int, xs: np.ndarray, ys: np.ndarray,
                  shadow: bool) -> None:
    """Paint object ``o`` at frame ``t`` into ``img`` (H, W, 3) float and its ``label`` into ``idm``
    (H, W), in place; with ``shadow``, first darken a copy of its shape down-right of it."""
    H, W = idm.shape
    if t < o["spawn"]:
        return
    cx, cy = o["c"] + o["v"] * t
    r = o["r"] * (1.0 + o["grow"]) ** t
    a = o["ang"] + o["w"] * t
    x0, x1 = int(max(0, cx - r - 1)), int(min(W, cx + r + 2))
    y0, y1 = int(max(0, cy - r - 1)), int(min(H, cy + r + 2))
    if x0 >= x1 or y0 >= y1:
        return
    dx, dy = (xs[y0:y1, x0:x1] - cx) / r, (ys[y0:y1, x0:x1] - cy) / r
    u = dx * math.cos(a) + dy * math.sin(a)
    vv = -dx * math.sin(a) + dy * math.cos(a)
    m = _shape_mask(o["cls"], u, vv)
    if not m.any():
        return
    if shadow:  # a soft shadow down-right of the object (not part of its mask)
        ys0, xs0 = np.nonzero(m)
        yy, xx = ys0 + y0 + int(round(0.22 * r)), xs0 + x0 + int(round(0.12 * r))
        ok = (yy < H) & (xx < W)
        img[yy[ok], xx[ok]] *= 0.65
    p = u * math.cos(o["pat_ang"]) + vv * math.sin(o["pat_ang"])
    pat = 0.5 + 0.5 * np.sin(o["freq"] * p * math.pi)
    if o["blob"]:
        pat = pat * (0.5 + 0.5 * np.cos(o["freq"] * vv * 2.0))
    shade = 1.0 - 0.25 * np.clip(u * 0.5 + vv * 0.5, -1, 1)  # a light from the top left
    col = (o["c1"][None, None] * (1 - pat[..., None]) + o["c2"][None, None] * pat[..., None]) * shade[..., None]
    img[y0:y1, x0:x1][m] = col[m]
    idm[y0:y1, x0:x1][m] = label


def render_video(num_frames: int = 24, size: tuple[int, int] = (240, 432), num_objects: int | tuple[int, int] = (2, 5),
                 seed: int = 0, enter_leave: bool = True, backgrounds=None, speed: float = 1.0,
                 scene: str = "noise") -> SyntheticVideo:
    """Render one synthetic multi-object video.

    Each object has a category (:data:`SHAPE_CLASSES`), a texture (two colours and a stripe or blob
    pattern that moves and rotates with the object), a radius of 6–22 % of the shorter side, a constant
    velocity (normal, σ = ``speed`` × 1.2 % of the width per frame), a rotation speed, a size drift and a fixed
    depth. With ``enter_leave``, about a third of the objects start outside the frame and move in, some
    appear only after the first frame, and fast ones leave.

    Args:
        num_frames: T ≥ 1.
        size: (H, W) in pixels, each ≥ 16.
        num_objects: a count, or an inclusive (min, max) range drawn from.
        seed: the generator seed (the output is a pure function of the arguments).
        enter_leave: let objects enter / leave the frame and appear after frame 0.
        backgrounds: optional image source (``len()`` and ``read_image(i) -> (h, w, 3) uint8``).
        speed: motion scale.
        scene: background without ``backgrounds``: ``"noise"`` (smooth random colour fields, panned with
            wrap-around; the training default) or ``"outdoor"`` (a procedural sky / hills / ground scene,
            panned by a moving crop, objects cast soft shadows; the demo's).

    Returns:
        :class:`SyntheticVideo`.

    Raises:
        InputError: non-positive frame count, too small a size or a bad object count.
    """
    H, W = int(size[0]), int(size[1])
    if num_frames < 1 or H < 16 or W < 16:
        raise InputError(f"render_video needs num_frames >= 1 and size >= 16x16, got {num_frames}, {size}")
    rng = np.random.default_rng(seed)
    if isinstance(num_objects, int):
        n = num_objects
    else:
        lo, hi = int(num_objects[0]), int(num_objects[1])
        if lo > hi:
            raise InputError(f"num_objects range {num_objects} is empty")
        n = int(rng.integers(lo, hi + 1))
    if n < 0 or n > 254:
        raise InputError(f"num_objects must be in 0..254, got {n}")
    if scene not in ("noise", "outdoor"):
        raise InputError(f"scene must be 'noise' or 'outdoor', got {scene!r}")
    outdoor = scene == "outdoor" and backgrounds is None
    margin = int(math.ceil(1.5 * speed * num_frames)) + 1 if outdoor else 0
    bg = _background(rng, H, W, backgrounds)  # drawn in every mode: the objects of a seed do not depend on the scene
    if outdoor:
        bg = _outdoor_scene(np.random.default_rng([seed, 1]), H + 2 * margin, W + 2 * margin)
    # global brightness flicker and a slow camera pan of the background
    pan = rng.uniform(-1.5, 1.5, size=2) * speed
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    objs = _sample_objects(rng, n, H, W, num_frames, enter_leave, speed)
    order = sorted(range(n), key=lambda j: objs[j]["z"])  # back to front
    frames = np.empty((num_frames, H, W, 3), dtype=np.uint8)
    ids = np.zeros((num_frames, H, W), dtype=np.uint8)
    gain = 1.0 + rng.normal(0, 0.04, size=num_frames)
    for t in range(num_frames):
        sh = (pan * t).round().astype(int)
        if outdoor:  # a moving crop of the larger scene: no wrap-around seam
            oy, ox = margin - int(sh[1]), margin - int(sh[0])
            img = bg[oy:oy + H, ox:ox + W].copy()
        else:
            img = np.roll(bg, shift=(int(sh[1]), int(sh[0])), axis=(0, 1)).copy()
        idm = np.zeros((H, W), dtype=np.uint8)
        for j in order:
            _paint_object(img, idm, objs[j], j + 1, t, xs, ys, shadow=outdoor)
        frames[t] = np.clip(img * gain[t] * 255.0, 0, 255).round().astype(np.uint8)
        ids[t] = idm
    first = np.full(n, -1, dtype=np.int64)
    for j in range(n):
        vis = np.nonzero((ids == j + 1).reshape(num_frames, -1).any(1))[0]
        if len(vis):
            first[j] = int(vis[0])
    return SyntheticVideo(frames=frames, ids=ids, object_ids=list(range(1, n + 1)),
                          classes=np.array([o["cls"] for o in objs], dtype=np.int64), first_frame=first)


class SyntheticClips(torch.utils.data.Dataset):
    """Training clips of :func:`render_video` videos (class head :data:`SHAPES_HEAD`, exhaustive).

    Sample ``i`` renders the video of seed ``seed * 1_000_003 + i``; the output is the clip sample dict
    of :mod:`ausm.data.clips` (objects never visible in the clip are dropped).

    Args:
        clip_len: T.
        size: (H, W) of the frames.
        num_objects: (min, max) objects per clip.
        samples_per_epoch: virtual length.
        seed: base seed.
        backgrounds: optional real-image source for backgrounds (see :func:`render_video`).
        background_prob: probability of a real background when ``backgrounds`` is given.
        max_objects: keep at most this many visible objects (a random subset).
        outdoor_prob: probability of the procedural ``"outdoor"`` scene (the demo's) when no real
            background is drawn; else the ``"noise"`` scene.
    """

    name = "synthetic"
    head = SHAPES_HEAD
    exhaustive = True

    def __init__(self, clip_len: int = 4, size: tuple[int, int] = (224, 384), num_objects: tuple[int, int] = (1, 5),
                 samples_per_epoch: int = 10000, seed: int = 0, backgrounds=None, background_prob: float = 0.7,
                 max_objects: int | None = None, speed: float = 1.0, outdoor_prob: float = 0.0):
        if clip_len < 1:
            raise InputError(f"clip_len must be >= 1, got {clip_len}")
        self.clip_len, self.size, self.num_objects = clip_len, tuple(size), tuple(num_objects)
        self.samples_per_epoch, self.seed, self.backgrounds = samples_per_epoch, seed, backgrounds
        self.background_prob, self.max_objects, self.speed = background_prob, max_objects, speed
        self.outdoor_prob = float(outdoor_prob)

    def __len__(self):
        return self.samples_per_epoch

    def __getitem__(self, i: int) -> dict:
        s = self.seed * 1_000_003 + int(i)
        rng = random.Random(s)
        bgs = self.backgrounds if (self.backgrounds is not None and rng.random() < self.background_prob) else None
        speed = self.speed * rng.uniform(0.5, 1.5)
        scene = "outdoor" if (bgs is None and self.outdoor_prob and rng.random() < self.outdoor_prob) else "noise"
        vid = render_video(self.clip_len, self.size, self.num_objects, seed=s, backgrounds=bgs, speed=speed,
                           scene=scene)
        T = self.clip_len
        keep = [j for j in range(len(vid.object_ids)) if vid.first_frame[j] >= 0]
        if self.max_objects is not None and len(keep) > self.max_objects:
            keep = sorted(rng.sample(keep, self.max_objects))
        ids = torch.from_numpy(vid.ids)
        masks = torch.stack([(ids == j + 1) for j in keep]).float() if keep else torch.zeros(0, T, *self.size)
        return {"frames": torch.from_numpy(vid.frames).permute(0, 3, 1, 2).float().div(255.0).contiguous(),
                "masks": masks, "classes": torch.as_tensor(vid.classes[keep], dtype=torch.long),
                "head": self.head, "exhaustive": True, "dataset": self.name, "sequence": f"synthetic-{s}",
                "frame_indices": list(range(T)), "annotated": torch.ones(T, dtype=torch.bool)}
