"""Training: a resumed run equals an uninterrupted one; DDP ranks end with identical weights;
the iterative (frame-by-frame) baseline trains through the same code."""
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch
from safetensors.torch import load_file

from conftest import subprocess_env
from ausm.train.trainer import TrainConfig, train

TINY = {"compressor_layers": 1, "history_decoder_layers": 1, "pixel_decoder_layers": 1}


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    """A DAVIS-2016-style root: 2 sequences of 6 frames 64x96, a square moving over noise."""
    root = tmp_path_factory.mktemp("davis")
    rng = np.random.default_rng(0)
    for s, seq in enumerate(["alpha", "beta"]):
        (root / "JPEGImages/240p" / seq).mkdir(parents=True)
        (root / "Annotations/240p" / seq).mkdir(parents=True)
        for t in range(6):
            img = rng.integers(0, 120, (64, 96, 3), dtype=np.uint8)
            m = np.zeros((64, 96), np.uint8)
            y, x = 10 + 3 * t, 10 + 5 * t + 20 * s
            img[y:y + 20, x:x + 24] = (230, 60, 40)
            m[y:y + 20, x:x + 24] = 255
            Image.fromarray(img).save(root / "JPEGImages/240p" / seq / f"{t:05d}.jpg", quality=95)
            Image.fromarray(m).save(root / "Annotations/240p" / seq / f"{t:05d}.png")
    (root / "ImageSets").mkdir()
    (root / "ImageSets/train.txt").write_text("alpha\nbeta\n")
    return root


