"""Still-image prompt benchmark (ausm.eval.stills, ``ausm benchmark duts``)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ausm.errors import InputError
from ausm.eval.stills import benchmark_stills, center_point, mask_iou, tight_box

from conftest import subprocess_env
from test_salient import _make_duts


def test_geometry_helpers():
    m = np.zeros((10, 12), bool)
    m[2:7, 3:10] = True
    assert tight_box(m) == (3, 2, 10, 7)
    x, y = center_point(m)
    assert y == 4.0 and x in (5.0, 6.0, 7.0)  # the distance-3 ridge; first on ties
    ring = np.zeros((21, 21), bool)
    ring[2:19, 2:19] = True
    ring[8:13, 8:13] = False  # a hole: the farthest pixel is not the centre
    x, y = center_point(ring)
    assert ring[int(y), int(x)] and (x, y) != (10.0, 10.0)
    assert mask_iou(m, m) == 1.0 and mask_iou(m, ~m) == 0.0 and mask_iou(m & False, m & False) == 1.0
    half = m.copy()
    half[:, 3:6] = False
    assert mask_iou(half, m) == pytest.approx(half.sum() / m.sum())


def test_benchmark_stills_runs_every_kind(small_model, tmp_path):
    _make_duts(tmp_path, 5)
    r = benchmark_stills(small_model, tmp_path, split="holdout", holdout=3, progress=False)
    # image 3 (in the holdout) has an empty mask and is skipped
    assert r["images"] == 2 and set(r["per_image"]) == {"img_002", "img_004"}
    for k in ("mask_iou", "box_iou", "point_iou"):
        vals = [v[k.split("_")[0]] for v in r["per_image"].values()]
        assert r[k] == pytest.approx(100 * np.mean(vals)) and all(0.0 <= v <= 1.0 for v in vals)
    with pytest.raises(InputError, match="unknown prompt kinds"):
        benchmark_stills(small_model, tmp_path, kinds=("scribble",))


def test_cli_benchmark_duts(small_ckpt, tmp_path):
    root = tmp_path / "duts"
    _make_duts(root, 4)
    out = tmp_path / "res"
    p = subprocess.run([sys.executable, "-m", "ausm", "benchmark", "duts", "--root", str(root), "--checkpoint",
                        str(small_ckpt), "--limit", "1", "--holdout", "2", "--quiet", "--out", str(out)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    head = json.loads(p.stdout.splitlines()[0])
    assert head["images"] == 1 and head["split"] == "holdout"
    assert json.loads((out / "stills.json").read_text())["images"] == 1
