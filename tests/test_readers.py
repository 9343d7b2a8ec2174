"""Tests for the dataset readers (YouTube-VOS / MOSE / custom folders, SA-V, YouTube-VIS / OVIS, COCO
pseudo-videos), the generic clip sampler and dataset mixing. Fixtures are written in each dataset's
official format; the real-data tests use ``../shared/data``."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from conftest import SHARED, needs_shared

from ausm.data import (COCOInstances, DavisDataset, DavisVideos, MixedClips, MOSEDataset, PseudoVideoClips,
                       SAVDataset, VideoClips, VOSFolderDataset, YouTubeVOSDataset, YTVISDataset,
                       build_mixture, decode_segmentation, read_video_frames)
from ausm.errors import ConfigError, InputError
from ausm.io import save_index_png

H, W = 32, 48
RED, GREEN, BLUE = (220, 20, 20), (20, 220, 20), (20, 20, 220)


def box(y0, y1, x0, x1, h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def paint(masks_colors, k: int = 0, h=H, w=W) -> np.ndarray:
    """A grey frame (slightly different per k) with coloured objects."""
    f = np.full((h, w, 3), 100 + 3 * k, np.uint8)
    for m, c in masks_colors:
        f[m] = c
    return f


def save_jpg(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)


def rle_str(m: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def rle_uncompressed(m: np.ndarray) -> dict:
    """Uncompressed COCO RLE: run lengths over the column-major pixels, starting with zeros."""
    flat = m.astype(np.uint8).flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return {"size": list(m.shape), "counts": [int(c) for c in counts]}


# =============================================================== YouTube-VOS / MOSE / folders
def obj1(k):  # present from frame 0, moves right
    return box(4, 14, 2 + k, 14 + k)


def obj2(k):  # first appears at frame 5
    return box(18, 28, 30, 44) if k >= 5 else np.zeros((H, W), bool)


def write_vos_video(d: Path, vid: str, n: int, annotated, objs):
    """JPEGs for all n frames, palette PNGs only for ``annotated`` frames; objs = [(id, fn, colour)]."""
    for k in range(n):
        layers = [(fn(k), c) for _, fn, c in objs]
        save_jpg(d / "JPEGImages" / vid / f"{k:05d}.jpg", paint(layers, k))
        if k in annotated:
            ids = np.zeros((H, W), np.uint8)
            for oid, fn, _ in objs:
                ids[fn(k)] = oid
            (d / "Annotations" / vid).mkdir(parents=True, exist_ok=True)
            save_index_png(d / "Annotations" / vid / f"{k:05d}.png", ids)


@pytest.fixture(scope="module")
def ytvos_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ytvos")
    sp = root / "train"
    write_vos_video(sp, "vidA", 11, {0, 5, 10}, [(1, obj1, RED), (2, obj2, GREEN)])
    write_vos_video(sp, "vidB", 4, {0, 1, 2, 3}, [(3, lambda k: box(8, 24, 10 + k, 30 + k), BLUE)])
    meta = {"videos": {
        "vidA": {"objects": {"1": {"category": "cat", "frames": ["00000", "00005", "00010"]},
                             "2": {"category": "dog", "frames": ["00005", "00010"]}}},
        "vidB": {"objects": {"3": {"category": "fish", "frames": [f"{k:05d}" for k in range(4)]}}}}}
    (sp / "meta.json").write_text(json.dumps(meta))
    return root


def test_ytvos_listing_and_sparse_annotations(ytvos_root):
    ds = YouTubeVOSDataset(ytvos_root, split="train", name="ytvos2019")
    assert ds.videos == ["vidA", "vidB"] and len(ds) == 2
    assert ds.meta_path == ytvos_root / "train" / "meta.json"
    assert ds.num_frames("vidA") == 11 and ds.annotated_frames("vidA") == [0, 5, 10]
    assert ds.annotated_frames("vidB") == [0, 1, 2, 3]
    assert ds.objects("vidA")["2"]["category"] == "dog" and ds.object_ids("vidA") == [1, 2]
    assert ds.head == "agnostic" and ds.exhaustive is False
    c = ds.load("vidA", [0, 3, 5])
    assert c.frames.shape == (3, H, W, 3) and c.frames.dtype == np.uint8
    assert c.annotated.tolist() == [True, False, True]
    assert c.object_ids == [1, 2] and c.classes.tolist() == [0, 0]
    assert np.array_equal(c.ids[0], obj1(0).astype(np.uint8))  # object 2 not there yet
    assert not c.ids[1].any()  # unannotated frame: no labels
    assert np.array_equal(c.ids[2] == 2, obj2(5)) and np.array_equal(c.ids[2] == 1, obj1(5))


def test_ytvos_clips_annotated_frames_only(ytvos_root):
    ds = YouTubeVOSDataset(ytvos_root, split="train", videos=["vidA"], name="ytvos2018")
    clips = VideoClips(ds, clip_len=3, max_stride=2, size=(H, W), scale=(1.0, 1.0), flip=0.0, seed=0,
                       reverse=0.0, samples_per_epoch=5)
    s = clips[0]
    assert s["frame_indices"] == [0, 5, 10]  # 3 annotated frames: the only 3-clip in order
    assert s["annotated"].tolist() == [True] * 3 and s["dataset"] == "ytvos2018" and s["head"] == "agnostic"
    assert s["exhaustive"] is False and s["classes"].tolist() == [0, 0]
    m = s["masks"]
    assert m.shape == (2, 3, H, W)
    # late object: absent on the first frame, present afterwards; masks equal the PNGs
    assert not m[1, 0].any() and m[1, 1].any()
    for t, k in enumerate([0, 5, 10]):
        assert torch.equal(m[0, t].bool(), torch.from_numpy(obj1(k)))
        assert torch.equal(m[1, t].bool(), torch.from_numpy(obj2(k)))
    ref = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in
                    (ds.frame_paths("vidA")[k] for k in (0, 5, 10))]).astype(np.float32) / 255
    np.testing.assert_allclose(s["frames"].permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)


def test_ytvos_clips_all_frames_and_dropped_objects(ytvos_root):
    ds = YouTubeVOSDataset(ytvos_root, split="train", videos=["vidA"])
    clips = VideoClips(ds, clip_len=4, max_stride=3, size=(32, 32), frames="all", seed=1)
    for i in range(6):
        s = clips[i]
        idx = s["frame_indices"]
        assert s["annotated"].tolist() == [k % 5 == 0 for k in idx] and s["annotated"].any()
        assert s["frames"].shape == (4, 3, 32, 32)
        m = s["masks"]
        assert not m[:, ~s["annotated"]].any()  # no labels on unannotated frames
        assert all(m[j][s["annotated"]].any() for j in range(m.shape[0]))  # every kept row is visible
    # an instance not visible in any annotated frame of the clip is dropped (object 2 before frame 5)
    s = clips.sample("vidA", [0, 1, 2, 3], random.Random(0))
    assert s["masks"].shape[0] == 1 and s["annotated"].tolist() == [True, False, False, False]
    s = clips.sample("vidA", [3, 4, 5, 6])
    assert s["masks"].shape[0] == 2 and s["annotated"].tolist() == [False, False, True, False]


def test_mose_meta_and_custom_folder(ytvos_root, tmp_path):
    # MOSE: meta_<split>.json beside the split folder
    meta = json.loads((ytvos_root / "train" / "meta.json").read_text())
    mose = tmp_path / "mose"
    (mose / "train").mkdir(parents=True)
    for sub in ("JPEGImages", "Annotations"):
        (mose / "train" / sub).symlink_to(ytvos_root / "train" / sub)
    (mose / "meta_train.json").write_text(json.dumps(meta))
    ds = MOSEDataset(mose)
    assert ds.name == "mose" and ds.meta_path == mose / "meta_train.json" and ds.videos == ["vidA", "vidB"]
    # a custom DAVIS-style folder without any meta file: objects come from the PNGs
    cu = VOSFolderDataset(ytvos_root / "train", meta=False)
    assert cu.videos == ["vidA", "vidB"] and cu.name == "custom" and cu.object_ids("vidA") == [1, 2]
    s = VideoClips(cu, clip_len=2, size=(32, 32), seed=0)[3]
    assert s["frames"].shape == (2, 3, 32, 32) and s["dataset"] == "custom"
    with pytest.raises(InputError, match="does not exist"):
        YouTubeVOSDataset(tmp_path / "nothing")
    with pytest.raises(InputError, match="'ghost'"):
        YouTubeVOSDataset(ytvos_root, videos=["ghost"])


def test_mask_png_variants(tmp_path):
    from ausm.data.ytvos import read_index_png
    from ausm.io import PALETTE_ARRAY
    ids = np.zeros((H, W), np.uint8)
    ids[2:8, 3:9], ids[10:20, 20:30], ids[0, :] = 1, 7, 255
    Image.fromarray(PALETTE_ARRAY[ids]).save(tmp_path / "rgb.png")  # colour PNG in the DAVIS palette
    assert np.array_equal(read_index_png(tmp_path / "rgb.png"), ids)
    Image.fromarray(np.where(ids > 0, 255, 0).astype(np.uint8), mode="L").save(tmp_path / "bin.png")
    assert set(np.unique(read_index_png(tmp_path / "bin.png", binary=True)).tolist()) == {0, 1}
    bad = np.zeros((H, W, 3), np.uint8)
    bad[0, 0] = (1, 2, 3)
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(InputError, match="palette"):
        read_index_png(tmp_path / "bad.png")


# =============================================================== SA-V
SAV_N = 22  # 24 fps video; masklets on frames 0, 4, ..., 20 (6 annotated frames)


def sav_obj0(k):
    return box(4, 16, 2 + k, 14 + k)


def sav_obj1(k):  # appears at frame 8
    return box(18, 30, 24, 40) if k >= 8 else np.zeros((H, W), bool)


def write_mp4(path: Path, frames, fps=24, gop=4):
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": "4", "preset": "ultrafast", "g": str(gop), "keyint_min": str(gop)}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.fixture(scope="module")
def sav_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sav")
    d = root / "sav_000"
    d.mkdir()
    frames = [paint([(sav_obj0(k), RED), (sav_obj1(k), GREEN)], k) for k in range(SAV_N)]
    write_mp4(d / "sav_000001.mp4", frames)
    ann = list(range(0, SAV_N, 4))
    masklet = [[rle_str(sav_obj0(k)), rle_str(sav_obj1(k))] for k in ann]
    doc = {"video_id": "sav_000001", "video_duration": SAV_N / 24, "video_frame_count": float(SAV_N),
           "video_height": float(H), "video_width": float(W), "video_resolution": float(H * W),
           "video_environment": "Indoor", "video_split": "train", "masklet": masklet,
           "masklet_id": [0, 1], "masklet_first_appeared_frame": [0, 2],
           "masklet_frame_count": [len(ann), len(ann)], "masklet_num": 2, "masklet_type": ["manual", "manual"]}
    (d / "sav_000001_manual.json").write_text(json.dumps(doc))
    auto = dict(doc, masklet=[[rle_str(box(0, 4, 0, 4))] for _ in ann], masklet_id=[0], masklet_num=1)
    (d / "sav_000001_auto.json").write_text(json.dumps(auto))
    write_mp4(root / "sav_000002.mp4", frames[:4])  # a video without masklets is not listed
    return root


def test_sav_reader(sav_root):
    ds = SAVDataset(sav_root)
    assert ds.videos == ["sav_000001"] and ds.head == "agnostic" and ds.exhaustive is False
    assert ds.num_frames("sav_000001") == SAV_N
    assert ds.annotated_frames("sav_000001") == [0, 4, 8, 12, 16, 20]
    c = ds.load("sav_000001", [0, 2, 8, 21])
    assert c.annotated.tolist() == [True, False, True, False]
    assert c.masks.shape == (2, 4, H, W) and c.object_ids == [0, 1]
    assert np.array_equal(c.masks[0, 0], sav_obj0(0)) and not c.masks[1, 0].any()  # late object
    assert np.array_equal(c.masks[1, 2], sav_obj1(8)) and not c.masks[:, [1, 3]].any()
    # frames: the right video frames (lossy codec → compare to the painted frames loosely)
    for j, k in enumerate([0, 2, 8, 21]):
        ref = paint([(sav_obj0(k), RED), (sav_obj1(k), GREEN)], k).astype(int)
        assert np.abs(c.frames[j].astype(int) - ref).mean() < 8
    both = SAVDataset(sav_root, annotations="both")
    assert both.object_ids("sav_000001") == ["manual:0", "manual:1", "auto:0"]
    assert both.read_annotations("sav_000001", [4]).masks.shape == (3, 1, H, W)


def test_sav_seek_matches_sequential_decoding(sav_root):
    p = sav_root / "sav_000" / "sav_000001.mp4"
    idx = [13, 5, 20, 5, 0]
    a = read_video_frames(p, idx, seek=True)
    b = read_video_frames(p, idx, seek=False)
    assert a.shape == (5, H, W, 3) and np.array_equal(a, b)
    with pytest.raises(InputError, match="no frame"):
        read_video_frames(p, [SAV_N + 3])


def test_sav_clips(sav_root):
    ds = SAVDataset(sav_root)
    clips = VideoClips(ds, clip_len=3, max_stride=2, size=(32, 32), seed=0)
    for i in range(3):
        s = clips[i]
        assert all(k % 4 == 0 for k in s["frame_indices"]) and s["annotated"].all()
        assert s["dataset"] == "sav" and s["masks"].shape[1:] == (3, 32, 32) and 1 <= s["masks"].shape[0] <= 2
    s = VideoClips(ds, clip_len=4, frames="all", size=(32, 32), seed=2)[0]
    assert s["annotated"].tolist() == [k % 4 == 0 for k in s["frame_indices"]]


# =============================================================== YouTube-VIS / OVIS
@pytest.fixture(scope="module")
def ytvis_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ytvis")
    n = 4
    names = [f"v1/{k:05d}.jpg" for k in range(n)]
    a_m = [box(2, 12, 2 + 2 * k, 14 + 2 * k) for k in range(n)]
    b_m = [None, None, box(16, 30, 20, 40), box(16, 30, 22, 42)]  # late track
    poly = [[30.0, 2.0, 46.0, 2.0, 46.0, 12.0, 30.0, 12.0]]  # a 16x10 box as a polygon
    for k in range(n):
        layers = [(a_m[k], RED)] + ([(b_m[k], GREEN)] if b_m[k] is not None else [])
        save_jpg(root / "JPEGImages" / names[k], paint(layers, k))
    names2 = [f"v2/{k:05d}.jpg" for k in range(3)]
    for k in range(3):
        save_jpg(root / "JPEGImages" / names2[k], paint([], k))
    doc = {"videos": [{"id": 10, "file_names": names, "height": H, "width": W, "length": n},
                      {"id": 11, "file_names": names2, "height": H, "width": W, "length": 3}],
           "categories": [{"id": 7, "name": "zebra"}, {"id": 1, "name": "person"}, {"id": 3, "name": "cat"}],
           "annotations": [
               {"id": 1, "video_id": 10, "category_id": 3, "iscrowd": 0,
                "segmentations": [rle_str(m) for m in a_m], "areas": [int(m.sum()) for m in a_m]},
               {"id": 2, "video_id": 10, "category_id": 7, "iscrowd": 0,
                "segmentations": [None if m is None else rle_uncompressed(m) for m in b_m]},
               {"id": 3, "video_id": 11, "category_id": 1, "iscrowd": 0, "segmentations": [poly, None, poly]},
               {"id": 4, "video_id": 10, "category_id": 1, "iscrowd": 1,
                "segmentations": [rle_str(box(0, 2, 0, 2))] * n}]}
    (root / "train.json").write_text(json.dumps(doc))
    return root


def test_ytvis_reader(ytvis_root):
    ds = YTVISDataset(ytvis_root / "train.json", head="ovis")
    assert ds.videos == ["v1", "v2"] and ds.name == "ovis" and ds.head == "ovis" and ds.exhaustive is True
    assert ds.class_names == ["person", "cat", "zebra"] and ds.num_classes == 3
    assert [a["id"] for a in ds.tracks("v1")] == [1, 2]  # crowd excluded
    c = ds.load("v1", [0, 1, 2, 3])
    assert c.frames.shape == (4, H, W, 3) and c.annotated.all()
    assert c.classes.tolist() == [1, 2]  # category 3 → 1, category 7 → 2 (sorted ids 1, 3, 7)
    assert np.array_equal(c.masks[0, 1], box(2, 12, 4, 16))  # compressed RLE
    assert not c.masks[1, :2].any() and np.array_equal(c.masks[1, 2], box(16, 30, 20, 40))  # null / list RLE
    p = ds.read_annotations("v2", [0, 1, 2])
    assert p.masks[0, 0].sum() == 16 * 10 and not p.masks[0, 1].any() and p.classes.tolist() == [0]
    crowd = YTVISDataset(ytvis_root / "train.json", include_crowd=True)
    assert len(crowd.tracks("v1")) == 3
    s = VideoClips(ds, clip_len=3, size=(H, W), scale=(1.0, 1.0), flip=0.0, reverse=0.0, seed=0).sample("v1", [0, 1, 2])
    assert s["head"] == "ovis" and s["exhaustive"] is True and s["classes"].tolist() == [1, 2]
    fr = s["frames"].permute(0, 2, 3, 1).numpy()
    red = fr[..., 0] > 0.6
    assert np.array_equal(red, s["masks"][0].numpy() > 0)  # masks on the painted objects


def test_ytvis_errors(tmp_path):
    bad = {"videos": [{"id": 1, "file_names": ["a/0.jpg"], "height": 4, "width": 4, "length": 1}],
           "categories": [{"id": 1}],
           "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [None, None]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="2 segmentations"):
        YTVISDataset(tmp_path / "bad.json")
    with pytest.raises(InputError, match="size"):
        decode_segmentation(rle_str(box(0, 2, 0, 2, 4, 4)), 5, 4)
    with pytest.raises(InputError):
        YTVISDataset(tmp_path / "missing.json")


# =============================================================== COCO pseudo-videos
CH, CW = 48, 64
C_RED = box(6, 26, 6, 30, CH, CW)
C_GREEN = np.zeros((CH, CW), bool)
C_GREEN[(np.mgrid[0:CH, 0:CW][0] - 32) ** 2 + (np.mgrid[0:CH, 0:CW][1] - 44) ** 2 < 100] = True
C_CROWD = box(36, 46, 2, 20, CH, CW)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    save_jpg(root / "img" / "a.jpg", paint([(C_RED, RED), (C_GREEN, GREEN), (C_CROWD, BLUE)], 0, CH, CW))
    save_jpg(root / "img" / "b.jpg", paint([], 1, CH, CW))
    save_jpg(root / "img" / "c.jpg", paint([(C_CROWD, BLUE)], 2, CH, CW))
    poly = [[6.0, 6.0, 30.0, 6.0, 30.0, 26.0, 6.0, 26.0]]
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": CH, "width": CW},
                      {"id": 2, "file_name": "b.jpg", "height": CH, "width": CW},
                      {"id": 3, "file_name": "c.jpg", "height": CH, "width": CW}],
           "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 5, "name": "plane"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0, "segmentation": poly},
               {"id": 2, "image_id": 1, "category_id": 90, "iscrowd": 0, "segmentation": rle_str(C_GREEN)},
               {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": rle_uncompressed(C_CROWD)},
               {"id": 4, "image_id": 3, "category_id": 1, "iscrowd": 1, "segmentation": rle_uncompressed(C_CROWD)}]}
    (root / "instances_train.json").write_text(json.dumps(doc))
    return root


def test_coco_reader(coco_root):
    ds = COCOInstances(coco_root / "instances_train.json", coco_root / "img")
    assert len(ds) == 1 and ds.images[0]["file_name"] == "a.jpg"  # empty and crowd-only images skipped
    assert ds.num_classes == 3 and ds.class_names == ["person", "plane", "toothbrush"]
    masks, classes, ids = ds.read_annotations(0)
    assert ids == [1, 2] and classes.tolist() == [1, 2]  # crowd (id 3) excluded
    assert np.array_equal(masks[1], C_GREEN)
    assert abs(int(masks[0].sum()) - int(C_RED.sum())) <= 50  # polygon rasterisation
    assert len(COCOInstances(coco_root / "instances_train.json", coco_root / "img", skip_empty=False)) == 3
    # the crowd RLE itself decodes (uncompressed counts)
    assert np.array_equal(decode_segmentation(rle_uncompressed(C_CROWD), CH, CW), C_CROWD)


def test_coco_pseudo_video(coco_root):
    ds = COCOInstances(coco_root / "instances_train.json", coco_root / "img")
    clips = PseudoVideoClips(ds, clip_len=4, size=(32, 48), rotation=15.0, seed=0)
    for i in range(3):
        s = clips[i]
        fr, m = s["frames"], s["masks"]
        assert fr.shape == (4, 3, 32, 48) and m.shape[1:] == (4, 32, 48) and m.shape[0] in (1, 2)
        assert s["head"] == "coco" and s["exhaustive"] is True and s["annotated"].all()
        assert s["dataset"] == "coco" and s["sequence"] == "a.jpg" and s["frame_indices"] == [0] * 4
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        # every frame is a different augmentation of the image
        for a in range(4):
            for b in range(a + 1, 4):
                assert (fr[a] - fr[b]).abs().mean() > 0.01
        # masks stay on the image content: pixels under a mask have the object's colour
        for row, cls in zip(m, s["classes"].tolist()):
            ch = {1: 0, 2: 1}[cls]  # plane = red, toothbrush = green
            for t in range(4):
                px = fr[t].permute(1, 2, 0)[row[t] > 0]
                if len(px) >= 10:
                    dominant = (px.argmax(-1) == ch) & (px[:, ch] > 0.5)
                    assert dominant.float().mean() > 0.85
    # no augmentation: every frame is the image and the masks are the annotations
    still = PseudoVideoClips(ds, clip_len=2, size=(CH, CW), scale=(1.0, 1.0), rotation=0.0, flip=0.0)
    s = still[0]
    img = np.asarray(Image.open(coco_root / "img" / "a.jpg").convert("RGB")).astype(np.float32) / 255
    for t in range(2):
        np.testing.assert_allclose(s["frames"][t].permute(1, 2, 0).numpy(), img, atol=1e-5)
    masks, _, _ = ds.read_annotations(0)
    assert np.array_equal(s["masks"][:, 0].numpy() > 0, masks)


# =============================================================== mixing
class _Fake(torch.utils.data.Dataset):
    def __init__(self, name):
        self.name = name

    def __len__(self):
        return 100

    def __getitem__(self, i):
        return {"dataset": self.name, "i": i}


def test_mixing_weights_and_determinism():
    mix = MixedClips([_Fake("a"), _Fake("b"), _Fake("c")], [6, 3, 1], samples_per_epoch=2000, seed=0)
    assert len(mix) == 2000 and mix.weights == pytest.approx([0.6, 0.3, 0.1])
    counts = Counter(mix.choose(i) for i in range(2000))
    for k, p in enumerate([0.6, 0.3, 0.1]):
        assert abs(counts[k] / 2000 - p) < 0.04
    again = MixedClips([_Fake("a"), _Fake("b"), _Fake("c")], [0.6, 0.3, 0.1], seed=0)
    assert [again.choose(i) for i in range(200)] == [mix.choose(i) for i in range(200)]
    other = MixedClips([_Fake("a"), _Fake("b"), _Fake("c")], [6, 3, 1], seed=1)
    assert [other.choose(i) for i in range(200)] != [mix.choose(i) for i in range(200)]
    assert mix[7] == {"dataset": "abc"[mix.choose(7)], "i": 7}
    zero = MixedClips([_Fake("a"), _Fake("b")], [0, 1])
    assert {zero.choose(i) for i in range(300)} == {1}
    for bad in ([1], [-1, 2], [0, 0]):
        with pytest.raises(ConfigError):
            MixedClips([_Fake("a"), _Fake("b")], bad)


def test_build_mixture_from_specs(ytvos_root, ytvis_root, coco_root, sav_root):
    specs = [{"type": "ytvos", "root": str(ytvos_root), "weight": 1, "name": "ytvos2019"},
             {"type": "ytvis", "ann_file": str(ytvis_root / "train.json"), "head": "ytvis2019", "weight": 1},
             {"type": "coco", "ann_file": str(coco_root / "instances_train.json"),
              "image_root": str(coco_root / "img"), "weight": 1, "clip": {"rotation": 5.0}},
             {"type": "sav", "root": str(sav_root), "weight": 1}]
    mix = build_mixture(specs, clip_len=3, size=(32, 32), samples_per_epoch=40, seed=0)
    names = ["ytvos2019", "ytvis2019", "coco", "sav"]
    seen = set()
    for i in range(8):
        s = mix[i]
        assert s["dataset"] == names[mix.choose(i)]
        assert s["frames"].shape == (3, 3, 32, 32) and s["annotated"].shape == (3,)
        assert s["masks"].shape[1:] == (3, 32, 32) and s["classes"].shape == (s["masks"].shape[0],)
        seen.add(s["dataset"])
    assert len(seen) >= 3
    b = build_mixture(specs, clip_len=3, size=(32, 32), samples_per_epoch=40, seed=0)
    assert torch.equal(b[5]["frames"], mix[5]["frames"]) and torch.equal(b[5]["masks"], mix[5]["masks"])
    with pytest.raises(ConfigError, match="unknown dataset type"):
        build_mixture([{"type": "kinetics"}])


# =============================================================== real data
@needs_shared
def test_real_aot_demo_youtube_vos_layout():
    root = SHARED / "aot_demo__yoxu515_aot-benchmark" / "datasets" / "Demo"
    ds = YouTubeVOSDataset(root, split=None, image_dir="images", ann_dir="masks", name="aot-demo")
    assert ds.videos == ["1007_YCTBBdbKSSg"]
    vid = ds.videos[0]
    assert ds.num_frames(vid) == 44 and ds.annotated_frames(vid) == [0]  # only the first frame is labelled
    assert ds.frame_paths(vid)[0].name == "00000693.jpg"
    assert ds.object_ids(vid) == list(range(1, 44))  # 43 objects
    clips = VideoClips(ds, clip_len=3, max_stride=2, size=(64, 96), frames="all", seed=0)
    s = clips[0]
    assert s["annotated"].sum() == 1 and s["frame_indices"][int(s["annotated"].nonzero()[0, 0])] == 0
    assert s["frames"].shape == (3, 3, 64, 96) and 0 < s["masks"].shape[0] <= 43
    assert not s["masks"][:, ~s["annotated"]].any()
    s = VideoClips(ds, clip_len=2, size=(64, 96), scale=(1.0, 1.0), seed=0, max_objects=10)[0]
    assert s["frame_indices"] == [0, 0] and s["masks"].shape[0] == 10  # a random subset of the 43


@needs_shared
def test_real_davis2016_240p_as_custom_folder():
    root = SHARED / "davis2016"
    ds = VOSFolderDataset(root, image_dir="JPEGImages/240p", ann_dir="Annotations/240p", binary=True, name="davis2016")
    assert len(ds) == 30 and ds.videos[0] == "bear" and ds.num_frames("bear") == 82
    davis = DavisVideos(DavisDataset(root, split="train", resolution="240p", year=2016))
    a, b = ds.load("bear", [0, 40, 81]), davis.load("bear", [0, 40, 81])
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.frames, b.frames) and a.object_ids == [1]
    s = VideoClips(ds, clip_len=3, size=(128, 224), seed=0)[0]
    assert s["frames"].shape == (3, 3, 128, 224) and s["masks"].shape[0] <= 1 and s["annotated"].all()


@needs_shared
def test_real_ytvis_gt_json_annotations():
    p = SHARED / "derived" / "ytvis_format_mmtracking_demo" / "valid_gt_ytvis.json"
    ds = YTVISDataset(p, head="ytvis2019")
    assert ds.videos == ["0043f083b5"] and ds.num_classes == 40 and ds.num_frames("0043f083b5") == 20
    tracks = ds.tracks("0043f083b5")
    assert len(tracks) == 2
    idx = [0, 1, 2, 7, 8, 19]
    c = ds.read_annotations("0043f083b5", idx)
    assert c.masks.shape == (2, 6, 720, 1280) and c.classes.tolist() == [5, 5]  # sedan: id 6 → 5
    vis = c.masks.any((2, 3))
    assert vis[0].tolist() == [False, False, True, True, True, True]
    assert vis[1].tolist() == [False, False, False, False, True, True]
    for i, a in enumerate(tracks):
        areas = a.get("areas")
        if areas:
            for j, k in enumerate(idx):
                if areas[k]:
                    assert abs(int(c.masks[i, j].sum()) - areas[k]) <= 0.01 * areas[k] + 2
    with pytest.raises(InputError):  # no frames shipped with this JSON
        ds.read_frames("0043f083b5", [0])


def test_mixed_samples_feed_the_trainer(ytvos_root, ytvis_root, coco_root):
    """Samples of every reader go through the trainer's teacher-forcing ``prepare_batch`` together."""
    from ausm.train.batch import prepare_batch
    specs = [{"type": "ytvos", "root": str(ytvos_root)},
             {"type": "ytvis", "ann_file": str(ytvis_root / "train.json"), "head": "ytvis2019"},
             {"type": "coco", "ann_file": str(coco_root / "instances_train.json"), "image_root": str(coco_root / "img")}]
    mix = build_mixture(specs, clip_len=3, size=(32, 32), seed=0)
    samples = [mix.datasets[k][k] for k in range(3)]
    frames, ids, active, hist, targets = prepare_batch(samples, 16, 0.5, 0.1, torch.Generator().manual_seed(0))
    n = max(s["masks"].shape[0] for s in samples)
    assert frames.shape == (3, 3, 3, 32, 32) and ids.shape == (3, n) and hist.shape == (3, 3, n, 16)
    assert targets.heads == ["agnostic", "ytvis2019", "coco"]
    assert targets.det_enabled.tolist() == [False, True, True]


