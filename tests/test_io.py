"""Tests for ausm.io (frame reading, mask files, overlay videos) and ausm.errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from ausm.errors import AUSMError, CheckpointError, ConfigError, InputError
from ausm.io import (
    DAVIS_PALETTE,
    FrameReader,
    OverlayWriter,
    colorize,
    load_prompt_mask,
    natural_sort_key,
    object_ids,
    overlay,
    read_frames,
    save_index_png,
)

BLACKSWAN = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "blackswan_mp4__Segment-and-Track-Anything"
    / "assets"
    / "blackswan.mp4"
)


# --------------------------------------------------------------------- helpers
def smooth_image(h: int, w: int, shift: int = 0) -> np.ndarray:
    """Smooth RGB gradient (survives lossy compression well)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 40 + 160 * x / max(w - 1, 1)
    g = 40 + 160 * y / max(h - 1, 1)
    b = np.full_like(r, 60 + 20 * shift)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "libx264") -> None:
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "10", "preset": "ultrafast"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def read_back(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape[:2]


@pytest.fixture(scope="module")
def video_file(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    d = tmp_path_factory.mktemp("vid")
    frames = [smooth_image(48, 64, i) for i in range(6)]
    p = d / "clip.mp4"
    write_video(p, frames)
    return p, frames


# ---------------------------------------------------------------------- errors
def test_error_hierarchy():
    assert issubclass(InputError, AUSMError) and issubclass(InputError, ValueError)
    assert issubclass(ConfigError, AUSMError) and issubclass(ConfigError, ValueError)
    assert issubclass(CheckpointError, AUSMError)
    assert not issubclass(CheckpointError, ValueError)


# --------------------------------------------------------------- natural sort
def test_natural_sort():
    names = ["10.jpg", "2.jpg", "1.jpg", "frame10.png", "Frame9.png", "frame009b.png", "a.png"]
    out = sorted(names, key=natural_sort_key)
    assert out[:3] == ["1.jpg", "2.jpg", "10.jpg"]
    assert out.index("Frame9.png") < out.index("frame10.png")
    assert sorted(["00010.jpg", "00002.jpg", "00001.jpg"], key=natural_sort_key) == [
        "00001.jpg",
        "00002.jpg",
        "00010.jpg",
    ]


# --------------------------------------------------------------- folder input
def test_folder_reading_order_shape_dtype(tmp_path):
    # Distinct solid colours so order can be checked through lossy JPEG.
    values = {1: 10, 2: 60, 10: 110, 11: 160, 100: 210}
    for n, v in values.items():
        ext = ".JPG" if n == 10 else (".png" if n % 2 else ".jpg")
        Image.fromarray(np.full((20, 30, 3), v, np.uint8)).save(tmp_path / f"{n}{ext}")
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()

    r = FrameReader(tmp_path)
    assert r.kind == "folder"
    assert r.fps == 24.0
    assert r.names == ["1", "2", "10", "11", "100"]
    assert len(r) == 5
    frames = list(r)
    assert len(frames) == 5
    for f, v in zip(frames, values.values()):
        assert f.shape == (20, 30, 3) and f.dtype == np.uint8
        assert abs(float(f.mean()) - v) < 3
    # iterable twice
    assert len(list(read_frames(str(tmp_path)))) == 5


def test_folder_grayscale_and_rgba_frames_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 9), 77, np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.full((8, 9, 4), 200, np.uint8)).save(tmp_path / "1.png")
    frames = list(FrameReader(tmp_path))
    assert [f.shape for f in frames] == [(8, 9, 3), (8, 9, 3)]
    assert frames[0][0, 0].tolist() == [77, 77, 77]


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        FrameReader(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no frame images"):
        FrameReader(tmp_path)


def test_unreadable_image(tmp_path):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "0.png")
    (tmp_path / "1.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(InputError, match=r"1\.jpg"):
        FrameReader(tmp_path)


def test_truncated_image_fails_while_iterating(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "0.png")
    data = (tmp_path / "0.png").read_bytes()
    (tmp_path / "1.png").write_bytes(data[: len(data) // 2])
    r = FrameReader(tmp_path)  # header is readable
    with pytest.raises(InputError, match=r"1\.png"):
        list(r)


def test_wide_gray_frames_are_scaled_not_clipped(tmp_path):
    """16-bit gray (I;16) frames are scaled to 8 bits (high byte), not clipped to white by convert('RGB');
    32-bit (I) and float (F) images likewise; the shared dataset loader reads them the same way."""
    from ausm.io.video import image_to_rgb, read_rgb_frames

    g = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "0.png")
    Image.fromarray(g).save(tmp_path / "1.png")
    with Image.open(tmp_path / "0.png") as im:
        assert im.mode.startswith("I")
    f16, f8 = list(FrameReader(tmp_path))
    assert f16.dtype == np.uint8 and f16.shape == (16, 16, 3) and f16.flags.c_contiguous
    assert np.array_equal(f16, np.dstack([g] * 3)) and np.array_equal(f16, f8)
    assert np.array_equal(read_rgb_frames([tmp_path / "0.png", tmp_path / "1.png"]), np.stack([f8, f8]))
    i32 = Image.fromarray(g.astype(np.int32) * 257)  # mode I, 16-bit range
    assert i32.mode == "I" and np.array_equal(image_to_rgb(i32), f8)
    assert np.array_equal(image_to_rgb(Image.fromarray(g.astype(np.int32))), f8)  # mode I, values 0..255 kept
    assert np.array_equal(image_to_rgb(Image.fromarray(g.astype(np.float32) / 255)), f8)  # mode F in 0..1
    assert np.array_equal(image_to_rgb(Image.fromarray(g.astype(np.float32))), f8)  # mode F in 0..255
    assert np.array_equal(image_to_rgb(Image.fromarray(g, "L").convert("P")), f8)


def test_truncated_frame_message_says_what_to_do(tmp_path):
    from ausm.io.video import read_rgb_frames

    Image.fromarray(smooth_image(40, 40)).save(tmp_path / "0.jpg", quality=90)
    data = (tmp_path / "0.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"1\.jpg.*replace or remove it") as e:
        list(FrameReader(tmp_path))
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"1\.jpg.*replace or remove it"):
        read_rgb_frames([tmp_path / "0.jpg", tmp_path / "1.jpg"])


def test_inconsistent_sizes(tmp_path):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "1.png")
    with pytest.raises(InputError, match="inconsistent"):
        FrameReader(tmp_path)


# ---------------------------------------------------------------- video input
def test_video_reading(video_file):
    p, src = video_file
    r = FrameReader(p)
    assert r.kind == "video" and r.names is None
    assert r.fps == pytest.approx(10.0)
    assert len(r) == 6
    frames = list(r)
    assert len(frames) == 6
    for f, s in zip(frames, src):
        assert f.shape == (48, 64, 3) and f.dtype == np.uint8
        assert np.abs(f.astype(np.float32) - s.astype(np.float32)).mean() < 10


def test_video_len_by_decoding_when_unknown(tmp_path):
    # Matroska usually does not store a frame count -> counted by decoding.
    p = tmp_path / "clip.mkv"
    write_video(p, [smooth_image(16, 16, i) for i in range(4)], fps=5)
    r = FrameReader(p)
    assert len(r) == 4
    assert len(list(r)) == 4


def test_corrupt_video(tmp_path):
    p = tmp_path / "broken.mp4"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError):
        FrameReader(p)
    t = tmp_path / "text.mp4"
    t.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError):
        FrameReader(t)


