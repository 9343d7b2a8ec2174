"""`ausm bench` prints one JSON record per measurement with the settings, then a markdown table
(numbers are reported, never asserted as speed targets)."""
import json

from ausm.cli import main


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
