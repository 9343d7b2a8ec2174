"""Tests for the command-line interface (``ausm segment``), in-process and end-to-end."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, needs_shared, subprocess_env

from ausm.cli import build_parser, main
from ausm.io import save_index_png

H, W, N = 64, 96, 6


def smooth_frame(k: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    r = 127 + 100 * np.sin((x + 3 * k) / 9.0)
    g = 127 + 100 * np.cos((y - 2 * k) / 7.0)
    b = (x + y + 5 * k) % 256
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("frames")
    for k in range(N):
        Image.fromarray(smooth_frame(k)).save(d / f"{k:05d}.jpg", quality=95)
    return d


def binary_prompt() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[10:40, 20:60] = 255
    return m


@pytest.fixture
def bin_prompt(tmp_path) -> Path:
    p = tmp_path / "prompt.png"
    Image.fromarray(binary_prompt(), mode="L").save(p)
    return p


def overlay_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def check_output(out: Path, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``n`` palette PNGs of PIL size ``size`` plus overlay.mp4 with ``n`` frames; returns the index masks."""
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.png" for i in range(n)] + ["overlay.mp4"]
    masks = []
    for i in range(n):
        with Image.open(out / f"{i:05d}.png") as im:
            assert im.mode == "P"
            assert im.size == size
            masks.append(np.asarray(im))
    ov = overlay_frames(out / "overlay.mp4")
    assert len(ov) == n
    assert ov[0].shape == (size[1], size[0], 3)
    return masks


def no_leftovers(parent: Path, allowed: set[str]):
    assert {p.name for p in parent.iterdir()} <= allowed


def segment(*args) -> int:
    return main(["segment", *map(str, args), "--quiet"])


# ------------------------------------------------------------------ success
def test_segment_binary_prompt(frame_dir, bin_prompt, small_ckpt, tmp_path):
    out = tmp_path / "out"
    assert segment(frame_dir, "--prompt", bin_prompt, "--out", out, "--checkpoint", small_ckpt) == 0
    masks = check_output(out, N, (W, H))
    # frame 0 is the prompt itself: object 1 where the binary mask is 255
    assert np.array_equal(masks[0], (binary_prompt() > 0).astype(np.uint8))
    for m in masks:
        assert set(np.unique(m).tolist()) <= {0, 1}
    no_leftovers(tmp_path, {"out", "prompt.png"})


def test_segment_index_prompt(frame_dir, small_ckpt, tmp_path):
    prompt = np.zeros((H, W), np.uint8)
    prompt[5:30, 5:40] = 1
    prompt[35:60, 50:90] = 2
    p = tmp_path / "idx.png"
    save_index_png(p, prompt)
    out = tmp_path / "nested" / "out"
    assert segment(frame_dir, "--prompt", p, "--out", out, "--checkpoint", small_ckpt) == 0
    masks = check_output(out, N, (W, H))
    assert np.array_equal(masks[0], prompt)
    for m in masks:
        assert set(np.unique(m).tolist()) <= {0, 1, 2}


def test_segment_unprompted(frame_dir, small_ckpt, tmp_path):
    out = tmp_path / "out"
    assert segment(frame_dir, "--unprompted", "--out", out, "--checkpoint", small_ckpt) == 0
    masks = check_output(out, N, (W, H))
    assert all(m.max() <= 254 for m in masks)


def test_segment_video_input(frame_dir, bin_prompt, small_ckpt, tmp_path):
    """A video file as input (here the overlay written by a first run)."""
    first = tmp_path / "first"
    assert segment(frame_dir, "--prompt", bin_prompt, "--out", first, "--checkpoint", small_ckpt) == 0
    out = tmp_path / "second"
    assert segment(first / "overlay.mp4", "--prompt", bin_prompt, "--out", out, "--checkpoint", small_ckpt) == 0
    masks = check_output(out, N, (W, H))
    assert np.array_equal(masks[0], (binary_prompt() > 0).astype(np.uint8))


