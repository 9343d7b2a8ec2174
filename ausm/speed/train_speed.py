"""``ausm bench train-speed``: seconds per training iteration (forward + backward + optimiser step) of
the parallel (Algorithm 2) and the iterative (frame-by-frame) mode on the same model, batch and
resolution, interleaved in one run; median over repeated iterations after warm-up (paper Fig. 4)."""
from __future__ import annotations

import torch

from ..config import get_config
from ..model import AUSMModel
from ..train.batch import collate_targets
from ..train.losses import LossConfig, SetCriterion
from ..train.batch import preprocess
from ..train.trainer import TrainStep
from . import emit, machine_info, markdown_table, median, timed


def synthetic_batch(batch: int, T: int, size: tuple[int, int], num_ids: int, objects: int = 2, seed: int = 0):
    """A teacher-forced batch of moving rectangles (every object prompted on frame 1)."""
    g = torch.Generator().manual_seed(seed)
    H, W = size
    samples, tfs = [], []
    for _ in range(batch):
        masks = torch.zeros(objects, T, H, W)
        for i in range(objects):
            y, x = [int(v) for v in torch.randint(0, H // 2, (1,), generator=g)] + [int(torch.randint(0, W // 2, (1,), generator=g))]
            for t in range(T):
                masks[i, t, y + t % 8: y + t % 8 + H // 4, x + 2 * (t % 8): x + 2 * (t % 8) + W // 4] = 1
        samples.append({"frames": torch.rand(T, 3, H, W, generator=g), "masks": masks,
                        "classes": torch.zeros(objects, dtype=torch.long), "exhaustive": True, "head": "agnostic"})
        tfs.append(preprocess(masks, (H // 8, W // 8), num_ids, prompt_prob=0.5, generator=g))
    targets, ids, active, hist = collate_targets(samples, tfs)
    frames = torch.stack([s["frames"] for s in samples])
    return frames, ids, active, hist, targets


def run(preset: str = "ausm-tiny", frames_list=(1, 2, 4, 8, 16), size=None, batch: int = 1, iters: int = 5,
        warmup: int = 2, num_points: int = 2048, device: str = "cpu", frozen_bn: bool = True) -> list[dict]:
    """Measure and print one JSON record per (T, mode) and a markdown table; returns the records."""
    dev = torch.device(device)
    torch.manual_seed(0)
    cfg = get_config(preset)
    model = AUSMModel(cfg).to(dev).train()
    if frozen_bn:  # frame-independent encoder, as in the paper (see docs/DESIGN.md)
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    if size is None:
        size = (cfg.input_short_side // 32 * 32, cfg.input_max_long_side // 32 * 32)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    crit = SetCriterion(LossConfig(num_points=num_points))
    steps = {m: TrainStep(model, crit, m) for m in ("parallel", "iterative")}
    info = machine_info()
    rows = []
    for T in frames_list:
        fr, ids, active, hist, targets = synthetic_batch(batch, T, size, cfg.num_ids)
        fr, ids, active, hist, targets = fr.to(dev), ids.to(dev), active.to(dev), hist.to(dev), targets.to(dev)
        times = {"parallel": [], "iterative": []}

        def one(mode):
            opt.zero_grad(set_to_none=True)
            loss = steps[mode](fr, ids, active, hist, targets, torch.Generator().manual_seed(0))["loss"]
            loss.backward()
            opt.step()
            return float(loss.detach())

        for i in range(warmup + iters):
            for mode in ("parallel", "iterative"):  # interleaved: same conditions for both
                dt, _ = timed(lambda: one(mode), dev)
                if i >= warmup:
                    times[mode].append(dt)
        par, it = median(times["parallel"]), median(times["iterative"])
        for mode, v in (("parallel", par), ("iterative", it)):
            emit({"bench": "train-speed", "preset": preset, "T": T, "mode": mode, "sec_per_iter": v,
                  "batch": batch, "resolution": f"{size[0]}x{size[1]}", "dtype": "float32", "device": str(dev),
                  **info})
        rows.append({"T": T, "parallel s/iter": par, "iterative s/iter": it, "speed-up": it / par})
    print(markdown_table(rows, ["T", "parallel s/iter", "iterative s/iter", "speed-up"]))
    return rows