def test_training_on_a_weighted_mixture_with_class_heads(ytvis_root, coco_root, ytvos_root, tmp_path):
    """`ausm train` with datasets=[...]: VIS (class-aware), COCO pseudo-videos and sparse VOS in one run."""
    from ausm.errors import ConfigError
    from ausm.train.trainer import TrainConfig, train

    specs = [
        {"type": "ytvis", "ann_file": str(ytvis_root / "train.json"), "image_root": str(ytvis_root / "JPEGImages"),
         "head": "ytvis2019", "weight": 1.0},
        {"type": "coco", "ann_file": str(coco_root / "instances_train.json"), "image_root": str(coco_root / "img"),
         "weight": 1.0},
        {"type": "ytvos", "root": str(ytvos_root), "split": "train", "weight": 0.5},
    ]
    base = dict(datasets=specs, steps=3, batch_size=2, clip_len=3, size=(32, 64), num_points=32, threads=1,
                log_every=1, ckpt_every=3, warmup=1)
    small = {"compressor_layers": 1, "history_decoder_layers": 1, "pixel_decoder_layers": 1}
    with pytest.raises(ConfigError, match="class head"):
        train(TrainConfig(out=str(tmp_path / "bad"), model_overrides=small, **base))
    train(TrainConfig(out=str(tmp_path / "mix"), **base,
                      model_overrides={**small, "class_heads": {"ytvis2019": 3, "coco": 3}}))
    hist = json.loads((tmp_path / "mix/history.json").read_text())
    assert [h["step"] for h in hist] == [1, 2, 3] and all(np.isfinite(h["loss"]) for h in hist)


