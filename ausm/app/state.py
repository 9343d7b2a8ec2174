"""Per-tab state of the app: each browser tab has a session id and its own :class:`TabSession` (video,
prompts, previews, results, one background worker, its own temporary folder); :class:`SessionStore`
keeps them apart.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .tracking import Cancelled, Prompt, check_prompt, preview, track
from .video import VideoSource

__all__ = ["TabSession", "SessionStore", "Busy", "NotFound", "TooLarge", "DOWNLOADS"]

#: download name → (file in the result folder or "zip", media type, file name offered to the browser)
DOWNLOADS = {
    "palette": ("zip", "application/zip", "masks_palette_png.zip"),
    "rle": ("results.json", "application/json", "results.json"),
    "overlay": ("overlay.mp4", "video/mp4", "overlay.mp4"),
}

_SID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class Busy(InputError):
    """The tab's worker is busy, or the request conflicts with its state (HTTP 409)."""


class NotFound(InputError):
    """No such frame, object or download (HTTP 404)."""


class TooLarge(InputError):
    """An upload over the size limit (HTTP 413)."""


class TabSession:
    """The state of one browser tab.

    Args:
        sid: the tab's session id; folder: its own temporary folder (created, removed by :meth:`close`);
        model: the network (shared by all tabs, never modified); max_frames: as ``ausm segment --max-frames``.

    Every public method takes the tab's lock; the worker thread (loading a video, tracking) runs one job
    at a time and reports its progress in :meth:`state`.
    """

    def __init__(self, sid: str, folder: Path, model, max_frames: int | None = None) -> None:
        self.sid, self.folder, self.model, self.max_frames = sid, Path(folder), model, max_frames
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.source: VideoSource | None = None
        self.prompts: dict[tuple[int, int], Prompt] = {}
        self.previews: dict[int, np.ndarray] = {}
        self.version = 0  # bumped by every prompt change
        self.view_version = 0  # bumped by everything that changes what a frame shows
        self.task: str | None = None
        self.done = self.total = 0
        self.error: str | None = None
        self.message: str | None = None
        self.result: Path | None = None
        self.result_version = -1
        self._running: Path | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0
        self.last_used = time.monotonic()

    # -- the worker --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self, task: str, total: int, job) -> None:
        if self.busy:
            raise Busy(f"the tab is busy {self.task} (press Stop or wait)")
        self.task, self.done, self.total, self.error, self.message = task, 0, total, None, None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(job,), name=f"ausm-app-{self.sid[:8]}", daemon=True)
        self._thread.start()

    def _run(self, job) -> None:
        try:
            job()
        except Cancelled:
            self.message = "stopped"
        except Exception as e:  # reported in the page, as the CLI's one line
            self.error = str(e) if isinstance(e, InputError) else f"internal error: {type(e).__name__}: {e}"
        finally:
            with self.lock:
                self.task = None
                self.view_version += 1

    def _progress(self, n: int) -> None:
        self.done = n
        self.view_version += 1

    def stop(self) -> None:
        """Ask the running job to stop after the current frame."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the running job (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the video ---------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike, display: str | None = None) -> None:
        """Open a video file or frame folder (forgetting the previous video, prompts and results) and
        start caching its display frames in the background.

        Raises:
            Busy: a job is running. InputError: as ``ausm segment`` for that input.
        """
        with self.lock:
            if self.busy:
                raise Busy(f"the tab is busy {self.task} (press Stop or wait)")
            self._n += 1
            src = VideoSource(path, self.folder / f"video-{self._n}", self.max_frames, display)
            self._drop_video()
            self.source = src
            self.view_version += 1
            self._start("loading", src.num_frames, lambda: src.decode_all(self._progress, self._cancel))

    def _drop_video(self) -> None:
        old = self.source
        self.source, self.prompts, self.previews = None, {}, {}
        self.version += 1
        self._set_result(None, -1)
        if old is not None:
            shutil.rmtree(old.cache, ignore_errors=True)

    def upload_folder(self) -> Path:
        """A new empty folder for an upload into this tab."""
        self._n += 1
        d = self.folder / f"upload-{self._n}"
        d.mkdir()
        return d

    def _need_video(self) -> VideoSource:
        if self.source is None:
            raise Busy("open a video first")
        return self.source

    def _editable(self) -> VideoSource:
        src = self._need_video()
        if self.busy:
            raise Busy(f"the tab is busy {self.task}; prompts can change when it is done (or press Stop)")
        return src

    # -- prompts -----------------------------------------------------------------------------------
    def add_point(self, k: int, obj_id: int, x: float, y: float, label: int = 1) -> None:
        """Add a positive (1) or negative (0) click on frame ``k`` to object ``obj_id`` (a box of that
        object on that frame is replaced); the frame's preview is updated.

        Raises:
            InputError: as ``ausm segment --prompt-point``: outside the frame, bad label, no positive point.
        """
        from ..io.inputs import check_points

        with self.lock:
            src = self._editable()
            src.check_index(k)
            check_prompt(obj_id, "point", [x, y], src.size)
            if label not in (0, 1) or isinstance(label, bool):
                raise InputError(f"point: labels must be 1 (on the object) or 0 (not on it), got {label!r}")
            old = self.prompts.get((k, obj_id))
            pts, labs = (list(old.points), list(old.labels)) if old is not None and old.kind == "points" else ([], [])
            check_points(pts + [[x, y]], labs + [label], "points")
            self._set_prompt(k, obj_id, Prompt("points", points=pts + [[float(x), float(y)]], labels=labs + [label]))

    def add_box(self, k: int, obj_id: int, box) -> None:
        """Prompt object ``obj_id`` on frame ``k`` with a box (x0, y0, x1, y1) (replacing its clicks there).

        Raises:
            InputError: as ``ausm segment --prompt-box``.
        """
        with self.lock:
            src = self._editable()
            src.check_index(k)
            check_prompt(obj_id, "box", box, src.size)
            self._set_prompt(k, obj_id, Prompt("box", box=[float(v) for v in box]))

    def clear(self, k: int, obj_id: int) -> None:
        """Remove the prompt of ``obj_id`` on frame ``k``. Raises NotFound: there is none."""
        with self.lock:
            self._editable()
            if (k, obj_id) not in self.prompts:
                raise NotFound(f"object {obj_id} has no prompt on frame {k}")
            self._set_prompt(k, obj_id, None)

    def remove_object(self, obj_id: int) -> None:
        """Remove object ``obj_id``: its prompts on every frame (its masks leave the view and, after the
        next Track, the results). Raises NotFound: no such object."""
        with self.lock:
            self._editable()
            keys = [key for key in self.prompts if key[1] == obj_id]
            if not keys:
                raise NotFound(f"there is no object {obj_id}")
            for k, o in keys:
                self._set_prompt(k, o, None)

    def _set_prompt(self, k: int, obj_id: int, prompt: Prompt | None) -> None:
        """Set (or remove) one prompt and recompute frame ``k``'s preview; on an error nothing changes."""
        old = self.prompts.get((k, obj_id))
        if prompt is None:
            self.prompts.pop((k, obj_id), None)
        else:
            self.prompts[(k, obj_id)] = prompt
        on_k = {o: p for (kk, o), p in self.prompts.items() if kk == k}
        try:
            prev = preview(self.model, self.source.exact(k), on_k) if on_k else None
        except BaseException:
            if old is None:
                self.prompts.pop((k, obj_id), None)
            else:
                self.prompts[(k, obj_id)] = old
            raise
        if prev is None:
            self.previews.pop(k, None)
        else:
            self.previews[k] = prev
        self.version += 1
        self.view_version += 1

    @property
    def objects(self) -> list[int]:
        return sorted({o for _, o in self.prompts})

    # -- tracking ----------------------------------------------------------------------------------
    def start_track(self) -> None:
        """Start "Track": one pass from frame 0 with every prompt on its frame, in the background.

        Raises:
            Busy: no video, no prompt, or a job is running.
        """
        with self.lock:
            src = self._editable()
            if not self.prompts:
                raise Busy("click on an object (or drag a box) first: there is nothing to track")
            self._n += 1
            run = self.folder / f"run-{self._n}"
            prompts, version = dict(self.prompts), self.version
            self._running = run

            def job():
                try:
                    track(self.model, src.frames(), prompts, run, src.fps, self._progress, self._cancel)
                except BaseException:
                    self._running = None
                    shutil.rmtree(run, ignore_errors=True)
                    raise
                with self.lock:
                    self._set_result(run, version)
                    self._running = None

            self._start("tracking", src.num_frames, job)

    def _set_result(self, folder: Path | None, version: int) -> None:
        if self.result is not None and self.result != folder:
            shutil.rmtree(self.result, ignore_errors=True)
        self.result, self.result_version = folder, version
        self.view_version += 1

    @property
    def stale(self) -> bool:
        """The prompts changed since the results were tracked."""
        return self.result is not None and self.result_version != self.version

    # -- what a frame shows ------------------------------------------------------------------------
    def view(self, k: int) -> np.ndarray:
        """(H, W) uint16 index mask shown on frame ``k``: the tracked masks (of the run in progress up to
        its last frame, else of the last run), with this frame's previews on top while the results do not
        include the latest prompts; removed objects are hidden."""
        with self.lock:
            src = self._need_video()
            src.check_index(k)
            folder = self._running if (self._running is not None and k < self.done) else self.result
            base = None
            if folder is not None and (folder / f"{k:05d}.png").is_file():
                with Image.open(folder / f"{k:05d}.png") as im:
                    base = np.asarray(im).astype(np.uint16)
            view = base if base is not None else np.zeros(src.size, np.uint16)
            view = np.where(np.isin(view, self.objects), view, 0).astype(np.uint16)
            if k in self.previews and (base is None or (folder == self.result and self.stale)):
                prev = self.previews[k]
                for o in np.unique(prev[prev > 0]):
                    view[view == o] = 0
                    view[prev == o] = o
            return view

    def render(self, k: int) -> bytes:
        """JPEG of display frame ``k`` with the coloured overlay and object ids (as overlay.mp4)."""
        from ..io import overlay

        with self.lock:
            src = self._need_video()
            frame = src.display(k)
            ids = self.view(k)
        h, w = frame.shape[:2]
        if ids.shape != (h, w):
            ids = np.asarray(Image.fromarray(ids.astype(np.int32)).resize((w, h), Image.NEAREST)).astype(np.uint16)
        if ids.any():
            frame = overlay(frame, ids, labels={int(o): str(int(o)) for o in np.unique(ids[ids > 0])})
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=88)
        return buf.getvalue()

    # -- downloads ---------------------------------------------------------------------------------
    def download(self, fmt: str) -> Path:
        """The file of a download (``palette``: a zip of the palette PNGs, written to a temporary file
        once per run; ``rle``: results.json; ``overlay``: overlay.mp4).

        Raises:
            NotFound: an unknown format. Busy: no results yet, a run in progress or prompts changed since.
        """
        if fmt not in DOWNLOADS:
            raise NotFound(f"unknown download {fmt!r}; choose one of {', '.join(DOWNLOADS)}")
        with self.lock:
            if self.busy and self.task == "tracking":
                raise Busy("tracking is running: download when it is done")
            if self.result is None:
                raise Busy("press Track first: there are no results to download yet")
            if self.stale:
                raise Busy("the prompts changed since the last Track: press Track to update the results first")
            name = DOWNLOADS[fmt][0]
            if name != "zip":
                return self.result / name
            return self._zip(self.result)

    @staticmethod
    def _zip(folder: Path) -> Path:
        target = folder / ".download" / "masks.zip"
        if not target.is_file():
            target.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".partial")
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                for p in sorted(folder.glob("*.png")):
                    z.write(p, p.name)
            os.replace(tmp, target)
        return target

    # -- the page's view of the state --------------------------------------------------------------
    def state(self) -> dict:
        """JSON-able state for the page."""
        with self.lock:
            self.last_used = time.monotonic()
            src = self.source
            video = None if src is None else {
                "name": src.name, "num_frames": src.num_frames, "height": src.size[0], "width": src.size[1],
                "fps": src.fps, "decoded": src.decoded}
            return {
                "sid": self.sid, "video": video, "task": self.task if self.busy else None, "done": self.done,
                "total": self.total, "error": self.error, "message": self.message, "objects": self.objects,
                "prompts": [{"frame": k, "obj_id": o, **p.as_json()} for (k, o), p in sorted(self.prompts.items())],
                "result": self.result is not None, "stale": self.stale, "view_version": self.view_version,
            }

    def close(self) -> None:
        """Stop the worker and remove the tab's folder."""
        self.stop()
        self.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


