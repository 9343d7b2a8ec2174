"""The app's HTTP server (FastAPI): one static page and a small JSON API per browser-tab session id.

``/api/{sid}/...``: ``state`` · ``open`` (a path) · ``upload`` (a video file or the images of a frame
folder) · ``prompt`` (a click or a box; ``DELETE``: clear it) · ``object/{id}`` (``DELETE``: remove) ·
``track`` · ``stop`` · ``frame/{k}.jpg`` (frame + overlay) · ``mask/{k}.png`` (palette index mask shown)
· ``download/{palette|rle|overlay}`` · ``close``. Errors are JSON ``{"error": "<one line>"}``: 400 bad
input (the CLI's messages), 404 unknown, 409 busy / not ready, 411 / 413 uploads, 403 paths off.
"""
from __future__ import annotations

import io
import ipaddress
import re
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ..errors import AUSMError, InputError
from .state import DOWNLOADS, Busy, NotFound, SessionStore, TooLarge

__all__ = ["create_app", "serve", "is_loopback", "DEFAULT_MAX_UPLOAD_MB"]

STATIC = Path(__file__).resolve().parent / "static"

#: Default upload limit (``ausm app --max-upload-mb``).
DEFAULT_MAX_UPLOAD_MB = 2048

#: The most files one upload may hold (the frames of a folder).
MAX_UPLOAD_FILES = 100_000

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status(e: Exception) -> int:
    for cls, code in ((TooLarge, 413), (NotFound, 404), (Busy, 409)):
        if isinstance(e, cls):
            return code
    return 400


def _safe_name(name: str) -> str:
    base = _SAFE.sub("_", Path(str(name).replace("\\", "/")).name).lstrip(".")
    return base or "upload"


def create_app(model, video: str | None = None, *, max_frames: int | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20, allow_paths: bool = True,
               root: str | None = None, max_tabs: int = 16):
    """The FastAPI application.

    Args:
        model: the network (shared by the tabs). video: opened by every new tab (``ausm app VIDEO``).
        max_frames: use only the first frames of each video (as ``ausm segment --max-frames``).
        max_upload_bytes: the upload limit. allow_paths: whether the page may open paths on this machine
            (off when the server listens beyond loopback). root: parent of the temporary folder.
        max_tabs: tabs kept at once.

    Returns:
        the app; ``app.state.store`` is its :class:`~ausm.app.state.SessionStore` (closed on shutdown).
    """
    from contextlib import asynccontextmanager

    store = SessionStore(model, video, max_frames, root, max_tabs)

    @asynccontextmanager
    async def lifespan(app):
        yield
        store.close_all()

    app = FastAPI(title="ausm app", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(AUSMError)
    async def _ausm_error(request, e: AUSMError):
        return JSONResponse({"error": str(e)}, status_code=_status(e))

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    _add_video_routes(app, store, allow_paths, max_upload_bytes)
    _add_prompt_routes(app, store)
    _add_result_routes(app, store)
    return app


def _add_video_routes(app, store: SessionStore, allow_paths: bool, max_upload_bytes: int) -> None:
    """A tab's state, and opening a video by path or upload."""
    @app.get("/api/{sid}/state")
    def state(sid: str):
        return {**store.get(sid).state(), "can_open_paths": allow_paths, "max_upload_bytes": max_upload_bytes}

    @app.post("/api/{sid}/open")
    def open_path(sid: str, body: dict):
        if not allow_paths:
            return JSONResponse({"error": "opening paths on the server is off (it listens beyond loopback); "
                                          "upload the video instead"}, status_code=403)
        path = body.get("path")
        if not isinstance(path, str) or not path.strip():
            raise InputError("give the path of a video file or a frame folder")
        tab = store.get(sid)
        tab.open(str(Path(path.strip()).expanduser()))
        return tab.state()

    @app.post("/api/{sid}/upload")
    async def upload(sid: str, request: Request):
        tab = store.get(sid)
        size = request.headers.get("content-length")
        if size is None or not size.isdigit():
            return JSONResponse({"error": "uploads need a Content-Length"}, status_code=411)
        if int(size) > max_upload_bytes:
            raise TooLarge(f"the upload is {_mb(int(size))}; the limit is {_mb(max_upload_bytes)} (ausm app --max-upload-mb)")
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=10)
        try:
            path, display = await run_in_threadpool(_save_upload, tab, form.getlist("files"), max_upload_bytes)
        finally:
            await form.close()
        try:
            await run_in_threadpool(tab.open, path, display)
        except InputError as e:
            raise type(e)(str(e).replace(str(path), display)) from None
        return tab.state()


