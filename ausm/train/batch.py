"""One training batch, assembled here: teacher-forcing ``Preprocess`` of Algorithm 2 (spec §5) per clip,
padding into :class:`ClipTargets` and the model's teacher-forced inputs (:func:`prepare_batch`).

Each ground-truth instance i of a clip gets one ID vector (``Sampler(B, N_gt)``) and a **switch
frame** s_i (1-based frame index t, or 0 = "given as a prompt"):

* for t ≤ s_i the instance is a **detection** target (where visible);
* its ground-truth mask enters the history from frame s_i on (M^i_t = y^i_t for t ≥ s_i; with
  s_i = 0, M^i_0 = y^i_1 is painted on the start token X_0);
* for t > s_i it is a **tracking** target: its slot is an active track query, with target
  "no-object" on frames where it is absent.

Code uses 0-based frame indices k = t − 1. Row k of ``hist_masks`` is M_{t−1} = M_k, the history
painted on X_{k} (X_0 = start token) before predicting frame k.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.ausm import AGNOSTIC


@dataclass
class TeacherForcing:
    """Teacher-forced inputs and targets for one clip (n instances, T frames).

    Attributes:
        id_index: (n,) long, distinct rows of the ID buffer (Sampler(B, n)).
        switch: (n,) long, s_i in 0..T (0 = prompt).
        track_active: (T, n) bool, slot i is a track query at frame k (s_i ≤ k).
        hist_masks: (T, n, h·w) float in [0, 1], history M_k (area-averaged to the grid).
        det_target: (T, n) bool, instance i is a detection target at frame k (k < s_i, visible).
        visible: (T, n) bool, instance i has a non-empty mask at frame k.
    """

    id_index: torch.Tensor
    switch: torch.Tensor
    track_active: torch.Tensor
    hist_masks: torch.Tensor
    det_target: torch.Tensor
    visible: torch.Tensor


def sample_switch_frames(visible: torch.Tensor, prompt_prob: float, detect_only_prob: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw s_i for each instance (spec §5 [D]).

    With probability ``prompt_prob`` s_i = 0 (a prompt; needs the object visible on frame 1, else
    falls back to the switch-frame draw); otherwise with probability ``detect_only_prob`` s_i = T
    (detection only); otherwise s_i is uniform over the 1-based frames where i is visible.

    Args:
        visible: (n, T) bool.

    Returns:
        (n,) long in 0..T.
    """
    n, T = visible.shape
    s = torch.full((n,), T, dtype=torch.long)
    for i in range(n):
        r = torch.rand((), generator=generator).item()
        if r < prompt_prob and bool(visible[i, 0]):
            s[i] = 0
            continue
        if torch.rand((), generator=generator).item() < detect_only_prob:
            s[i] = T
            continue
        frames = torch.nonzero(visible[i]).flatten()
        if len(frames):
            j = torch.randint(len(frames), (), generator=generator).item()
            s[i] = int(frames[j]) + 1
    return s


def preprocess(masks: torch.Tensor, hw: tuple[int, int], num_ids: int, switch: torch.Tensor | None = None,
               prompt_prob: float = 1.0, detect_only_prob: float = 0.0,
               generator: torch.Generator | None = None) -> TeacherForcing:
    """Build the teacher-forced history and targets of one clip (Algorithm 2, ``Preprocess``).

    Args:
        masks: (n, T, H, W) ground-truth masks, bool or float in [0, 1].
        hw: the stride-8 grid (h, w) of the model input.
        num_ids: size of the ID buffer (n must not exceed it).
        switch: optional fixed (n,) switch frames; drawn by :func:`sample_switch_frames` otherwise.
        prompt_prob, detect_only_prob: see :func:`sample_switch_frames`.

    Returns:
        :class:`TeacherForcing`.

    Raises:
        ValueError: more instances than ID vectors, or bad switch frames.
    """
    n, T = masks.shape[:2]
    if n > num_ids:
        raise ValueError(f"{n} instances exceed the {num_ids} ID vectors")
    visible = masks.flatten(2).amax(-1) > 0  # (n, T)
    if switch is None:
        switch = sample_switch_frames(visible, prompt_prob, detect_only_prob, generator)
    switch = switch.long()
    if switch.shape != (n,) or (switch < 0).any() or (switch > T).any():
        raise ValueError(f"switch frames must be (n,) in 0..T, got {switch.tolist()}")
    id_index = torch.randperm(num_ids, generator=generator)[:n]
    k = torch.arange(T)
    track_active = switch[None, :] <= k[:, None]  # (T, n)
    # M_k = y at 0-based frame k-1 for k >= 1, and the prompt y at frame 0 for k = 0.
    from ..model.ausm import AUSMModel
    grid = AUSMModel.history_masks_from_images(masks.float(), hw)  # (n, T, P)
    src = torch.clamp(k - 1, min=0)
    hist = grid[:, src].transpose(0, 1)  # (T, n, P)
    hist = hist * track_active.unsqueeze(-1).float()
    det_target = (k[:, None] < switch[None, :]) & visible.T
    return TeacherForcing(id_index=id_index, switch=switch, track_active=track_active,
                          hist_masks=hist, det_target=det_target, visible=visible.T.contiguous())


