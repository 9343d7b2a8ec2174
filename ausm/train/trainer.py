"""Training loop: teacher-forced parallel training (Algorithm 2) and the frame-by-frame baseline.

Run: ``ausm train --davis-root ROOT --out runs/tiny [--steps N] [--resume]`` (see ``ausm train -h``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import save_model
from ..config import AUSMConfig, get_config
from ..errors import CheckpointError
from ..model import AUSMModel, Prediction
from .losses import LossConfig, SetCriterion, collate_targets
from .preprocess import preprocess

log = logging.getLogger("ausm.train")


@dataclass
class TrainConfig:
    """Training hyper-parameters (spec §6; [D] where the paper is silent).

    ``batch_size`` clips per step on this process; the global batch is
    ``batch_size × grad_accum × world_size``.
    """

    preset: str = "ausm-tiny"
    model_overrides: dict = field(default_factory=dict)
    davis_root: str = ""
    davis_split: str = "train"
    davis_resolution: str = "240p"
    davis_year: int = 2016
    exhaustive: bool = True  # DAVIS-2016 labels the one primary object: detection loss on [D]
    prompt_prob: float = 0.7
    detect_only_prob: float = 0.1
    clip_len: int = 4
    max_stride: int = 3
    size: tuple[int, int] = (224, 384)
    batch_size: int = 2
    grad_accum: int = 1
    steps: int = 2000
    lr: float = 2e-4
    backbone_lr_mult: float = 1.0
    weight_decay: float = 0.05
    lr_drop_at: float = 0.85
    warmup: int = 50
    clip_grad: float = 1.0
    num_points: int = 2048
    seed: int = 0
    out: str = "runs/ausm-tiny"
    ckpt_every: int = 100
    log_every: int = 10
    threads: int = 0
    mode: str = "parallel"  # or "iterative" (frame-by-frame baseline)


def run_model(model: AUSMModel, frames, track_ids, track_active, hist_masks, mode: str = "parallel") -> Prediction:
    """Forward a teacher-forced batch in ``parallel`` (Algorithm 2) or ``iterative`` mode (the
    Algorithm-1 loop over frames with the same teacher-forced history and gradients through the loop).
    Both return predictions with leading dims (B, T)."""
    if mode == "parallel":
        return model(frames, track_ids, track_active, hist_masks)
    if mode != "iterative":
        raise ValueError(f"mode must be 'parallel' or 'iterative', got {mode!r}")
    B, T, _, H, W = frames.shape
    hw = (H // 8, W // 8)
    state = model.init_state(B, hw, device=frames.device, dtype=frames.dtype)
    steps = []
    for k in range(T):
        pred, state = model.step(frames[:, k], state, track_ids, track_active[:, k], hist_masks[:, k])
        steps.append(pred)
    L = len(steps[0].masks)
    return Prediction(embs=[torch.stack([s.embs[i] for s in steps], 1) for i in range(L)],
                      masks=[torch.stack([s.masks[i] for s in steps], 1) for i in range(L)],
                      num_tracks=track_ids.shape[1])


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


def build_optimizer(model: AUSMModel, tc: TrainConfig):
    """AdamW with the backbone at ``lr × backbone_lr_mult``; no weight decay on norms, biases and
    embeddings."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bb = name.startswith("encoder.backbone.")
        nd = p.ndim <= 1 or name in ("start_token", "id_vectors") or "query_" in name
        key = (bb, nd)
        groups.setdefault(key, []).append(p)
    param_groups = [{"params": ps, "lr": tc.lr * (tc.backbone_lr_mult if bb else 1.0),
                     "weight_decay": 0.0 if nd else tc.weight_decay, "base_lr_mult": tc.backbone_lr_mult if bb else 1.0}
                    for (bb, nd), ps in groups.items()]
    return torch.optim.AdamW(param_groups, lr=tc.lr)


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up then one ×0.1 step at ``lr_drop_at`` of the schedule."""
    f = min(1.0, (step + 1) / max(1, tc.warmup))
    if step >= int(tc.lr_drop_at * tc.steps):
        f *= 0.1
    return tc.lr * f


def _save_training_state(out: Path, model, opt, step: int, tc: TrainConfig, history: list):
    """Atomic training checkpoint: weights (safetensors folder) + optimiser/step state (.pt)."""
    save_model(model, out / "last")
    tmp = out / ".trainer_state.pt.tmp"
    torch.save({"optimizer": opt.state_dict(), "step": step, "train_config": dataclasses.asdict(tc),
                "rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, out / "trainer_state.pt")
    tmp = out / ".history.json.tmp"
    tmp.write_text(json.dumps(history))
    os.replace(tmp, out / "history.json")


def train(tc: TrainConfig, resume: bool = False) -> Path:
    """Train a model with the teacher-forced parallel forward; returns the output folder.

    Writes ``OUT/last/`` (model.safetensors + config.json) every ``ckpt_every`` steps and at the end,
    ``OUT/trainer_state.pt`` (optimiser, step, RNG), ``OUT/history.json`` (loss per logged step) and
    ``OUT/train.log``.
    """
    from tqdm import tqdm

    from ..checkpoint import load_model
    from ..data.clips import DavisClips, collate_clips
    from ..data.davis import DavisDataset

    if tc.threads:
        torch.set_num_threads(tc.threads)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(fh)
    log.setLevel(logging.INFO)
    torch.manual_seed(tc.seed)
    step0, history = 0, []
    if resume and (out / "trainer_state.pt").exists():
        model = load_model(out / "last")
        model.train()
        opt = build_optimizer(model, tc)
        st = torch.load(out / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(st["optimizer"])
        step0 = int(st["step"])
        torch.set_rng_state(st["rng"])
        if (out / "history.json").exists():
            history = json.loads((out / "history.json").read_text())
        log.info("resumed at step %d", step0)
    elif resume:
        raise CheckpointError(f"--resume: no trainer_state.pt in {out}")
    else:
        cfg: AUSMConfig = get_config(tc.preset, **tc.model_overrides)
        model = AUSMModel(cfg)
        model.train()
        opt = build_optimizer(model, tc)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(tc), indent=2))
    davis = DavisDataset(tc.davis_root, split=tc.davis_split, resolution=tc.davis_resolution, year=tc.davis_year)
    ds = DavisClips(davis, clip_len=tc.clip_len, max_stride=tc.max_stride, size=tuple(tc.size),
                    exhaustive=tc.exhaustive, samples_per_epoch=tc.steps * tc.batch_size * tc.grad_accum,
                    seed=tc.seed)
    crit = SetCriterion(LossConfig(num_points=tc.num_points))
    gen = torch.Generator().manual_seed(tc.seed + step0)
    bar = tqdm(range(step0, tc.steps), initial=step0, total=tc.steps, desc="train", dynamic_ncols=True)
    t_last = time.time()
    for step in bar:
        lr = lr_at(step, tc)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("base_lr_mult", 1.0)
        opt.zero_grad(set_to_none=True)
        logs = {}
        for micro in range(tc.grad_accum):
            base = (step * tc.grad_accum + micro) * tc.batch_size
            samples = collate_clips([ds[base + j] for j in range(tc.batch_size)])
            frames, ids, active, hist, targets = prepare_batch(
                samples, model.cfg.num_ids, tc.prompt_prob, tc.detect_only_prob, gen)
            pred = run_model(model, frames, ids, active, hist, tc.mode)
            losses = crit(model, pred, targets, gen)
            loss = losses["loss"] / tc.grad_accum
            if loss.requires_grad:
                loss.backward()
            for k, v in losses.items():
                logs[k] = logs.get(k, 0.0) + float(v.detach()) / tc.grad_accum
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
        if math.isfinite(float(gn)):
            opt.step()
        else:
            log.info("step %d: non-finite gradient norm, update skipped", step)
        if (step + 1) % tc.log_every == 0 or step == step0:
            dt = time.time() - t_last
            t_last = time.time()
            rec = {"step": step + 1, "lr": lr, "grad_norm": float(gn), "sec": dt, **logs}
            history.append(rec)
            log.info(json.dumps(rec))
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
        if (step + 1) % tc.ckpt_every == 0 or step + 1 == tc.steps:
            _save_training_state(out, model, opt, step + 1, tc, history)
    log.removeHandler(fh)
    return out
