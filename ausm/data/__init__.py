"""Training data: dataset readers (DAVIS, YouTube-VOS, MOSE, SA-V, YouTube-VIS, OVIS, COCO, custom
folders), clip sampling and weighted mixing. See ``docs/DATA.md``."""
from .clips import ClipData, DavisClips, DavisVideos, VideoClips, VideoReader, collate_clips
from .coco import COCOInstances, PseudoVideoClips, decode_segmentation
from .davis import DavisDataset
from .mixing import MixedClips, build_clip_dataset, build_mixture, build_reader
from .sav import SAVDataset, read_video_frames
from .ytvis import YTVISDataset
from .ytvos import MOSEDataset, VOSFolderDataset, YouTubeVOSDataset, read_index_png

__all__ = ["ClipData", "VideoReader", "VideoClips", "DavisDataset", "DavisVideos", "DavisClips", "collate_clips",
           "YouTubeVOSDataset", "MOSEDataset", "VOSFolderDataset", "read_index_png", "SAVDataset",
           "read_video_frames", "YTVISDataset", "COCOInstances", "PseudoVideoClips", "decode_segmentation",
           "MixedClips", "build_reader", "build_clip_dataset", "build_mixture"]
