"""``ausm segment`` inputs, prompts and outputs on real frames from ``../shared/data``.

Inputs: a frame folder, an mp4 file, a live stream on stdin (mpegts / H.264 produced by PyAV, written
by a subprocess-fed pipe), a named pipe (y4m), a local HTTP stream, an FFmpeg device (lavfi), several
inputs in one command. Prompts: a first-frame mask, a folder of masks named by frame (objects added
mid-video), boxes and points. Outputs: palette, per-object, rle (YouTube-VIS results, checked with
pycocotools and ``ausm eval ytvis``), boxes, overlay with labels. Small random checkpoints, few frames.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, make_model, needs_shared, subprocess_env

from ausm.checkpoint import save_model
from ausm.cli import main
from ausm.errors import InputError
from ausm.io import (LiveReader, MaskPrompts, draw_labels, fit_mask_to_size, load_prompt_mask, open_source,
                     overlay, parse_formats, source_name)

CUTIE = SHARED / "cutie_examples__hkchengrex_Cutie" / "examples"
JUDO, JUDO_MASKS = CUTIE / "images" / "judo", CUTIE / "masks" / "judo"
AOT = SHARED / "aot_demo__yoxu515_aot-benchmark" / "datasets" / "Demo"
AOT_SEQ = "1007_YCTBBdbKSSg"
APPLE_MP4 = SHARED / "cotracker_apple__facebookresearch_co-tracker" / "assets" / "apple.mp4"
BLACKSWAN = SHARED / "davis2016" / "JPEGImages" / "480p" / "blackswan"
BLACKSWAN_GT = SHARED / "davis2016" / "Annotations" / "480p" / "blackswan"

pytestmark = needs_shared


# ------------------------------------------------------------------ helpers
def segment(*args) -> int:
    return main(["segment", *map(str, args), "--quiet"])


def read_png(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im)


def judo_frames(n: int, scale: int = 1) -> list[np.ndarray]:
    out = []
    for f in sorted(JUDO.glob("*.jpg"))[:n]:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if scale > 1:
                im = im.resize((im.width // scale // 2 * 2, im.height // scale // 2 * 2), Image.BILINEAR)
            out.append(np.asarray(im))
    return out


def encode(frames, fmt: str, codec: str, fps: int = 10, **opts) -> bytes:
    """Frames → an in-memory stream (mpegts / mp4 / ...) encoded by PyAV."""
    import io

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if codec == "libx264":
            s.options = {"preset": "ultrafast", "tune": "zerolatency", **opts}
        for k, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = k
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return buf.getvalue()


def y4m_chunks(frames, fps: int = 10) -> list[bytes]:
    """A YUV4MPEG2 stream as [header, frame 0, frame 1, ...] (yuv420p planes converted by PyAV)."""
    h, w = frames[0].shape[:2]
    chunks = [f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode()]
    for f in frames:
        yuv = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray()
        chunks.append(b"FRAME\n" + np.ascontiguousarray(yuv).tobytes())
    return chunks


def check_palette(out: Path, n: int, size_wh: tuple[int, int], names=None) -> list[np.ndarray]:
    names = names or [f"{i:05d}" for i in range(n)]
    masks = []
    for name in names:
        with Image.open(out / f"{name}.png") as im:
            assert im.mode == "P" and im.size == size_wh
            masks.append(np.asarray(im))
    return masks


def overlay_count(p: Path) -> int:
    with av.open(str(p)) as c:
        return sum(1 for _ in c.decode(video=0))


def decode_rle(seg) -> np.ndarray:
    from pycocotools import mask as mask_utils

    assert isinstance(seg["counts"], str)
    with warnings.catch_warnings():  # pycocotools' decode and NumPy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


def eval_ytvis(gt_path: Path, pred_path: Path, json_out: Path) -> int:
    """``ausm eval ytvis`` through the main CLI when it has the command, else the eval module's entry point."""
    from ausm.cli import build_parser

    argv = ["eval", "ytvis", "--gt", str(gt_path), "--pred", str(pred_path), "--json", str(json_out), "--quiet"]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "eval" in sub.choices:
        return main(argv)
    from ausm.eval.cli import main as eval_main

    return eval_main(argv)


