"""Bad-input matrix for ``ausm segment`` (in process, small random checkpoint, tiny synthetic frames).

Each refused input exits with code 2 and one ``error:`` line (no traceback) that names the problem and
what to do, and leaves no output (no ``--out`` folder, no hidden partial folder). Inputs that are
merely unusual (RGBA, grayscale, palette, 16-bit frames; 16-bit prompt masks; object ids above the
model's ID count) are handled, with the same results as the equivalent plain input.

Cases already covered elsewhere are not repeated: a JPEG whose data is cut mid-file
(``test_cli.py::test_error_corrupt_frame_mid_sequence``), an all-zero binary prompt and a half-size
prompt (``test_cli.py``), a prompt 2 % too wide and a corrupt second input (``test_cli_io.py``), a
random-bytes video (``test_cli.py::test_error_corrupt_video``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from ausm.cli import main
from ausm.data.synthetic import render_video
from ausm.io import save_index_png

H, W, T = 48, 80, 4


@pytest.fixture(scope="module")
def clip():
    return render_video(T, (H, W), num_objects=2, seed=4, enter_leave=False)


@pytest.fixture(scope="module")
def data(clip, tmp_path_factory) -> Path:
    """``rgb/`` PNG frames, ``jpg/`` JPEG frames and ``prompt.png`` (the objects of frame 0)."""
    d = tmp_path_factory.mktemp("bad")
    for sub in ("rgb", "jpg"):
        (d / sub).mkdir()
    for k, f in enumerate(clip.frames):
        Image.fromarray(f).save(d / "rgb" / f"{k:05d}.png")
        Image.fromarray(f).save(d / "jpg" / f"{k:05d}.jpg", quality=90)
    save_index_png(d / "prompt.png", clip.ids[0])
    return d


def frame_folder(root: Path, name: str, images, ext: str = "png") -> Path:
    d = root / name
    d.mkdir()
    for k, im in enumerate(images):
        im.save(d / f"{k:05d}.{ext}")
    return d


def run(capsys, ckpt, *argv) -> tuple[int, str]:
    rc = main(["segment", *map(str, argv), "--checkpoint", str(ckpt), "--quiet"])
    return rc, capsys.readouterr().err


def refused(capsys, ckpt, out: Path, *argv, names=(), fix=()) -> str:
    """Exit 2, one ``error:`` line containing every string of ``names`` (the problem) and of ``fix``
    (what to do), no traceback, no output left in or beside ``out``."""
    existed = sorted(p.name for p in out.iterdir()) if out.exists() else None
    rc, err = run(capsys, ckpt, *argv, "--out", out)
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for s in (*names, *fix):
        assert s in lines[0], (s, lines[0])
    if existed is None:
        assert not out.exists()
    else:
        assert sorted(p.name for p in out.iterdir()) == existed  # no .ausm-partial, nothing new
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]
    return lines[0]


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix == ".png"}


def segmented(capsys, ckpt, out: Path, *argv) -> dict[str, bytes]:
    rc, err = run(capsys, ckpt, *argv, "--out", out, "--no-overlay")
    assert rc == 0, err
    assert "Traceback" not in err
    return outputs(out)


# ------------------------------------------------------------------ refused inputs
def test_jpeg_cut_inside_its_header_mid_folder(data, small_ckpt, tmp_path, capsys):
    d = tmp_path / "frames"
    shutil.copytree(data / "jpg", d)
    (d / "00002.jpg").write_bytes((d / "00002.jpg").read_bytes()[:60])  # not even the header is complete
    refused(capsys, small_ckpt, tmp_path / "out", d, "--prompt", data / "prompt.png",
            names=("00002.jpg", "cannot decode"))


def test_empty_video_file(small_ckpt, tmp_path, capsys):
    v = tmp_path / "empty.mp4"
    v.write_bytes(b"")
    refused(capsys, small_ckpt, tmp_path / "out", v, "--unprompted",
            names=("empty.mp4", "empty file"), fix=("give the complete file",))


def test_container_with_a_video_stream_and_no_frames(small_ckpt, tmp_path, capsys):
    v = tmp_path / "zero.avi"
    with av.open(str(v), "w") as c:  # header + index of one video stream, no packet
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        c.start_encoding()
    with av.open(str(v)) as c:
        assert len(c.streams.video) == 1 and not any(True for _ in c.decode(video=0))
    refused(capsys, small_ckpt, tmp_path / "out", v, "--unprompted",
            names=("zero.avi", "no video frames"), fix=("re-encode",))


def test_matroska_header_without_frames(small_ckpt, tmp_path, capsys):
    v = tmp_path / "zero.mkv"
    with av.open(str(v), "w") as c:  # FFmpeg cannot even open this one (end of file after the header)
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        c.start_encoding()
    refused(capsys, small_ckpt, tmp_path / "out", v, "--unprompted", names=("zero.mkv", "cannot open"))


def test_more_objects_than_the_model_has_ids(small_model, small_ckpt, data, tmp_path, capsys):
    n = small_model.cfg.num_ids + 1
    m = np.zeros((H, W), np.uint8)
    for i in range(n):  # n small squares, ids 1..n
        y, x = divmod(i, 8)
        m[y * 10:y * 10 + 6, x * 10:x * 10 + 6] = i + 1
    save_index_png(tmp_path / "many.png", m)
    refused(capsys, small_ckpt, tmp_path / "out", data / "rgb", "--prompt", tmp_path / "many.png",
            names=(f"{n} new prompted objects", f"at most {n - 1} objects"), fix=("prompt fewer objects",))


def test_all_void_prompt(data, small_ckpt, tmp_path, capsys):
    save_index_png(tmp_path / "void.png", np.full((H, W), 255, np.uint8))
    refused(capsys, small_ckpt, tmp_path / "out", data / "rgb", "--prompt", tmp_path / "void.png",
            names=("void.png", "no object"))


def test_empty_prompt_later_in_a_prompt_folder(clip, data, small_ckpt, tmp_path, capsys):
    """Found mid-run (frame 2, after frames were written): an existing --out keeps only what it had."""
    masks = tmp_path / "masks"
    masks.mkdir()
    save_index_png(masks / "00000.png", clip.ids[0])
    save_index_png(masks / "00002.png", np.zeros((H, W), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    refused(capsys, small_ckpt, out, data / "rgb", "--prompt", masks, "--snapshot-every", "1",
            names=("00002.png", "no object"))


@pytest.mark.parametrize("shape", [(H * 2, W * 2), (H, W + 8)])
def test_prompt_of_another_size(shape, clip, data, small_ckpt, tmp_path, capsys):
    m = np.zeros(shape, np.uint8)
    m[: H, : W] = clip.ids[0]
    save_index_png(tmp_path / "other.png", m)
    refused(capsys, small_ckpt, tmp_path / "out", data / "rgb", "--prompt", tmp_path / "other.png",
            names=("other.png", f"{shape[0]}x{shape[1]}", f"{H}x{W}"), fix=("at most 1%",))


# ------------------------------------------------------------------ handled inputs
def test_rgba_grayscale_and_palette_frames_are_handled(clip, data, small_ckpt, tmp_path, capsys):
    prompt = ["--prompt", data / "prompt.png"]
    rgb = segmented(capsys, small_ckpt, tmp_path / "o_rgb", data / "rgb", *prompt)
    assert len(rgb) == T
    rgba = frame_folder(tmp_path, "rgba", [Image.fromarray(np.dstack([f, np.full((H, W), 128, np.uint8)]))
                                           for f in clip.frames])
    assert segmented(capsys, small_ckpt, tmp_path / "o_rgba", rgba, *prompt) == rgb  # alpha ignored
    grays = [Image.fromarray(f).convert("L") for f in clip.frames]
    gray = frame_folder(tmp_path, "gray", grays)
    gray_rgb = frame_folder(tmp_path, "gray_rgb", [g.convert("RGB") for g in grays])
    ref = segmented(capsys, small_ckpt, tmp_path / "o_gray_rgb", gray_rgb, *prompt)
    assert segmented(capsys, small_ckpt, tmp_path / "o_gray", gray, *prompt) == ref
    gray_jpg = frame_folder(tmp_path, "gray_jpg", grays, ext="jpg")
    assert len(segmented(capsys, small_ckpt, tmp_path / "o_gray_jpg", gray_jpg, *prompt)) == T
    pal = [Image.fromarray(f).convert("P") for f in clip.frames]
    pal_dir = frame_folder(tmp_path, "pal", pal)
    pal_rgb = frame_folder(tmp_path, "pal_rgb", [p.convert("RGB") for p in pal])
    assert segmented(capsys, small_ckpt, tmp_path / "o_pal", pal_dir, *prompt) == \
        segmented(capsys, small_ckpt, tmp_path / "o_pal_rgb", pal_rgb, *prompt)


def _png48(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one; FFmpeg's PNG encoder can)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb16, dtype=np.uint16), format="rgb48le")
    enc = av.CodecContext.create("png", "w")
    enc.width, enc.height, enc.pix_fmt = rgb16.shape[1], rgb16.shape[0], "rgb48be"
    packets = enc.encode(frame.reformat(format="rgb48be")) + enc.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))


def test_16_bit_rgb_frames_are_handled(clip, data, small_ckpt, tmp_path, capsys):
    d = tmp_path / "rgb48"
    d.mkdir()
    for k, f in enumerate(clip.frames):
        _png48(d / f"{k:05d}.png", f.astype(np.uint16) * 257)  # the same image at 16 bits
    with Image.open(d / "00000.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), clip.frames[0])
    prompt = ["--prompt", data / "prompt.png"]
    assert segmented(capsys, small_ckpt, tmp_path / "o48", d, *prompt) == \
        segmented(capsys, small_ckpt, tmp_path / "o8", data / "rgb", *prompt)


def test_16_bit_grayscale_frames_are_handled(clip, data, small_ckpt, tmp_path, capsys):
    grays = [np.asarray(Image.fromarray(f).convert("L")) for f in clip.frames]
    g16 = frame_folder(tmp_path, "g16", [Image.fromarray(g.astype(np.uint16) * 257) for g in grays])
    g8 = frame_folder(tmp_path, "g8", [Image.fromarray(g) for g in grays])
    prompt = ["--prompt", data / "prompt.png"]
    assert segmented(capsys, small_ckpt, tmp_path / "o16", g16, *prompt) == \
        segmented(capsys, small_ckpt, tmp_path / "o8", g8, *prompt)


def test_16_bit_index_prompt_is_handled(clip, data, small_ckpt, tmp_path, capsys):
    Image.fromarray(clip.ids[0].astype(np.uint16)).save(tmp_path / "p16.png")
    with Image.open(tmp_path / "p16.png") as im:
        assert im.mode.startswith("I")
    got = segmented(capsys, small_ckpt, tmp_path / "o16", data / "rgb", "--prompt", tmp_path / "p16.png")
    assert got == segmented(capsys, small_ckpt, tmp_path / "o8", data / "rgb", "--prompt", data / "prompt.png")


def test_16_bit_binary_prompt_is_handled(clip, data, small_ckpt, tmp_path, capsys):
    Image.fromarray((clip.ids[0] == 1).astype(np.uint16) * 65535).save(tmp_path / "b16.png")
    Image.fromarray((clip.ids[0] == 1).astype(np.uint8) * 255).save(tmp_path / "b8.png")
    got = segmented(capsys, small_ckpt, tmp_path / "o16", data / "rgb", "--prompt", tmp_path / "b16.png")
    assert got == segmented(capsys, small_ckpt, tmp_path / "o8", data / "rgb", "--prompt", tmp_path / "b8.png")


def test_object_ids_above_the_id_count_are_kept(small_model, data, small_ckpt, tmp_path, capsys):
    """Object ids are the user's names, not ID-vector slots: ids 40 and 200 with a 16-slot model."""
    assert small_model.cfg.num_ids < 40
    m = np.zeros((H, W), np.uint8)
    m[5:20, 5:25] = 40
    m[25:45, 40:75] = 200
    save_index_png(tmp_path / "big_ids.png", m)
    got = segmented(capsys, small_ckpt, tmp_path / "out", data / "rgb", "--prompt", tmp_path / "big_ids.png")
    with Image.open(tmp_path / "out" / "00000.png") as im:
        assert np.array_equal(np.asarray(im), m)
    for name in got:
        with Image.open(tmp_path / "out" / name) as im:
            assert set(np.unique(np.asarray(im)).tolist()) <= {0, 40, 200}


