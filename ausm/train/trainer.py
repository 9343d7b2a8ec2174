"""Training loop: teacher-forced parallel training (Algorithm 2) and the frame-by-frame baseline.

Run: ``ausm train CONFIG.json [key=value ...] [--resume] [--mode parallel|iterative]``, e.g.
``ausm train configs/lite_stage2.json steps=600 out=runs/s2 --resume`` (see ``ausm train -h`` and
``docs/TRAINING.md``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import save_model
from ..config import get_config
from ..errors import CheckpointError, ConfigError, TrainingError
from ..device import resolve_device
from ..io.atomic import atomic_open
from ..model import AUSMModel, Prediction
from .batch import prepare_batch  # noqa: F401  (re-exported: the training batch)
from .config import TrainConfig
from .losses import LossConfig, SetCriterion

log = logging.getLogger("ausm.train")


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


def build_training_data(tc: TrainConfig, world: int = 1):
    """The clip dataset of a run: a weighted mixture of ``tc.datasets`` specs, or DAVIS clips from the
    ``davis_*`` fields. Indexing is deterministic in (seed, index).

    Raises:
        ConfigError: no data configured or a bad dataset spec.
    """
    from ..data.clips import DavisClips
    from ..data.davis import DavisDataset
    from ..data.mixing import build_mixture
    from ..errors import ConfigError

    n = tc.steps * tc.batch_size * tc.grad_accum * world
    if tc.datasets:
        return build_mixture(tc.datasets, clip_len=tc.clip_len, size=tuple(tc.size), max_stride=tc.max_stride,
                             samples_per_epoch=n, seed=tc.seed)
    if not tc.davis_root:
        raise ConfigError("no training data: set datasets=[...] or davis_root=...")
    davis = DavisDataset(tc.davis_root, split=tc.davis_split, resolution=tc.davis_resolution, year=tc.davis_year)
    return DavisClips(davis, clip_len=tc.clip_len, max_stride=tc.max_stride, size=tuple(tc.size),
                      exhaustive=tc.exhaustive, samples_per_epoch=n, seed=tc.seed)


def check_heads(ds, model: AUSMModel) -> None:
    """Every dataset's class head must exist in the model (set ``model_overrides.class_heads``)."""
    from ..errors import ConfigError

    parts = getattr(ds, "datasets", [ds])
    for d in parts:
        reader = getattr(d, "reader", None) or getattr(d, "images", None) or d
        head = getattr(reader, "head", None) or getattr(d, "head", None)
        if head and head not in model.class_heads:
            raise ConfigError(f"dataset {getattr(reader, 'name', '?')!r} uses class head {head!r}, the model has "
                              f"{sorted(model.class_heads)}: add it to model_overrides.class_heads")


class TrainStep(torch.nn.Module):
    """Model + loss as one module (what DistributedDataParallel wraps): ``forward`` returns the loss
    dict of :class:`SetCriterion` for a teacher-forced batch, in ``parallel`` or ``iterative`` mode."""

    def __init__(self, model: AUSMModel, criterion: SetCriterion, mode: str = "parallel"):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.mode = mode

    def forward(self, frames, track_ids, track_active, hist_masks, targets, generator=None):
        pred = run_model(self.model, frames, track_ids, track_active, hist_masks, self.mode)
        return self.criterion(self.model, pred, targets, generator)


@torch.no_grad()
def model_pred_masks(net, frames, ids, active, hist, model, mode) -> torch.Tensor:
    """Final-layer track mask logits (T, n, H/4, W/4) of the first clip (for visualisation)."""
    pred = run_model(model, frames[:1], ids[:1], active[:1], hist[:1], mode)
    return pred.final_masks[0, :, : pred.num_tracks].float()