class SessionStore:
    """The tabs of one server: ``get(sid)`` makes a tab's :class:`TabSession` on first use (opening the
    server's video, if any); at most ``max_tabs`` are kept (the least recently used idle one goes).

    Args:
        model: the network; video: the video every new tab opens (``ausm app VIDEO``), or None;
        max_frames: as ``ausm segment --max-frames``; root: where the tabs' folders go (default: a new
        temporary folder, removed by :meth:`close_all`).
    """

    def __init__(self, model, video: str | None = None, max_frames: int | None = None, root: str | None = None,
                 max_tabs: int = 16) -> None:
        self.model, self.video, self.max_frames, self.max_tabs = model, video, max_frames, max_tabs
        self.root = Path(tempfile.mkdtemp(prefix="ausm-app-", dir=root))
        self._tabs: dict[str, TabSession] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> TabSession:
        """The tab of ``sid`` (made on first use).

        Raises:
            InputError: a malformed session id. Busy: ``max_tabs`` tabs, all busy.
        """
        if not isinstance(sid, str) or not _SID.match(sid):
            raise InputError("the session id must be 8-64 letters, digits, '-' or '_'")
        with self._lock:
            tab = self._tabs.get(sid)
            if tab is None:
                self._evict()
                tab = self._tabs[sid] = TabSession(sid, self.root / sid, self.model, self.max_frames)
                new = True
            else:
                new = False
        if new and self.video is not None:
            try:
                tab.open(self.video)
            except InputError as e:  # e.g. the file went away since the start: the page says so
                tab.error = str(e)
        tab.last_used = time.monotonic()
        return tab

    def _evict(self) -> None:
        while len(self._tabs) >= self.max_tabs:
            idle = [t for t in self._tabs.values() if not t.busy]
            if not idle:
                raise Busy(f"{self.max_tabs} tabs are busy; close one or try again later")
            old = min(idle, key=lambda t: t.last_used)
            del self._tabs[old.sid]
            old.close()

    def drop(self, sid: str) -> None:
        """Forget a tab (its page closed)."""
        with self._lock:
            tab = self._tabs.pop(sid, None)
        if tab is not None:
            tab.close()

    def close_all(self) -> None:
        """Stop every tab and remove the server's temporary folder."""
        with self._lock:
            tabs, self._tabs = list(self._tabs.values()), {}
        for t in tabs:
            t.close()
        shutil.rmtree(self.root, ignore_errors=True)
