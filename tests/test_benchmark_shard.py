"""Scale-out inference (issue #16): ``torchrun --nproc_per_node=2 -m ausm benchmark davis2016 ...`` shards
the sequences over the ranks (gloo on CPU), rank 0 gathers and scores, and the result equals the
single-process run exactly."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env


@pytest.fixture(scope="module")
def davis_val(tmp_path_factory):
    """A DAVIS-2016-style val split: 3 sequences of 4 frames 48x80, a square moving over noise."""
    root = tmp_path_factory.mktemp("davis_val")
    rng = np.random.default_rng(1)
    names = ["aa", "bb", "cc"]
    for s, seq in enumerate(names):
        (root / "JPEGImages/480p" / seq).mkdir(parents=True)
        (root / "Annotations/480p" / seq).mkdir(parents=True)
        for t in range(4):
            img = rng.integers(0, 120, (48, 80, 3), dtype=np.uint8)
            m = np.zeros((48, 80), np.uint8)
            y, x = 8 + 2 * t, 8 + 4 * t + 10 * s
            img[y:y + 16, x:x + 20] = (230, 60, 40)
            m[y:y + 16, x:x + 20] = 255
            Image.fromarray(img).save(root / "JPEGImages/480p" / seq / f"{t:05d}.jpg", quality=95)
            Image.fromarray(m).save(root / "Annotations/480p" / seq / f"{t:05d}.png")
    (root / "ImageSets/2016").mkdir(parents=True)
    (root / "ImageSets/2016/val.txt").write_text("\n".join(names) + "\n")
    return root


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench(cmd_prefix, root, ckpt, out, task):
    cmd = [*cmd_prefix, "benchmark", "davis2016", "--root", str(root), "--checkpoint", str(ckpt), "--out", str(out),
           "--task", task, "--device", "cpu", "--quiet"]
    p = subprocess.run(cmd, env={**subprocess_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("task", ["semi", "unsupervised"])
def test_sharded_benchmark_equals_single_process(task, davis_val, small_ckpt, tmp_path):
    one_out, one = _bench([sys.executable, "-m", "ausm"], davis_val, small_ckpt, tmp_path / "one", task)
    two_out, two = _bench([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}",
                           "-m", "ausm"], davis_val, small_ckpt, tmp_path / "two", task)
    assert one == two  # every number, per-object table included, bit for bit
    assert one["sequences"] == 3 and len(one["per_object"]) == 3
    assert two_out.count("J&F-Mean") == 2 and one_out.splitlines()[-1] == two_out.splitlines()[-1]  # rank 0 reports
    for seq in ("aa", "bb", "cc"):  # both ranks wrote their sequences' masks into the one --out
        assert sorted(p.name for p in (tmp_path / "two" / seq).iterdir()) == [f"{t:05d}.png" for t in range(4)]
