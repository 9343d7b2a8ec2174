"""DUTS-TR-layout salient-object reader (issue #13): splits, masks as one object, pseudo-video clips."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ausm.data.mixing import build_clip_dataset
from ausm.data.salient import SalientImages
from ausm.errors import InputError

from conftest import SHARED, needs_shared


def _make_duts(root, n=5):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for i in range(n):
        name = f"img_{i:03d}"
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / "images" / f"{name}.webp")
        m = np.zeros((40, 60), bool)
        if i != 3:  # image 3 has an empty mask
            m[5 + i:20 + i, 10:30 + i] = True
        Image.fromarray(m).convert("1").save(root / "masks" / f"{name}.png")
        names.append(name)
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return names


def test_splits_masks_and_clips(tmp_path):
    names = _make_duts(tmp_path)
    tr, ho = SalientImages(tmp_path, "train", holdout=2), SalientImages(tmp_path, "holdout", holdout=2)
    assert [im["file_name"] for im in tr.images] == names[:3]
    assert [im["file_name"] for im in ho.images] == names[3:]
    assert len(SalientImages(tmp_path, "all", holdout=2)) == 5
    img = tr.read_image(1)
    assert img.shape == (40, 60, 3) and img.dtype == np.uint8
    masks, classes, ids = tr.read_annotations(1)
    assert masks.shape == (1, 40, 60) and masks.sum() == 15 * 21 and classes.tolist() == [0] and ids == [1]
    assert ho.read_annotations(0)[0].shape == (0, 40, 60)  # empty mask: no object
    ds = build_clip_dataset({"type": "duts", "root": str(tmp_path), "holdout": 2}, clip_len=3, size=(32, 64))
    s = ds[0]
    assert s["frames"].shape == (3, 3, 32, 64) and s["masks"].shape[1:] == (3, 32, 64)
    assert s["dataset"] == "duts" and s["head"] == "agnostic" and s["exhaustive"]


def test_bad_layouts(tmp_path):
    with pytest.raises(InputError, match="list.txt"):
        SalientImages(tmp_path)
    _make_duts(tmp_path, 3)
    with pytest.raises(InputError, match="split"):
        SalientImages(tmp_path, "val")
    with pytest.raises(InputError, match="holdout"):
        SalientImages(tmp_path, holdout=3)
    (tmp_path / "images" / "img_000.webp").unlink()
    with pytest.raises(InputError, match="no image for 'img_000'"):
        SalientImages(tmp_path, holdout=1).read_image(0)


@needs_shared
def test_real_duts_tr():
    root = SHARED / "duts_tr__aviroshkovan_DUTS-TR"
    tr, ho = SalientImages(root, "train"), SalientImages(root, "holdout")
    assert len(tr) == 5700 and len(ho) == 300
    assert not {i["file_name"] for i in tr.images} & {i["file_name"] for i in ho.images}
    img = ho.read_image(0)
    m, _, _ = ho.read_annotations(0)
    assert m.shape[1:] == img.shape[:2] and 0.01 < m.mean() < 0.9
