"""Reliability: long streams stay flat and finite, dataset paths cannot escape their root, absurd
frame sizes are refused with a clear message."""
import json

import numpy as np
import pytest
import torch

from conftest import make_model
from ausm.errors import InputError
from ausm.inference import Session


def test_soak_10000_frames_flat_memory_no_nan():
    """A 10,000-frame stream (small resolution) keeps a constant state, flat RSS and finite outputs."""
    torch.manual_seed(0)
    model = make_model(0, num_queries=4, num_ids=6, input_short_side=32, input_max_long_side=64)
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 256, (32, 64, 3), dtype=np.uint8) for _ in range(16)]
    prompt = np.zeros((32, 64), bool)
    prompt[8:24, 10:40] = True
    s = Session(model, detect_new_objects=True, fg_threshold=0.2)
    s.add_prompt(0, 1, prompt)

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    marks = {}
    for t in range(10_000):
        r = s.step(clip[t % 16])
        if t % 997 == 0:
            assert np.isfinite(r.scores).all()
            assert s.stream_state.x_prev.isfinite().all() and all(m.ssm_state.isfinite().all() for m in s.stream_state.mamba)
        if t + 1 in (1000, 10_000):
            marks[t + 1] = (s.state_nbytes(), rss_mb())
    assert marks[1000][0] == marks[10_000][0]
    assert marks[10_000][1] - marks[1000][1] < 10.0, marks  # MiB: no growth with the stream length


def test_dataset_paths_cannot_escape_the_root(tmp_path):
    from ausm.data.ytvis import YTVISDataset

    doc = {"videos": [{"id": 1, "file_names": ["../../etc/passwd"], "height": 4, "width": 4, "length": 1}],
           "categories": [{"id": 1, "name": "a"}], "annotations": []}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    ds = YTVISDataset(p, image_root=tmp_path)
    with pytest.raises(InputError, match="escapes the dataset root"):
        ds.read_frames(ds.videos[0], [0])


def test_absurd_frame_size_is_refused(small_model):
    s = Session(small_model)
    big = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_000, 10_000, 3))  # no memory
    with pytest.raises(InputError, match="megapixels"):
        s.step(big)
