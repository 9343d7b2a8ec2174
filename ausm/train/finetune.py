"""Test-time fine-tuning on the prompted frame (OSVOS-style one-shot adaptation; not in the AUSM paper).

Semi-supervised VOS gives the object's mask on one frame. :func:`finetune_on_prompt` trains a copy of
the model for a few steps on pseudo-videos made from that single annotated frame (the Stage-1 recipe of
spec §6: independently augmented copies of one image, :class:`~ausm.data.coco.PseudoVideoClips`), with
the training loss of :mod:`ausm.train.losses` and every object as a prompt (teacher forcing, spec §5),
and returns the adapted copy; the original model is untouched. A :class:`FinetuneConfig` is the adaptation
function a :class:`~ausm.inference.session.Session` takes (``Session(model, adapt=FinetuneConfig(40))``);
the session then runs the adapted model exactly as it runs any other (it never imports training code).

Why [D]: the paper trains on large video corpora from ImageNet-pretrained backbones. ``ausm-tiny`` is
trained from scratch on 30 videos (docs/MODEL_CARD.md), so its appearance features are weak; a one-shot
adaptation to the given object (Caelles et al., OSVOS, CVPR 2017) is the standard remedy for such models.
It costs ``steps`` training iterations per video (seconds to a minute on a CPU) and memory for one copy
of the weights; streaming memory stays constant.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of :func:`finetune_on_prompt`.

    Attributes:
        steps: optimiser steps (0 disables fine-tuning).
        lr: AdamW learning rate (constant; no weight decay).
        batch: pseudo-video clips per step.
        clip_len: frames per pseudo-video (T ≥ 2 so that the prompt is tracked into later frames).
        scale: zoom range of the augmentation (relative to the size that covers the model input).
        rotation: maximum rotation in degrees.
        seed: seed of the augmentation and of the teacher-forcing draws.
        train_backbone: also adapt the backbone (BatchNorm statistics stay frozen either way).
    """

    steps: int = 40
    lr: float = 1e-4
    batch: int = 1
    clip_len: int = 2
    scale: tuple[float, float] = (0.8, 1.25)
    rotation: float = 10.0
    seed: int = 0
    train_backbone: bool = True

    def __post_init__(self):
        if self.steps < 0 or self.batch < 1 or self.clip_len < 1 or not self.lr > 0:
            raise InputError(f"fine-tuning needs steps >= 0, batch >= 1, clip_len >= 1 and lr > 0, got {self}")

    def __call__(self, model, image: np.ndarray, masks: dict[int, np.ndarray]):
        """The adaptation function a :class:`~ausm.inference.session.Session` takes (``adapt=``):
        :func:`finetune_on_prompt` with these settings."""
        return finetune_on_prompt(model, image, masks, self)


def as_finetune_config(value) -> "FinetuneConfig | None":
    """``None`` / 0 → None (off); an int → :class:`FinetuneConfig` with that many steps; a
    :class:`FinetuneConfig` → itself.

    Raises:
        InputError: a negative step count or another type.
    """
    if value is None or isinstance(value, FinetuneConfig):
        return None if value is None or value.steps == 0 else value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"fine-tuning takes a step count or a FinetuneConfig, got {value!r}")
    return None if value == 0 else FinetuneConfig(steps=value)


class _PromptFrame:
    """What :meth:`~ausm.data.coco.PseudoVideoClips.make_clip` reads of its image source: one
    class-agnostic, non-exhaustive image (every object becomes a prompt)."""

    head, name, exhaustive = "agnostic", "prompt", False

    def __len__(self):
        return 1


def finetune_on_prompt(model, image: np.ndarray, masks: dict[int, np.ndarray], cfg: FinetuneConfig | None = None,
                       progress: bool = False):
    """Return a copy of ``model`` adapted to the objects prompted on one frame.

    Args:
        model: an :class:`~ausm.model.AUSMModel` (any device / dtype; training runs in float32 on its device).
        image: (H, W, 3) uint8 RGB frame that carries the prompts.
        masks: {object id: (H, W) bool mask}; at least one non-empty mask.
        cfg: :class:`FinetuneConfig` (defaults if None).
        progress: show a tqdm bar.

    Returns:
        A new model in eval mode with the adapted weights (``model`` itself is not modified). With
        ``cfg.steps == 0`` the copy equals ``model``.

    Raises:
        InputError: no non-empty mask, or a mask whose size differs from the image.
    """
    from tqdm import tqdm

    from ..data.coco import PseudoVideoClips
    from .losses import SetCriterion
    from .batch import prepare_batch
    from .trainer import TrainStep

    cfg = cfg or FinetuneConfig()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"fine-tuning needs an (H, W, 3) RGB frame, got shape {image.shape}")
    H, W = image.shape[:2]
    stack = []
    for oid, m in sorted(masks.items()):
        m = np.asarray(m, bool)
        if m.shape != (H, W):
            raise InputError(f"prompt mask of object {oid} is {m.shape[1]}x{m.shape[0]}, the frame is {W}x{H}")
        if m.any():
            stack.append(m)
    if not stack:
        raise InputError("fine-tuning needs at least one non-empty prompt mask")
    if any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules()):
        raise InputError("cannot fine-tune a torch.compile'd model (its compiled calls point at the original "
                         "weights); fine-tune first, then compile the result")
    tuned = copy.deepcopy(model)
    if cfg.steps == 0:
        return tuned.eval()
    param = next(tuned.parameters())
    device, dtype = param.device, param.dtype
    tuned.float().train()
    for mod in tuned.modules():  # one image cannot estimate batch statistics
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.eval()
    frozen = set() if cfg.train_backbone else {id(p) for p in tuned.backbone.parameters()}
    params = [p for p in tuned.parameters() if p.requires_grad and id(p) not in frozen]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    clips = PseudoVideoClips(_PromptFrame(), clip_len=cfg.clip_len, size=tuned.input_size(H, W),
                             scale=cfg.scale, rotation=cfg.rotation)
    stack, classes = np.stack(stack), np.zeros(len(stack), np.int64)
    step_fn = TrainStep(tuned, SetCriterion(), "parallel")
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    for _ in tqdm(range(cfg.steps), desc="fine-tune", disable=not progress):
        samples = []
        for _ in range(cfg.batch * 10):  # a zoom can crop a small object away: draw again
            sample = clips.make_clip(image, stack, classes, rng)
            if sample["masks"].shape[0] and bool(sample["masks"][:, 0].any()):
                samples.append(sample)
                if len(samples) == cfg.batch:
                    break
        if not samples:
            continue  # the objects are too small to survive any augmentation: nothing to learn here
        frames, ids, active, hist, targets = prepare_batch(samples, tuned.cfg.num_ids, 1.0, 0.0, gen)
        losses = step_fn(frames.to(device), ids.to(device), active.to(device), hist.to(device),
                         targets.to(device), gen)
        if not losses["loss"].requires_grad:
            continue
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
    return tuned.to(dtype).eval()