@pytest.fixture(scope="module")
def ckpt64(tmp_path_factory) -> Path:
    """A small random checkpoint with 64 ID vectors (the AOT demo has 43 objects)."""
    return save_model(make_model(0, num_ids=64), tmp_path_factory.mktemp("ckpt64") / "small64")


# ------------------------------------------------------------------ unit-level: sources, masks, overlay
def test_source_kinds_and_names(tmp_path):
    assert isinstance(open_source("-"), LiveReader) and open_source("-").url == "pipe:0"
    assert isinstance(open_source("rtsp://cam.local:554/live/stream1"), LiveReader)
    assert open_source("https://example.org/a/b.m3u8").num_frames is None
    assert open_source(JUDO).kind == "folder" and open_source(JUDO).num_frames == 16
    assert open_source(APPLE_MP4).kind == "video"
    fifo = tmp_path / "f.y4m"
    os.mkfifo(fifo)
    assert isinstance(open_source(fifo), LiveReader)
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "missing.mp4")
    assert source_name("-") == "stdin"
    assert source_name("rtsp://user:pw@cam.local:554/live/stream1.sdp") == "stream1"
    assert source_name("udp://239.0.0.1:1234") == "239.0.0.1_1234"
    assert source_name("/dev/video0") == "video0" and source_name("webcam:1") == "webcam1"
    assert source_name(str(JUDO) + "/") == "judo" and source_name(APPLE_MP4) == "apple"
    assert parse_formats(["palette,rle", "boxes", "rle"]) == ["palette", "rle", "boxes"]
    assert parse_formats(None) == ["palette"]
    with pytest.raises(InputError, match="unknown output format"):
        parse_formats(["palette,jpeg"])


def test_mask_size_rule_on_judo():
    """Cutie's judo 00005.png is 853 px wide for 854 px frames: resized (nearest), ids kept; > 1 % is an error."""
    ids = load_prompt_mask(JUDO_MASKS / "00005.png")
    assert ids.shape == (480, 853)
    fitted, resized = fit_mask_to_size(ids, (480, 854))
    assert resized and fitted.shape == (480, 854) and set(np.unique(fitted)) == {0, 2}
    assert abs(int((fitted == 2).sum()) - int((ids == 2).sum())) <= 480  # at most one duplicated column
    assert fit_mask_to_size(ids, (480, 853))[1] is False
    with pytest.raises(InputError, match=r"480x853.*480x870"):
        fit_mask_to_size(ids, (480, 870))  # 2 % off
    plan = MaskPrompts(JUDO_MASKS).frames(names=[f"{i:05d}" for i in range(16)], num_frames=16)
    assert sorted(plan) == [0, 5, 8, 13]
    with pytest.raises(InputError, match="frame 13"):
        MaskPrompts(JUDO_MASKS).frames(num_frames=10)


def test_overlay_labels_and_large_ids():
    frame = judo_frames(1, scale=2)[0]
    idx = np.zeros(frame.shape[:2], np.uint16)
    idx[60:120, 100:160] = 300  # ids above 255 are fine in overlays
    plain = overlay(frame, idx)
    labelled = overlay(frame, idx, labels={300: "300 person 0.91"})
    diff = np.abs(labelled.astype(int) - plain.astype(int)).sum(-1) > 0
    ys, xs = np.nonzero(diff)
    assert diff.any() and ys.min() >= 60 - 20 and xs.min() >= 100 - 1  # drawn at the object's top-left
    assert np.array_equal(draw_labels(frame, idx, {7: "absent"}), frame)  # invisible objects get no label


