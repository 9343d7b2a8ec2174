"""``ausm segment --resume``: a run killed with SIGKILL continues from its last snapshot and writes the
same outputs as an uninterrupted run; ``Session.state_dict`` / ``load_state_dict`` and
``ResultWriter(restore=...)`` continue exactly where they stopped.

Every output is compared byte for byte except ``overlay.mp4``: libx264's macroblock-tree rate control
does not give byte-identical streams from run to run even for identical frames (two *uninterrupted*
runs differ too), so overlays are compared by their decoded frames.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env

from ausm.cli import main
from ausm.data.synthetic import render_video
from ausm.inference import Session
from ausm.inference.resume import PARTIAL_DIRNAME, load_snapshot, save_snapshot
from ausm.inference import FrameResult
from ausm.io import ResultWriter, save_index_png


# ------------------------------------------------------------------ helpers
def write_frames(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for k, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{k:05d}.jpg", quality=90)
    return folder


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


def assert_same_outputs(ref: Path, got: Path) -> None:
    """Same files; same bytes (overlay videos: same decoded frames up to encoder noise)."""
    def files(root):
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = files(ref), files(got)
    assert sorted(a) == sorted(b)
    assert not [n for n in b if any(part.startswith(".") for part in n.split("/"))], sorted(b)
    for name in a:
        if name.endswith("overlay.mp4"):
            fa, fb = decoded(a[name]), decoded(b[name])
            assert len(fa) == len(fb) and len(fa) > 0
            for x, y in zip(fa, fb):  # encoder noise only: PSNR >= 30 dB on every frame
                mse = float(((x - y).astype(np.float64) ** 2).mean())
                assert mse == 0 or 10 * np.log10(255**2 / mse) >= 30, name
        else:
            assert a[name].read_bytes() == b[name].read_bytes(), name


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ Python API
def test_session_restored_mid_stream_matches_uninterrupted(small_model, tmp_path):
    """State after frame 5 (with prompts still pending for frames 6 and 8) → a file → a new session:
    frames 5.. give exactly the results of the uninterrupted session."""
    v = render_video(11, (48, 80), num_objects=3, seed=5, enter_leave=False)
    a = Session(small_model, detect_new_objects=True, fg_threshold=0.85, seed=7)
    a.add_prompt(0, 1, v.ids[0] == 1)
    a.add_prompt(6, 2, v.ids[6] == 2)
    a.add_prompt(8, 9, box=(5, 5, 40, 30))
    results, snap = [], tmp_path / "s.safetensors"
    for k, f in enumerate(v.frames):
        if k == 5:
            st = a.state_dict()
            save_snapshot(snap, st["tensors"], {"session": st["meta"]})
        results.append(a.step(f))
    tensors, meta = load_snapshot(snap)
    b = Session(small_model)  # options come from the state
    b.load_state_dict({"tensors": tensors, "meta": meta["session"]})
    assert b.frame_idx == 5 and b.detect_new_objects and b.fg_threshold == 0.85
    for k in range(5, len(v.frames)):
        r, ref = b.step(v.frames[k]), results[k]
        assert r.frame_idx == ref.frame_idx and r.obj_ids == ref.obj_ids and r.new_obj_ids == ref.new_obj_ids
        for field in ("masks", "scores", "index_mask", "class_ids", "class_scores"):
            assert np.array_equal(getattr(r, field), getattr(ref, field)), (k, field)
    assert b.prompt_sources == a.prompt_sources and b.state_nbytes() == a.state_nbytes()
    assert {9, 2} <= set(results[-1].obj_ids)


@pytest.mark.parametrize("version", [1, 2])
def test_older_session_states_still_load(small_model, version):
    """Version 1 stored the Mamba SSM states (L, d_inner, d_state), versions 1-2 the conv states
    (L, d_inner, d_conv); they load transposed and continue exactly; an unknown version is refused."""
    v = render_video(6, (48, 80), num_objects=2, seed=3, enter_leave=False)
    a = Session(small_model, seed=1)
    a.add_prompt(0, 1, v.ids[0] == 1)
    for f in v.frames[:3]:
        a.step(f)
    st = a.state_dict()
    assert st["meta"]["version"] == 3
    old_layout = ("ssm_state", "conv_state") if version == 1 else ("conv_state",)
    old = {"meta": {**st["meta"], "version": version},
           "tensors": {k: (t.transpose(-1, -2).contiguous() if k.endswith(old_layout) else t)
                       for k, t in st["tensors"].items()}}
    b = Session(small_model)
    b.load_state_dict(old)
    for f in v.frames[3:]:
        assert np.array_equal(a.step(f).index_mask, b.step(f).index_mask)
    with pytest.raises(Exception, match="version"):
        Session(small_model).load_state_dict({"meta": {**st["meta"], "version": 4}, "tensors": st["tensors"]})


def test_load_state_dict_refuses_another_model(small_model):
    from conftest import make_model

    s = Session(small_model)
    s.step(np.zeros((48, 80, 3), np.uint8))
    st = s.state_dict()
    other = Session(make_model(0, num_ids=8))
    with pytest.raises(Exception, match="another model"):
        other.load_state_dict(st)
    assert other.frame_idx == 0


def _fake_results(n: int, size=(40, 64)) -> tuple[list, list]:
    v = render_video(n, size, num_objects=3, seed=2)
    out = []
    for k in range(n):
        ids = [o for o in v.object_ids if (v.ids[k] == o).any() or k >= 3]
        masks = np.stack([v.ids[k] == o for o in ids]) if ids else np.zeros((0, *size), bool)
        out.append(FrameResult(frame_idx=k, obj_ids=ids, masks=masks,
                               scores=np.linspace(0.5, 0.9, len(ids)).astype(np.float32) + k / 100,
                               index_mask=(v.ids[k].astype(np.uint16) * 300), class_ids=np.zeros(len(ids), np.int64),
                               class_scores=np.ones(len(ids), np.float32), class_names=["object"]))
    return list(v.frames), out


def test_result_writer_restore(tmp_path, monkeypatch):
    """A writer stopped after frame 7 (state taken after frame 4) and restored: the same files as an
    uninterrupted writer (ids above 255: the overlay record holds 16-bit masks), and exactly the same
    overlay frames sent to the encoder."""
    import hashlib

    from ausm.io import outputs

    drawn: dict[str, list] = {}
    write = outputs.OverlayWriter.write

    def recording(self, frame, index_mask, labels=None):
        drawn.setdefault(self.path.parent.name, []).append(
            (hashlib.md5(np.ascontiguousarray(frame).tobytes()).hexdigest(), index_mask.dtype.str,
             hashlib.md5(np.ascontiguousarray(index_mask).tobytes()).hexdigest(), labels))
        return write(self, frame, index_mask, labels)

    monkeypatch.setattr(outputs.OverlayWriter, "write", recording)
    frames, res = _fake_results(10)
    fmts = ["per-object", "rle", "boxes"]
    ref = ResultWriter(tmp_path / "ref", fmts, overlay=True, fps=10, video_id=3)
    for k, (f, r) in enumerate(zip(frames, res)):
        ref.write(k, f, r)
    ref.close()
    w = ResultWriter(tmp_path / "run", fmts, overlay=True, fps=10, video_id=3, resumable=True)
    for k in range(8):
        w.write(k, frames[k], res[k])
        if k == 4:
            state = w.state_dict()
    w.flush()  # the process dies here: files stay as they are
    w2 = ResultWriter(tmp_path / "run", fmts, overlay=True, fps=10, video_id=3, resumable=True,
                      restore=state, frames=iter(frames))
    assert w2.frames_written == 5
    for k in range(5, 10):
        w2.write(k, frames[k], res[k])
    w2.close()
    w._overlay.abort()
    assert_same_outputs(tmp_path / "ref", tmp_path / "run")
    assert drawn["run"][8:] == drawn["ref"]  # the replayed and new frames of the restored writer


# ------------------------------------------------------------------ the command, killed with SIGKILL
FRAMES, SIZE, EVERY = 24, (240, 432), 4


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 24-frame synthetic clip at 240x432 (no data needed) and a palette prompt for frame 0."""
    d = tmp_path_factory.mktemp("clip")
    v = render_video(FRAMES, SIZE, num_objects=3, seed=3, enter_leave=False)
    write_frames(d / "frames", v.frames)
    save_index_png(d / "prompt.png", v.ids[0])
    return d / "frames", d / "prompt.png"


