"""The bad-input matrix of issue #15 in one table: every class of bad input a user can hand the CLI
(``ausm segment``, ``ausm train``, ``ausm eval``), each case asserting the exit code, exactly one
``error:`` line with the words that say what is wrong, no traceback, no output written (no ``--out``,
no partial folder, no ``out=`` of a training run) and every input file unchanged, byte for byte.

The Python API's classes (frame dtypes and layouts, non-finite pixels that would poison a session,
soft prompt masks, boxes and points outside the frame) are the table of ``tests/test_inputs.py``;
resume snapshots that do not fit are ``tests/test_resume.py::test_resume_refuses_a_snapshot_that_does_not_fit``;
malformed YouTube-VIS results in the library are ``tests/test_eval_ytvis.py::test_malformed_results_are_refused``;
``ausm eval davis --workers -3`` is ``tests/test_eval_ytvis.py::test_eval_davis_refuses_bad_workers``; OS errors about
paths (read-only ``--out``, disk full) are ``tests/test_cli.py::test_os_errors_about_paths_are_input_errors_not_internal``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ausm.cli import main
from ausm.io import save_index_png

H, W = 48, 80


def _png_with_header(path: Path, w: int, h: int) -> None:
    """A valid PNG header declaring w × h pixels with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.fixture
def ws(tmp_path, small_ckpt) -> Path:
    """A workspace: ``frames/`` (3 PNG frames), ``jpg/`` (3 JPEG frames), ``prompt.png``, ``mixed/`` (frames of different sizes), ``ck/`` (a checkpoint), ``bomb/`` (frames whose header declares 100000²),
    ``mismatch/`` (a checkpoint whose config does not fit its tensors), ``gt/`` + ``res.json`` (a
    YouTube-VIS ground truth and results), ``list.json`` (a top-level JSON list)."""
    rng = np.random.default_rng(0)
    for sub in ("frames", "jpg", "bomb", "mixed"):
        (tmp_path / sub).mkdir()
    for k in range(3):
        img = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        img.save(tmp_path / "frames" / f"{k:05d}.png")
        img.save(tmp_path / "jpg" / f"{k:05d}.jpg")
        _png_with_header(tmp_path / "bomb" / f"{k:05d}.png", 100_000, 100_000)
        Image.fromarray(rng.integers(0, 256, (H - 8 * k, W, 3), dtype=np.uint8)).save(tmp_path / "mixed" / f"{k:05d}.png")
    m = np.zeros((H, W), np.uint8)
    m[10:30, 20:50] = 1
    save_index_png(tmp_path / "prompt.png", m)
    shutil.copytree(small_ckpt, tmp_path / "ck")
    shutil.copytree(small_ckpt, tmp_path / "mismatch")
    cfg = json.loads((tmp_path / "mismatch" / "config.json").read_text())
    cfg["hidden_dim"] *= 2
    (tmp_path / "mismatch" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "list.json").write_text("[1, 2]")
    gt = {"videos": [{"id": 1, "width": 4, "height": 4, "length": 2, "file_names": ["a/0.jpg", "a/1.jpg"]}],
          "categories": [{"id": 1, "name": "thing"}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "areas": [4, 4],
                           "segmentations": [{"size": [4, 4], "counts": [0, 4, 12]}] * 2}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return tmp_path


def _seg(*argv, ck="ck"):
    return ["segment", *argv, "--checkpoint", ck, "--quiet"]


def _res(**fields):
    r = {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [{"size": [4, 4], "counts": [0, 4, 12]}] * 2}
    r.update(fields)
    return [r]


#: (case id, argv (paths relative to the workspace), results JSON to write first or None, exit code,
#:  words of the one error line). ``OUT`` and ``TOUT`` must never appear.
CASES = [
    # -- data loss: never write into or over an input
    ("out-is-the-png-input", _seg("frames", "--prompt", "prompt.png", "--out", "frames"), None, 2, ["input"]),
    ("out-is-the-jpg-input", _seg("jpg", "--prompt", "prompt.png", "--out", "jpg"), None, 2, ["input"]),
    ("out-inside-the-input", _seg("frames", "--prompt", "prompt.png", "--out", "frames/masks"), None, 2, ["input"]),
    ("out-contains-the-input", _seg("frames", "--prompt", "prompt.png", "--out", "."), None, 2, ["input"]),
    ("out-is-the-prompt-file", _seg("frames", "--prompt", "prompt.png", "--out", "prompt.png"), None, 2, ["prompt.png"]),
    # -- exit class and one line
    ("decompression-bomb-frames", _seg("bomb", "--prompt", "prompt.png", "--out", "OUT"), None, 2,
     ["megapixels", "without decoding"]),
    ("bogus-device", _seg("frames", "--prompt", "prompt.png", "--out", "OUT", "--device", "bogus"), None, 2,
     ["unknown device", "cpu"]),
    ("cuda-without-cuda", _seg("frames", "--prompt", "prompt.png", "--out", "OUT", "--device", "cuda:99"), None, 2,
     ["cuda"]),
    ("checkpoint-config-does-not-fit-tensors", _seg("frames", "--prompt", "prompt.png", "--out", "OUT",
                                                    ck="mismatch"), None, 4, ["do not match config"]),
    ("missing-checkpoint", _seg("frames", "--prompt", "prompt.png", "--out", "OUT", ck="nope"), None, 4,
     ["not found"]),
    ("missing-input", _seg("no_such_folder", "--unprompted", "--out", "OUT"), None, 2, ["does not exist"]),
    ("box-outside-the-frames", _seg("frames", "--prompt-box", "500,500,600,600", "--out", "OUT"), None, 2,
     ["outside"]),
    ("point-without-a-positive", _seg("frames", "--prompt-point", "10,10,0", "--out", "OUT"), None, 2,
     ["positive"]),
    ("degenerate-box", _seg("frames", "--prompt-box", "30,30,10,40", "--out", "OUT"), None, 2, ["x1 > x0"]),
    ("video-id-zero", _seg("frames", "--prompt", "prompt.png", "--out", "OUT", "--video-id", "0"), None, 2,
     ["--video-id", ">= 1"]),
    ("negative-stream-timeout", _seg("frames", "--prompt", "prompt.png", "--out", "OUT", "--stream-timeout", "-1"),
     None, 2, ["--stream-timeout", "> 0"]),
    ("negative-finetune", _seg("frames", "--prompt", "prompt.png", "--out", "OUT", "--finetune", "-3"), None, 2,
     ["--finetune", ">= 0"]),
    ("colour-prompt-image", _seg("frames", "--prompt", "jpg/00000.jpg", "--out", "OUT"), None, 2, ["colour"]),
    ("inconsistent-frame-sizes", _seg("mixed", "--unprompted", "--out", "OUT"), None, 2, ["inconsistent sizes"]),
    # -- training configs are type-checked before anything is written
    ("train-steps-not-an-integer", ["train", "davis_root=x", "out=TOUT", 'steps="many"'], None, 3, ["steps", "integer"]),
    ("train-lr-not-a-number", ["train", "davis_root=x", "out=TOUT", "lr=abc"], None, 3, ["lr", "number"]),
    ("train-size-one-value", ["train", "davis_root=x", "out=TOUT", "size=[224]"], None, 3, ["size", "[H, W]"]),
    ("train-negative-batch", ["train", "davis_root=x", "out=TOUT", "batch_size=-1"], None, 3, ["batch_size", ">= 1"]),
    ("train-bool-as-string", ["train", "davis_root=x", "out=TOUT", 'exhaustive="yes"'], None, 3,
     ["exhaustive", "true or false"]),
    ("train-top-level-list", ["train", "list.json", "out=TOUT"], None, 3, ["JSON object"]),
    ("train-resume-without-state", ["train", "davis_root=x", "out=TOUT", "--resume"], None, 4, ["trainer_state.pt"]),
    ("train-unknown-option", ["train", "davis_root=x", "out=TOUT", "stpes=3"], None, 3, ["unknown training option"]),
    # -- malformed YouTube-VIS results: exit 2 naming the video and the field
    ("ytvis-nan-score", ["eval", "ytvis", "--gt", "gt.json", "--pred", "res.json"], _res(score=float("nan")), 2,
     ["video 1", "score"]),
    ("ytvis-unknown-category", ["eval", "ytvis", "--gt", "gt.json", "--pred", "res.json"], _res(category_id=9), 2,
     ["video 1", "category_id 9"]),
    ("ytvis-segmentation-count", ["eval", "ytvis", "--gt", "gt.json", "--pred", "res.json"],
     _res(segmentations=[{"size": [4, 4], "counts": [0, 4, 12]}] * 5), 2, ["video 1", "5 segmentations"]),
    ("ytvis-garbage-rle", ["eval", "ytvis", "--gt", "gt.json", "--pred", "res.json"],
     _res(segmentations=[{"size": [4, 4], "counts": "@@@@"}] * 2), 2, ["video 1", "RLE"]),
    ("ytvis-empty-segmentations", ["eval", "ytvis", "--gt", "gt.json", "--pred", "res.json"],
     _res(segmentations=[]), 2, ["video 1", "segmentations"]),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root`` (what must not change)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, argv, results, code, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_matrix(case, argv, results, code, words, ws, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    if results is not None:
        (ws / "res.json").write_text(json.dumps(results))
    before = _snapshot(ws)
    rc = main(list(argv))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == code, (case, rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (case, w, lines[0])
    assert _snapshot(ws) == before, f"{case}: the workspace changed"  # inputs intact, nothing written
    assert not (ws / "OUT").exists() and not (ws / "TOUT").exists()
    assert not [p for p in ws.rglob("*") if ".partial" in p.name]


def test_prompt_and_unprompted_together_is_said_not_silent(ws, capsys, monkeypatch):
    """``--prompt M --unprompted`` tracks the prompted objects and discovers others; the CLI says so."""
    monkeypatch.chdir(ws)
    rc = main(["segment", "frames", "--prompt", "prompt.png", "--unprompted", "--out", "OUT", "--checkpoint", "ck",
               "--no-overlay"])
    err = capsys.readouterr().err
    assert rc == 0 and "discovering new ones too" in err