def test_segment_end_to_end_subprocess(frame_dir, bin_prompt, small_ckpt, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "ausm", "segment", str(frame_dir), "--prompt", str(bin_prompt),
                        "--out", str(out), "--checkpoint", str(small_ckpt)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"wrote {N} masks and overlay.mp4" in r.stdout
    assert "Warning" not in r.stderr, r.stderr
    check_output(out, N, (W, H))


def test_subprocess_error_is_one_line(tmp_path, small_ckpt):
    r = subprocess.run([sys.executable, "-m", "ausm", "segment", str(tmp_path / "missing"), "--unprompted",
                        "--out", str(tmp_path / "out"), "--checkpoint", str(small_ckpt)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ")
    assert "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ errors
def expect_error(capsys, argv, tmp_path: Path, match: str, allowed: set[str] = frozenset(), code: int = 2):
    rc = main(["segment", *map(str, argv), "--quiet"])
    err = capsys.readouterr().err
    assert rc == code
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert match in lines[0], lines[0]
    no_leftovers(tmp_path, set(allowed))


def test_error_missing_input(capsys, tmp_path, small_ckpt):
    expect_error(capsys, [tmp_path / "nope", "--unprompted", "--out", tmp_path / "out", "--checkpoint", small_ckpt],
                 tmp_path, "does not exist")


def test_error_corrupt_video(capsys, tmp_path, small_ckpt, bin_prompt):
    v = tmp_path / "broken.mp4"
    v.write_bytes(np.random.default_rng(0).bytes(20000))
    expect_error(capsys, [v, "--prompt", bin_prompt, "--out", tmp_path / "out", "--checkpoint", small_ckpt],
                 tmp_path, "broken.mp4", {"broken.mp4", "prompt.png"})
    expect_error(capsys, [v, "--unprompted", "--out", tmp_path / "out", "--checkpoint", small_ckpt],
                 tmp_path, "broken.mp4", {"broken.mp4", "prompt.png"})


def test_error_corrupt_frame_mid_sequence(capsys, tmp_path, frame_dir, small_ckpt, bin_prompt):
    """A frame that fails to decode mid-run: no output folder, no partial files, no created parents."""
    d = tmp_path / "frames"
    shutil.copytree(frame_dir, d)
    data = (d / "00003.jpg").read_bytes()
    (d / "00003.jpg").write_bytes(data[: len(data) // 3])  # header intact, data truncated
    expect_error(capsys, [d, "--prompt", bin_prompt, "--out", tmp_path / "a" / "b" / "out",
                          "--checkpoint", small_ckpt], tmp_path, "00003.jpg", {"frames", "prompt.png"})


def test_error_prompt_wrong_size(capsys, tmp_path, frame_dir, small_ckpt):
    p = tmp_path / "small.png"
    Image.fromarray(np.full((H // 2, W // 2), 255, np.uint8), mode="L").save(p)
    expect_error(capsys, [frame_dir, "--prompt", p, "--out", tmp_path / "out", "--checkpoint", small_ckpt],
                 tmp_path, "size", {"small.png"})


def test_error_empty_prompt(capsys, tmp_path, frame_dir, small_ckpt):
    p = tmp_path / "empty.png"
    Image.fromarray(np.zeros((H, W), np.uint8), mode="L").save(p)
    expect_error(capsys, [frame_dir, "--prompt", p, "--out", tmp_path / "out", "--checkpoint", small_ckpt],
                 tmp_path, "no object", {"empty.png"})


def test_error_missing_prompt_file(capsys, tmp_path, frame_dir, small_ckpt):
    expect_error(capsys, [frame_dir, "--prompt", tmp_path / "none.png", "--out", tmp_path / "out",
                          "--checkpoint", small_ckpt], tmp_path, "none.png")


def test_error_no_prompt_and_not_unprompted(capsys, tmp_path, frame_dir, small_ckpt):
    expect_error(capsys, [frame_dir, "--out", tmp_path / "out", "--checkpoint", small_ckpt],
                 tmp_path, "--unprompted")


def test_error_broken_checkpoint(capsys, tmp_path, frame_dir, small_ckpt, bin_prompt):
    ck = tmp_path / "ck"
    shutil.copytree(small_ckpt, ck)
    (ck / "model.safetensors").write_bytes(b"\x00" * 100)
    expect_error(capsys, [frame_dir, "--prompt", bin_prompt, "--out", tmp_path / "out", "--checkpoint", ck],
                 tmp_path, "cannot read weights", {"ck", "prompt.png"}, code=4)
    expect_error(capsys, [frame_dir, "--prompt", bin_prompt, "--out", tmp_path / "out",
                          "--checkpoint", tmp_path / "no_ckpt"], tmp_path, "not found", {"ck", "prompt.png"}, code=4)


def test_exit_codes_and_debug(capsys, tmp_path, monkeypatch):
    from ausm import cli
    from ausm.eval import cli as eval_cli  # the home of cmd_benchmark

    assert main(["train", "davis_root=x", "no_such_option=1"]) == 3  # bad configuration
    assert "unknown training option" in capsys.readouterr().err

    def boom(args):
        raise RuntimeError("kaput")

    monkeypatch.setattr(eval_cli, "cmd_benchmark", boom)
    rc = cli.main(["benchmark", "davis2016", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "internal error: RuntimeError: kaput" in err and "Traceback" not in err
    assert cli.main(["--debug", "benchmark", "davis2016", "--root", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_error_out_is_a_file(capsys, tmp_path, frame_dir, small_ckpt, bin_prompt):
    f = tmp_path / "out"
    f.write_text("x")
    expect_error(capsys, [frame_dir, "--prompt", bin_prompt, "--out", f, "--checkpoint", small_ckpt],
                 tmp_path, "not a folder", {"out", "prompt.png"})
    assert f.read_text() == "x"


def test_segment_requires_out(capsys):
    """--out is optional only for --demo; without it segment exits 2 with a message."""
    assert main(["segment", "x", "--unprompted"]) == 2
    assert "--out" in capsys.readouterr().err


# ------------------------------------------------------------------ real data, shipped checkpoint
BLACKSWAN_MP4 = SHARED / "blackswan_mp4__Segment-and-Track-Anything" / "assets" / "blackswan.mp4"
BLACKSWAN_GT0 = SHARED / "davis2016" / "Annotations" / "480p" / "blackswan" / "00000.png"


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ausm", "segment", *map(str, args), "--quiet"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=600)


@needs_shared
def test_real_blackswan_prompted(tmp_path):
    out = tmp_path / "out"
    r = run_cli(BLACKSWAN_MP4, "--prompt", BLACKSWAN_GT0, "--out", out)
    assert r.returncode == 0, r.stderr
    masks = check_output(out, 50, (854, 480))
    with Image.open(BLACKSWAN_GT0) as im:
        gt0 = (np.asarray(im) > 0).astype(np.uint8)
    assert np.array_equal(masks[0], gt0)  # the prompted frame is the prompt


@needs_shared
def test_real_blackswan_unprompted(tmp_path):
    out = tmp_path / "out"
    r = run_cli(BLACKSWAN_MP4, "--unprompted", "--out", out)
    assert r.returncode == 0, r.stderr
    check_output(out, 50, (854, 480))


def test_segment_replay(tmp_path, frame_dir, small_ckpt, bin_prompt):
    out = tmp_path / "rp"
    assert main(["segment", str(frame_dir), "--prompt", str(bin_prompt), "--out", str(out), "--checkpoint",
                 str(small_ckpt), "--replay", "--quiet"]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"{i:05d}.png" for i in range(len(pngs))] and len(pngs) == len(list(frame_dir.iterdir()))


@pytest.mark.parametrize("kind", ["davis", "ytvis"])
def test_eval_refuses_a_json_path_that_cannot_be_created_before_evaluating(capsys, tmp_path, kind):
    """--json inside a file, or which is a folder: exit 2, one line, before any work (the ground truth
    does not even exist here). Missing folders are fine: they are created when the file is written."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    opts = ["--gt-root", str(tmp_path / "no_gt"), "--pred", str(tmp_path)] if kind == "davis" else \
        ["--gt", str(tmp_path / "no_gt.json"), "--pred", str(tmp_path / "no_pred.json")]
    for bad, why in ((blocker / "r.json", "is not a folder"), (blocker / "sub" / "r.json", "is not a folder"),
                     (tmp_path, "is a folder")):
        assert main(["eval", kind, *opts, "--json", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --json") and why in err[0], err
    assert blocker.read_text() == "x"


def test_os_errors_about_paths_are_input_errors_not_internal(capsys, tmp_path, monkeypatch):
    """Permission denied / read-only file system / disk full while writing: exit 2 with one line naming
    the file (as root the sandbox cannot make a folder unwritable, so the error is injected)."""
    import errno

    from ausm import cli
    from ausm.eval import cli as eval_cli  # the home of cmd_benchmark

    for code, text in ((errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system"),
                       (errno.ENOSPC, "No space left on device")):
        def fail(args, code=code, text=text):
            raise OSError(code, text, str(tmp_path / "out" / "results.json"))

        monkeypatch.setattr(eval_cli, "cmd_benchmark", fail)
        assert cli.main(["benchmark", "davis2016", "--root", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {text}: {tmp_path / 'out' / 'results.json'} "
                       "(check the path, its permissions and free space)"]

    def bug(args):
        raise OSError(errno.EBADF, "Bad file descriptor")  # not about a user path: still internal

    monkeypatch.setattr(eval_cli, "cmd_benchmark", bug)
    assert cli.main(["benchmark", "davis2016", "--root", str(tmp_path)]) == 1
    assert "internal error" in capsys.readouterr().err


def test_segment_job_python_entry_point(tmp_path, frame_dir, bin_prompt, small_ckpt):
    """The segment job runs from Python without a subprocess or the argument parser, with the CLI's
    checks (an --out inside the input folder is refused before anything is written)."""
    from ausm.errors import InputError
    from ausm.segment import SegmentOptions, run_segment

    out = tmp_path / "job"
    opts = SegmentOptions(input=[str(frame_dir)], out=str(out), prompt=[str(bin_prompt)], checkpoint=str(small_ckpt),
                          format=["palette,boxes"], overlay=False, quiet=True)
    assert run_segment(opts) == 0
    frames = sorted(p.name for p in Path(frame_dir).iterdir())
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(len(frames))]
    assert (out / "boxes.json").is_file()
    before = sorted(p.name for p in Path(frame_dir).iterdir())
    with pytest.raises(InputError, match="input"):
        run_segment(SegmentOptions(input=[str(frame_dir)], out=str(Path(frame_dir) / "masks"),
                                   prompt=[str(bin_prompt)], checkpoint=str(small_ckpt), quiet=True))
    assert sorted(p.name for p in Path(frame_dir).iterdir()) == before