def test_result_writer_classes_and_labels(tmp_path):
    """Class ids / names from the results (when present) give category_id = class id + 1 and overlay labels;
    results without class fields give category 1."""
    from types import SimpleNamespace

    from ausm.io import ResultWriter

    frame = judo_frames(1, scale=4)[0]
    h, w = frame.shape[:2]
    masks = np.zeros((2, h, w), bool)
    masks[0, 10:40, 10:50] = True
    masks[1, 60:90, 100:150] = True
    idx = (masks[0] * 4 + masks[1] * 9).astype(np.uint16)
    with_cls = SimpleNamespace(obj_ids=[4, 9], masks=masks, scores=np.array([0.9, 0.4], np.float32), index_mask=idx,
                               class_ids=np.array([2, 0]), class_scores=np.array([0.8, 0.3], np.float32),
                               class_names=["person", "dog", "judoka"])
    assert ResultWriter.labels_of(with_cls) == {4: "4 judoka 0.90", 9: "9 person 0.40"}
    agnostic = SimpleNamespace(**{**vars(with_cls), "class_ids": np.array([0, 0]), "class_names": ["object"]})
    assert ResultWriter.labels_of(agnostic) == {4: "4 0.90", 9: "9 0.40"}
    plain = SimpleNamespace(obj_ids=[4, 9], masks=masks, scores=np.array([0.9, 0.4], np.float32), index_mask=idx)
    for name, res, cats in (("cls", with_cls, {4: (3, "judoka"), 9: (1, "person")}),
                            ("plain", plain, {4: (1, None), 9: (1, None)})):
        wr = ResultWriter(tmp_path / name, ["rle", "boxes"], overlay=True, fps=5, video_id=3)
        for k in range(2):
            wr.write(k, frame, res)
        assert wr.close() == ["rle", "boxes", "overlay.mp4"]
        out = json.loads((tmp_path / name / "results.json").read_text())
        assert {r["obj_id"]: (r["category_id"], r.get("category_name")) for r in out} == cats
        assert all(r["video_id"] == 3 and len(r["segmentations"]) == 2 for r in out)
        assert json.loads((tmp_path / name / "boxes.json").read_text())["1"] == {"4": [10, 10, 50, 40],
                                                                             "9": [100, 60, 150, 90]}
        assert not (tmp_path / name / ".ausm-work").exists()