def _tc(root, out, **kw):
    base = dict(davis_root=str(root), out=str(out), steps=4, batch_size=1, clip_len=3, size=(64, 96),
                model_overrides=TINY, num_points=64, ckpt_every=2, log_every=1, warmup=1, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_resumed_run_equals_uninterrupted_run(davis_root, tmp_path):
    train(_tc(davis_root, tmp_path / "a"))
    train(_tc(davis_root, tmp_path / "b", max_steps=2))  # "killed" after step 2
    hist_b2 = json.loads((tmp_path / "b/history.json").read_text())
    assert [h["step"] for h in hist_b2] == [1, 2]
    train(_tc(davis_root, tmp_path / "b"), resume=True)
    ha = json.loads((tmp_path / "a/history.json").read_text())
    hb = json.loads((tmp_path / "b/history.json").read_text())
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [1, 2, 3, 4]
    for x, y in zip(ha, hb):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6), (x, y)
    wa = load_file(str(tmp_path / "a/last/model.safetensors"))
    wb = load_file(str(tmp_path / "b/last/model.safetensors"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5
    assert ha[0]["loss"] > 0


def test_resume_without_state_fails(davis_root, tmp_path):
    from ausm.errors import CheckpointError

    with pytest.raises(CheckpointError, match="resume"):
        train(_tc(davis_root, tmp_path / "none"), resume=True)


def test_iterative_mode_trains(davis_root, tmp_path):
    train(_tc(davis_root, tmp_path / "it", steps=2, mode="iterative"))
    h = json.loads((tmp_path / "it/history.json").read_text())
    assert len(h) == 2 and all(np.isfinite(x["loss"]) for x in h)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_two_ranks_end_with_identical_weights(davis_root, tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc_per_node=2", "-m", "ausm.train", f"davis_root={davis_root}",
           f"out={tmp_path / 'ddp'}", "steps=2", "batch_size=1", "clip_len=2", "size=[64,96]",
           f"model_overrides={json.dumps(TINY)}", "num_points=64", "threads=1", "log_every=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    sums = json.loads((tmp_path / "ddp/rank_checksums.json").read_text())
    assert len(sums) == 2 and sums[0] == sums[1]
    assert (tmp_path / "ddp/last/model.safetensors").exists()


def test_stage_chain_and_frozen_backbone(davis_root, tmp_path):
    """A later stage starts from the previous stage's checkpoint; Stage 3 freezes the backbone."""
    train(_tc(davis_root, tmp_path / "s1", steps=1))
    train(_tc(davis_root, tmp_path / "s3", steps=2, init_from=str(tmp_path / "s1/last"), freeze_backbone=True))
    w1 = load_file(str(tmp_path / "s1/last/model.safetensors"))
    w3 = load_file(str(tmp_path / "s3/last/model.safetensors"))
    bb = [k for k in w1 if k.startswith("encoder.backbone.")]
    assert bb and all(torch.equal(w1[k], w3[k]) for k in bb)  # frozen (BN statistics included)
    assert any(not torch.equal(w1[k], w3[k]) for k in w1 if k.startswith("compressor."))


def test_trainable_prefixes_freeze_everything_else(davis_root, tmp_path):
    """``trainable`` trains only the named parameters (a head on frozen features); frozen BatchNorm
    statistics stay; resuming such a run works; a prefix that matches nothing is a ConfigError."""
    from ausm.errors import ConfigError

    train(_tc(davis_root, tmp_path / "s1", steps=1))
    tc = _tc(davis_root, tmp_path / "head", steps=2, max_steps=1, init_from=str(tmp_path / "s1/last"),
             trainable=["class_heads.agnostic"], lr=1e-2)
    train(tc)
    train(dataclasses.replace(tc, max_steps=0), resume=True)
    w1 = load_file(str(tmp_path / "s1/last/model.safetensors"))
    w2 = load_file(str(tmp_path / "head/last/model.safetensors"))
    head = [k for k in w1 if k.startswith("class_heads.agnostic")]
    assert head and all(not torch.equal(w1[k], w2[k]) for k in head)
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if k not in head)  # BN running stats included
    with pytest.raises(ConfigError, match="matches no parameter"):
        train(_tc(davis_root, tmp_path / "bad", steps=1, trainable=["no_such_module"]))


def test_tensorboard_logs_scalars_and_mask_images(davis_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_tc(davis_root, tmp_path / "tb", steps=2, vis_every=2))
    acc = EventAccumulator(str(tmp_path / "tb/tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "train/iters_per_sec"} <= set(tags["scalars"])
    assert "train/masks" in tags["images"]
    img = acc.Images("train/masks")[-1]
    assert img.width == 3 * 96 and img.height == 2 * 64


def test_nonfinite_steps_are_skipped_then_training_stops(davis_root, tmp_path, monkeypatch):
    from ausm.errors import TrainingError
    from ausm.train import trainer

    real = trainer.SetCriterion.__call__

    def poisoned(self, model, pred, targets, generator=None):
        out = real(self, model, pred, targets, generator)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.SetCriterion, "__call__", poisoned)
    with pytest.raises(TrainingError, match="3 consecutive non-finite"):
        train(_tc(davis_root, tmp_path / "nan", steps=10, max_nonfinite=3, ckpt_every=1))
    # no update was applied: the checkpointed weights are the initial ones
    from ausm.config import get_config
    from ausm.model import AUSMModel

    torch.manual_seed(0)
    init = AUSMModel(get_config("ausm-tiny", **TINY)).state_dict()  # parameters and BN statistics
    saved = load_file(str(tmp_path / "nan/last/model.safetensors"))
    assert saved.keys() == init.keys()
    assert all(torch.equal(saved[k], init[k]) for k in init)


BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def test_skipped_nonfinite_step_restores_batchnorm_statistics(davis_root, tmp_path, monkeypatch):
    """Step 2's loss is NaN: the step is skipped and the BatchNorm running statistics its forward pass
    updated are restored bit for bit; the normal steps 1 and 3 do change them."""
    from ausm.train import trainer

    real = trainer.SetCriterion.__call__
    calls = []

    def poisoned(self, model, pred, targets, generator=None):
        out = real(self, model, pred, targets, generator)
        calls.append(1)
        if len(calls) == 2:  # one criterion call per step here (batch 1, no accumulation)
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.SetCriterion, "__call__", poisoned)
    train(_tc(davis_root, tmp_path / "bn", steps=3, ckpt_every=1, keep_every=1))
    assert len(calls) == 3
    hist = json.loads((tmp_path / "bn/history.json").read_text())
    assert [np.isfinite(h["loss"]) for h in hist] == [True, False, True]
    from ausm.config import get_config
    from ausm.model import AUSMModel

    init = AUSMModel(get_config("ausm-tiny", **TINY)).state_dict()
    w1, w2, w3 = (load_file(str(tmp_path / f"bn/ckpts/step_{s:05d}/model.safetensors")) for s in (1, 2, 3))
    bn = [k for k in w1 if k.endswith(BN_STATS)]
    assert len(bn) >= 3 * 10 and all(k.startswith("encoder.backbone.") for k in bn)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # skipped: weights and BN statistics bit for bit
    for before, after in ((init, w1), (w2, w3)):  # a normal step updates every BN layer's statistics
        assert all(not torch.equal(before[k], after[k]) for k in bn if k.endswith(("running_mean", "running_var")))
        assert all(int(after[k]) == int(before[k]) + 1 for k in bn if k.endswith("num_batches_tracked"))