def test_header_only_video_message_says_what_to_do(tmp_path):
    p = tmp_path / "zero.mkv"
    with av.open(str(p), "w") as c:  # a Matroska header, no frame: FFmpeg stops at end of file
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    with pytest.raises(InputError, match=r"zero\.mkv.*no video frames.*re-encode") as e:
        FrameReader(p)
    assert "\n" not in str(e.value)


def test_video_without_video_stream(tmp_path):
    p = tmp_path / "audio.wav"
    with av.open(str(p), mode="w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    with pytest.raises(InputError, match="no video stream"):
        FrameReader(p)


@pytest.mark.skipif(not BLACKSWAN.exists(), reason=f"shared test video not available: {BLACKSWAN}")
def test_blackswan_video():
    r = FrameReader(BLACKSWAN)
    assert len(r) == 50
    n = 0
    for f in r:
        assert f.shape == (480, 854, 3) and f.dtype == np.uint8
        n += 1
    assert n == 50


# ---------------------------------------------------------------------- masks
def test_palette():
    assert isinstance(DAVIS_PALETTE, bytes) and len(DAVIS_PALETTE) == 768
    pal = np.frombuffer(DAVIS_PALETTE, np.uint8).reshape(256, 3)
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]
    assert pal[5].tolist() == [128, 0, 128]
    assert pal[8].tolist() == [64, 0, 0]
    assert pal[255].tolist() == [224, 224, 192]


