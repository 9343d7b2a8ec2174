"""The core invariant of the design (spec §5): the parallel teacher-forced forward over T frames
equals T streaming steps fed the same history — every output of every Pixel Decoder layer — and the
parallel and iterative (frame-by-frame) training modes give the same loss and gradients."""
import pytest
import torch

from ausm.config import get_config
from ausm.model import AUSMModel, history_marker
from ausm.train.batch import collate_targets
from ausm.train.losses import LossConfig, SetCriterion
from ausm.train.batch import preprocess
from ausm.train.trainer import run_model


#: presets whose architecture the invariants are checked on: the ResNet tiny model and the default
#: EfficientNet-Lite model (random init here; frozen BN, SAME padding, channels-last, fine_dim FPN)
PRESETS = {"ausm-tiny": {}, "ausm-lite": {"backbone_pretrained": None, "hidden_dim": 64, "mask_dim": 32},
           # the history-pooled track queries (Pixel Decoder reads G_t over M_{t-1}) on both paths
           "ausm-lite-mo": {"backbone_pretrained": None, "hidden_dim": 64, "mask_dim": 32}}


def small_model(dtype=torch.float32, seed=0, preset="ausm-tiny", **kw):
    torch.manual_seed(seed)
    cfg = get_config(preset, compressor_layers=2, history_decoder_layers=1, pixel_decoder_layers=2,
                     num_queries=5, num_ids=8, **{**PRESETS[preset], **kw})
    m = AUSMModel(cfg).to(dtype).eval()
    with torch.no_grad():  # move the start token / heads off their trivial init
        m.start_token.normal_()
    return m


