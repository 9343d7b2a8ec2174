"""Writing segmentation results of one video in the formats users' pipelines read.

:class:`ResultWriter` takes one result per frame (anything shaped like
:class:`ausm.inference.FrameResult`) and writes, into one folder:

``palette``     ``00000.png``, ``00001.png``, … DAVIS / YouTube-VOS index PNGs (mode ``P``, DAVIS palette;
                pixel = object id 1..254, 0 = background).
``per-object``  ``<obj_id>/00000.png`` …: one binary PNG (mode ``L``, 0 / 255) per object and frame, from
                the frame the object first appears on; masks of different objects may overlap.
``rle``         ``results.json``: YouTube-VIS results, one entry per track:
                ``{"video_id", "category_id", "score", "segmentations", "obj_id", "category_name"}`` where
                ``segmentations`` has one COCO RLE (``{"size": [H, W], "counts": str}``, pycocotools) or
                ``null`` (no mask: the track had not started or its mask is empty) per frame;
                ``category_id`` = class id + 1 of the track's class when the results carry class ids
                (``1`` otherwise); ``score`` = the track's highest foreground score over the frames.
``boxes``       ``boxes.json``: ``{"<frame index>": {"<obj_id>": [x0, y0, x1, y1]}}``, integer pixel
                edges (``x1``, ``y1`` exclusive, so width = ``x1 - x0``), objects with empty masks omitted.
``overlay``     ``overlay.mp4`` (when enabled): the frames with coloured masks, outlines and a label per
                object: its id, its class name (non-agnostic class heads) and its score.

Nothing grows in memory with the number of frames: per-track RLEs and boxes are streamed to files
in the output folder and ``results.json`` is assembled from them at :meth:`ResultWriter.close`.
The caller owns atomicity (write into a temporary folder, move it into place on success); each file is
written whole (PNGs through a temporary file + rename).

A writer made with ``resumable=True`` can be continued after its process was killed:
:meth:`ResultWriter.state_dict` (JSON-able) records how far each file got, and a new writer on the same
folder made with ``restore=<that state>`` continues from there. The overlay video cannot be appended
to, so a resumable writer also records what it drew on each frame (the index mask, unless the palette
PNGs already hold it, and the labels) and the restoring writer re-renders the overlay of the earlier
frames from that record: the result equals an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ausm.errors import InputError
from ausm.io.atomic import atomic_open
from ausm.io.masks import save_index_png
from ausm.io.overlay import OverlayWriter

__all__ = ["FORMATS", "parse_formats", "ResultWriter", "mask_to_rle", "mask_box"]

#: Output formats, in the order they are written.
FORMATS = ("palette", "per-object", "rle", "boxes")

_ALIASES = {"perobject": "per-object", "per_object": "per-object", "objects": "per-object", "png": "palette",
            "davis": "palette", "json": "rle", "ytvis": "rle", "coco": "rle", "box": "boxes"}


def parse_formats(values) -> list[str]:
    """``["palette,rle", "boxes"]`` → ``["palette", "rle", "boxes"]`` (deduplicated, in :data:`FORMATS` order).

    ``None`` or empty → ``["palette"]``.

    Raises:
        InputError: an unknown format name.
    """
    if not values:
        return ["palette"]
    if isinstance(values, str):
        values = [values]
    got = set()
    for v in values:
        for name in str(v).split(","):
            name = name.strip().lower()
            if not name:
                continue
            name = _ALIASES.get(name, name)
            if name not in FORMATS:
                raise InputError(f"unknown output format {name!r}; choose from {', '.join(FORMATS)}")
            got.add(name)
    if not got:
        raise InputError(f"no output format given; choose from {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in got]


def mask_to_rle(mask: np.ndarray) -> dict:
    """(H, W) bool mask → COCO compressed RLE ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def mask_box(mask: np.ndarray) -> list[int] | None:
    """(H, W) bool mask → ``[x0, y0, x1, y1]`` (integer pixel edges, ``x1``/``y1`` exclusive) or ``None`` if empty."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def _class_info(res, i: int) -> tuple[int | None, str | None, float | None]:
    """(class id, class name, class score) of track ``i`` of a result, where available."""
    cids = getattr(res, "class_ids", None)
    if cids is None or len(cids) <= i:
        return None, None, None
    cid = int(cids[i])
    if cid < 0:
        return None, None, None
    names = getattr(res, "class_names", None) or []
    if isinstance(names, dict):
        name = names.get(cid)
    else:
        name = names[cid] if 0 <= cid < len(names) else None
    cscores = getattr(res, "class_scores", None)
    cscore = float(cscores[i]) if cscores is not None and len(cscores) > i else None
    return cid, name, cscore


class _Track:
    __slots__ = ("obj_id", "start", "score", "class_id", "class_name", "path")

    def __init__(self, obj_id: int, start: int, path: Path):
        self.obj_id, self.start, self.path = obj_id, start, path
        self.score = -1.0
        self.class_id: int | None = None
        self.class_name: str | None = None


class ResultWriter:
    """Write the per-frame results of one video into ``folder``.

    Args:
        folder: output folder (created).
        formats: names from :data:`FORMATS` (see :func:`parse_formats`).
        overlay: also write ``overlay.mp4``.
        fps: overlay frame rate.
        names: file stems of the frames (default ``%05d`` of the frame index).
        video_id: the ``video_id`` of this video's entries in ``results.json``.
        resumable: record what is needed to continue the files after a kill (see the module docstring
            and :meth:`state_dict`).
        restore: a :meth:`state_dict` of an earlier writer over the same folder (same arguments) that
            stopped, e.g. because its process was killed: continue its files instead of starting new
            ones. Files are cut back to their length at that state, per-frame files of later frames are
            removed (they are written again), and the overlay of the frames before the state is
            re-rendered from the record.
        frames: with ``restore`` and an overlay: the input frames before the state (only
            ``restore["frames_written"]`` of them are read).

    Call :meth:`write` once per frame, in order, then :meth:`close` (or :meth:`abort` on failure).

    Raises:
        InputError: with ``restore``: the folder lacks files the state refers to, or ``frames`` ends
            early.
    """

    def __init__(self, folder: str | os.PathLike, formats=("palette",), *, overlay: bool = True, fps: float = 24.0,
                 names: list[str] | None = None, video_id: int | str = 1, resumable: bool = False,
                 restore: dict | None = None, frames: Iterable[np.ndarray] = ()) -> None:
        self.folder = Path(os.fspath(folder))
        self.formats = parse_formats(list(formats))
        self.names = names
        self.video_id = video_id
        self.frames_written = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fps = fps
        self._overlay = OverlayWriter(self.folder / "overlay.mp4", fps=fps) if overlay else None
        self._tracks: dict[int, _Track] = {}
        self._work = self.folder / ".ausm-work"
        if "rle" in self.formats:
            self._work.mkdir(exist_ok=True)
        self._boxes = None
        # the overlay record of a resumable writer: labels per frame (+ index masks without palette PNGs)
        self._record = self._work / "overlay" if (resumable and overlay) else None
        self._labels = None
        self._closed = False
        if restore is not None:
            self._restore(restore, frames)
            return
        if "boxes" in self.formats:
            self._boxes = open(self.folder / "boxes.json", "w", encoding="utf-8")
            self._boxes.write("{")
        if self._record is not None:
            self._record.mkdir(parents=True, exist_ok=True)
            self._labels = open(self._record / "labels.jsonl", "w", encoding="utf-8")

    def _name(self, k: int) -> str:
        if self.names is not None and k < len(self.names):
            return self.names[k]
        return f"{k:05d}"

    @staticmethod
    def labels_of(res) -> dict[int, str]:
        """Overlay label of each object: ``"<id>"``, plus the class name for non-agnostic heads, plus
        the score."""
        out = {}
        scores = getattr(res, "scores", None)
        names = getattr(res, "class_names", None) or []
        agnostic = list(names) == ["object"]
        for i, o in enumerate(res.obj_ids):
            parts = [str(o)]
            cid, cname, _ = _class_info(res, i)
            if cname and not agnostic:
                parts.append(str(cname))
            if scores is not None and len(scores) > i:
                parts.append(f"{float(scores[i]):.2f}")
            out[int(o)] = " ".join(parts)
        return out

    def write(self, k: int, frame: np.ndarray, res) -> None:
        """Write frame ``k``'s results (``k`` counts from 0 without gaps).

        Raises:
            InputError: ids that do not fit a palette PNG (> 254) when ``palette`` is written.
        """
        if self._closed:
            raise InputError("ResultWriter is closed")
        if k != self.frames_written:
            raise InputError(f"frames must be written in order: expected frame {self.frames_written}, got {k}")
        name = self._name(k)
        idx = np.asarray(res.index_mask)
        if "palette" in self.formats:
            top = int(idx.max(initial=0))
            if top > 254:
                raise InputError(f"object id {top} does not fit a palette PNG (ids 1..254); "
                                 "use --format per-object or rle for more objects")
            save_index_png(self.folder / f"{name}.png", idx.astype(np.uint8))
        masks = np.asarray(res.masks)
        if "per-object" in self.formats:
            for o, m in zip(res.obj_ids, masks):
                with atomic_open(self.folder / str(int(o)) / f"{name}.png", "wb") as f:
                    Image.fromarray(m.astype(np.uint8) * 255).save(f, format="PNG")
        if "rle" in self.formats:
            for i, (o, m) in enumerate(zip(res.obj_ids, masks)):
                o = int(o)
                t = self._tracks.get(o)
                if t is None:
                    t = self._tracks[o] = _Track(o, k, self._work / f"{o}.jsonl")
                line = json.dumps(mask_to_rle(m)) if m.any() else "null"
                with open(t.path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
                s = float(res.scores[i]) if len(res.scores) > i else 0.0
                t.score = max(t.score, s)
                cid, cname, _ = _class_info(res, i)  # the session keeps each track's class maxed over frames
                if cid is not None:
                    t.class_id, t.class_name = cid, cname
        if self._boxes is not None:
            boxes = {}
            for o, m in zip(res.obj_ids, masks):
                b = mask_box(m)
                if b is not None:
                    boxes[str(int(o))] = b
            self._boxes.write(("" if k == 0 else ",") + "\n" + json.dumps(str(k)) + ": " + json.dumps(boxes))
        if self._overlay is not None:
            labels = self.labels_of(res)
            if self._record is not None:
                if "palette" not in self.formats:  # the palette PNG already holds the index mask
                    _save_ids_png(self._record / f"{k:05d}.png", idx)
                self._labels.write(json.dumps(list(labels.items())) + "\n")
            self._overlay.write(frame, idx, labels=labels)
        self.frames_written += 1

    # -- continuing after a kill ---------------------------------------------------------------
    def flush(self) -> None:
        """Push buffered text of the streamed files (``boxes.json``, the overlay record) to the OS."""
        for f in (self._boxes, self._labels):
            if f is not None:
                f.flush()

    def state_dict(self) -> dict:
        """JSON-able position of every file after the frames written so far (call :meth:`flush` first).

        Raises:
            InputError: the writer was not made with ``resumable=True`` while an overlay is written.
        """
        if self._overlay is not None and self._record is None:
            raise InputError("the overlay of a ResultWriter can be continued only with resumable=True")
        self.flush()
        return {
            "frames_written": self.frames_written,
            "tracks": [{"obj_id": t.obj_id, "start": t.start, "score": t.score, "class_id": t.class_id,
                        "class_name": t.class_name, "nbytes": t.path.stat().st_size if t.path.exists() else 0}
                       for t in self._tracks.values()],
            "boxes_nbytes": os.fstat(self._boxes.fileno()).st_size if self._boxes is not None else None,
            "labels_nbytes": os.fstat(self._labels.fileno()).st_size if self._labels is not None else None,
        }

    def _restore(self, state: dict, frames: Iterable[np.ndarray]) -> None:
        """See ``restore`` in the class docstring."""
        k = int(state["frames_written"])
        try:
            # leftovers of the killed process: temporary files and the per-frame files of frames >= k
            for p in list(self.folder.rglob(".*.tmp*")):
                if p.is_file():
                    p.unlink()
            self._remove_frames_from(k)
            if "rle" in self.formats:
                keep = set()
                for t in state["tracks"]:
                    tr = _Track(int(t["obj_id"]), int(t["start"]), self._work / f"{int(t['obj_id'])}.jsonl")
                    tr.score = float(t["score"])
                    tr.class_id = None if t["class_id"] is None else int(t["class_id"])
                    tr.class_name = t["class_name"]
                    _truncate(tr.path, int(t["nbytes"]))
                    self._tracks[tr.obj_id] = tr
                    keep.add(tr.path.name)
                for p in self._work.glob("*.jsonl"):
                    if p.name not in keep:
                        p.unlink()
            if "boxes" in self.formats:
                self._boxes = _reopen_at(self.folder / "boxes.json", int(state["boxes_nbytes"]))
            if self._overlay is not None:
                if self._record is None:
                    raise InputError("the overlay of a ResultWriter can be continued only with resumable=True")
                lines = _read_lines(self._record / "labels.jsonl", int(state["labels_nbytes"]))
                if len(lines) != k:
                    raise InputError(f"the overlay record in {self._record} has {len(lines)} frames, expected {k}")
                it = iter(frames)
                for j in range(k):
                    frame = next(it, None)
                    if frame is None:
                        raise InputError(f"the input ended after {j} frames while re-rendering the overlay "
                                         f"of the first {k}")
                    labels = {int(o): str(text) for o, text in json.loads(lines[j])}
                    self._overlay.write(frame, self._recorded_ids(j), labels=labels)
                self._labels = _reopen_at(self._record / "labels.jsonl", int(state["labels_nbytes"]))
        except BaseException as e:
            self.abort()
            if isinstance(e, InputError) or not isinstance(e, (OSError, ValueError, KeyError, TypeError)):
                raise
            raise InputError(f"cannot continue the outputs in {self.folder}: {type(e).__name__}: {e}") from e
        self.frames_written = k

    def _remove_frames_from(self, k: int) -> None:
        """Delete the per-frame files (palette, per-object, overlay record) of frames ``>= k``."""
        by_name = {n: i for i, n in enumerate(self.names)} if self.names is not None else {}

        def index_of(stem: str) -> int | None:
            if stem in by_name:
                return by_name[stem]
            return int(stem) if stem.isdigit() else None

        folders = []
        if "palette" in self.formats:
            folders.append((self.folder, False))
        if "per-object" in self.formats:
            folders += [(d, True) for d in self.folder.iterdir() if d.is_dir() and d.name.isdigit()]
        if self._record is not None and self._record.is_dir():
            folders.append((self._record, False))
        for d, per_object in folders:
            for p in d.glob("*.png"):
                j = (int(p.stem) if p.stem.isdigit() else None) if d == self._record else index_of(p.stem)
                if j is not None and j >= k:
                    p.unlink()
            if per_object and not any(d.iterdir()):
                d.rmdir()  # an object that had not started before frame k

    def _recorded_ids(self, j: int) -> np.ndarray:
        p = (self.folder / f"{self._name(j)}.png") if "palette" in self.formats else (self._record / f"{j:05d}.png")
        with Image.open(p) as im:
            return np.asarray(im).astype(np.uint16)

    def results(self):
        """Iterate over the ``results.json`` entries (reads the per-track files; after the last write)."""
        n = self.frames_written
        for o in sorted(self._tracks):
            t = self._tracks[o]
            segs = [None] * t.start
            with open(t.path, encoding="utf-8") as f:
                segs.extend(json.loads(line) for line in f)
            segs.extend([None] * (n - len(segs)))
            entry = {"video_id": self.video_id, "category_id": (t.class_id + 1) if t.class_id is not None else 1,
                     "score": round(max(t.score, 0.0), 6), "segmentations": segs, "obj_id": o}
            if t.class_name is not None:
                entry["category_name"] = t.class_name
            yield entry

    def close(self) -> list[str]:
        """Finish every file; returns the names of what was written (for messages)."""
        if self._closed:
            return []
        self._closed = True
        written = list(self.formats)
        try:
            if self._boxes is not None:
                self._boxes.write("\n}\n")
                self._boxes.close()
                self._boxes = None
            if "rle" in self.formats:
                with open(self.folder / "results.json", "w", encoding="utf-8") as f:
                    f.write("[")
                    for j, entry in enumerate(self.results()):
                        f.write(("" if j == 0 else ",") + "\n" + json.dumps(entry))
                    f.write("\n]\n")
            if self._overlay is not None:
                self._overlay.close()
                written.append("overlay.mp4")
            if self._labels is not None:
                self._labels.close()
                self._labels = None
            shutil.rmtree(self._work, ignore_errors=True)
        except BaseException:
            self.abort()
            raise
        return written

    def abort(self) -> None:
        """Stop writing (the caller deletes the folder)."""
        self._closed = True
        for name in ("_boxes", "_labels"):
            f = getattr(self, name)
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
                setattr(self, name, None)
        if self._overlay is not None:
            self._overlay.abort()


def _save_ids_png(path: Path, idx: np.ndarray) -> None:
    """An index mask as a lossless PNG: 8-bit when the ids fit, else 16-bit."""
    a = np.ascontiguousarray(idx)
    img = Image.fromarray(a.astype(np.uint8)) if int(a.max(initial=0)) <= 255 else Image.fromarray(a.astype(np.uint16))
    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")


def _truncate(path: Path, nbytes: int) -> None:
    if not path.exists() or path.stat().st_size < nbytes:
        raise InputError(f"{path} is shorter than the snapshot says ({nbytes} bytes); it cannot be continued")
    os.truncate(path, nbytes)


def _reopen_at(path: Path, nbytes: int):
    """Open a text file for appending after cutting it to ``nbytes``."""
    _truncate(path, nbytes)
    return open(path, "a", encoding="utf-8")


def _read_lines(path: Path, nbytes: int) -> list[str]:
    with open(path, "rb") as f:
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise InputError(f"{path} is shorter than the snapshot says ({nbytes} bytes); it cannot be continued")
    return data.decode("utf-8").splitlines()