def test_palette_png_round_trip(tmp_path):
    mask = np.zeros((7, 11), np.int64)
    mask[1:4, 2:6] = 1
    mask[5, :] = 2
    mask[0, 0] = 255
    mask[6, 10] = 17
    p = tmp_path / "sub" / "00000.png"
    save_index_png(p, mask)
    assert p.exists()
    assert [f.name for f in p.parent.iterdir()] == ["00000.png"]  # no temp left
    with Image.open(p) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im), mask.astype(np.uint8))
        pal = im.getpalette()
        assert tuple(pal[3:6]) == (128, 0, 0)
    # reading it back as a prompt: void 255 -> 0
    ids = load_prompt_mask(p)
    expected = mask.astype(np.uint8)
    expected[expected == 255] = 0
    assert np.array_equal(ids, expected)


def test_save_index_png_errors(tmp_path):
    with pytest.raises(InputError):
        save_index_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError):
        save_index_png(tmp_path / "a.png", np.full((2, 2), 256))
    with pytest.raises(InputError):
        save_index_png(tmp_path / "a.png", np.full((2, 2), -1))
    assert not list(tmp_path.iterdir())


def _save_l(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)
    return path


def test_prompt_binary_0_255(tmp_path):
    a = np.zeros((10, 12), np.uint8)
    a[2:5, 3:7] = 255
    m = load_prompt_mask(_save_l(tmp_path / "m.png", a), expected_size=(10, 12))
    assert m.dtype == np.uint8 and m.shape == (10, 12)
    assert set(np.unique(m).tolist()) == {0, 1}
    assert np.array_equal(m, (a > 0).astype(np.uint8))


def test_prompt_binary_0_1(tmp_path):
    a = np.zeros((10, 12), np.uint8)
    a[5:, :] = 1
    m = load_prompt_mask(_save_l(tmp_path / "m.png", a))
    assert np.array_equal(m, a)


def test_prompt_palette_ids_with_void(tmp_path):
    a = np.zeros((10, 12), np.uint8)
    a[0:3] = 1
    a[3:6] = 2
    a[6:8] = 255
    p = tmp_path / "m.png"
    save_index_png(p, a)
    m = load_prompt_mask(p)
    assert object_ids(m) == [1, 2]
    assert set(np.unique(m).tolist()) == {0, 1, 2}
    assert np.all(m[6:8] == 0)
    # same ids stored as a single-channel 'L' index PNG
    m2 = load_prompt_mask(_save_l(tmp_path / "l.png", a))
    assert np.array_equal(m, m2)


def test_prompt_antialiased_grayscale(tmp_path):
    a = np.zeros((10, 12), np.uint8)
    a[2:8, 2:8] = 255
    a[1, 2:8] = 37
    a[8, 2:8] = 128
    m = load_prompt_mask(_save_l(tmp_path / "m.png", a))
    assert np.array_equal(m, (a > 127).astype(np.uint8))


