"""The top-level Python API."""
import numpy as np
import torch

import ausm


def test_from_pretrained_default_and_session(frames):
    m = ausm.AUSM.from_pretrained()  # the shipped default, ausm-lite-mo
    assert m.device.type in ("cpu", "cuda", "mps") and m.dtype in (torch.float32, torch.bfloat16)
    assert m.config.name == "ausm-lite-mo" and m.config.input_short_side == 240
    s = m.session()
    prompt = np.zeros(frames[0].shape[:2], bool)
    prompt[10:30, 20:50] = True
    s.add_prompt(0, 7, mask=prompt)
    r = s.step(frames[0])
    assert isinstance(r, ausm.FrameResult) and r.obj_ids == [7]


def test_propagate_from_a_path(small_ckpt, tmp_path, frames):
    from PIL import Image

    for i, f in enumerate(frames[:3]):
        Image.fromarray(f).save(tmp_path / f"{i}.png")
    m = ausm.AUSM.from_pretrained(small_ckpt, device="cpu", dtype=torch.float32)
    out = list(m.propagate(tmp_path, prompts=None))
    assert [r.frame_idx for r in out] == [0, 1, 2]
    assert "AUSM(" in repr(m)
