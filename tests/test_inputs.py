"""One validation layer for frames and prompts (issue #15): what is converted, what is refused, and
that a refused frame never poisons a session."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ausm.errors import InputError
from ausm.inference.session import Session
from ausm.io.inputs import check_geometric_in_frame, frame_to_tensor, prompt_mask_to_bool

RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)


def test_accepted_frame_forms_convert_exactly():
    ref = frame_to_tensor(U8)
    assert ref.shape == (1, 3, 24, 40) and ref.dtype == torch.float32
    assert torch.allclose(frame_to_tensor(U8.astype(np.uint16) * 257), ref, atol=1e-6)
    assert torch.allclose(frame_to_tensor(U8.astype(np.float32) / 255), ref, atol=1e-6)
    assert torch.equal(frame_to_tensor(torch.from_numpy(U8).permute(2, 0, 1)), ref)
    assert torch.allclose(frame_to_tensor(torch.from_numpy(U8).permute(2, 0, 1).double() / 255), ref, atol=1e-6)
    ro = U8.copy()
    ro.flags.writeable = False
    assert torch.equal(frame_to_tensor(ro), ref)


@pytest.mark.parametrize("frame, words", [
    (U8.astype(np.float32), ["[0, 1]", "divide by 255"]),
    (U8.astype(np.int64), ["int64", "uint8"]),
    (U8 > 128, ["bool"]),
    (torch.from_numpy(U8.astype(np.int32)).permute(2, 0, 1), ["int32"]),
    (torch.from_numpy(U8).float(), ["(3, H, W)"]),
    (U8[..., :2], ["(H, W, 3)"]),
    ([[1, 2, 3]], ["numpy array"]),
])
def test_refused_frame_forms(frame, words):
    with pytest.raises(InputError) as e:
        frame_to_tensor(frame)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_non_finite_frame_is_refused_and_does_not_poison_the_session(small_model):
    s = Session(small_model)
    m = np.zeros((48, 80), bool)
    m[10:30, 20:50] = True
    s.add_prompt(0, 1, m)
    frames = [RNG.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)]
    ref = Session(small_model)
    ref.add_prompt(0, 1, m)
    want = [ref.step(f) for f in frames]
    s.step(frames[0])
    bad = frames[1].astype(np.float32) / 255
    bad[5:9, 5:9] = np.nan
    with pytest.raises(InputError, match="NaN"):
        s.step(bad)
    for f, w in zip(frames[1:], want[1:]):  # the stream goes on exactly as if the bad frame never came
        r = s.step(f)
        assert np.isfinite(r.scores).all() and np.array_equal(r.index_mask, w.index_mask)


def test_prompt_mask_rule():
    soft = np.array([[0.05, 0.5], [0.95, 0.49]])
    assert prompt_mask_to_bool(soft).tolist() == [[False, True], [True, False]]
    assert prompt_mask_to_bool(np.array([[0, 255], [3, 0]], np.uint8)).tolist() == [[False, True], [True, False]]
    assert prompt_mask_to_bool(torch.tensor([[True, False]])).tolist() == [[True, False]]
    for bad, word in ((soft * 255, "[0, 1]"), (np.full((2, 2), np.nan), "finite"), (np.zeros(4), "2-D"),
                      (np.zeros((2, 2), complex), "dtype")):
        with pytest.raises(InputError, match=word.replace("[", r"\[")):
            prompt_mask_to_bool(bad)


def test_box_and_points_must_lie_in_the_frame(small_model):
    check_geometric_in_frame("box", (-5, -5, 1, 1), (48, 80))  # overlaps: fine
    with pytest.raises(InputError, match="outside the 80x48"):
        check_geometric_in_frame("box", (80, 0, 90, 10), (48, 80))
    with pytest.raises(InputError, match="point 80,3"):
        check_geometric_in_frame("points", [(1, 1), (80, 3)], (48, 80))
    s = Session(small_model)
    s.add_prompt(0, 1, box=(100, 100, 120, 120))  # frame size unknown yet: checked on the frame
    f = RNG.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="outside"):
        s.step(f)
    assert s.frame_idx == 0
    s2 = Session(small_model)
    s2.add_prompt(0, 1, box=(5, 5, 30, 30))
    s2.step(f)
    with pytest.raises(InputError, match="outside"):
        s2.add_prompt(1, 2, points=[(200, 10)])


def _png_header_only(path, w, h):
    """A PNG whose header declares w×h pixels (no real image data): decoding it would be the attack."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("w, h, word", [(100_000, 100_000, "decompression bomb"), (12_000, 12_000, "12000x12000")])
def test_huge_images_are_refused_from_their_header(w, h, word, tmp_path, capsys):
    from PIL import Image

    from ausm.cli import main
    frames = tmp_path / "frames"
    frames.mkdir()
    _png_header_only(frames / "00000.png", w, h)
    good = tmp_path / "good"
    good.mkdir()
    Image.fromarray(U8).save(good / "00000.png")
    _png_header_only(tmp_path / "mask.png", w, h)
    for argv in ([str(frames), "--unprompted"], [str(good), "--prompt", str(tmp_path / "mask.png")]):
        rc = main(["segment", *argv, "--out", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("error:") == 1 and word in err, err
        assert not (tmp_path / "out").exists()


def test_api_edge_cases_are_input_errors(small_model):
    """Empty frames, negative prompt frames and malformed session states: one InputError each, never
    a ZeroDivisionError / TypeError from deep inside (issue #15)."""
    s = Session(small_model)
    with pytest.raises(InputError, match="empty"):
        s.step(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InputError, match="empty"):
        s.step(torch.zeros(3, 0, 8))
    m = np.zeros((48, 80), bool)
    m[5:20, 5:30] = True
    with pytest.raises(InputError, match=">= 0"):
        s.add_prompt(-1, 1, m)
    for bad in ("garbage", {"meta": [], "tensors": {}}, {"meta": {"version": 2, "num_ids": "x"}, "tensors": {}}):
        with pytest.raises(InputError, match="session state"):
            Session(small_model).load_state_dict(bad)
    assert s.frame_idx == 0 and s.obj_ids == []  # nothing half-registered