def ausm_segment(*args) -> list[str]:
    return [sys.executable, "-m", "ausm", "segment", *map(str, args)]


def test_kill_9_then_resume_gives_identical_outputs(clip, tmp_path):
    frames, prompt = clip
    common = [frames, "--prompt", prompt, "--format", "palette,per-object,rle,boxes", "--quiet"]
    env = subprocess_env()
    ref = tmp_path / "ref"
    r = subprocess.run(ausm_segment(*common, "--out", ref), capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "out"
    partial = out / PARTIAL_DIRNAME
    p = subprocess.Popen(ausm_segment(*common, "--out", out, "--snapshot-every", EVERY), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and p.poll() is None:
            done = len(list((partial / "work").glob("*.png"))) if partial.is_dir() else 0
            if (partial / "snapshot.safetensors").is_file() and done >= EVERY + 3:
                break
            time.sleep(0.02)
        assert p.poll() is None, "the run ended before it could be killed: " + p.stderr.read().decode()
        p.send_signal(signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)
        p.stderr.close()
    assert [x.name for x in out.iterdir()] == [PARTIAL_DIRNAME]  # nothing moved into place yet
    frame = load_snapshot(partial / "snapshot.safetensors")[1]["frame"]
    assert frame % EVERY == 0 and 0 < frame < FRAMES

    # a resume with other options is refused, and the snapshot is kept
    r = subprocess.run(ausm_segment(*common[:-3], "--format", "palette", "--quiet", "--out", out, "--resume"),
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "--format" in line and "without --resume" in line
    assert (partial / "snapshot.safetensors").is_file()

    r = subprocess.run(ausm_segment(*common, "--out", out, "--snapshot-every", EVERY, "--resume"),
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"continuing {frames} from frame {frame}" in r.stderr
    assert not partial.exists()
    assert_same_outputs(ref, out)


# ------------------------------------------------------------------ in process, small model
@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    a = write_frames(d / "a", render_video(8, (48, 80), num_objects=2, seed=1).frames)
    b = write_frames(d / "b", render_video(8, (48, 80), num_objects=2, seed=2).frames)
    return a, b


def test_ctrl_c_keeps_the_snapshot_and_resume_finishes_several_inputs(two_clips, small_ckpt, tmp_path, capsys,
                                                                     monkeypatch):
    a, b = two_clips
    common = [a, b, "--unprompted", "--format", "palette,rle,boxes", "--checkpoint", small_ckpt, "--quiet",
              "--snapshot-every", "3"]
    assert main(["segment", *map(str, common), "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "out"
    calls = {"n": 0}
    step = Session.step

    def interrupted(self, frame):
        calls["n"] += 1
        if calls["n"] == 8 + 5:  # frame 4 of the second input
            raise KeyboardInterrupt
        return step(self, frame)

    monkeypatch.setattr(Session, "step", interrupted)
    assert main(["segment", *map(str, common), "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    meta = load_snapshot(out / PARTIAL_DIRNAME / "snapshot.safetensors")[1]
    assert (meta["input_index"], meta["frame"], len(meta["done"])) == (1, 3, 1)
    monkeypatch.setattr(Session, "step", step)
    assert main(["segment", *map(str, common), "--out", str(out), "--resume"]) == 0
    assert "continuing" in capsys.readouterr().err
    assert_same_outputs(tmp_path / "ref", out)


@pytest.mark.parametrize("edit, word", [({"frame": 999}, "past the end"), ({"input_index": 5}, "input index"),
                                        ({"done": []}, "finished inputs"), ({"frame": -1}, "frame -1")])
def test_resume_refuses_a_snapshot_that_does_not_fit(edit, word, two_clips, small_ckpt, tmp_path, capsys,
                                                      monkeypatch):
    a, b = two_clips
    common = [a, b, "--unprompted", "--checkpoint", small_ckpt, "--quiet", "--snapshot-every", "3", "--no-overlay"]
    out = tmp_path / "out"
    calls = {"n": 0}
    step = Session.step

    def interrupted(self, frame):
        calls["n"] += 1
        if calls["n"] == 8 + 5:
            raise KeyboardInterrupt
        return step(self, frame)

    monkeypatch.setattr(Session, "step", interrupted)
    assert main(["segment", *map(str, common), "--out", str(out)]) == 130
    monkeypatch.setattr(Session, "step", step)
    snap = out / PARTIAL_DIRNAME / "snapshot.safetensors"
    tensors, meta = load_snapshot(snap)
    save_snapshot(snap, tensors, {k: v for k, v in {**meta, **edit}.items() if k != "format"})
    capsys.readouterr()
    assert main(["segment", *map(str, common), "--out", str(out), "--resume"]) == 2
    assert word in one_error_line(capsys.readouterr().err)


def test_resume_without_snapshot_starts_from_the_beginning(two_clips, small_ckpt, tmp_path, capsys):
    a, _ = two_clips
    common = [a, "--unprompted", "--checkpoint", small_ckpt, "--quiet", "--no-overlay"]
    assert main(["segment", *map(str, common), "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "out"
    assert main(["segment", *map(str, common), "--out", str(out), "--resume"]) == 0
    assert "no snapshot" in capsys.readouterr().err
    assert_same_outputs(tmp_path / "ref", out)
    # without --resume, leftovers of a killed run are replaced
    stale = out / PARTIAL_DIRNAME / "work"
    stale.mkdir(parents=True)
    (stale / "99999.png").write_bytes(b"junk")
    (out / PARTIAL_DIRNAME / "snapshot.safetensors").write_bytes(b"junk")
    assert main(["segment", *map(str, common), "--out", str(out)]) == 0
    assert_same_outputs(tmp_path / "ref", out)


def test_resume_errors(two_clips, small_ckpt, tmp_path, capsys):
    a, _ = two_clips
    out = tmp_path / "out"
    (out / PARTIAL_DIRNAME).mkdir(parents=True)
    (out / PARTIAL_DIRNAME / "snapshot.safetensors").write_bytes(b"\x08" + b"\x00" * 20)
    base = ["segment", str(a), "--unprompted", "--checkpoint", str(small_ckpt), "--quiet", "--out", str(out)]
    assert main([*base, "--resume"]) == 2
    assert "cannot read the snapshot" in one_error_line(capsys.readouterr().err)
    assert (out / PARTIAL_DIRNAME / "snapshot.safetensors").is_file()  # left for the user to inspect
    assert main([*base, "--resume", "--replay"]) == 2
    assert "--resume needs" in one_error_line(capsys.readouterr().err)
    assert main([*base, "--snapshot-every", "-1"]) == 2
    assert "--snapshot-every" in one_error_line(capsys.readouterr().err)
    shutil.rmtree(out)
    assert not os.path.exists(out)


def test_two_runs_cannot_write_one_output_folder(two_clips, small_ckpt, tmp_path, capsys):
    fcntl = pytest.importorskip("fcntl")
    a, _ = two_clips
    out = tmp_path / "out"
    (out / PARTIAL_DIRNAME).mkdir(parents=True)
    (out / PARTIAL_DIRNAME / "snapshot.safetensors").write_bytes(b"the other run's")
    fd = os.open(out, os.O_RDONLY)  # the other run holds the folder
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert main(["segment", str(a), "--unprompted", "--checkpoint", str(small_ckpt), "--quiet",
                     "--out", str(out)]) == 2
    finally:
        os.close(fd)
    assert "another ausm segment is writing" in one_error_line(capsys.readouterr().err)
    assert (out / PARTIAL_DIRNAME / "snapshot.safetensors").read_bytes() == b"the other run's"


def test_sigterm_and_kill_leave_no_partial_folder(tmp_path):
    """A non-resumable run (--replay) ended by SIGTERM cleans up at once (exit 143); one killed by
    SIGKILL leaves its .OUT.partial-* folder, which the next run removes (its pid is gone)."""
    from conftest import subprocess_env
    frames = write_frames(tmp_path / "f", render_video(40, (48, 80), num_objects=2, seed=3).frames)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ausm", "segment", str(frames), "--unprompted", "--replay", "--checkpoint",
           "ausm-tiny", "--out", str(out), "--no-overlay"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        p = subprocess.Popen(cmd, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not list(tmp_path.glob(".out.partial-*")) and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert list(tmp_path.glob(".out.partial-*")), "the run never started writing"
        p.send_signal(sig)
        rc = p.wait(60)
        if sig == signal.SIGTERM:
            assert rc == 143 and "terminated" in p.stderr.read()
            assert not list(tmp_path.glob(".out.partial-*")) and not out.exists()
        else:
            p.stderr.close()
            assert list(tmp_path.glob(".out.partial-*"))  # kill -9 cannot clean up ...
    assert subprocess.run(cmd, env=subprocess_env(), capture_output=True).returncode == 0
    assert not list(tmp_path.glob(".out.partial-*")) and out.is_dir()  # ... the next run does
    assert not (out / ".ausm-pid").exists()
