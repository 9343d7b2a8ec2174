"""YouTube-VIS 2019/2021 and OVIS reader (spec §8): ``JPEGImages/<video>/*.jpg`` + one JSON

    videos:      [{id, file_names[T], height, width, length}]
    annotations: [{id, video_id, category_id, segmentations[T] (RLE / polygon / null), iscrowd, ...}]
    categories:  [{id, name}]

* Every frame listed in ``file_names`` is annotated (the train JSONs list every 5th video frame);
  ``null`` = the instance is absent from that frame.
* RLE may be compressed (``counts`` a string) or uncompressed (``counts`` a list, as in the raw
  YouTube-VIS JSONs); polygons work too.
* ``classes`` = position of ``category_id`` in the categories sorted by id (YouTube-VIS: ids 1..40 →
  0..39; OVIS 1..25 → 0..24). The class head is the constructor's ``head``.
* Crowd tracks (``iscrowd = 1``) are excluded [D]. Labels are exhaustive (detection loss on).
* A YouTube-VIS-style JSON of one's own works the same way (custom head name, see docs/DATA.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.paths import safe_join
from ..io.video import read_rgb_frames
from .clips import ClipData, VideoReader
from .coco import decode_segmentation

__all__ = ["YTVISDataset"]


class YTVISDataset(VideoReader):
    """Videos and instance tracks of a YouTube-VIS-format JSON.

    Args:
        ann_file: the JSON (``train.json``, ``instances.json``, ``annotations_train.json``).
        image_root: folder the ``file_names`` are relative to (``.../train/JPEGImages``); default:
            ``JPEGImages`` beside the JSON. Only needed to read frames.
        head: class-head name: ``"ytvis2019"``, ``"ytvis2021"``, ``"ovis"`` or a custom one.
        name: dataset name written into samples (default = ``head``).
        include_crowd: keep ``iscrowd`` tracks.
        videos: restrict to these video names.

    Attributes:
        videos: video names = the folder of each video's first file name (``str(id)`` if the
            folders are not unique).
        categories: category dicts sorted by id.

    Raises:
        InputError: unreadable JSON, missing keys, segmentation lists whose length is not the
            video's, unknown categories.
    """

    exhaustive = True

    def __init__(self, ann_file, image_root=None, head: str = "ytvis2019", name: str | None = None,
                 include_crowd: bool = False, videos: list[str] | None = None):
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root) if image_root is not None else self.ann_file.parent / "JPEGImages"
        self.head, self.name = head, name or head
        try:
            data = json.loads(self.ann_file.read_text())
            vids, cats = data["videos"], data["categories"]
            anns = data.get("annotations") or []
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"cannot read YouTube-VIS annotations {self.ann_file}: {e}") from e
        try:
            self.categories = sorted(cats, key=lambda c: c["id"])
            self.class_of = {c["id"]: k for k, c in enumerate(self.categories)}
            folders = [str(Path(v["file_names"][0]).parent) if v.get("file_names") else str(v["id"]) for v in vids]
            unique = len(set(folders)) == len(folders)
            self._info: dict = {}
            by_id: dict = {}
            for v, f in zip(vids, folders):
                key = f if unique else str(v["id"])
                n = len(v.get("file_names", []))
                if int(v.get("length", n)) != n:
                    raise InputError(f"video {key!r}: length {v.get('length')} but {n} file names")
                self._info[key] = v
                by_id[v["id"]] = key
            self._tracks: dict = {k: [] for k in self._info}
            for a in anns:
                if a.get("iscrowd", 0) and not include_crowd:
                    continue
                key = by_id.get(a.get("video_id"))
                if key is None:
                    raise InputError(f"annotation {a.get('id')} refers to unknown video {a.get('video_id')}")
                if a.get("category_id") not in self.class_of:
                    raise InputError(f"annotation {a.get('id')} has unknown category {a.get('category_id')}")
                segs = a.get("segmentations")
                if segs is None or len(segs) != len(self._info[key]["file_names"]):
                    raise InputError(f"annotation {a.get('id')}: {0 if segs is None else len(segs)} segmentations "
                                     f"for a video of {len(self._info[key]['file_names'])} frames")
                self._tracks[key].append(a)
        except InputError:
            raise
        except (TypeError, KeyError, ValueError, AttributeError, IndexError) as e:
            raise InputError(f"malformed YouTube-VIS annotations {self.ann_file}: {type(e).__name__}: {e}") from e
        self.videos = list(videos) if videos is not None else list(self._info)
        for v in self.videos:
            if v not in self._info:
                raise InputError(f"unknown video {v!r} in {self.ann_file}")

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def class_names(self) -> list[str]:
        return [c.get("name", str(c["id"])) for c in self.categories]

    def video_info(self, vid: str) -> dict:
        """The JSON's video dict."""
        return self._info[vid]

    def tracks(self, vid: str) -> list[dict]:
        """The (non-crowd unless ``include_crowd``) annotation dicts of ``vid``."""
        return list(self._tracks[vid])

    def num_frames(self, vid):
        return len(self._info[vid]["file_names"])

    def read_frames(self, vid, indices):
        names = self._info[vid]["file_names"]
        return read_rgb_frames([safe_join(self.image_root, names[k]) for k in indices], vid)

    def read_annotations(self, vid, indices):
        v = self._info[vid]
        h, w = int(v["height"]), int(v["width"])
        tracks = self._tracks[vid]
        masks = np.zeros((len(tracks), len(indices), h, w), dtype=bool)
        for i, a in enumerate(tracks):
            segs = a["segmentations"]
            for j, k in enumerate(indices):
                if segs[k] is not None:
                    masks[i, j] = decode_segmentation(segs[k], h, w)
        return ClipData(frames=None, annotated=np.ones(len(indices), dtype=bool),
                        object_ids=[a.get("id", i) for i, a in enumerate(tracks)],
                        classes=np.asarray([self.class_of[a["category_id"]] for a in tracks], dtype=np.int64),
                        masks=masks)
