"""YouTube-VIS video mask AP (ausm.eval.ytvis): hand-computed cases and the real mmtracking sample."""
from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ausm.errors import InputError
from ausm.eval.cli import add_eval_parser
from ausm.eval.ytvis import (
    STAT_NAMES, _parse_gt, _parse_results, evaluate_ytvis, format_summary, video_iou_matrix,
)
from conftest import SHARED, needs_shared

H, W = 40, 60
YTVIS_GT = SHARED / "derived" / "ytvis_format_mmtracking_demo" / "valid_gt_ytvis.json"
YTVIS_RES = (SHARED / "ytvis_cocovid_demo__open-mmlab_mmtracking" / "5c6aa67" / "tests" / "data" / "demo_vis_data"
             / "results.json")


def box(y0, x0, h=10, w=10):
    m = np.zeros((H, W), np.uint8)
    m[y0:y0 + h, x0:x0 + w] = 1
    return m


def rle(m):
    if m is None:
        return None
    r = mask_utils.encode(np.asfortranarray(m))
    r["counts"] = r["counts"].decode("ascii")
    return r


def gt_json(tracks, n_videos=1, n_frames=3):
    """tracks: [(video_id, category_id, [mask | None per frame], iscrowd)]."""
    anns = []
    for i, (vid, cat, masks, crowd) in enumerate(tracks):
        anns.append({"id": i + 1, "video_id": vid, "category_id": cat, "iscrowd": crowd,
                     "segmentations": [rle(m) for m in masks],
                     "areas": [None if m is None else int(m.sum()) for m in masks]})
    return {"videos": [{"id": v + 1, "height": H, "width": W, "length": n_frames} for v in range(n_videos)],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": anns}


def result(vid, cat, score, masks):
    return {"video_id": vid, "category_id": cat, "score": score, "segmentations": [rle(m) for m in masks]}


A = box(5, 5)
B = box(25, 40)


def stats(gt, res):
    return evaluate_ytvis(copy.deepcopy(gt), copy.deepcopy(res))["stats"]


def test_perfect_prediction():
    gt = gt_json([(1, 1, [A, A, A], 0)])
    s = stats(gt, [result(1, 1, 0.9, [A, A, A])])
    # the track's mean area is 100 < 128²: small; no medium / large ground truth → -1
    # (precision is tp / (tp + fp + eps), as in the API: 1 − 2e-16)
    assert s == pytest.approx([1, 1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1], abs=1e-12)


def test_video_iou_sums_over_frames_and_handles_none():
    gt = gt_json([(1, 1, [A, A, None], 0)])
    shifted = np.roll(A, 5, axis=1)  # half of A
    res = [result(1, 1, 0.9, [None, shifted, A])]
    videos, _, gts, _ = _parse_gt(gt)
    dts = _parse_results(copy.deepcopy(res), videos)
    # frame 0: gt only (100), frame 1: 50 shared of 150, frame 2: detection only (100)
    assert video_iou_matrix(dts, gts)[0, 0] == 50 / 350
    assert stats(gt, res)[:3] == [0, 0, 0]


def test_greedy_matching_by_score():
    gt = gt_json([(1, 1, [A, A, A], 0)])
    res = [result(1, 1, 0.9, [A, A, None]),  # IoU 2/3: matches at .50-.65, then a false positive
           result(1, 1, 0.8, [A, A, A])]     # IoU 1: a false positive while the first one matches
    s = stats(gt, res)
    # AP per threshold: 1 at .50/.55/.60/.65, 0.5 above (the true positive comes second)
    assert s == pytest.approx([0.7, 1, 0.5, 0.7, -1, -1, 0.4, 1, 1, 1, -1, -1], abs=1e-12)


def test_crowd_ground_truth_is_ignored():
    gt = gt_json([(1, 1, [A, A, A], 0), (1, 1, [B, B, B], 1)])
    res = [result(1, 1, 0.95, [B, B, B]), result(1, 1, 0.94, [B, B, B]),  # both on the crowd region
           result(1, 1, 0.9, [A, A, A])]
    s = stats(gt, res)
    assert s[0] == pytest.approx(1) and s[8] == pytest.approx(1)
    # without the crowd annotation the same detections are false positives ranked first
    s2 = stats(gt_json([(1, 1, [A, A, A], 0)]), res)
    assert s2[0] == pytest.approx(1 / 3)


def test_max_dets():
    gt = gt_json([(1, 1, [A, A, A], 0), (1, 1, [B, B, B], 0)])
    s = stats(gt, [result(1, 1, 0.9, [A, A, A]), result(1, 1, 0.8, [B, B, B])])
    assert s[0] == pytest.approx(1)
    assert s[6] == pytest.approx(0.5) and s[7] == pytest.approx(1)  # AR@1, AR@10


def test_category_must_match():
    gt = gt_json([(1, 1, [A, A, A], 0)])
    s = stats(gt, [result(1, 2, 0.9, [A, A, A])])
    assert s[0] == 0 and s[8] == 0


def test_area_ranges_use_the_listed_ground_truth_areas():
    gt = gt_json([(1, 1, [A, A, A], 0)])
    gt["annotations"][0]["areas"] = [None, 0, 200 ** 2]  # None and 0 are left out of the mean: 40000, medium
    s = stats(gt, [result(1, 1, 0.9, [A, A, A])])
    assert s[0] == pytest.approx(1)
    assert s[3:6] == [-1, pytest.approx(1), -1]
    assert s[9:12] == [-1, pytest.approx(1), -1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_uncompressed_rle_and_polygons_give_the_same_result():
    gt = gt_json([(1, 1, [A, A, A], 0)])
    res = [result(1, 1, 0.9, [A, A, None])]
    ref = stats(gt, res)
    unc = copy.deepcopy(gt)
    for seg_list in (a["segmentations"] for a in unc["annotations"]):
        for t, seg in enumerate(seg_list):
            m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            flat = m.flatten(order="F")
            change = np.flatnonzero(np.diff(flat)) + 1
            bounds = np.concatenate([[0], change, [flat.size]])
            counts = np.diff(bounds).tolist()
            if flat[0] == 1:
                counts = [0] + counts
            seg_list[t] = {"size": [H, W], "counts": counts}
    assert stats(unc, res) == ref
    poly = copy.deepcopy(gt)
    for seg_list in (a["segmentations"] for a in poly["annotations"]):
        for t in range(len(seg_list)):
            # the polygon of the 10x10 box at (5, 5): pixel corners 5..15
            seg_list[t] = [[5, 5, 15, 5, 15, 15, 5, 15]]
    poly_stats = stats(poly, res)
    assert poly_stats[1] == ref[1]


def test_summary_lines_and_names():
    s = evaluate_ytvis(gt_json([(1, 1, [A, A, A], 0)]), [result(1, 1, 0.9, [A, A, A])])
    text = format_summary(s)
    assert text.splitlines()[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"
    assert text.splitlines()[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.000"
    assert [s[k] for k in STAT_NAMES] == s["stats"]


def test_bad_input(tmp_path):
    gt = gt_json([(1, 1, [A, A, A], 0)])
    with pytest.raises(InputError, match="not in the ground truth"):
        evaluate_ytvis(gt, [result(7, 1, 0.9, [A, A, A])])
    small = np.zeros((H, W - 1), np.uint8)
    with pytest.raises(InputError, match="differs from the video size"):
        evaluate_ytvis(gt, [result(1, 1, 0.9, [A, small, A])])
    with pytest.raises(InputError, match="JSON list"):
        evaluate_ytvis(gt, {"video_id": 1})
    with pytest.raises(InputError, match="lacks 'segmentations'"):
        evaluate_ytvis(gt, [{"video_id": 1, "category_id": 1, "score": 0.5}])
    with pytest.raises(InputError, match="does not exist"):
        evaluate_ytvis(tmp_path / "missing.json", [])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        evaluate_ytvis(gt, bad)
    with pytest.raises(InputError, match="videos"):
        evaluate_ytvis({"annotations": []}, [])
    assert evaluate_ytvis(gt, [])["stats"][0] == 0  # no results at all: AP 0


@pytest.mark.parametrize("res, word", [
    (result(1, 1, float("nan"), [A, A, A]), "non-finite score"),
    (result(1, 9, 0.9, [A, A, A]), "category_id 9"),
    (result(1, 1, 0.9, [A] * 10), "10 segmentations for a video of 3 frames"),
    (result(1, 1, 0.9, []), "non-empty list"),
    ({**result(1, 1, 0.9, [A, A, A]), "segmentations": [{"size": [H, W], "counts": "@@@@@@"}] * 3}, "invalid RLE"),
])
def test_malformed_results_are_refused(res, word):
    """As strict as the official tools' reading: the video and the field are named (issue #15)."""
    gt = gt_json([(1, 1, [A, A, A], 0)])
    with pytest.raises(InputError, match=word):
        evaluate_ytvis(gt, [res])


def run_cli(argv):
    p = argparse.ArgumentParser()
    add_eval_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_writes_the_12_numbers(tmp_path, capsys):
    g, r, out = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "out" / "ap.json"
    g.write_text(json.dumps(gt_json([(1, 1, [A, A, A], 0)])))
    r.write_text(json.dumps([result(1, 1, 0.9, [A, A, None])]))
    assert run_cli(["eval", "ytvis", "--gt", str(g), "--pred", str(r), "--json", str(out)]) == 0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert len(res["stats"]) == 12 and res["AP"] == res["stats"][0]


# The official YouTube-VIS API (youtubevos/cocoapi YTVOSeval, as vendored in mmtrack 0.14.0 from PyPI) on
# this sample: see docs/EVAL.md.
OFFICIAL_SAMPLE = [0.6504950495049505, 1.0, 1.0, 0.6504950495049505, -1.0, -1.0, 0.35, 0.65, 0.65, 0.65, -1.0, -1.0]


@needs_shared
def test_real_youtube_vis_sample():
    res = evaluate_ytvis(YTVIS_GT, YTVIS_RES, return_arrays=True)
    assert res["stats"] == pytest.approx(OFFICIAL_SAMPLE, abs=1e-6)
    assert res["num_results"] == 9 and res["num_videos"] == 1
    assert res["precision"].shape == (10, 101, 40, 4, 3)


def test_eval_davis_refuses_bad_workers(tmp_path, capsys):
    from ausm.cli import main
    assert main(["eval", "davis", "--gt-root", str(tmp_path), "--pred", str(tmp_path), "--workers", "-3"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
