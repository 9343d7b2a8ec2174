"""Copy-paste multi-object clips (issue #13: several objects that move differently, for ID binding)."""
from __future__ import annotations

import pytest
import torch

from ausm.data.copypaste import CopyPasteClips
from ausm.data.mixing import build_clip_dataset
from ausm.data.salient import SalientImages
from ausm.errors import ConfigError

from test_salient import _make_duts


def _spec(root, **kw):
    duts = {"type": "duts", "root": str(root), "split": "all", "holdout": 0}
    return {"type": "copy_paste", "base": dict(duts), "objects": dict(duts), **kw}


def test_pasted_objects_are_new_tracks_in_front(tmp_path):
    _make_duts(tmp_path, 5)
    ds = build_clip_dataset(_spec(tmp_path, num_objects=[2, 2], size_range=[0.4, 0.6]), clip_len=3,
                            size=(48, 64), seed=1)
    assert isinstance(ds, CopyPasteClips)
    base = ds.base
    for i in range(6):
        s, b = ds[i], base[i]
        m = s["masks"]
        assert s["frames"].shape == b["frames"].shape == (3, 3, 48, 64)
        assert m.shape[1:] == (3, 48, 64) and set(m.unique().tolist()) <= {0.0, 1.0}
        assert 1 <= m.shape[0] <= b["masks"].shape[0] + 2 and len(s["classes"]) == m.shape[0]
        assert m.sum(0).max() <= 1  # pasted objects occlude, labels never overlap
        pasted = m[-1] > 0
        assert pasted.any()
        # the pixels under the last pasted object changed; the base object lost them
        diff = (s["frames"] - b["frames"]).abs().sum(1)  # (T, H, W)
        assert diff[pasted].mean() > diff[~(m.sum(0) > 0)].mean()
        if b["masks"].shape[0]:
            assert (s["masks"][0] <= b["masks"][0]).all()
    again = ds[3]
    assert torch.equal(again["frames"], ds[3]["frames"]) and torch.equal(again["masks"], ds[3]["masks"])
    assert not torch.equal(ds[3]["frames"], ds[4]["frames"])


def test_pasted_objects_move(tmp_path):
    _make_duts(tmp_path, 3)
    ds = build_clip_dataset(_spec(tmp_path, num_objects=[1, 1], speed=0.2), clip_len=4, size=(64, 96), seed=2)
    moved = 0
    for i in range(5):
        lab = ds[i]["masks"][-1]
        cy = [(torch.nonzero(lab[t]).float().mean(0)) for t in range(4) if lab[t].any()]
        moved += int(len(cy) >= 2 and (cy[0] - cy[-1]).norm() > 1.0)
    assert moved >= 3


def test_duplicates_are_the_same_cutout(tmp_path):
    _make_duts(tmp_path, 4)
    ds = build_clip_dataset(_spec(tmp_path, num_objects=[2, 2], duplicate_prob=1.0, size_range=[0.5, 0.5]),
                            clip_len=2, size=(64, 96), seed=0)
    s = ds[0]
    a, b = s["masks"][-2:, 0]  # the two pasted copies on frame 0 (same size, same shape)
    assert a.any() and b.any()
    assert abs(int(a.sum()) - int(b.sum())) <= 0.35 * max(int(a.sum()), int(b.sum()))
    with pytest.raises(ConfigError, match="duplicate_prob"):
        build_clip_dataset(_spec(tmp_path, duplicate_prob=2.0))


def test_bad_copy_paste_specs(tmp_path):
    _make_duts(tmp_path, 3)
    with pytest.raises(ConfigError, match="base"):
        build_clip_dataset({"type": "copy_paste", "objects": _spec(tmp_path)["objects"]})
    with pytest.raises(ConfigError, match="num_objects"):
        build_clip_dataset(_spec(tmp_path, num_objects=[3, 1]))
    with pytest.raises(ConfigError, match="bad options"):
        build_clip_dataset(_spec(tmp_path, colour="red"))
    synth = {"type": "copy_paste", "base": {"type": "synthetic", "num_objects": [1, 1]},
             "objects": _spec(tmp_path)["objects"]}
    ds = build_clip_dataset(synth, clip_len=2, size=(32, 32))
    with pytest.raises(ConfigError, match="agnostic"):
        ds[0]
    assert len(SalientImages(tmp_path, "all", holdout=0)) == 3