def sample_visualisation(frames: torch.Tensor, targets, pred_masks: torch.Tensor):
    """An (2H, T·W, 3) uint8 image: top row frames with ground-truth masks, bottom row with predicted
    track masks (sigmoid > 0.5), one colour per slot (DAVIS palette)."""
    import numpy as np

    from ..io.overlay import overlay

    T, _, H, W = frames.shape
    rows = [[], []]
    gt = targets.masks[0].cpu()  # (n, T, H, W)
    up = torch.nn.functional.interpolate(pred_masks, size=(H, W), mode="bilinear", align_corners=False) > 0
    for t in range(T):
        img = (frames[t].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        idx_gt = np.zeros((H, W), np.uint8)
        idx_pr = np.zeros((H, W), np.uint8)
        for i in range(gt.shape[0]):
            idx_gt[gt[i, t].numpy() > 0.5] = i + 1
            if i < up.shape[1] and bool(targets.track_active[0, t, i]):
                idx_pr[up[t, i].cpu().numpy()] = i + 1
        rows[0].append(overlay(img, idx_gt))
        rows[1].append(overlay(img, idx_pr))
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


def build_initial_model(tc: TrainConfig) -> AUSMModel:
    """The model a run starts from: ``init_from`` = "" (random), a checkpoint folder (a previous stage;
    ``model_overrides`` may not change its architecture, except adding class heads or
    ``track_query_from_history``, whose new weights start at their initialisation) or
    ``mask2former:<path or hub id>``.

    Raises:
        CheckpointError: unreadable checkpoint or incompatible weights.
    """
    from ..checkpoint import load_model
    from ..model.mask2former_init import init_from_mask2former

    if tc.init_from.startswith("mask2former:"):
        model = AUSMModel(get_config(tc.preset, **tc.model_overrides))
        report = init_from_mask2former(model, tc.init_from.split(":", 1)[1])
        log.info("initialised %d tensors from %s", len(report["loaded"]), tc.init_from)
        return model
    if tc.init_from:
        model = load_model(tc.init_from)
        ov = dict(tc.model_overrides)
        if tc.model_overrides:
            model.cfg = model.cfg.replace(**{k: v for k, v in ov.items()
                                             if k in ("input_short_side", "input_max_long_side", "fg_threshold")})
        new_heads = {k: v for k, v in (ov.get("class_heads") or {}).items() if k not in model.cfg.class_heads}
        add_pool = bool(ov.get("track_query_from_history")) and not model.cfg.track_query_from_history
        if new_heads or add_pool:  # a later stage grows the model: new parts start at their init
            cfg = model.cfg.replace(class_heads={**model.cfg.class_heads, **new_heads},
                                    class_names={**model.cfg.class_names, **(ov.get("class_names") or {})},
                                    track_query_from_history=model.cfg.track_query_from_history or add_pool)
            grown = AUSMModel(cfg)
            missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
            new_parts = [f"class_heads.{h}." for h in new_heads] + (["pixel_decoder.pool_proj."] if add_pool else [])
            bad = [k for k in missing if not any(k.startswith(pfx) for pfx in new_parts)]
            if bad or unexpected:
                raise CheckpointError(f"{tc.init_from}: cannot add {new_parts}: "
                                      f"missing {bad}, unexpected {list(unexpected)}")
            log.info("added %s to %s", new_parts, tc.init_from)
            model = grown
        return model
    return AUSMModel(get_config(tc.preset, **tc.model_overrides))


def freeze_backbone(model: AUSMModel, frozen: bool) -> None:
    """Stage 3 [P]: stop gradients into the backbone (``requires_grad=False``; BatchNorm statistics are
    frozen too by keeping the backbone in eval mode during training). Unfrozen, a backbone with its own
    fixed layers (EfficientNet-Lite's ``frozen_stages``) keeps those frozen."""
    bb = model.backbone
    for p in bb.parameters():
        p.requires_grad_(not frozen)
    if not frozen and hasattr(bb, "freeze"):
        bb.freeze(bb.frozen_stages)


def apply_trainable(model: AUSMModel, prefixes) -> None:
    """Freeze every parameter whose name starts with none of ``prefixes`` (no-op for an empty list).

    Raises:
        ConfigError: a prefix that matches no parameter.
    """
    if not prefixes:
        return
    names = [n for n, _ in model.named_parameters()]
    for pre in prefixes:
        if not any(n.startswith(pre) for n in names):
            raise ConfigError(f"trainable: {pre!r} matches no parameter (e.g. {names[0]!r}, {names[-1]!r})")
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(tuple(prefixes)))