# ------------------------------------------------------------------ messages that say what to do
@pytest.mark.parametrize("case", ["jpeg", "mkv", "empty_prompt"])
def test_message_says_what_to_do(case, clip, data, small_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    if case == "jpeg":
        d = tmp_path / "frames"
        shutil.copytree(data / "jpg", d)
        (d / "00002.jpg").write_bytes((d / "00002.jpg").read_bytes()[:60])
        argv = [d, "--prompt", data / "prompt.png"]
        fix = ("replace or remove",)
    elif case == "mkv":
        v = tmp_path / "zero.mkv"
        with av.open(str(v), "w") as c:
            s = c.add_stream("mpeg4", rate=10)
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            c.start_encoding()
        argv, fix = [v, "--unprompted"], ("re-encode",)
    else:
        save_index_png(tmp_path / "void.png", np.full((H, W), 255, np.uint8))
        argv, fix = [data / "rgb", "--prompt", tmp_path / "void.png"], ("at least one object",)
    refused(capsys, small_ckpt, out, *argv, fix=fix)


# ------------------------------------------------------------------ outputs never touch inputs (issue #15)
def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["same", "inside", "contains", "prompt-folder"])
def test_out_never_writes_into_an_input(where, clip, data, small_ckpt, tmp_path, capsys):
    import shutil
    root = tmp_path / "work"
    frames = root / "frames"
    shutil.copytree(data / "rgb", frames)
    prompts = root / "prompts"
    prompts.mkdir()
    shutil.copy(data / "prompt.png", prompts / "00000.png")
    before = _tree(root)
    out = {"same": frames, "inside": frames / "masks", "contains": root, "prompt-folder": prompts}[where]
    prompt = prompts if where == "prompt-folder" else data / "prompt.png"
    rc, err = run(capsys, small_ckpt, frames, "--prompt", prompt, "--out", out)
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "nothing was written" in lines[0], err
    assert _tree(root) == before and not (frames / "masks").exists()


def test_outputs_follow_the_umask(data, small_ckpt, tmp_path, capsys):
    import os
    import stat
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        rc, err = run(capsys, small_ckpt, data / "rgb", "--prompt", data / "prompt.png", "--out", out)
        assert rc == 0, err
        modes = {str(p.relative_to(out)): (p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*")}
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert len(modes) > 3 and all(m == (0o755 if d else 0o644) for d, m in modes.values()), modes
    finally:
        os.umask(old)