def test_live_reader_delivers_frames_as_they_arrive(tmp_path):
    """Lock-step pipe: frame k+1 is written only after frame k came out of the reader, so a reader that
    buffered the stream (or waited for its end) would stall here."""
    frames = judo_frames(6, scale=4)
    chunks = y4m_chunks(frames)
    rfd, wfd = os.pipe()
    got_frame = [threading.Event() for _ in frames]
    failed = []

    def writer():
        try:
            os.write(wfd, chunks[0] + chunks[1])
            for k in range(1, len(frames)):
                if not got_frame[k - 1].wait(30):
                    failed.append(f"frame {k - 1} never came out")
                    return
                os.write(wfd, chunks[k + 1])
        finally:
            os.close(wfd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    reader = open_source(f"pipe:{rfd}", options={"probesize": "32", "analyzeduration": "0"})
    out = []
    try:
        for k, f in enumerate(reader):
            out.append(f)
            got_frame[k].set()
    finally:
        os.close(rfd)
    t.join(30)
    assert not failed, failed
    assert len(out) == len(frames) and reader.num_frames is None and reader.fps == 10
    assert out[0].shape == frames[0].shape
    assert np.abs(out[3].astype(int) - frames[3].astype(int)).mean() < 4  # y4m: only chroma subsampling
    with pytest.raises(InputError, match="only once"):
        iter(reader)


# ------------------------------------------------------------------ frame folder + mask folder (judo)
def test_judo_prompt_folder_adds_objects_mid_video_all_formats(small_ckpt, tmp_path):
    out = tmp_path / "out"
    assert segment(JUDO, "--prompt", JUDO_MASKS, "--out", out, "--checkpoint", small_ckpt,
                   "--format", "palette,per-object", "--format", "rle", "--format", "boxes") == 0
    pal = check_palette(out, 16, (854, 480))
    assert overlay_count(out / "overlay.mp4") == 16
    assert np.array_equal(pal[0], load_prompt_mask(JUDO_MASKS / "00000.png"))  # the prompted frame is the prompt
    starts = {1: 0, 2: 5, 3: 8, 4: 13}
    for o, start in starts.items():
        files = sorted(p.name for p in (out / str(o)).iterdir())
        assert files == [f"{k:05d}.png" for k in range(start, 16)]  # per-object PNGs from the first frame on
        assert o in np.unique(pal[start])
        prompt, _ = fit_mask_to_size(load_prompt_mask(JUDO_MASKS / f"{start:05d}.png"), (480, 854))
        per_obj = read_png(out / str(o) / f"{start:05d}.png")
        assert set(np.unique(per_obj)) <= {0, 255}
        assert np.array_equal(per_obj > 0, prompt == o)  # added (frame 5: resized 853 → 854) on its frame
    # rle: YouTube-VIS results, one entry per track, round trip through pycocotools
    res = json.loads((out / "results.json").read_text())
    assert sorted(r["obj_id"] for r in res) == [1, 2, 3, 4]
    boxes = json.loads((out / "boxes.json").read_text())
    assert sorted(boxes, key=int) == [str(k) for k in range(16)]
    for r in res:
        o = r["obj_id"]
        assert r["video_id"] == 1 and r["category_id"] == 1 and 0 <= r["score"] <= 1
        segs = r["segmentations"]
        assert len(segs) == 16 and all(s is None for s in segs[: starts[o]]) and segs[starts[o]] is not None
        for k in range(starts[o], 16):
            m = read_png(out / str(o) / f"{k:05d}.png") > 0
            if segs[k] is None:
                assert not m.any()
                assert str(o) not in boxes[str(k)]
            else:
                assert segs[k]["size"] == [480, 854]
                assert np.array_equal(decode_rle(segs[k]), m)
                ys, xs = np.nonzero(m)
                assert boxes[str(k)][str(o)] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


# ------------------------------------------------------------------ 43 objects (AOT demo), keep names
def test_aot_demo_43_objects(ckpt64, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    names = sorted(p.name for p in (AOT / "images" / AOT_SEQ).iterdir())[:3]
    for n in names:
        shutil.copy(AOT / "images" / AOT_SEQ / n, frames / n)
    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copy(AOT / "masks" / AOT_SEQ / "00000693.png", masks)  # named by frame name, not index
    out = tmp_path / "out"
    assert segment(frames, "--prompt", masks, "--out", out, "--checkpoint", ckpt64, "--keep-names",
                   "--format", "palette,per-object,rle") == 0
    stems = [Path(n).stem for n in names]
    pal = check_palette(out, 3, (1920, 1080), names=stems)
    prompt = load_prompt_mask(AOT / "masks" / AOT_SEQ / "00000693.png")
    assert len(np.unique(prompt)) - 1 == 43
    assert np.array_equal(pal[0], prompt)
    obj_dirs = sorted(int(p.name) for p in out.iterdir() if p.is_dir())
    assert obj_dirs == list(range(1, 44))
    assert sorted(p.name for p in (out / "43").iterdir()) == [f"{s}.png" for s in stems]
    res = json.loads((out / "results.json").read_text())
    assert len(res) == 43 and all(len(r["segmentations"]) == 3 for r in res)
    assert overlay_count(out / "overlay.mp4") == 3


# ------------------------------------------------------------------ mp4 file: box prompt; point prompt mid-video
def box_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_mp4_box_prompt(small_ckpt, tmp_path):
    out = tmp_path / "out"
    box = [500, 200, 900, 560]
    assert segment(APPLE_MP4, "--prompt-box", ",".join(map(str, box)), "--out", out, "--checkpoint", small_ckpt,
                   "--max-frames", "3", "--format", "palette,boxes") == 0
    pal = check_palette(out, 3, (1296, 720))
    assert not (out / "00003.png").exists() and overlay_count(out / "overlay.mp4") == 3
    boxes = json.loads((out / "boxes.json").read_text())
    assert set(np.unique(pal[0])) == {0, 1}
    assert box_iou(boxes["0"]["1"], box) >= 0.5  # the chosen candidate fits the box (or is the box itself)


def test_mp4_point_prompts_on_a_later_frame(small_ckpt, tmp_path):
    out = tmp_path / "out"
    assert segment(APPLE_MP4, "--prompt-point", "700,380", "--prompt-point", "650,400,1",
                   "--prompt-point", "100,100,0", "--frame", "1", "--obj-id", "7", "--out", out,
                   "--checkpoint", small_ckpt, "--max-frames", "3", "--format", "palette,per-object") == 0
    pal = check_palette(out, 3, (1296, 720))
    assert not pal[0].any()  # nothing before the prompted frame
    assert sorted(p.name for p in (out / "7").iterdir()) == ["00001.png", "00002.png"]
    m1 = read_png(out / "7" / "00001.png") > 0
    assert m1[380, 700] and m1[400, 650]  # both positive points are on the object


# ------------------------------------------------------------------ live: stdin pipe (subprocess), FIFO, HTTP, device
def run_cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ausm", "segment", *map(str, args)], capture_output=True,
                          env=subprocess_env(), timeout=300, **kw)


def test_stdin_mpegts_stream_with_mid_video_prompt(small_ckpt, tmp_path):
    """``producer | ausm segment - ...``: an MPEG-TS / H.264 stream of the judo frames on stdin."""
    data = encode(judo_frames(7), "mpegts", "libx264")
    out = tmp_path / "out"
    r = run_cli("-", "--prompt", JUDO_MASKS, "--out", out, "--checkpoint", small_ckpt, "--format",
                "palette,per-object", input=data)
    assert r.returncode == 0, r.stderr.decode()
    stderr = r.stderr.decode()
    assert "480x853" in stderr and "resized" in stderr  # frame 5's mask is one pixel narrower
    assert "frames [8, 13] were never reached" in stderr
    assert b"wrote 7 masks" in r.stdout
    pal = check_palette(out, 7, (854, 480))
    assert not (out / "00007.png").exists()
    assert sorted(p.name for p in (out / "2").iterdir()) == ["00005.png", "00006.png"]
    assert 2 in np.unique(pal[5])
    assert overlay_count(out / "overlay.mp4") == 7


def test_named_pipe_y4m_and_multiple_inputs(small_ckpt, tmp_path):
    """A FIFO fed by a thread (y4m, real frames) and a frame folder in one command: OUT/<name>/ each,
    one prompt per input, one combined results.json with a video id per input."""
    frames = judo_frames(4, scale=2)
    fifo = tmp_path / "judo_live.y4m"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            for c in y4m_chunks(frames):
                f.write(c)

    bike = tmp_path / "bike"
    shutil.copytree(CUTIE / "images" / "bike", bike)
    prompt_small = tmp_path / "judo0.png"
    ids = load_prompt_mask(JUDO_MASKS / "00000.png")
    Image.fromarray(ids).resize((frames[0].shape[1], frames[0].shape[0]), Image.NEAREST).save(prompt_small)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    out = tmp_path / "out"
    assert segment(fifo, bike, "--prompt", prompt_small, CUTIE / "masks" / "bike" / "00000.png", "--out", out,
                   "--checkpoint", small_ckpt, "--format", "palette,rle", "--video-id", "10") == 0
    t.join(10)
    assert sorted(p.name for p in out.iterdir()) == ["bike", "judo_live", "results.json"]
    check_palette(out / "judo_live", 4, (frames[0].shape[1], frames[0].shape[0]))
    check_palette(out / "bike", 4, Image.open(bike / "00000.jpg").size)
    res = json.loads((out / "results.json").read_text())
    assert {r["video_id"] for r in res} == {10, 11}
    assert len([r for r in res if r["video_id"] == 11]) == 2  # the bike prompt has two objects
    assert res == (json.loads((out / "judo_live" / "results.json").read_text())
                   + json.loads((out / "bike" / "results.json").read_text()))


def test_inputs_with_the_same_name(small_ckpt, tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "clip").mkdir(parents=True)
        for k in range(2):
            shutil.copy(CUTIE / "images" / "bike" / f"{k:05d}.jpg", tmp_path / parent / "clip")
    out = tmp_path / "out"
    assert segment(tmp_path / "a" / "clip", tmp_path / "b" / "clip", "--prompt", CUTIE / "masks" / "bike" / "00000.png",
                   "--out", out, "--checkpoint", small_ckpt, "--no-overlay") == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip", "clip-2"]
    assert sorted(p.name for p in (out / "clip-2").iterdir()) == ["00000.png", "00001.png"]


def test_http_stream(small_ckpt, tmp_path):
    """A live source over HTTP from a local server (MPEG-TS of real frames), stopped by --max-frames."""
    served = tmp_path / "www"
    served.mkdir()
    (served / "judo.ts").write_bytes(encode(judo_frames(8, scale=2), "mpegts", "libx264"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "out"
        url = f"http://127.0.0.1:{srv.server_address[1]}/judo.ts"
        assert segment(url, "--unprompted", "--out", out, "--checkpoint", small_ckpt, "--max-frames", "5",
                       "--format", "palette,boxes", "--no-overlay") == 0
    finally:
        srv.shutdown()
        srv.server_close()
    check_palette(out, 5, (426, 240))
    assert not (out / "overlay.mp4").exists() and not (out / "00005.png").exists()
    assert len(json.loads((out / "boxes.json").read_text())) == 5


def test_ffmpeg_device_input_format(small_ckpt, tmp_path):
    """The device path (``--input-format``, as for v4l2 / avfoundation) with FFmpeg's lavfi test source."""
    out = tmp_path / "out"
    assert segment("testsrc=size=96x64:rate=10", "--input-format", "lavfi", "--prompt-box", "10,10,60,50",
                   "--out", out, "--checkpoint", small_ckpt, "--max-frames", "4") == 0
    check_palette(out, 4, (96, 64))


def test_ctrl_c_ends_a_live_source_and_keeps_results(small_ckpt, tmp_path):
    """First Ctrl-C on a live source: stop after the current frame, write what was processed (exit 0)."""
    chunks = y4m_chunks(judo_frames(12, scale=4))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "ausm", "segment", "-", "--unprompted", "--out", str(out),
                          "--checkpoint", str(small_ckpt), "--input-option", "probesize=32"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    err = bytearray()

    def drain():
        for chunk in iter(lambda: p.stderr.read1(4096), b""):
            err.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    try:
        p.stdin.write(chunks[0] + chunks[1] + chunks[2])
        p.stdin.flush()
        deadline = time.time() + 120
        while b"0frame" not in err:  # the progress bar starts once the first frame is in and Ctrl-C is handled
            assert time.time() < deadline and p.poll() is None, err.decode(errors="replace")
            time.sleep(0.05)
        time.sleep(2)
        p.send_signal(signal.SIGINT)
        for c in chunks[3:]:
            time.sleep(0.2)
            try:
                p.stdin.write(c)
                p.stdin.flush()
            except BrokenPipeError:
                break
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
        stdout = p.stdout.read().decode()
        rc = p.wait(120)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 0, err.decode(errors="replace")
    assert "stopped by Ctrl-C" in stdout
    n = len(list(out.glob("*.png")))
    assert 1 <= n < 11 and overlay_count(out / "overlay.mp4") == n


# ------------------------------------------------------------------ YouTube-VIS results accepted by ausm eval ytvis
def test_unprompted_rle_is_accepted_by_eval_ytvis(small_ckpt, tmp_path):
    frames = tmp_path / "blackswan"
    frames.mkdir()
    for k in range(4):
        shutil.copy(BLACKSWAN / f"{k:05d}.jpg", frames)
    out = tmp_path / "out"
    assert segment(frames, "--unprompted", "--format", "rle", "--no-overlay", "--out", out,
                   "--checkpoint", small_ckpt) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    res = json.loads((out / "results.json").read_text())
    assert res  # the random model detects objects (up to its 16 IDs)
    for r in res:
        assert set(r) >= {"video_id", "category_id", "score", "segmentations"} and len(r["segmentations"]) == 4
        for s in r["segmentations"]:
            assert s is None or decode_rle(s).shape == (480, 854)
    from pycocotools import mask as mask_utils

    gt_masks = [np.asfortranarray((read_png(BLACKSWAN_GT / f"{k:05d}.png") > 0).astype(np.uint8)) for k in range(4)]
    segs = []
    for m in gt_masks:
        rle = mask_utils.encode(m)
        segs.append({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()})
    gt = {"videos": [{"id": 1, "height": 480, "width": 854, "length": 4}],
          "categories": [{"id": 1, "name": "object"}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": segs,
                           "areas": [int(m.sum()) for m in gt_masks]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    # a second result that is the ground truth itself must score AP 1 next to the model's tracks
    best = {"video_id": 1, "category_id": 1, "score": 1.5, "segmentations": segs}
    (tmp_path / "pred_plus_gt.json").write_text(json.dumps(res + [best]))
    assert eval_ytvis(tmp_path / "gt.json", out / "results.json", tmp_path / "stats.json") == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert -1 <= stats["AP"] <= 1
    assert eval_ytvis(tmp_path / "gt.json", tmp_path / "pred_plus_gt.json", tmp_path / "stats2.json") == 0
    assert json.loads((tmp_path / "stats2.json").read_text())["AP"] == pytest.approx(1.0)


# ------------------------------------------------------------------ errors: one line, exit 2, no output
def expect_error(capsys, argv, match: str, out: Path):
    rc = main(["segment", *map(str, argv), "--quiet"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1, err
    assert match in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_errors(capsys, small_ckpt, tmp_path):
    out = tmp_path / "o" / "out"
    bad = tmp_path / "bad_masks"
    bad.mkdir()
    Image.fromarray(np.pad(load_prompt_mask(JUDO_MASKS / "00005.png"), ((0, 0), (0, 20)))).save(bad / "00005.png")
    ck = ["--checkpoint", small_ckpt, "--out", out]
    (tmp_path / "o").mkdir()
    expect_error(capsys, [JUDO, "--prompt", bad, *ck], "480x873", out)  # 2 % wider: an error, not resized
    named = tmp_path / "named"
    named.mkdir()
    shutil.copy(JUDO_MASKS / "00000.png", named / "first.png")
    expect_error(capsys, [JUDO, "--prompt", named, *ck], "frame number", out)
    expect_error(capsys, [JUDO, "--frame", "3", "--unprompted", *ck], "--frame applies", out)
    expect_error(capsys, [JUDO, "--prompt-box", "900,10,950,40", *ck], "outside", out)
    expect_error(capsys, [JUDO, "--prompt-box", "10,10,5,40", *ck], "x1 > x0", out)
    expect_error(capsys, [JUDO, "--prompt-point", "10,10,0", *ck], "positive", out)
    expect_error(capsys, [JUDO, "--prompt-point", "10,10", "--frame", "16", *ck], "beyond the end", out)
    expect_error(capsys, [JUDO, JUDO, JUDO, "--prompt", JUDO_MASKS, JUDO_MASKS, *ck], "one per input", out)
    expect_error(capsys, [JUDO, "--prompt-box", "1,1,50,50", "--obj-id", "300", *ck], "palette", out)
    # several inputs, the second fails while decoding: nothing of the first is written either
    good, corrupt = tmp_path / "good", tmp_path / "corrupt"
    good.mkdir()
    corrupt.mkdir()
    for k in range(2):
        shutil.copy(JUDO / f"{k:05d}.jpg", good)
        shutil.copy(JUDO / f"{k:05d}.jpg", corrupt)
    (corrupt / "00001.jpg").write_bytes((JUDO / "00001.jpg").read_bytes()[:5000])  # header intact, data cut
    expect_error(capsys, [good, corrupt, "--unprompted", *ck], "00001.jpg", out)



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_live_run_leaves_no_partial_folder(sig, small_ckpt, tmp_path):
    """A live run (stdin) ended by SIGTERM removes its temporary ``.OUT.partial-*`` at once (exit 143, no
    --out); one killed by SIGKILL cannot, and the next run into the same --out removes it (issue #15)."""
    chunks = y4m_chunks(judo_frames(12, scale=4))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ausm", "segment", "-", "--unprompted", "--out", str(out), "--checkpoint",
           str(small_ckpt), "--input-option", "probesize=32", "--no-overlay"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=subprocess_env())
    err = bytearray()
    threading.Thread(target=lambda: [err.extend(c) for c in iter(lambda: p.stderr.read1(4096), b"")],
                     daemon=True).start()
    try:
        p.stdin.write(b"".join(chunks[:4]))
        p.stdin.flush()
        deadline = time.time() + 120
        while not list(tmp_path.glob(".out.partial-*")) or b"0frame" not in err:
            assert time.time() < deadline and p.poll() is None, err.decode(errors="replace")
            time.sleep(0.05)
        p.send_signal(sig)
        if sig == signal.SIGTERM:
            # a read blocked in FFmpeg (no data on the pipe) returns on the next data or at EOF; the signal
            # then takes effect (a stalled source with no data ever again needs --stream-timeout or kill -9)
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
    if sig == signal.SIGTERM:
        assert not list(tmp_path.glob(".out.partial-*"))  # never a leftover
        # terminated while processing: exit 143, no output; while its read was blocked on the pipe, PyAV's
        # stdin read turns the signal into the end of the stream: the frames so far are written (exit 0)
        assert (rc == 143 and not out.exists()) or (rc == 0 and len(list(out.glob("*.png"))) >= 1), rc
        return
    assert list(tmp_path.glob(".out.partial-*"))  # kill -9 cannot clean up ...
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, f in enumerate(judo_frames(3, scale=4)):
        Image.fromarray(f).save(frames / f"{k:05d}.png")
    again = subprocess.run([sys.executable, "-m", "ausm", "segment", str(frames), "--unprompted", "--out", str(out),
                            "--checkpoint", str(small_ckpt), "--no-overlay", "--quiet"], env=subprocess_env(),
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not list(tmp_path.glob(".out.partial-*")) and out.is_dir()  # ... the next run does
