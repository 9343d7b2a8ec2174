"""SA-V training-set reader (spec §8): ``sav_XXXXXX.mp4`` + ``sav_XXXXXX_manual.json`` (and
``_auto.json``), possibly in sub-folders (``sav_000/``, ``sav_001/``, ...).

Interpretation of the masklet JSON (SA-V README, ``sav_dataset/README.md`` of facebookresearch/sam2,
and its ``sav_utils.py``):

* ``masklet`` is a list over **annotated frames** of lists over **objects** of COCO RLE dicts
  ``{"size": [H, W], "counts": str}``. Videos are 24 fps and annotated at 6 fps, i.e. every 4th video
  frame: ``masklet[k]`` labels video frame ``4 * k`` (frame 0, 4, 8, ...). The stride is
  ``annot_stride`` (default 4).
* Every object has an entry on every annotated frame; where it is not visible the RLE is empty.
  Objects can therefore appear late (``masklet_first_appeared_frame``) or leave and come back.
* Object j keeps the same position j on every frame; its id is ``masklet_id[j]`` when present.
* ``masklet_frame_count`` (per object) is the number of annotated frames and ``video_frame_count``
  the number of video frames; only ``masklet`` and ``video_frame_count`` are used here. If
  ``video_frame_count`` is missing, the video is decoded once to count its frames.
* Frames between annotated ones (``k % 4 != 0``) carry no labels (``annotated`` False).
* SA-V is class-agnostic and not exhaustive (manual masklets label some objects, not all):
  head ``"agnostic"``, ``exhaustive`` False. ``annotations="auto"`` / ``"both"`` use the automatic
  masklets (after, for ``"both"``, the manual ones).

Frames are decoded with PyAV. To avoid decoding from the start for every clip the reader seeks to the
key frame before the first wanted frame and identifies frames by their timestamp (index =
round((pts − start) · time_base · fps)); if the stream has no timestamps or seeking overshoots, it
falls back to decoding from the start.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from ..io.video import _AV_ERRORS
from .clips import ClipData, VideoReader
from .coco import decode_segmentation

__all__ = ["SAVDataset", "read_video_frames"]


def _decode_all(path: Path, want: set[int], last: int) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for k, fr in enumerate(c.decode(s)):
            if k in want:
                out[k] = fr.to_ndarray(format="rgb24")
            if k >= last:
                break
    return out


def _decode_seek(path: Path, want: set[int], first: int, last: int) -> dict[int, np.ndarray] | None:
    """Seek-based decoding; ``None`` when timestamps cannot be trusted."""
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or getattr(s, "guessed_rate", None)
        tb = s.time_base
        if not rate or tb is None:
            return None
        fps, tb = Fraction(rate), Fraction(tb)
        t0 = s.start_time or 0
        if first > 0:
            target = t0 + int(Fraction(first) / fps / tb)
            c.seek(target, stream=s, backward=True, any_frame=False)
        seen_first = None
        for fr in c.decode(s):
            if fr.pts is None:
                return None
            k = round(float((fr.pts - t0) * tb * fps))
            if seen_first is None:
                seen_first = k
                if k > first:  # landed after the first wanted frame
                    return None
            if k in want:
                out[k] = fr.to_ndarray(format="rgb24")
            if k >= last:
                break
    return out


def read_video_frames(path, indices, seek: bool = True) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames ``indices`` (0-based, any order, repeats allowed) of a video file.

    Raises:
        InputError: the file cannot be decoded or has fewer frames than asked for.
    """
    path = Path(path)
    want = {int(k) for k in indices}
    first, last = min(want), max(want)
    try:
        got = _decode_seek(path, want, first, last) if seek else None
        if got is None or len(got) != len(want):
            got = _decode_all(path, want, last)
    except _AV_ERRORS as e:
        raise InputError(f"cannot decode video {path}: {e}") from e
    missing = sorted(want - set(got))
    if missing:
        raise InputError(f"video {path} has no frame(s) {missing[:5]}")
    return np.stack([got[int(k)] for k in indices])