def _add_prompt_routes(app, store: SessionStore) -> None:
    """Prompts, objects, tracking and closing a tab."""
    @app.post("/api/{sid}/prompt")
    def prompt(sid: str, body: dict):
        tab = store.get(sid)
        k, o, kind = body.get("frame"), body.get("obj_id"), body.get("kind")
        if not isinstance(k, int) or isinstance(k, bool):
            raise InputError(f"frame must be an integer, got {k!r}")
        if kind == "box":
            tab.add_box(k, o, body.get("box"))
        elif kind == "point":
            tab.add_point(k, o, *_xy(body), label=body.get("label", 1))
        else:
            raise InputError(f"prompt kind must be 'point' or 'box', got {kind!r}")
        return tab.state()

    @app.delete("/api/{sid}/prompt")
    def clear_prompt(sid: str, frame: int, obj_id: int):
        tab = store.get(sid)
        tab.clear(frame, obj_id)
        return tab.state()

    @app.delete("/api/{sid}/object/{obj_id}")
    def remove_object(sid: str, obj_id: int):
        tab = store.get(sid)
        tab.remove_object(obj_id)
        return tab.state()

    @app.post("/api/{sid}/track")
    def start_track(sid: str):
        tab = store.get(sid)
        tab.start_track()
        return tab.state()

    @app.post("/api/{sid}/stop")
    def stop(sid: str):
        tab = store.get(sid)
        tab.stop()
        return tab.state()

    @app.post("/api/{sid}/close")
    def close(sid: str):
        store.drop(sid)
        return {"closed": sid}


def _add_result_routes(app, store: SessionStore) -> None:
    """Frames, mask previews and downloads."""
    @app.get("/api/{sid}/frame/{k}.jpg")
    def frame(sid: str, k: int):
        return Response(store.get(sid).render(k), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/{sid}/mask/{k}.png")
    def mask(sid: str, k: int):
        return Response(_palette_png(store.get(sid).view(k)), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/{sid}/download/{fmt}")
    def download(sid: str, fmt: str):
        path = store.get(sid).download(fmt)
        _, media, name = DOWNLOADS[fmt]
        return FileResponse(path, media_type=media, filename=name, headers={"Cache-Control": "no-store"})


def _palette_png(ids: np.ndarray) -> bytes:
    """(H, W) object ids (<= 254) as a DAVIS-palette PNG."""
    from PIL import Image

    from ..io import DAVIS_PALETTE

    im = Image.fromarray(ids.astype(np.uint8))  # putpalette makes it "P"
    im.putpalette(DAVIS_PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _xy(body: dict) -> tuple[float, float]:
    x, y = body.get("x"), body.get("y")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)):
        raise InputError(f"point must be 2 numbers (x, y), got {x!r}, {y!r}")
    return float(x), float(y)


def _save_upload(tab, files, limit: int) -> tuple[Path, str]:
    """Write the uploaded files into a new folder of ``tab``: one video file, or the images of a frame
    folder (several files, or one image). Returns (path to open, name for messages).

    Raises:
        InputError: no file, a repeated name. TooLarge: the files are over ``limit`` together.
    """
    from ..io import IMAGE_EXTENSIONS

    files = [f for f in files if hasattr(f, "filename")]
    if not files:
        raise InputError("choose a video file or the frames of a folder to upload")
    total = sum(f.size or 0 for f in files)
    if total > limit:
        raise TooLarge(f"the upload is {_mb(total)}; the limit is {_mb(limit)} (ausm app --max-upload-mb)")
    folder = tab.upload_folder()
    names = [_safe_name(f.filename) for f in files]
    if len(set(names)) != len(names):
        raise InputError("two uploaded files have the same name; a frame folder holds each frame once")
    as_folder = len(files) > 1 or Path(names[0]).suffix.lower() in IMAGE_EXTENSIONS
    target = folder / "frames" if as_folder else folder
    target.mkdir(exist_ok=True)
    for f, name in zip(files, names):
        with open(target / name, "wb") as out:
            f.file.seek(0)
            while chunk := f.file.read(1 << 20):
                out.write(chunk)
    rel = Path(str(files[0].filename).replace("\\", "/")).parent.name
    display = (rel or "uploaded frames") if as_folder else names[0]
    return (target if as_folder else target / names[0]), display


def serve(model, video: str | None = None, host: str = "127.0.0.1", port: int = 7860, *,
          max_frames: int | None = None, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, quiet: bool = False) -> None:
    """Run the app until Ctrl-C (uvicorn), printing its URL. Opening paths on this machine from the page
    is off when ``host`` is not a loopback address.

    Raises:
        InputError: a bad port or upload limit, or the port is taken.
    """
    import socket

    import uvicorn

    if not 0 <= port < 65536:
        raise InputError(f"--port must be in 0..65535, got {port}")
    if max_upload_mb < 1:
        raise InputError(f"--max-upload-mb must be >= 1, got {max_upload_mb}")
    local = is_loopback(host)
    try:  # a clear message for a taken port, before uvicorn's log
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e} (another program uses it? try "
                         f"--port {port + 1})") from e
    app = create_app(model, video, max_frames=max_frames, max_upload_bytes=max_upload_mb << 20, allow_paths=local)
    shown = f"[{host}]" if ":" in host else host
    print(f"ausm app: open http://{shown}:{port}/ in a browser (Ctrl-C stops)", flush=True)
    if not local:
        print(f"warning: listening on {host}, beyond this machine: anyone who can reach it can use the app "
              "(opening server paths from the page is off; uploads only)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning" if quiet else "info", access_log=False)
