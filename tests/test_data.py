"""Tests for the DAVIS reader (ausm.data.davis) and the training clip sampler (ausm.data.clips)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, needs_shared

from ausm.data.clips import DavisClips, collate_clips
from ausm.data.davis import DavisDataset
from ausm.errors import InputError
from ausm.io import save_index_png

H, W = 64, 96


def frame(k: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x * 2 + 10 * k) % 256, (y * 3) % 256, np.full_like(x, 40 * k % 256)], -1).astype(np.uint8)


def mask2016(k: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[10 + k:30 + k, 20 + 2 * k:50 + 2 * k] = 255
    return m


def ids2017(k: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[5:25, 5 + k:35 + k] = 1
    m[35:60, 50:90 - k] = 2
    m[25:27, :] = 255  # a void band
    return m


def write_seq(root: Path, seq: str, n: int, mask_fn, palette: bool, res: str = "480p"):
    fd = root / "JPEGImages" / res / seq
    ad = root / "Annotations" / res / seq
    fd.mkdir(parents=True)
    ad.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(frame(k)).save(fd / f"{k:05d}.jpg", quality=98)
        if palette:
            save_index_png(ad / f"{k:05d}.png", mask_fn(k))
        else:
            Image.fromarray(mask_fn(k), mode="L").save(ad / f"{k:05d}.png")


@pytest.fixture
def root2016(tmp_path) -> Path:
    r = tmp_path / "davis2016"
    write_seq(r, "seqA", 5, mask2016, palette=False)
    write_seq(r, "seqB", 3, mask2016, palette=False)
    (r / "ImageSets" / "2016").mkdir(parents=True)
    (r / "ImageSets" / "2016" / "train.txt").write_text("seqA\nseqB\n")
    (r / "ImageSets" / "2016" / "val.txt").write_text("seqB\n")
    return r


@pytest.fixture
def root2017(tmp_path) -> Path:
    r = tmp_path / "davis2017"
    write_seq(r, "two", 6, ids2017, palette=True)
    (r / "ImageSets" / "2017").mkdir(parents=True)
    (r / "ImageSets" / "2017" / "train.txt").write_text("two\n")
    return r


# ------------------------------------------------------------------ DavisDataset
def test_davis2016_reads_sequences_and_masks(root2016):
    ds = DavisDataset(root2016, split="train", year=2016)
    assert ds.sequences == ["seqA", "seqB"] and len(ds) == 2
    fp, mp = ds.frame_paths("seqA"), ds.mask_paths("seqA")
    assert [p.name for p in fp] == [f"{k:05d}.jpg" for k in range(5)]
    assert [p.name for p in mp] == [f"{k:05d}.png" for k in range(5)]
    f = ds.read_frame(fp[2])
    assert f.shape == (H, W, 3) and f.dtype == np.uint8
    assert np.abs(f.astype(int) - frame(2)).mean() < 3  # JPEG
    m = ds.read_mask(mp[2])
    assert m.dtype == np.uint8 and set(np.unique(m).tolist()) == {0, 1}
    assert np.array_equal(m, (mask2016(2) > 0).astype(np.uint8))
    assert ds.object_ids("seqA") == [1]
    assert DavisDataset(root2016, split="val").sequences == ["seqB"]
    assert DavisDataset(root2016, split=None).sequences == ["seqA", "seqB"]
    assert DavisDataset(root2016, sequences=["seqB"]).sequences == ["seqB"]


def test_davis2017_ids_and_void(root2017):
    ds = DavisDataset(root2017, split="train", year=2017)
    assert ds.sequences == ["two"]
    m = ds.read_mask(ds.mask_paths("two")[0])
    assert set(np.unique(m).tolist()) == {0, 1, 2, 255}
    assert np.array_equal(m, ids2017(0))
    assert ds.object_ids("two") == [1, 2]  # void excluded
    # read as DAVIS-2016 the same files are binary: every non-zero value is the object
    ds16 = DavisDataset(root2017, split=None, year=2016)
    assert set(np.unique(ds16.read_mask(ds16.mask_paths("two")[0])).tolist()) == {0, 1}


def test_image_sets_with_frame_paths(root2016):
    """The original DAVIS-2016 ImageSets list frame/mask path pairs, one line per frame."""
    d = root2016 / "ImageSets" / "480p"
    d.mkdir()
    lines = [f"/JPEGImages/480p/{s}/{k:05d}.jpg /Annotations/480p/{s}/{k:05d}.png"
             for s, n in (("seqB", 3), ("seqA", 5)) for k in range(n)]
    d.joinpath("trainval.txt").write_text("\n".join(lines) + "\n")
    assert DavisDataset(root2016, split="trainval").sequences == ["seqB", "seqA"]


def test_davis_errors(root2016, tmp_path):
    with pytest.raises(InputError, match="no Annotations/480p"):
        DavisDataset(tmp_path / "missing")
    with pytest.raises(InputError, match="no Annotations/240p"):
        DavisDataset(root2016, resolution="240p")
    with pytest.raises(InputError, match="split 'test'"):
        DavisDataset(root2016, split="test")
    with pytest.raises(InputError, match="year"):
        DavisDataset(root2016, year=2018)
    with pytest.raises(InputError, match="'seqC'"):
        DavisDataset(root2016, sequences=["seqC"])
    (root2016 / "ImageSets" / "2016" / "bad.txt").write_text("seqA\nghost\n")
    with pytest.raises(InputError, match="'ghost'"):
        DavisDataset(root2016, split="bad")
    # annotations without frames
    (root2016 / "Annotations" / "480p" / "noframes").mkdir()
    ds = DavisDataset(root2016, sequences=["noframes"])
    with pytest.raises(InputError, match="no frames"):
        ds.frame_paths("noframes")
    with pytest.raises(InputError):
        DavisClips(ds)


# ------------------------------------------------------------------ DavisClips
def test_clips_shapes_and_values(root2017):
    ds = DavisDataset(root2017, split="train", year=2017)
    clips = DavisClips(ds, clip_len=3, max_stride=2, size=(32, 64), samples_per_epoch=7, seed=0)
    assert len(clips) == 7
    for i in range(3):
        s = clips[i]
        fr, mk = s["frames"], s["masks"]
        assert fr.shape == (3, 3, 32, 64) and fr.dtype == torch.float32
        assert fr.min() >= 0 and fr.max() <= 1
        assert mk.dtype == torch.float32 and mk.ndim == 4 and mk.shape[1:] == (3, 32, 64)
        assert set(torch.unique(mk).tolist()) <= {0.0, 1.0}
        n = mk.shape[0]
        assert 1 <= n <= 2  # ids 1 and 2, never the void 255
        assert s["classes"].shape == (n,) and s["classes"].dtype == torch.long
        assert s["head"] == "agnostic" and s["dataset"] == "davis2017" and s["sequence"] == "two"
        assert (mk.sum(0) <= 1).all()  # instances do not overlap
        idx = s["frame_indices"]
        assert len(idx) == 3 and all(0 <= j < 6 for j in idx)
        steps = {b - a for a, b in zip(idx, idx[1:])}
        assert len(steps) == 1 and abs(steps.pop()) in (1, 2)  # one stride, forwards or backwards
    assert collate_clips([s]) == [s]


def test_clips_without_augmentation_match_the_files(root2017):
    """scale 1, no flip, crop == image size: the sample is exactly the annotated frames."""
    ds = DavisDataset(root2017, split="train", year=2017)
    clips = DavisClips(ds, clip_len=4, max_stride=1, size=(H, W), scale=(1.0, 1.0), flip=0.0, seed=3)
    s = clips[0]
    idx = s["frame_indices"]
    gt = np.stack([ids2017(k) for k in idx])
    objs = [o for o in (1, 2) if (gt == o).any()]
    assert s["masks"].shape == (len(objs), 4, H, W)
    for row, o in zip(s["masks"].numpy(), objs):
        assert np.array_equal(row, (gt == o).astype(np.float32))
    ref = np.stack([ds.read_frame(ds.frame_paths("two")[k]) for k in idx]).astype(np.float32) / 255
    np.testing.assert_allclose(s["frames"].permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)


def test_clips_deterministic(root2016):
    ds = DavisDataset(root2016, split="train")
    a = DavisClips(ds, clip_len=3, size=(32, 64), seed=1)
    b = DavisClips(ds, clip_len=3, size=(32, 64), seed=1)
    for i in (0, 5):
        sa, sb = a[i], b[i]
        assert sa["sequence"] == sb["sequence"] and sa["frame_indices"] == sb["frame_indices"]
        assert torch.equal(sa["frames"], sb["frames"]) and torch.equal(sa["masks"], sb["masks"])
        assert torch.equal(a[i]["frames"], sa["frames"])  # re-reading the same index
    # other indices / seeds draw other clips
    draws = {(a[i]["sequence"], tuple(a[i]["frame_indices"]), float(a[i]["frames"].sum())) for i in range(8)}
    assert len(draws) > 1
    c = DavisClips(ds, clip_len=3, size=(32, 64), seed=2)
    assert any(not torch.equal(a[i]["frames"], c[i]["frames"]) for i in range(4))


def test_clips_2016_masks(root2016):
    ds = DavisDataset(root2016, split="train")
    s = DavisClips(ds, clip_len=2, size=(32, 32), seed=0)[0]
    assert s["frames"].shape == (2, 3, 32, 32)
    assert s["masks"].shape[0] in (0, 1) and s["masks"].shape[1:] == (2, 32, 32)
    assert s["dataset"] == "davis2016"


def test_clip_longer_than_sequence(root2016):
    ds = DavisDataset(root2016, sequences=["seqB"])  # 3 frames
    s = DavisClips(ds, clip_len=5, max_stride=3, size=(32, 32), seed=0)[0]
    assert s["frames"].shape[0] == 5
    assert all(0 <= j < 3 for j in s["frame_indices"])


# ------------------------------------------------------------------ real data
@needs_shared
def test_real_davis2016_train_240p():
    root = SHARED / "davis2016"
    ds = DavisDataset(root, split="train", resolution="240p", year=2016)
    assert len(ds) == 30
    assert ds.sequences[:3] == ["bear", "bmx-bumps", "boat"]
    fp, mp = ds.frame_paths("bear"), ds.mask_paths("bear")
    assert len(fp) == len(mp) == 82
    f = ds.read_frame(fp[0])
    assert f.shape == (240, 427, 3)
    m = ds.read_mask(mp[0])
    assert m.shape == (240, 427) and set(np.unique(m).tolist()) == {0, 1}
    assert ds.object_ids("bear") == [1]
    clips = DavisClips(ds, clip_len=3, size=(128, 224), seed=0)
    for i in range(2):
        s = clips[i]
        assert s["frames"].shape == (3, 3, 128, 224)
        assert s["masks"].shape[1:] == (3, 128, 224) and s["masks"].shape[0] <= 1
        assert s["sequence"] in ds.sequences


@needs_shared
def test_real_davis2016_val_480p():
    ds = DavisDataset(SHARED / "davis2016", split="val", resolution="480p", year=2016)
    assert len(ds) == 18 and ds.sequences[0] == "blackswan"
    m = ds.read_mask(ds.mask_paths("blackswan")[0])
    assert m.shape == (480, 854) and m.any()