def test_prompt_gray_rgb_and_colour_rgb(tmp_path):
    a = np.zeros((6, 6), np.uint8)
    a[1:4, 1:4] = 255
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "gray_rgb.png")
    assert np.array_equal(load_prompt_mask(tmp_path / "gray_rgb.png"), (a > 0).astype(np.uint8))
    rgba = np.concatenate([np.stack([a] * 3, -1), np.full((6, 6, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "gray_rgba.png")
    assert np.array_equal(load_prompt_mask(tmp_path / "gray_rgba.png"), (a > 0).astype(np.uint8))
    col = np.zeros((6, 6, 3), np.uint8)
    col[1:3, 1:3] = (128, 0, 0)
    col[3:5, 3:5] = (0, 128, 0)
    Image.fromarray(col).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="index/palette PNG"):
        load_prompt_mask(tmp_path / "colour.png")


def test_prompt_wrong_size(tmp_path):
    a = np.zeros((10, 12), np.uint8)
    a[3, 3] = 255
    p = _save_l(tmp_path / "m.png", a)
    with pytest.raises(InputError, match=r"10x12.*20x30"):
        load_prompt_mask(p, expected_size=(20, 30))


def test_prompt_empty(tmp_path):
    p = _save_l(tmp_path / "m.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match="contains no object"):
        load_prompt_mask(p)
    only_void = np.full((5, 5), 255, np.uint8)
    q = tmp_path / "void.png"
    save_index_png(q, only_void)
    with pytest.raises(InputError, match="contains no object"):
        load_prompt_mask(q)


def test_prompt_16_bit(tmp_path):
    """16-bit masks: 0 / one value -> object 1; small values -> ids (255 void); others refused, naming the file."""
    a = np.zeros((10, 12), np.uint16)
    a[2:5, 3:7] = 65535
    Image.fromarray(a).save(tmp_path / "b16.png")
    assert np.array_equal(load_prompt_mask(tmp_path / "b16.png"), (a > 0).astype(np.uint8))
    a[2:5, 3:7] = 1000
    Image.fromarray(a).save(tmp_path / "b1000.png")
    assert np.array_equal(load_prompt_mask(tmp_path / "b1000.png"), (a > 0).astype(np.uint8))
    ids = np.zeros((10, 12), np.uint16)
    for k, v in enumerate((1, 2, 40, 200, 255)):
        ids[k * 2:k * 2 + 2, :6] = v
    Image.fromarray(ids).save(tmp_path / "ids16.png")
    with Image.open(tmp_path / "ids16.png") as im:
        assert im.mode.startswith("I")
    m = load_prompt_mask(tmp_path / "ids16.png")
    assert m.dtype == np.uint8 and object_ids(m) == [1, 2, 40, 200]
    assert np.array_equal(m, np.where(ids == 255, 0, ids).astype(np.uint8))
    bad = np.zeros((10, 12), np.uint16)
    bad[:3], bad[3:6] = 300, 65535
    Image.fromarray(bad).save(tmp_path / "bad16.png")
    with pytest.raises(InputError, match=r"bad16\.png.*0, 300, 65535.*index/palette PNG") as e:
        load_prompt_mask(tmp_path / "bad16.png")
    assert "\n" not in str(e.value)


def test_prompt_empty_message_says_what_to_do(tmp_path):
    p = _save_l(tmp_path / "empty.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match=r"empty\.png contains no object.*at least one object"):
        load_prompt_mask(p)


def test_prompt_missing_or_corrupt(tmp_path):
    with pytest.raises(InputError):
        load_prompt_mask(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage" * 10)
    with pytest.raises(InputError):
        load_prompt_mask(bad)


def test_object_ids():
    m = np.array([[0, 3, 3], [255, 1, 0], [7, 7, 1]])
    assert object_ids(m) == [1, 3, 7]
    assert object_ids(np.zeros((2, 2), np.uint8)) == []


# -------------------------------------------------------------------- overlay
def test_colorize_and_overlay():
    m = np.zeros((10, 10), np.int32)
    m[2:8, 2:8] = 1
    c = colorize(m)
    assert c.shape == (10, 10, 3) and c.dtype == np.uint8
    assert c[5, 5].tolist() == [128, 0, 0] and c[0, 0].tolist() == [0, 0, 0]

    frame = np.full((10, 10, 3), 100, np.uint8)
    out = overlay(frame, m, alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(out[0, 0], frame[0, 0])  # background unchanged
    assert out[5, 5].tolist() == [114, 50, 50]  # interior blended
    assert out[2, 5].tolist() == [128, 0, 0]  # contour in full colour
    assert np.array_equal(frame, np.full((10, 10, 3), 100, np.uint8))  # input untouched
    with pytest.raises(InputError):
        overlay(frame, np.zeros((9, 10), np.int32))
    with pytest.raises(InputError):
        overlay(frame, m, alpha=1.5)


@pytest.mark.parametrize("size", [(48, 64), (49, 65)])
def test_overlay_writer(tmp_path, size):
    h, w = size
    out = tmp_path / "ov.mp4"
    m = np.zeros((h, w), np.uint8)
    m[10:30, 10:40] = 1
    m[20:40, 30:50] = 2
    with OverlayWriter(out, fps=12) as wr:
        for i in range(5):
            wr.write(smooth_image(h, w, i), m)
    assert wr.codec in ("libx264", "mpeg4")
    assert [f.name for f in tmp_path.iterdir()] == ["ov.mp4"]
    n, (oh, ow) = read_back(out)
    assert n == 5
    assert (oh, ow) == (h + h % 2, w + w % 2)
    r = FrameReader(out)
    assert len(r) == 5 and r.fps == pytest.approx(12.0)


def test_overlay_writer_exception_leaves_nothing(tmp_path):
    out = tmp_path / "ov.mp4"
    m = np.zeros((48, 64), np.uint8)
    with pytest.raises(RuntimeError):
        with OverlayWriter(out) as wr:
            wr.write(smooth_image(48, 64), m)
            wr.write(smooth_image(48, 64), m)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_overlay_writer_size_mismatch(tmp_path):
    out = tmp_path / "ov.mp4"
    with pytest.raises(InputError, match="same size"):
        with OverlayWriter(out) as wr:
            wr.write(smooth_image(48, 64), np.zeros((48, 64), np.uint8))
            wr.write(smooth_image(50, 64), np.zeros((50, 64), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_overlay_writer_mpeg4_fallback(tmp_path, monkeypatch):
    import sys

    # ``ausm.io.overlay`` as an attribute is the function; get the module itself.
    mod = sys.modules["ausm.io.overlay"]
    monkeypatch.setattr(mod, "_pick_codec", lambda: "mpeg4")
    out = tmp_path / "ov.mp4"
    with OverlayWriter(out, fps=29.97) as wr:
        for i in range(5):
            wr.write(smooth_image(49, 65, i), np.ones((49, 65), np.uint8))
    assert wr.codec == "mpeg4"
    n, shape = read_back(out)
    assert n == 5 and shape == (50, 66)


@pytest.mark.parametrize("codec", ["picked", "mpeg4"])
def test_overlay_writer_is_deterministic(tmp_path, monkeypatch, codec):
    """The same frames give byte-identical files (libx264 runs with mbtree=0; mpeg4 is deterministic)."""
    import sys

    if codec == "mpeg4":
        monkeypatch.setattr(sys.modules["ausm.io.overlay"], "_pick_codec", lambda: "mpeg4")
    m = np.zeros((48, 64), np.uint8)
    m[10:30, 10:40] = 1
    m[20:40, 30:50] = 2
    outs, used = [], set()
    for rep in range(2):
        out = tmp_path / f"ov{rep}.mp4"
        with OverlayWriter(out, fps=12) as wr:
            for i in range(5):
                wr.write(smooth_image(48, 64, i), m)
        used.add(wr.codec)
        outs.append(out.read_bytes())
    assert len(used) == 1 and used <= {"libx264", "mpeg4"}
    if codec == "mpeg4":
        assert used == {"mpeg4"}
    assert outs[0] == outs[1], f"{used.pop()} wrote different bytes for the same frames"


def test_overlay_writer_no_frames(tmp_path):
    with pytest.raises(InputError, match="no frames"):
        with OverlayWriter(tmp_path / "ov.mp4"):
            pass
    assert list(tmp_path.iterdir()) == []
