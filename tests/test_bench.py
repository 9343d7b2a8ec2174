"""`ausm bench` prints one JSON record per measurement with the settings, then a markdown table
(numbers are reported, never asserted as speed targets)."""
import json

import numpy as np
import pytest

from ausm.cli import main

from conftest import make_model


def _records(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def test_train_speed_records(capsys):
    assert main(["bench", "train-speed", "--frames", "1,2", "--iters", "1", "--warmup", "0", "--size", "64x96",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    recs = _records(out)
    assert [(r["T"], r["mode"]) for r in recs] == [(1, "parallel"), (1, "iterative"), (2, "parallel"), (2, "iterative")]
    for r in recs:
        assert r["sec_per_iter"] > 0 and r["resolution"] == "64x96" and r["torch"] and r["threads"] == 1
    assert "| T | parallel s/iter | iterative s/iter | speed-up |" in out


def test_stream_records_constant_state(capsys, small_ckpt):
    assert main(["bench", "stream", "--checkpoint", str(small_ckpt), "--frames", "30", "--report-at", "10,30",
                 "--size", "48x80", "--threads", "1"]) == 0
    recs = _records(capsys.readouterr().out)
    assert [r["frames"] for r in recs] == [10, 30]
    assert recs[0]["state_nbytes"] == recs[1]["state_nbytes"] > 0
    assert recs[0]["flops_per_frame"] > 0 and recs[0]["p99_ms"] >= recs[0]["p50_ms"] > 0


def test_stream_vs_interleaves_two_models(capsys, small_ckpt, tmp_path):
    from ausm.checkpoint import save_model

    other = save_model(make_model(1, hidden_dim=32, mask_dim=32), tmp_path / "other")
    assert main(["bench", "stream", "--checkpoint", str(small_ckpt), "--vs", str(other), "--frames", "12",
                 "--report-at", "12", "--size", "48x80", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    recs = _records(out)
    assert [r["model"].split(" ")[1] for r in recs] == [f"({small_ckpt})", f"({other})"]
    assert recs[0]["fps_ratio"] == 1.0 and recs[1]["fps_ratio"] == pytest.approx(recs[1]["fps"] / recs[0]["fps"])
    assert recs[0]["state_nbytes"] > recs[1]["state_nbytes"] > 0  # D = 64 vs 32: both measured, each its own
    assert "| model |" in out


def _sam2_skip_reason():
    try:
        from transformers import Sam2VideoInferenceSession, Sam2VideoModel  # noqa: F401
    except ImportError as e:
        return f"transformers lacks Sam2VideoModel / Sam2VideoInferenceSession ({e})"
    return None


needs_sam2 = pytest.mark.skipif(_sam2_skip_reason() is not None, reason=str(_sam2_skip_reason()))


def test_vs_sam2_sizes():
    from ausm.speed.vs_sam2 import area_matched_side, sam2_sides

    assert area_matched_side((256, 416)) == 320  # 102,400 px vs ausm-tiny's 106,496 at 480p
    assert sam2_sides("default,auto,1024,256", (256, 416)) == [(1024, "default"), (320, "area-matched"),
                                                                (256, "explicit")]


@needs_sam2
def test_vs_sam2_bad_size_is_input_error(capsys):
    assert main(["bench", "vs-sam2", "--sam2-sizes", "100", "--frames", "2", "--warmup", "1"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


@needs_sam2
def test_vs_sam2_records_and_table(capsys, small_ckpt):
    assert main(["bench", "vs-sam2", "--checkpoint", str(small_ckpt), "--size", "48x80", "--frames", "3",
                 "--warmup", "1", "--sam2-sizes", "auto,64", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    recs = _records(out)
    assert [r["model"].split(" ")[0] for r in recs] == ["ausm-tiny", "sam2.1-hiera-tiny"]  # auto = 64: one SAM2 row
    ausm, sam2 = recs
    assert ausm["internal"] == "64x96" and sam2["internal"] == "64x64" and sam2["size_rule"] == "area-matched"
    for r in recs:
        assert r["bench"] == "vs-sam2" and r["input"] == "48x80" and r["frames"] == 3 and r["measured_frames"] == 2
        assert r["p99_ms"] >= r["p50_ms"] > 0 and r["fps"] > 0 and r["flops_per_frame"] > 0
        assert r["threads"] == 1 and r["torch"] and r["transformers"] and r["cpu"] and r["peak_rss_mb"] > 0
        assert r["dtype"] == "float32" and r["p50_first_third_ms"] > 0 and r["p50_last_third_ms"] > 0
    assert ausm["state_growth_bytes_per_frame"] == 0  # fixed-size state
    assert sam2["state_growth_bytes_per_frame"] > 0  # SAM2's session keeps every frame
    assert sam2["params"] > 30e6 and sam2["forward_p50_ms"] > 0 and sam2["sam2_num_maskmem"] == 7
    assert ausm["paired_ratio_p50"] == 1.0 and sam2["paired_ratio_p50"] > 0
    assert ausm["ratio_p50"] == 1.0 and sam2["ratio_p50"] == sam2["p50_ms"] / sam2["ausm_p50_same_frames_ms"]
    assert "| model | internal | size rule | frames | p50 ms | p99 ms |" in out
    assert "| p50 ratio (SAM2/ausm) | p99 ratio (SAM2/ausm) | paired ratio first/last third |" in out
    row = [l for l in out.splitlines() if l.startswith("| sam2.1-hiera-tiny | 64x64")]
    assert len(row) == 1 and float(row[0].split("|")[-4]) > 0


@needs_sam2
def test_bench_objects_records_and_table(capsys, small_ckpt):
    """``ausm bench objects``: one record per (model, count), ausm and SAM2 tracking the same n objects."""
    assert main(["bench", "objects", "--checkpoint", str(small_ckpt), "--size", "48x80", "--objects", "1,3",
                 "--frames", "3", "--warmup", "1", "--sam2-side", "64", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    recs = _records(out)
    assert [(r["model"], r["objects"]) for r in recs] == [("ausm", 1), ("sam2", 1), ("ausm", 3), ("sam2", 3)]
    for r in recs:
        assert r["bench"] == "objects" and r["measured_frames"] == 2 and r["p99_ms"] >= r["p50_ms"] > 0
    assert recs[0]["ratio_to_1"] == 1.0 and recs[2]["ratio_to_1"] == recs[2]["p50_ms"] / recs[0]["p50_ms"]
    assert recs[1]["sam2_internal"] == "64x64"
    assert "| objects | ausm p50 ms | ausm ×1 | SAM2 p50 ms | SAM2 ×1 | SAM2 / ausm |" in out


def test_bench_objects_counts_and_masks():
    from ausm.errors import InputError
    from ausm.speed.objects import object_masks, parse_counts

    assert parse_counts("4,1,max", 8) == [1, 4, 8]
    with pytest.raises(InputError, match="ID capacity"):
        parse_counts("9", 8)
    masks = object_masks(5, (48, 80))
    assert len(masks) == 5 and all(m.any() for m in masks)
    assert int(np.sum(masks, 0).max()) == 1  # no two objects overlap