# =============================================================== ausm benchmark on the fixtures
def test_benchmark_vos_layout_writes_submission_and_scores(ytvos_root, tmp_path):
    """YouTube-VOS protocol: objects prompted where they first appear (obj 2 at frame 5); the
    submission layout is written and zipped; the train-like GT (more than first masks) is scored."""
    import zipfile

    from conftest import make_model
    from ausm.eval.benchmark import benchmark_vos

    res = benchmark_vos(make_model(0), ytvos_root, split="train", dataset="ytvos2019", out=tmp_path / "o",
                        progress=False)
    assert res["videos"] == 2 and res["scored"]
    assert 0.0 <= res["J&F-Mean"] <= 1.0
    names = zipfile.ZipFile(tmp_path / "o/submission.zip").namelist()
    assert "Annotations/vidA/00010.png" in names and "Annotations/vidB/00003.png" in names
    assert len([n for n in names if n.startswith("Annotations/vidA/")]) == 11
    from PIL import Image

    a5 = np.array(Image.open(tmp_path / "o/Annotations/vidA/00005.png"))
    assert (a5 == 2).sum() == obj2(5).sum() and ((a5 == 2) == obj2(5)).all()  # the prompt on its first frame
    a4 = np.array(Image.open(tmp_path / "o/Annotations/vidA/00004.png"))
    assert not (a4 == 2).any()  # not before it appears


def test_benchmark_vis_writes_topk_results_and_scores(ytvis_root, tmp_path):
    from conftest import make_model
    from ausm.eval.benchmark import benchmark_vis
    from ausm.eval.ytvis import evaluate_ytvis

    model = make_model(0, class_heads={"ytvis2019": 3})
    res = benchmark_vis(model, ytvis_root / "train.json", image_root=ytvis_root / "JPEGImages", head="ytvis2019",
                        out=tmp_path / "v", top_k=4, progress=False, fg_threshold=0.01)
    results = json.loads((tmp_path / "v/results.json").read_text())
    assert res["num_results"] == len(results) and len(results) <= 4 * 2
    for r in results:
        assert r["category_id"] in (1, 3, 7) and 0 <= r["score"] <= 1
        assert len(r["segmentations"]) == (4 if r["video_id"] == 10 else 3)
    assert "AP" in res and evaluate_ytvis(str(ytvis_root / "train.json"), results)["AP"] == res["AP"]
    with pytest.raises(Exception, match="class head"):
        benchmark_vis(make_model(0), ytvis_root / "train.json", image_root=ytvis_root / "JPEGImages",
                      head="ytvis2019", out=tmp_path / "w", progress=False)