@dataclass
class ClipTargets:
    """Batched targets of B clips (n slots after padding, T frames).

    Attributes:
        masks: (B, n, T, H, W) float ground-truth masks at the model input resolution.
        classes: (B, n) long category index in the sample's head (0 for class-agnostic data).
        slot_valid: (B, n) bool, False for padding slots.
        track_active: (B, T, n) bool (from :class:`TeacherForcing`).
        det_target: (B, T, n) bool.
        visible: (B, T, n) bool.
        det_enabled: (B,) bool, False on non-exhaustive (VOS) data: detection loss skipped.
        heads: list of B class-head names.
    """

    masks: torch.Tensor
    classes: torch.Tensor
    slot_valid: torch.Tensor
    track_active: torch.Tensor
    det_target: torch.Tensor
    visible: torch.Tensor
    det_enabled: torch.Tensor
    heads: list[str]

    def to(self, device) -> "ClipTargets":
        """A copy with every tensor on ``device``."""
        return ClipTargets(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                              for k, v in self.__dict__.items()})


def collate_targets(samples, tfs, head_of=None) -> tuple[ClipTargets, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad per-clip targets to the batch's largest instance count.

    Args:
        samples: list of dicts with ``masks`` (n_b, T, H, W), ``classes`` (n_b,), ``exhaustive`` bool,
            ``head`` str.
        tfs: list of :class:`TeacherForcing`, one per sample.

    Returns:
        (targets, track_ids (B, n), track_active (B, T, n), hist_masks (B, T, n, P)) — the last three
        are the model's teacher-forced inputs.
    """
    B = len(samples)
    n = max(1, max(s["masks"].shape[0] for s in samples))
    T, H, W = samples[0]["masks"].shape[1:] if samples[0]["masks"].shape[0] else (
        tfs[0].track_active.shape[0], *samples[0]["frames"].shape[-2:])
    P = tfs[0].hist_masks.shape[-1]
    masks = torch.zeros(B, n, T, H, W)
    classes = torch.zeros(B, n, dtype=torch.long)
    valid = torch.zeros(B, n, dtype=torch.bool)
    active = torch.zeros(B, T, n, dtype=torch.bool)
    det = torch.zeros(B, T, n, dtype=torch.bool)
    vis = torch.zeros(B, T, n, dtype=torch.bool)
    ids = torch.zeros(B, n, dtype=torch.long)
    hist = torch.zeros(B, T, n, P)
    for b, (s, tf) in enumerate(zip(samples, tfs)):
        m = s["masks"].shape[0]
        if m == 0:
            continue
        masks[b, :m] = s["masks"].float()
        classes[b, :m] = s["classes"]
        valid[b, :m] = True
        active[b, :, :m] = tf.track_active
        det[b, :, :m] = tf.det_target
        vis[b, :, :m] = tf.visible
        ids[b, :m] = tf.id_index
        hist[b, :, :m] = tf.hist_masks
    targets = ClipTargets(masks=masks, classes=classes, slot_valid=valid, track_active=active,
                          det_target=det, visible=vis,
                          det_enabled=torch.tensor([bool(s.get("exhaustive", False)) for s in samples]),
                          heads=[s.get("head", AGNOSTIC) for s in samples])
    return targets, ids, active, hist


def prepare_batch(samples, num_ids: int, prompt_prob: float, detect_only_prob: float, generator=None):
    """Teacher-forcing ``Preprocess`` for a list of clip samples → (frames, ids, active, hist, targets)."""
    frames = torch.stack([s["frames"] for s in samples])
    H, W = frames.shape[-2:]
    hw = (H // 8, W // 8)
    tfs = []
    for s in samples:
        # VOS labels are not exhaustive: every instance is a prompt (spec §5 [D])
        pp = prompt_prob if s.get("exhaustive", False) else 1.0
        tfs.append(preprocess(s["masks"], hw, num_ids, prompt_prob=pp, detect_only_prob=detect_only_prob,
                              generator=generator))
    targets, ids, active, hist = collate_targets(samples, tfs)
    return frames, ids, active, hist, targets