def freeze_frozen_batchnorm(model: torch.nn.Module) -> None:
    """Put BatchNorm layers whose parameters are all frozen in eval mode (their running statistics stay)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


def build_optimizer(model: AUSMModel, tc: TrainConfig):
    """AdamW with the backbone at ``lr × backbone_lr_mult``; no weight decay on norms, biases and
    embeddings."""
    groups = {}
    in_backbone = {id(p) for p in model.backbone.parameters()}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bb = id(p) in in_backbone
        nd = p.ndim <= 1 or name in ("start_token", "id_vectors") or "query_" in name
        groups.setdefault((bb, nd), []).append(p)
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
    with atomic_open(out / "trainer_state.pt", "wb") as f:
        torch.save({"optimizer": opt.state_dict(), "step": step, "train_config": dataclasses.asdict(tc)}, f)
    with atomic_open(out / "history.json", "w") as f:
        f.write(json.dumps(history))


def _dist_info():
    """(rank, world_size, local_rank) from the torchrun environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _bn_layers_updating(model: torch.nn.Module) -> list:
    """BatchNorm layers whose running statistics a forward pass updates (train mode, tracked stats)."""
    return [m for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]


def _snapshot_buffers(modules: list) -> list:
    """Copies of the buffers (running_mean, running_var, num_batches_tracked) of ``modules``."""
    return [(m, {n: b.detach().clone() for n, b in m.named_buffers(recurse=False) if b is not None})
            for m in modules]


@torch.no_grad()
def _restore_buffers(snapshot: list) -> None:
    for m, bufs in snapshot:
        for n, v in bufs.items():
            getattr(m, n).copy_(v)


#: Test-only fault injection: ``AUSM_FAULT_INJECT=rank1:step2:exit`` makes rank 1 exit abruptly
#: (``os._exit(17)``, no clean-up) during optimiser step 2, after its forward pass; ``...:hang`` makes
#: it stall there forever instead. Used by ``tests/test_train_faults.py``; never set it in a real run.
FAULT_ENV = "AUSM_FAULT_INJECT"


def _fault_plan(rank: int):
    """(step, action) of the fault to inject on this rank, or None."""
    from ..errors import ConfigError

    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return None
    m = re.fullmatch(r"rank(\d+):step(\d+):(exit|hang)", spec)
    if m is None:
        raise ConfigError(f"{FAULT_ENV}={spec!r}: expected rankR:stepS:exit or rankR:stepS:hang (a test hook)")
    return (int(m[2]), m[3]) if int(m[1]) == rank else None


def _inject_fault(action: str, rank: int, step: int) -> None:
    print(f"{FAULT_ENV}: rank {rank} {'exits' if action == 'exit' else 'hangs'} at step {step}",
          file=sys.stderr, flush=True)
    if action == "exit":
        os._exit(17)
    while True:
        time.sleep(3600)


def _is_comm_failure(e: BaseException) -> bool:
    """Whether ``e`` is a failed or timed-out collective (a peer died, stalled or cannot be reached)."""
    if isinstance(e, getattr(torch.distributed, "DistError", ())):
        return True
    s = str(e).lower()
    return isinstance(e, RuntimeError) and any(k in s for k in (
        "gloo", "nccl", "connection reset", "connection closed", "connection refused", "broken pipe",
        "timed out", "timeout"))


def _lost_contact_error(e: BaseException, rank: int, where: str, tc: TrainConfig, saved) -> TrainingError:
    s = str(e).lower()
    if "timed out" in s or "timeout" in s:
        why, who = f"collective timed out after {tc.dist_timeout_s} s", "another rank failed or stalled"
    else:
        why, who = "connection to another rank closed", "another rank failed"
    ckpt = f"the last checkpoint is {Path(tc.out) / 'last'} (step {saved})" if saved else "no checkpoint was written"
    return TrainingError(f"training: rank {rank} lost contact with the other ranks at {where} ({why}): {who}; "
                         f"see its log; {ckpt}")


def _destroy_group(wait_s: float | None) -> None:
    """Destroy the default process group; after a failure wait at most ``wait_s`` seconds for it (a
    backend may block on a dead peer) and let the process exit anyway."""
    if wait_s is None:
        torch.distributed.destroy_process_group()
        return
    t = threading.Thread(target=torch.distributed.destroy_process_group, daemon=True)
    t.start()
    t.join(wait_s)
    if t.is_alive():
        log.warning("destroy_process_group did not return within %.0f s; exiting without it", wait_s)