def teacher_forced_inputs(B=2, T=5, H=64, W=96, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(B, T, 3, H, W, generator=g).to(dtype)
    P = (H // 8) * (W // 8)
    n = 3
    ids = torch.tensor([[0, 4, 6], [2, 7, 1]])
    switch = torch.tensor([[0, 2, 4], [1, 0, 9]])  # 9 > T: slot never active (padding)
    k = torch.arange(T)
    active = switch[:, None, :] <= k[None, :, None]  # (B, T, n)
    hist = torch.rand(B, T, n, P, generator=g).to(dtype) * active.unsqueeze(-1)
    return frames, ids, active, hist


def streaming(model, frames, ids, active, hist):
    B, T, _, H, W = frames.shape
    state = model.init_state(B, (H // 8, W // 8), dtype=frames.dtype)
    size0 = state.nbytes()
    outs = []
    for t in range(T):
        pred, state = model.step(frames[:, t], state, ids, active[:, t], hist[:, t])
        outs.append(pred)
        assert state.nbytes() == size0
    return outs


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_parallel_forward_equals_streaming_steps(dtype, tol, preset):
    model = small_model(dtype, preset=preset)
    frames, ids, active, hist = teacher_forced_inputs(dtype=dtype)
    with torch.no_grad():
        par = model(frames, ids, active, hist)
        steps = streaming(model, frames, ids, active, hist)
    T = frames.shape[1]
    assert len(par.masks) == model.cfg.pixel_decoder_layers + 1
    for li in range(len(par.masks)):
        for t in range(T):
            for name, a, b in (("emb", par.embs[li][:, t], steps[t].embs[li]),
                               ("mask", par.masks[li][:, t], steps[t].masks[li])):
                # padded slots (never active) are ignored by design; compare the active ones and detections
                keep = torch.cat([active[:, t], torch.ones(a.shape[0], a.shape[1] - active.shape[2], dtype=torch.bool)], 1)
                diff = (a - b)[keep].abs().max().item()
                scale = a[keep].abs().max().item()
                assert diff <= tol * max(1.0, scale), f"layer {li} frame {t} {name}: {diff} (scale {scale})"
    # the outputs depend on the history: changing M changes the prediction
    with torch.no_grad():
        par2 = model(frames, ids, active, torch.zeros_like(hist))
    assert (par2.final_masks - par.final_masks).abs().max() > 1e-4


def test_naive_scan_gives_the_same_parallel_forward():
    model = small_model(torch.float64)
    frames, ids, active, hist = teacher_forced_inputs(dtype=torch.float64)
    with torch.no_grad():
        a = model(frames, ids, active, hist, scan="parallel").final_masks
        b = model(frames, ids, active, hist, scan="naive").final_masks
    assert (a - b).abs().max().item() < 1e-9


def test_future_frames_do_not_change_the_past():
    """Causality: outputs at frame t depend only on frames ≤ t and history ≤ t."""
    model = small_model(torch.float64)
    frames, ids, active, hist = teacher_forced_inputs(dtype=torch.float64)
    with torch.no_grad():
        a = model(frames, ids, active, hist).final_masks
        f2 = frames.clone()
        f2[:, 3:] = torch.rand_like(f2[:, 3:])
        h2 = hist.clone()
        h2[:, 4:] = 0
        b = model(f2, ids, active, h2).final_masks
    assert (a[:, :3] - b[:, :3]).abs().max().item() < 1e-9
    assert (a[:, 3:] - b[:, 3:]).abs().max().item() > 1e-6


def _batch(model, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    T, H, W = 4, 64, 96
    samples = []
    for b, n in enumerate((2, 1)):
        masks = torch.zeros(n, T, H, W)
        for i in range(n):
            for t in range(T):
                y0, x0 = 8 + 6 * t + 10 * i, 10 + 8 * t + 20 * i
                masks[i, t, y0:y0 + 20, x0:x0 + 24] = 1
        if b == 0:
            masks[1, 2] = 0  # object absent on one frame
        samples.append({"frames": torch.rand(T, 3, H, W, generator=g), "masks": masks,
                        "classes": torch.zeros(n, dtype=torch.long), "exhaustive": b == 0, "head": "agnostic"})
    tfs = [preprocess(s["masks"], (H // 8, W // 8), model.cfg.num_ids, prompt_prob=0.5, generator=g) for s in samples]
    targets, ids, active, hist = collate_targets(samples, tfs)
    frames = torch.stack([s["frames"] for s in samples]).to(dtype)
    return frames, ids, active, hist.to(dtype), targets


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_parallel_and_iterative_training_give_the_same_loss_and_gradients(preset):
    model = small_model(torch.float64, preset=preset).train()
    # BatchNorm in training mode normalises with the statistics of the whole batch of frames, which
    # couples the frames (B·T in parallel, B per step); the paper's encoder is frame-independent, as
    # ResNet with frozen BN (Mask2Former) and Swin/ConvNeXt (LayerNorm) are.
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    frames, ids, active, hist, targets = _batch(model, torch.float64)
    crit = SetCriterion(LossConfig(num_points=256))
    results = {}
    for mode in ("parallel", "iterative"):
        model.zero_grad()
        pred = run_model(model, frames, ids, active, hist, mode)
        losses = crit(model, pred, targets, torch.Generator().manual_seed(5))
        losses["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[mode] = (losses, grads)
    lp, gp = results["parallel"]
    li, gi = results["iterative"]
    assert lp["loss"].item() > 0.1
    for k in lp:
        assert abs(lp[k].item() - li[k].item()) < 1e-8, k
    assert gp.keys() == gi.keys() and len(gp) > 20
    for n in gp:
        assert (gp[n] - gi[n]).abs().max().item() < 1e-7, n


def test_history_marker_hand_made():
    D = 4
    ids = torch.tensor([[[1.0, 0, 0, 0], [0, 2.0, 0, 0]]])  # (1, 2, D)
    # 4 pixels: only object 0, only object 1, both (overlap), background
    masks = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]])
    s = history_marker(ids, masks, eps=1e-6)
    assert s.shape == (1, 4, D)
    torch.testing.assert_close(s[0, 0], torch.tensor([1.0, 0, 0, 0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(s[0, 1], torch.tensor([0, 2.0, 0, 0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(s[0, 2], torch.tensor([0.5, 1.0, 0, 0]), atol=1e-5, rtol=0)  # overlaps average
    assert torch.equal(s[0, 3], torch.zeros(D))  # background is exactly zero
    # soft (area-averaged) weights: weighted mean
    s2 = history_marker(ids, torch.tensor([[[0.25], [0.75]]]), eps=0.0)
    torch.testing.assert_close(s2[0, 0], torch.tensor([0.25, 1.5, 0, 0]))
    # a partially covered pixel of one object still gets (almost) its full ID vector
    s3 = history_marker(ids[:, :1], torch.tensor([[[0.5]]]), eps=1e-6)
    torch.testing.assert_close(s3[0, 0], torch.tensor([1.0, 0, 0, 0]), atol=1e-5, rtol=0)
