"""``ausm app``'s server API (FastAPI TestClient, a small random model, a synthetic frame folder): the same
masks as ``ausm segment`` for the same click, corrections and several objects as the Session gives them,
tabs kept apart, upload limits and the CLI's errors, remove object, the three downloads, loopback only."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the app extra is not installed (pip install -e '.[app]')")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (pip install -e '.[dev]')")

from fastapi.testclient import TestClient  # noqa: E402

from ausm.app import create_app, is_loopback  # noqa: E402
from ausm.checkpoint import load_model  # noqa: E402

N = 6
A, B = "tab-aaaaaaaa", "tab-bbbbbbbb"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """Six 48x80 frames: a bright square moving over a dark textured background."""
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for k in range(N):
        f = rng.integers(0, 60, (48, 80, 3), dtype=np.uint8)
        f[10:30, 20 + 3 * k:44 + 3 * k] = (230, 200, 40)
        Image.fromarray(f).save(d / f"{k:05d}.png")
    return d


@pytest.fixture(scope="module")
def model(small_ckpt):
    return load_model(str(small_ckpt))


@pytest.fixture
def client(model, video, tmp_path):
    with TestClient(create_app(model, str(video), root=str(tmp_path), max_upload_bytes=200_000)) as c:
        yield c


def wait(client, sid):
    client.app.state.store.get(sid).wait(60)
    st = client.get(f"/api/{sid}/state").json()
    assert st["task"] is None and st["error"] is None, st
    return st


def point(client, sid, k, o, x, y, label=1):
    return client.post(f"/api/{sid}/prompt", json={"frame": k, "obj_id": o, "kind": "point", "x": x, "y": y,
                                                    "label": label})


def track(client, sid):
    r = client.post(f"/api/{sid}/track")
    assert r.status_code == 200, r.text
    return wait(client, sid)


def palette(client, sid) -> dict[str, np.ndarray]:
    r = client.get(f"/api/{sid}/download/palette")
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        return {n: np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in sorted(z.namelist())}


def test_click_gives_the_cli_masks(client, video, small_ckpt, tmp_path):
    from ausm.segment import SegmentOptions, run_segment

    wait(client, A)
    r = point(client, A, 0, 1, 30, 20)
    assert r.status_code == 200, r.text
    assert r.json()["objects"] == [1]
    shown = np.asarray(Image.open(io.BytesIO(client.get(f"/api/{A}/mask/0.png").content)))
    track(client, A)
    app = palette(client, A)
    out = tmp_path / "cli"
    run_segment(SegmentOptions(input=[str(video)], out=str(out), prompt_point=["30,20"], frame=0, obj_id=1,
                               checkpoint=str(small_ckpt), format=["palette", "rle"], quiet=True))
    assert sorted(app) == sorted(p.name for p in out.glob("*.png")) and len(app) == N
    for n, m in app.items():
        assert np.array_equal(m, np.asarray(Image.open(out / n))), n
    assert np.array_equal(shown, app["00000.png"])  # the mask shown at once is the tracked one on frame 0
    rle = client.get(f"/api/{A}/download/rle")
    assert rle.status_code == 200 and rle.json() == json.loads((out / "results.json").read_text())


def test_corrections_and_objects_on_later_frames_as_the_session(client, video, model):
    """Clicks on frame 0, a correction of object 1 on frame 3, a box for object 2 on frame 2: Track gives
    what one Session gives with those prompts on those frames."""
    from ausm.inference import Session
    from ausm.io import read_frames

    wait(client, A)
    assert point(client, A, 0, 1, 30, 20).status_code == 200
    assert point(client, A, 0, 1, 5, 5, label=0).status_code == 200
    assert point(client, A, 3, 1, 40, 20).status_code == 200
    r = client.post(f"/api/{A}/prompt", json={"frame": 2, "obj_id": 2, "kind": "box", "box": [50, 30, 78, 46]})
    assert r.status_code == 200, r.text
    assert r.json()["prompts"][0] == {"frame": 0, "obj_id": 1, "kind": "points", "points": [[30.0, 20.0], [5.0, 5.0]],
                                      "labels": [1, 0]}
    track(client, A)
    app = palette(client, A)
    s = Session(model, detect_new_objects=False)
    s.add_prompt(0, 1, points=[[30, 20], [5, 5]], labels=[1, 0])
    s.add_prompt(2, 2, box=[50, 30, 78, 46])
    s.add_prompt(3, 1, points=[[40, 20]], labels=[1])
    for k, frame in enumerate(read_frames(video)):
        assert np.array_equal(app[f"{k:05d}.png"], s.step(frame).index_mask), k


def test_tabs_are_separate(client, video, tmp_path):
    wait(client, A), wait(client, B)
    assert point(client, A, 0, 1, 30, 20).status_code == 200
    assert client.get(f"/api/{B}/state").json()["prompts"] == []
    track(client, A)
    assert client.get(f"/api/{B}/download/palette").status_code == 409  # B has tracked nothing
    other = tmp_path / "other"
    other.mkdir()
    for k in range(3):
        Image.fromarray(np.full((40, 60, 3), 40 * k, np.uint8)).save(other / f"{k}.png")
    st = client.post(f"/api/{B}/open", json={"path": str(other)}).json()
    assert st["video"]["num_frames"] == 3 and st["video"]["width"] == 60
    a = client.get(f"/api/{A}/state").json()
    assert a["video"]["num_frames"] == N and a["objects"] == [1] and a["result"] and not a["stale"]
    assert len(palette(client, A)) == N
    assert client.get("/api/bad/state").status_code == 400  # malformed session ids are refused


def test_uploads(client, video):
    up = lambda name, data: client.post(f"/api/{A}/upload", files=[("files", (name, data))])  # noqa: E731
    wait(client, A)
    r = up("big.mp4", b"\0" * 300_000)
    assert r.status_code == 413 and "the limit is 0.2 MB" in r.json()["error"], r.text
    r = up("clip.mp4", b"not a video at all" * 20)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err.startswith("cannot open video file clip.mp4 (corrupt or not a video?)"), err
    assert "ausm-app-" not in err  # no server temp paths in messages
    r = up("empty.mp4", b"")
    assert r.status_code == 400 and r.json()["error"].startswith("empty.mp4 is an empty file (0 bytes), not a video")
    files = [("files", (f"clip/{p.name}", p.read_bytes())) for p in sorted(video.glob("*.png"))]
    r = client.post(f"/api/{A}/upload", files=files)
    assert r.status_code == 200, r.text
    assert r.json()["video"]["num_frames"] == N and r.json()["video"]["name"] == "clip"
    wait(client, A)
    r = client.post(f"/api/{A}/upload", files=[("files", ("x.png", b"junk")), ("files", ("y.png", b"junk"))])
    assert r.status_code == 400 and "x.png" in r.json()["error"] and "ausm-app-" not in r.json()["error"]


@pytest.mark.parametrize("body, message", [
    ({"frame": 0, "obj_id": 1, "kind": "point", "x": 500, "y": 10}, "point 500,10 lies outside the 80x48 (WxH) frames"),
    ({"frame": 0, "obj_id": 300, "kind": "point", "x": 5, "y": 5}, "object ids must be in 1..254"),
    ({"frame": 0, "obj_id": 1, "kind": "point", "x": 5, "y": 5, "label": 0}, "at least one positive point"),
    ({"frame": 99, "obj_id": 1, "kind": "point", "x": 5, "y": 5}, "frame 99 is not in"),
    ({"frame": 0, "obj_id": 1, "kind": "box", "box": [30, 5, 10, 20]}, "need x1 > x0 and y1 > y0"),
    ({"frame": 0, "obj_id": 1, "kind": "lasso"}, "prompt kind must be 'point' or 'box'"),
])
def test_bad_prompts_are_refused_with_the_cli_messages(client, body, message):
    wait(client, A)
    r = client.post(f"/api/{A}/prompt", json=body)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert client.get(f"/api/{A}/state").json()["prompts"] == []


def test_remove_object_and_downloads(client):
    wait(client, A)
    assert point(client, A, 0, 1, 30, 20).status_code == 200
    assert client.post(f"/api/{A}/prompt", json={"frame": 1, "obj_id": 2, "kind": "box",
                                                  "box": [50, 30, 78, 46]}).status_code == 200
    assert client.get(f"/api/{A}/download/palette").status_code == 409  # nothing tracked yet
    track(client, A)
    ov = client.get(f"/api/{A}/download/overlay")
    assert ov.status_code == 200 and ov.content[4:8] == b"ftyp"
    assert client.get(f"/api/{A}/download/boxes").status_code == 404
    assert {e["obj_id"] for e in client.get(f"/api/{A}/download/rle").json()} == {1, 2}
    st = client.delete(f"/api/{A}/object/1").json()
    assert st["objects"] == [2] and st["stale"]
    r = client.get(f"/api/{A}/download/palette")
    assert r.status_code == 409 and "press Track" in r.json()["error"]
    shown = np.asarray(Image.open(io.BytesIO(client.get(f"/api/{A}/mask/2.png").content)))
    assert 1 not in shown  # removed at once from the view
    assert client.delete(f"/api/{A}/object/1").status_code == 404
    track(client, A)
    masks = palette(client, A)
    assert all(1 not in m for m in masks.values()) and any((m == 2).any() for m in masks.values())
    jpg = client.get(f"/api/{A}/frame/1.jpg")
    assert jpg.status_code == 200 and jpg.content[:2] == b"\xff\xd8"


def test_loopback_only_unless_asked(model, video, tmp_path):
    from ausm.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert args.host == "127.0.0.1" and args.port == 7860
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with TestClient(create_app(model, None, root=str(tmp_path), allow_paths=False)) as c:
        r = c.post(f"/api/{A}/open", json={"path": str(video)})
        assert r.status_code == 403 and "upload" in r.json()["error"]
        assert c.get(f"/api/{A}/state").json()["video"] is None
        assert c.get("/").status_code == 200 and b"ausm app" in c.get("/").content


def test_cli_checks_the_video_before_loading_the_model(tmp_path, capsys):
    from ausm.cli import main

    assert main(["app", str(tmp_path / "missing.mp4")]) == 2
    assert "error: input path does not exist" in capsys.readouterr().err


def test_stop_keeps_nothing_half_written_and_memory_stays_flat(client):
    tab = client.app.state.store.get(A)
    wait(client, A)
    for k in range(N):  # a click on every frame: previews keep one index mask per frame, at most 4 frames
        assert point(client, A, k, 1, 30 + 2 * k, 20).status_code == 200
    assert len(tab.source._exact) <= 4 and set(tab.previews) == set(range(N))
    progress = tab._progress

    def stop_after_two(n):
        progress(n)
        if n == 2:
            tab.stop()

    tab._progress = stop_after_two
    client.post(f"/api/{A}/track")
    st = wait(client, A)
    assert st["message"] == "stopped" and not st["result"] and st["done"] == 2
    assert not list(tab.folder.glob("run-*"))  # the stopped run's files are gone
    assert client.get(f"/api/{A}/download/rle").status_code == 409