def train(tc: TrainConfig, resume: bool = False) -> Path:
    """Train a model with the teacher-forced parallel forward (or the iterative baseline); returns the
    output folder.

    Distributed: launched by ``torchrun --nproc_per_node=N -m ausm.train ...`` every rank runs this
    function; DistributedDataParallel averages gradients (gloo on CPU, NCCL on CUDA). Rank r of W takes
    samples ``((step·grad_accum + micro)·W + r)·batch_size + j`` of the deterministic sample stream, so
    the **global batch** is ``batch_size × grad_accum × W`` clips per optimiser step.

    Every step's randomness (clip choice, augmentation, switch frames, ID sampling, point sampling) is
    seeded from (seed, step, rank), so a run resumed from a checkpoint continues exactly as an
    uninterrupted run with the same seed.

    Writes (rank 0) ``OUT/last/`` (model.safetensors + config.json) every ``ckpt_every`` steps and at the
    end, ``OUT/trainer_state.pt`` (optimiser, step), ``OUT/history.json`` (losses per logged step),
    ``OUT/train.log`` and TensorBoard events in ``OUT/tb`` when ``tensorboard`` is installed.

    A step whose loss or gradient norm is not finite is skipped without side effects: no update, and
    the BatchNorm running statistics its forward pass changed are restored.

    Raises:
        TrainingError: ``max_nonfinite`` consecutive non-finite steps; or (several ranks) a collective
            failed because another rank died, or timed out after ``dist_timeout_s`` because one stalled.
            Checkpoints are written between collectives (and atomically), so ``OUT/last`` stays intact.
    """
    rank, world, local_rank = _dist_info()
    device = resolve_device(tc.device, local_rank, auto_mps=False)
    own_group = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        import datetime

        # a rank that dies makes the collectives of the others fail (gloo: connection closed) or time
        # out after dist_timeout_s, instead of hanging forever; _train turns that into a TrainingError
        try:
            torch.distributed.init_process_group(backend=backend,
                                                 timeout=datetime.timedelta(seconds=tc.dist_timeout_s))
        except RuntimeError as e:
            raise TrainingError(f"training: rank {rank} could not reach the other ranks at start-up within "
                                f"{tc.dist_timeout_s} s ({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                                f"check that every rank started and MASTER_ADDR/MASTER_PORT") from e
        own_group = True
    ok = False
    try:
        out = _train(tc, resume, rank, world, device)
        ok = True
        return out
    finally:
        if own_group:  # after a failure the group may wait on a dead peer: bounded
            _destroy_group(None if ok else 10.0)


@dataclass
class _Run:
    """What one rank's training loop works with (built by :func:`_setup_run`)."""

    tc: TrainConfig
    rank: int
    world: int
    device: torch.device
    out: Path
    fault: tuple | None = None
    where: str = "start-up"  # for the error message if a collective fails
    saved: int | None = None  # last checkpointed step
    model: AUSMModel | None = None
    opt: torch.optim.Optimizer | None = None
    net: torch.nn.Module | None = None
    ds: object = None
    step0: int = 0
    end: int = 0
    history: list = field(default_factory=list)
    tb: object = None
    use_bf16: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _train(tc: TrainConfig, resume: bool, rank: int, world: int, device: torch.device) -> Path:
    """The body of :func:`train` on one rank (the process group, if any, is set up): set up, loop over
    the optimiser steps (:func:`_train_step`), log, checkpoint; after several ranks, check the weights."""
    from tqdm import tqdm

    if device.type == "cuda":
        torch.cuda.set_device(device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    run = _Run(tc, rank, world, device, Path(tc.out), fault=_fault_plan(rank))
    if resume and not (run.out / "trainer_state.pt").exists():  # before anything is written to OUT
        raise CheckpointError(f"--resume: no trainer_state.pt in {run.out}")
    fh = _open_train_log(run.out) if run.is_main else None
    try:
        _setup_run(run, resume)
        bar = tqdm(range(run.step0, run.end), initial=run.step0, total=run.end, desc="train", dynamic_ncols=True,
                   disable=not run.is_main)
        t_last, last_logged, bad_steps = time.time(), run.step0, 0
        for step in bar:
            run.where = f"step {step + 1}"
            ok, logs, gn, lr, batch = _train_step(run, step)
            bad_steps = 0 if ok else bad_steps + 1
            _check_bad_steps(run, bad_steps, step)
            if run.is_main and ((step + 1) % tc.log_every == 0 or step == run.step0):
                dt, t_last = time.time() - t_last, time.time()
                _log_step(run, step, lr, float(gn), logs, dt, last_logged)
                bar.set_postfix(loss=f"{logs['loss']:.3f}")
                last_logged = step + 1
            if run.tb is not None and tc.vis_every and (step + 1) % tc.vis_every == 0:
                frames, ids, active, hist, targets = batch
                run.tb.add_image("train/masks", sample_visualisation(frames[0], targets, model_pred_masks(
                    run.net, frames, ids, active, hist, run.model, tc.mode)), step + 1, dataformats="HWC")
            _checkpoint(run, step)
        if world > 1:
            run.where = "the final weight check"
            _check_same_weights(run)
    except RuntimeError as e:
        if world == 1 or not _is_comm_failure(e):
            raise
        err = _lost_contact_error(e, rank, run.where, tc, run.saved)
        if fh is not None:  # OUT/train.log on rank 0 (the CLI prints it on stderr)
            log.error("error: %s", err)
        raise err from e
    finally:
        if run.tb is not None:
            run.tb.close()
        if fh is not None:
            log.removeHandler(fh)
            fh.close()
    return run.out


def _open_train_log(out: Path) -> logging.Handler:
    """``OUT/train.log`` (rank 0), attached to the ``ausm.train`` logger."""
    out.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(fh)
    log.setLevel(logging.INFO)
    return fh


def _setup_run(run: _Run, resume: bool) -> None:
    """Model (fresh, from ``init_from`` or resumed), optimiser, loss, DDP wrapper, data, TensorBoard.

    Raises:
        ConfigError: a dataset needs a missing head.
    """
    from ..checkpoint import load_model

    tc, out, device = run.tc, run.out, run.device
    torch.manual_seed(tc.seed)
    resuming = resume  # _train checked that the trainer state exists, before anything was written
    model = load_model(out / "last") if resuming else build_initial_model(tc)
    model.train()
    freeze_backbone(model, tc.freeze_backbone)  # before the optimiser: its groups hold trained params only
    apply_trainable(model, tc.trainable)
    opt = build_optimizer(model, tc)
    if resuming:
        st = torch.load(out / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(st["optimizer"])
        run.step0 = run.saved = int(st["step"])
        if (out / "history.json").exists():
            run.history = [h for h in json.loads((out / "history.json").read_text()) if h["step"] <= run.step0]
        log.info("resumed at step %d", run.step0)
    model.to(device)
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                state[k] = v.to(device)
    net = TrainStep(model, SetCriterion(LossConfig(num_points=tc.num_points)), tc.mode)
    if run.world > 1:  # DDP wraps model + loss: the class heads are used inside forward
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    if run.is_main:
        (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(tc), indent=2))
    run.ds = build_training_data(tc, run.world)
    check_heads(run.ds, model)
    run.model, run.opt, run.net = model, opt, net
    run.use_bf16 = tc.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    run.tb = _open_tensorboard(out) if run.is_main else None
    run.end = min(tc.steps, tc.max_steps) if tc.max_steps else tc.steps


def _open_tensorboard(out: Path):
    """A TensorBoard writer on ``OUT/tb``, or None without ``tensorboard``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


def _train_step(run: _Run, step: int):
    """One optimiser step (``grad_accum`` micro-batches): forward, backward, clipped update.

    Every step's randomness is seeded from (seed, step, rank). A step whose loss or gradient norm is not
    finite is skipped without side effects (no update; the BatchNorm statistics its forward changed are
    restored).

    Returns:
        (updated: False when skipped, the loss dict summed over micro-batches, gradient norm, lr, the last
        micro-batch (frames, ids, active, hist, targets)).
    """
    from ..data.clips import collate_clips

    tc, model, opt, net, device = run.tc, run.model, run.opt, run.net, run.device
    if tc.freeze_backbone:
        model.backbone.eval()
    if tc.trainable:
        freeze_frozen_batchnorm(model)
    lr = lr_at(step, tc)
    for g in opt.param_groups:
        g["lr"] = lr * g.get("base_lr_mult", 1.0)
    opt.zero_grad(set_to_none=True)
    bn_before = _snapshot_buffers(_bn_layers_updating(model))
    logs = {}
    gen = torch.Generator().manual_seed((tc.seed * 1_000_003 + step) * 1_009 + run.rank)
    for micro in range(tc.grad_accum):
        base = ((step * tc.grad_accum + micro) * run.world + run.rank) * tc.batch_size
        samples = collate_clips([run.ds[base + j] for j in range(tc.batch_size)])
        frames, ids, active, hist, targets = prepare_batch(
            samples, model.cfg.num_ids, tc.prompt_prob, tc.detect_only_prob, gen)
        batch = (*(x.to(device) for x in (frames, ids, active, hist)), targets.to(device))
        sync = micro == tc.grad_accum - 1 or run.world == 1
        with net.no_sync() if (run.world > 1 and not sync) else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
                losses = net(*batch, gen)
            if run.fault is not None and run.fault[0] == step + 1 and micro == 0:
                _inject_fault(run.fault[1], run.rank, step + 1)
            loss = losses["loss"] / tc.grad_accum
            # every rank must run backward for DDP's all-reduce, even with nothing to learn
            if not loss.requires_grad:
                loss = loss + 0.0 * sum(p.sum() for p in model.parameters())
            loss.backward()
        for k, v in losses.items():
            logs[k] = logs.get(k, 0.0) + float(v.detach()) / tc.grad_accum
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
    if math.isfinite(float(gn)) and math.isfinite(logs.get("loss", 0.0)):
        opt.step()
        return True, logs, gn, lr, batch
    _restore_buffers(bn_before)
    msg = (f"step {step + 1}: non-finite loss or gradient (loss={logs.get('loss')}, "
           f"grad norm={float(gn)}), update skipped")
    log.warning(msg)
    if run.is_main:
        print(msg, file=sys.stderr)
    return False, logs, gn, lr, batch


def _check_bad_steps(run: _Run, bad_steps: int, step: int) -> None:
    """Raises TrainingError after ``max_nonfinite`` consecutive skipped steps."""
    if bad_steps and bad_steps >= run.tc.max_nonfinite:
        raise TrainingError(f"{bad_steps} consecutive non-finite steps (last at step {step + 1}): lower "
                            f"the learning rate or check the data; the last good checkpoint is "
                            f"{run.out / 'last'}")


def _log_step(run: _Run, step: int, lr: float, gn: float, logs: dict, dt: float, last_logged: int) -> None:
    """One record in ``history`` / ``train.log`` / TensorBoard (rank 0)."""
    rec = {"step": step + 1, "lr": lr, "grad_norm": gn, "sec": dt, **logs}
    run.history.append(rec)
    log.info(json.dumps(rec))
    if run.tb is not None:
        for k, v in logs.items():
            run.tb.add_scalar(f"train/{k}", v, step + 1)
        run.tb.add_scalar("train/lr", lr, step + 1)
        run.tb.add_scalar("train/iters_per_sec", (step + 1 - last_logged) / max(dt, 1e-9), step + 1)


def _checkpoint(run: _Run, step: int) -> None:
    """Rank 0: ``OUT/last`` + trainer state every ``ckpt_every`` steps and at the end; a kept copy in
    ``OUT/ckpts/step_NNNNN`` every ``keep_every``."""
    tc = run.tc
    if run.is_main and ((step + 1) % tc.ckpt_every == 0 or step + 1 == run.end):
        _save_training_state(run.out, run.model, run.opt, step + 1, tc, run.history)
        run.saved = step + 1
    if run.is_main and tc.keep_every and (step + 1) % tc.keep_every == 0:
        save_model(run.model, run.out / "ckpts" / f"step_{step + 1:05d}")


def _check_same_weights(run: _Run) -> None:
    """Every rank must hold the same weights: gather a checksum of each rank's parameters (rank 0 writes
    ``OUT/rank_checksums.json``)."""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in run.model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.float64).remainder(7919)).sum()])
    mine = mine.to(run.device)
    gathered = [torch.zeros_like(mine) for _ in range(run.world)]
    torch.distributed.all_gather(gathered, mine)
    if run.is_main:
        (run.out / "rank_checksums.json").write_text(json.dumps([g.tolist() for g in gathered]))
    torch.distributed.barrier()