class SAVDataset(VideoReader):
    """SA-V videos (mp4) with their masklets.

    Args:
        root: folder with ``sav_*.mp4`` and ``sav_*_manual.json`` (searched recursively).
        annotations: ``"manual"`` (default), ``"auto"`` or ``"both"``.
        videos: restrict to these video ids (``"sav_000001"``).
        annot_stride: video frames per annotated frame (4: 24 fps video, 6 fps masklets).
        name: dataset name written into samples.
        cache: number of parsed JSONs kept in memory.

    Raises:
        InputError: missing root, no video with annotations, unknown video ids.
    """

    head = "agnostic"
    exhaustive = False

    def __init__(self, root, annotations: str = "manual", videos: list[str] | None = None,
                 annot_stride: int = 4, name: str = "sav", cache: int = 16):
        self.root = Path(root)
        if annotations not in ("manual", "auto", "both"):
            raise InputError(f"annotations must be 'manual', 'auto' or 'both', got {annotations!r}")
        if not self.root.is_dir():
            raise InputError(f"SA-V root {self.root} does not exist")
        self.annotations, self.annot_stride, self.name, self._cache_size = annotations, annot_stride, name, cache
        kinds = ["manual", "auto"] if annotations == "both" else [annotations]
        self._mp4: dict[str, Path] = {}
        for mp4 in sorted(self.root.rglob("*.mp4")):
            if any((mp4.parent / f"{mp4.stem}_{k}.json").is_file() for k in kinds):
                self._mp4[mp4.stem] = mp4
        self._kinds = kinds
        self.videos = sorted(self._mp4) if videos is None else list(videos)
        for v in self.videos:
            if v not in self._mp4:
                raise InputError(f"SA-V video {v!r} (mp4 + {'/'.join(kinds)} JSON) not found under {self.root}")
        self._cache: dict = {}
        self._counts: dict = {}

    def video_path(self, vid: str) -> Path:
        return self._mp4[vid]

    def _annotation(self, vid: str) -> dict:
        """{"masklet": [[rle per object] per annotated frame], "ids": [...], "frame_count": int | None}."""
        if vid in self._cache:
            return self._cache[vid]
        mp4 = self._mp4[vid]
        rows: list[list] | None = None
        ids: list = []
        frame_count = None
        for kind in self._kinds:
            p = mp4.parent / f"{vid}_{kind}.json"
            if not p.is_file():
                continue
            try:
                d = json.loads(p.read_text())
                ml = d["masklet"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise InputError(f"cannot read SA-V masklets {p}: {e}") from e
            n_obj = len(ml[0]) if ml else int(d.get("masklet_num", 0))
            mid = d.get("masklet_id") or list(range(n_obj))
            ids += [f"{kind}:{m}" for m in mid] if len(self._kinds) > 1 else list(mid)
            if d.get("video_frame_count") is not None:
                frame_count = int(round(float(d["video_frame_count"])))
            if rows is None:
                rows = [list(r) for r in ml]
            else:
                if len(ml) != len(rows):
                    raise InputError(f"{vid}: manual and auto masklets have different frame counts")
                rows = [a + list(b) for a, b in zip(rows, ml)]
        rec = {"masklet": rows or [], "ids": ids, "frame_count": frame_count}
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[vid] = rec
        return rec

    def num_frames(self, vid):
        rec = self._annotation(vid)
        if rec["frame_count"]:
            return rec["frame_count"]
        if vid not in self._counts:
            from ..io.video import FrameReader
            self._counts[vid] = len(FrameReader(self._mp4[vid]))
        return self._counts[vid]

    def annotated_frames(self, vid):
        n = self.num_frames(vid)
        return [k * self.annot_stride for k in range(len(self._annotation(vid)["masklet"]))
                if k * self.annot_stride < n]

    def object_ids(self, vid: str) -> list:
        return list(self._annotation(vid)["ids"])

    def read_frames(self, vid, indices):
        return read_video_frames(self._mp4[vid], indices)

    def read_annotations(self, vid, indices):
        rec = self._annotation(vid)
        ml, ids = rec["masklet"], rec["ids"]
        if not ml or not ml[0]:
            raise InputError(f"{vid}: no masklets")
        h, w = (int(v) for v in ml[0][0]["size"])
        n = len(ids)
        masks = np.zeros((n, len(indices), h, w), dtype=bool)
        annotated = np.zeros(len(indices), dtype=bool)
        for j, k in enumerate(indices):
            a, r = divmod(int(k), self.annot_stride)
            if r or a >= len(ml):
                continue
            annotated[j] = True
            row = ml[a]
            if len(row) != n:
                raise InputError(f"{vid}: annotated frame {a} has {len(row)} masks, expected {n}")
            for i, rle in enumerate(row):
                masks[i, j] = decode_segmentation(rle, h, w)
        return ClipData(frames=None, annotated=annotated, object_ids=list(ids),
                        classes=np.zeros(n, dtype=np.int64), masks=masks)
