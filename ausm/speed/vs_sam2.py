"""``ausm bench vs-sam2``: streaming latency of ``ausm-tiny`` against ``transformers``' SAM2 video
model (a Hiera-tiny configuration, random weights) in one run, one prompted object each.

What is measured, per model and per frame: the wall time of one streaming step from an (H, W, 3)
uint8 RGB frame to a full-resolution boolean mask of the prompted object, i.e.

* ausm: :meth:`ausm.inference.Session.step` (resize to the model input, network step, masks upsampled
  to the frame, index mask);
* SAM2: the preprocessing of ``Sam2VideoProcessor`` (resize to ``S x S``, rescale, ImageNet
  normalisation), ``Sam2VideoModel(inference_session=..., frame=...)`` and the upsampling + threshold
  of ``post_process_masks``.

Both get the same prompt on frame 0 (the largest object's ground-truth mask of a synthetic video, or
one positive point inside it) and track it without detecting new objects. The first ``warmup``
frames (which include the prompted frame) are not counted.

SAM2 configuration (``transformers.Sam2VideoConfig``, written out in :func:`sam2_config`): the
sam2.1-hiera-tiny sizes: Hiera with embed dim 96, 1 head, blocks per stage [1, 2, 7, 2], dims
[96, 192, 384, 768], heads [1, 2, 4, 8], window sizes [8, 4, 14, 7], global attention in blocks
[5, 7, 9], background position embedding 7x7; FPN neck of 256 channels over the three finest levels;
a 7-frame mask memory (1 prompted + 6 most recent frames), 4 memory-attention layers of width 256
(1 head, FFN 2048, axial RoPE over the stride-16 grid), 64-channel memories, up to 16 object pointers
(38.9 M parameters). Weights are random (no download): latency does not depend on them, except through
the output masks, which nothing here branches on.

Sizes: SAM2 only takes square inputs whose side is a multiple of 32 (the stride-4 map must tile the
8x8 window position embedding); every frame is squashed to ``S x S`` whatever its aspect ratio.
``ausm-tiny`` keeps the aspect ratio (shorter side 240 → 256x416 for 480p). ``--sam2-sizes`` takes
sides in pixels, ``default`` (1024, SAM2's own input size) and ``auto``: the multiple of 32 whose
square has the pixel count nearest to ausm's input (320 for 256x416: 102,400 vs 106,496 pixels), the
comparison at equal input resolution. SAM2's memory attention runs at stride 16 (S²/256 query tokens
against up to 7·S²/256 memory tokens), so its cost grows faster than the pixel count.

SAM2's per-frame cost grows with the stream until its memory bank is full (7 frames of spatial
memory, 16 object pointers); each record therefore also gives the median over the first and the last
third of the counted frames and, when interleaved, the median of the per-frame ratio to ausm's step of
the same frame index (``paired_ratio_*``: the two steps run back to back, so a change of the machine's
load during the run cancels out; the plain thirds do not correct for it, see ``loadavg_1m_*``).
``ratio_p50`` / ``ratio_p99`` (the table's ratio columns) divide by ausm's p50 / p99 over the same
frame indices (``ausm_p50_same_frames_ms``), which matters where ``--large-frames`` caps SAM2. Its session also keeps every preprocessed frame and every frame's outputs
(``Sam2VideoInferenceSession`` has no eviction), so ``state_nbytes`` grows with the stream; ausm's is
constant.

Notes: ``Sam2VideoProcessor`` needs ``torchvision`` for its image / video processors. Without it the
frame preprocessing is reproduced here (resize, rescale, normalise, as ``Sam2VideoVideoProcessor``) and
the prompt goes through the processor's own ``add_inputs_to_inference_session`` (which only needs the
processor's ``target_size``). ``peak_rss_mb`` is the process's (all models of the run); with
``--order sequential`` models run one after the other in the listed order and ``rss_growth_mb`` is the
growth of the process RSS during each. FLOPs are counted on one extra steady-state step after the timed
frames (``torch.utils.flop_counter``, with CPU fused attention counted as well).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from . import count_flops, current_rss_mb, emit, machine_info, markdown_table, peak_rss_mb, percentile, sync
from .stream import SIZES

#: ImageNet statistics used by ``Sam2VideoVideoProcessor``.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: SAM2's own input side.
SAM2_DEFAULT_SIZE = 1024


def have_sam2() -> tuple[bool, str]:
    """Whether ``transformers`` provides the SAM2 video model (and why not)."""
    try:
        import transformers
        from transformers import Sam2VideoConfig, Sam2VideoInferenceSession, Sam2VideoModel  # noqa: F401
    except ImportError as e:
        return False, f"transformers has no Sam2VideoModel ({e})"
    return True, transformers.__version__


# -- sizes ----------------------------------------------------------------------------------------
def parse_size(size: str) -> tuple[int, int]:
    if size in SIZES:
        return SIZES[size]
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InputError(f"size must be one of {sorted(SIZES)} or HxW, got {size!r}") from None
    return h, w


def area_matched_side(hw: tuple[int, int], multiple: int = 32) -> int:
    """The multiple of ``multiple`` whose square has the pixel count nearest to ``h * w``."""
    s = math.sqrt(hw[0] * hw[1])
    lo = max(multiple, int(s // multiple) * multiple)
    return min((lo, lo + multiple), key=lambda v: (abs(v * v - hw[0] * hw[1]), v))


def sam2_sides(spec: str, internal_hw: tuple[int, int]) -> list[tuple[int, str]]:
    """``"1024,auto"`` → ``[(1024, "default"), (320, "area-matched")]`` (duplicates dropped)."""
    out: list[tuple[int, str]] = []
    for tok in (t.strip().lower() for t in spec.split(",") if t.strip()):
        if tok == "auto":
            side, rule = area_matched_side(internal_hw), "area-matched"
        elif tok == "default":
            side, rule = SAM2_DEFAULT_SIZE, "default"
        else:
            try:
                side = int(tok)
            except ValueError:
                raise InputError(f"--sam2-sizes: {tok!r} is not a side in pixels, 'auto' or 'default'") from None
            rule = "default" if side == SAM2_DEFAULT_SIZE else "explicit"
        if side < 32 or side % 32:
            raise InputError(f"--sam2-sizes: SAM2 needs a square side that is a multiple of 32, got {side}")
        if side not in [s for s, _ in out]:
            out.append((side, rule))
    return out


# -- FLOPs ----------------------------------------------------------------------------------------
def tensor_nbytes(obj) -> int:
    """Bytes of the distinct tensor storages reachable from ``obj`` (dicts, lists, object attributes)."""
    seen_obj, seen_store = set(), set()
    total = 0

    def walk(o):
        nonlocal total
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            key = (st.data_ptr(), o.device)
            if key not in seen_store:
                seen_store.add(key)
                total += st.nbytes()
            return
        if isinstance(o, (str, bytes, int, float, bool, type(None), torch.dtype, torch.device)):
            return
        if id(o) in seen_obj:
            return
        seen_obj.add(id(o))
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple, set)):
            for v in o:
                walk(v)
        elif hasattr(o, "__dict__"):
            for v in vars(o).values():
                walk(v)

    walk(obj)
    return total


# -- SAM2 -----------------------------------------------------------------------------------------
def sam2_config(side: int = SAM2_DEFAULT_SIZE):
    """A ``Sam2VideoConfig`` with the sam2.1-hiera-tiny sizes for a ``side x side`` input (every
    field that sets a size is written out, not left to the library's defaults)."""
    from transformers import Sam2VideoConfig
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    if side % 32:
        raise ValueError(f"SAM2 side must be a multiple of 32, got {side}")
    backbone = Sam2HieraDetConfig(
        hidden_size=96, num_attention_heads=1, image_size=[side, side], patch_kernel_size=[7, 7],
        patch_stride=[4, 4], patch_padding=[3, 3], query_stride=[2, 2], num_query_pool_stages=3,
        blocks_per_stage=[1, 2, 7, 2], embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=[8, 4, 14, 7],
        global_attention_blocks=[5, 7, 9], window_positional_embedding_background_size=[7, 7], mlp_ratio=4.0)
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[768, 384, 192, 96],
        backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2], fpn_hidden_size=256,
        fpn_top_down_levels=[2, 3], num_feature_levels=3)
    return Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=dict(hidden_size=256, image_size=side, patch_size=16),
        mask_decoder_config=dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=8, mlp_dim=2048),
        image_size=side, num_maskmem=7, max_object_pointers_in_encoder=16, memory_attention_hidden_size=256,
        memory_attention_num_layers=4, memory_attention_num_attention_heads=1,
        memory_attention_feed_forward_hidden_size=2048, memory_attention_rope_feat_sizes=[side // 16, side // 16],
        memory_encoder_hidden_size=256, memory_encoder_output_channels=64)


class Sam2Stream:
    """One SAM2 streaming session over a random-weight Hiera-tiny model at ``side x side`` (every
    prompted object is tracked; ``step`` returns the first object's mask)."""

    def __init__(self, side: int, device: torch.device, seed: int = 0):
        from transformers import Sam2VideoInferenceSession, Sam2VideoModel, Sam2VideoProcessor

        torch.manual_seed(seed)
        self.side, self.device = side, device
        self.config = sam2_config(side)
        self.model = Sam2VideoModel(self.config).to(device).eval()
        try:  # the documented route; its image / video processors need torchvision
            from transformers import Sam2ImageProcessor, Sam2VideoVideoProcessor

            size = {"height": side, "width": side}
            self.processor = Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size),
                                                video_processor=Sam2VideoVideoProcessor(size=size))
            self.preprocess_route = "Sam2VideoProcessor"
        except ImportError:
            # Only ``target_size`` / ``point_pad_value`` are used by the prompt methods we call.
            self.processor = Sam2VideoProcessor.__new__(Sam2VideoProcessor)
            self.processor.target_size, self.processor.point_pad_value = side, -10
            self.preprocess_route = "reproduced (no torchvision)"
        # ``dtype`` must be a torch.dtype: the class default is the string "float32", which
        # ``add_mask_inputs`` passes to ``Tensor.to`` and fails.
        self.session = Sam2VideoInferenceSession(inference_device=device, inference_state_device=device,
                                                 video_storage_device=device, dtype=torch.float32)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.forward_s: list[float] = []

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def add_prompt(self, frame_hw, mask: np.ndarray | None = None, point=None, obj_id: int = 1) -> None:
        if mask is not None:
            self.processor.add_inputs_to_inference_session(self.session, frame_idx=0, obj_ids=obj_id,
                                                           input_masks=torch.from_numpy(mask))
            self.session.video_height, self.session.video_width = frame_hw
        else:
            self.processor.add_inputs_to_inference_session(
                self.session, frame_idx=0, obj_ids=obj_id, input_points=[[[[float(point[0]), float(point[1])]]]],
                input_labels=[[[1]]], original_size=tuple(frame_hw))

    def add_mask_prompts(self, frame_hw, masks: list[np.ndarray]) -> None:
        """Objects 1..n by their frame-0 masks (one call: the processor's ``obj_with_new_inputs`` is
        replaced, not extended, by each call)."""
        self.processor.add_inputs_to_inference_session(self.session, frame_idx=0, obj_ids=list(range(1, len(masks) + 1)),
                                                       input_masks=[torch.from_numpy(m) for m in masks])
        self.session.video_height, self.session.video_width = frame_hw

    def _pixels(self, frame: np.ndarray) -> torch.Tensor:
        if self.preprocess_route == "Sam2VideoProcessor":
            return self.processor(images=frame, return_tensors="pt").pixel_values[0].to(self.device)
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False, antialias=True)
        return ((x / 255.0 - self.mean) / self.std)[0]

    def step(self, frame: np.ndarray) -> np.ndarray:
        H, W = frame.shape[:2]
        x = self._pixels(frame)
        sync(self.device)
        t = time.perf_counter()
        out = self.model(inference_session=self.session, frame=x)
        sync(self.device)
        self.forward_s.append(time.perf_counter() - t)
        masks = F.interpolate(out.pred_masks.float(), (H, W), mode="bilinear", align_corners=False) > 0.0
        return masks[0, 0].cpu().numpy()

    def state_nbytes(self) -> int:
        """Bytes of the tensors the inference session holds (frames, memories, outputs, cache)."""
        return tensor_nbytes(self.session)


class AusmStream:
    """An :class:`ausm.inference.Session` tracking the prompted objects (no new detections)."""

    def __init__(self, model):
        from ..inference.session import Session

        self.model = model
        self.session = Session(model, detect_new_objects=False)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def add_prompt(self, frame_hw, mask: np.ndarray | None = None, point=None, obj_id: int = 1) -> None:
        if mask is not None:
            self.session.add_prompt(0, obj_id, mask)
        else:
            self.session.add_prompt(0, obj_id, points=np.asarray([point], dtype=np.float64))

    def add_mask_prompts(self, frame_hw, masks: list[np.ndarray]) -> None:
        """Objects 1..n by their frame-0 masks."""
        for o, m in enumerate(masks, start=1):
            self.session.add_prompt(0, o, m)

    def step(self, frame: np.ndarray) -> np.ndarray:
        res = self.session.step(frame)
        return res.masks[0] if len(res.masks) else np.zeros(frame.shape[:2], bool)

    def state_nbytes(self) -> int:
        return self.session.state_nbytes()


# -- run ------------------------------------------------------------------------------------------
def prompt_from(ids0: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The largest object's mask on frame 0 and one (x, y) point inside it."""
    labels, counts = np.unique(ids0[ids0 > 0], return_counts=True)
    if len(labels) == 0:
        raise ValueError("no object visible on frame 0 of the synthetic video")
    mask = ids0 == labels[int(np.argmax(counts))]
    ys, xs = np.nonzero(mask)
    i = len(ys) // 2  # a pixel of the mask (a centroid can fall outside a ring or a star)
    return mask, (float(xs[i]), float(ys[i]))


def _loadavg() -> float | None:
    """The 1-minute load average (other processes competing for the cores), where the OS has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _p50(xs):
    return percentile(xs, 0.5) if xs else float("nan")


def run(size: str = "480p", frames: int = 30, warmup: int = 3, sam2_sizes: str = "default,auto",
        large_frames: int = 12, prompt: str = "mask", checkpoint=None, order: str = "interleaved",
        device: str = "cpu", seed: int = 0) -> list[dict]:
    """Measure ausm and SAM2 (each size of ``sam2_sizes``); print one JSON record per model and a
    markdown table of SAM2 ms / ausm ms; return the records.

    ``large_frames`` caps the frame count of SAM2 at sides above 512 (seconds per frame on a CPU);
    0 = no cap.

    Raises:
        RuntimeError: transformers without SAM2 video support. InputError: bad arguments.
    """
    ok, why = have_sam2()
    if not ok:
        raise RuntimeError(why)
    from ..checkpoint import load_model
    from ..data.synthetic import render_video

    if prompt not in ("mask", "point"):
        raise InputError(f"prompt must be 'mask' or 'point', got {prompt!r}")
    if order not in ("interleaved", "sequential"):
        raise InputError(f"order must be 'interleaved' or 'sequential', got {order!r}")
    if frames < 1 or warmup < 0 or warmup >= frames:
        raise InputError(f"need frames >= 1 and 0 <= warmup < frames, got frames={frames}, warmup={warmup}")
    dev = torch.device(device)
    H, W = parse_size(size)
    sam2_sides(sam2_sizes, (H, W))  # bad sides fail before any model is loaded
    model = load_model(checkpoint, device=dev)
    streams = _streams(model, (H, W), sam2_sizes, frames, warmup, large_frames, dev, seed)
    n_max = max(s["frames"] for s in streams)
    video = render_video(n_max + 1, (H, W), seed=seed, enter_leave=False)  # +1: the FLOP-counting step
    mask, point = prompt_from(video.ids[0])
    for s in streams:
        s["obj"].add_prompt((H, W), mask=mask if prompt == "mask" else None, point=point)
        s["lat"], s["state0"] = [], None
    info, load0 = machine_info(), _loadavg()
    _measure(streams, video, warmup, order, dev)
    run_info = {"input": f"{H}x{W}", "warmup": warmup, "prompt": prompt, "order": order, "device": str(dev),
                "loadavg_1m_start": load0, "loadavg_1m_end": _loadavg(), **info}
    records = []
    for s in streams:
        rec = _record(s, streams[0]["lat"], run_info, model, checkpoint)
        emit(rec)
        records.append(rec)
    print()
    print(_table(records))
    return records


def _streams(model, size, sam2_sizes: str, frames: int, warmup: int, large_frames: int, dev, seed: int) -> list[dict]:
    """ausm first, then one SAM2 stream per side of ``sam2_sizes`` (fewer frames at sides above 512)."""
    ausm_internal = tuple(model.input_size(*size))
    streams: list[dict] = [{"name": "ausm", "model": model.cfg.name or "ausm", "obj": AusmStream(model),
                            "internal": ausm_internal, "rule": "default", "frames": frames}]
    for side, rule in sam2_sides(sam2_sizes, ausm_internal):
        n = frames if (side <= 512 or large_frames <= 0) else max(warmup + 1, min(frames, large_frames))
        streams.append({"name": f"sam2-{side}", "model": "sam2.1-hiera-tiny (random init)",
                        "obj": Sam2Stream(side, dev, seed), "internal": (side, side), "rule": rule, "frames": n})
    return streams


def _measure(streams: list[dict], video, warmup: int, order: str, dev) -> None:
    """Step every stream over the video (interleaved frame by frame, or one after another), timing each
    step into ``s["lat"]``; then count one step's FLOPs."""
    def one(s, t):
        if t == warmup:  # the state before the first counted frame
            s["state0"] = s["obj"].state_nbytes()
        sync(dev)
        t0 = time.perf_counter()
        s["obj"].step(video.frames[t])
        sync(dev)
        s["lat"].append(time.perf_counter() - t0)

    n_max = max(s["frames"] for s in streams)
    with torch.inference_mode():
        if order == "interleaved":  # frame by frame, every model in turn: the same machine load for all
            for t in range(n_max):
                for s in streams:
                    if t < s["frames"]:
                        one(s, t)
        else:
            for s in streams:
                rss0 = current_rss_mb()
                for t in range(s["frames"]):
                    one(s, t)
                s["rss_growth_mb"] = current_rss_mb() - rss0
        for s in streams:
            s["flops"] = count_flops(lambda: s["obj"].step(video.frames[s["frames"]]))


def _record(s: dict, base_lat: list, run_info: dict, model, checkpoint) -> dict:
    """The JSON record of one measured stream (ratios against ausm's latencies ``base_lat``)."""
    import transformers

    warmup, order = run_info["warmup"], run_info["order"]
    lat = s["lat"][warmup:]
    k = max(1, len(lat) // 3)
    # interleaved: frame t of this model against frame t of ausm, stepped back to back (same load)
    paired = [a / b for a, b in zip(lat, base_lat[warmup:])] if order == "interleaved" else []
    same = base_lat[warmup:s["frames"]]  # ausm over the same frame indices (SAM2 at large sides runs fewer)
    p50, p99 = _p50(lat), percentile(lat, 0.99)
    obj = s["obj"]
    state = obj.state_nbytes()
    rec = {"bench": "vs-sam2", "model": s["model"], "input": run_info["input"],
           "internal": f"{s['internal'][0]}x{s['internal'][1]}",
           "internal_pixels": s["internal"][0] * s["internal"][1], "size_rule": s["rule"],
           "frames": s["frames"], "warmup": warmup, "measured_frames": len(lat), "prompt": run_info["prompt"],
           "p50_ms": 1e3 * p50, "p99_ms": 1e3 * p99, "mean_ms": 1e3 * float(np.mean(lat)),
           "fps": 1.0 / p50, "p50_first_third_ms": 1e3 * _p50(lat[:k]),
           "p50_last_third_ms": 1e3 * _p50(lat[-k:]),
           "ausm_p50_same_frames_ms": 1e3 * _p50(same), "ausm_p99_same_frames_ms": 1e3 * percentile(same, 0.99),
           "ratio_p50": p50 / _p50(same), "ratio_p99": p99 / percentile(same, 0.99),
           "paired_ratio_p50": _p50(paired) if paired else None,
           "paired_ratio_first_third": _p50(paired[:k]) if paired else None,
           "paired_ratio_last_third": _p50(paired[-k:]) if paired else None,
           "forward_p50_ms": 1e3 * _p50(obj.forward_s[warmup:s["frames"]]) if isinstance(obj, Sam2Stream) else None,
           "flops_per_frame": s["flops"], "params": obj.params, "state_nbytes": state,
           "state_growth_bytes_per_frame": (state - s["state0"]) / (s["frames"] + 1 - warmup),
           "rss_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb(), "rss_growth_mb": s.get("rss_growth_mb"),
           "order": order, "dtype": "float32" if isinstance(obj, Sam2Stream) else
           str(next(model.parameters()).dtype).replace("torch.", ""), "device": run_info["device"],
           "transformers": transformers.__version__,
           **{k_: v for k_, v in run_info.items() if k_ not in ("input", "warmup", "prompt", "order", "device")}}
    if isinstance(obj, AusmStream):
        rec["checkpoint"] = str(checkpoint) if checkpoint else "shipped default"
    if isinstance(obj, Sam2Stream):
        rec.update(sam2_attn=obj.config._attn_implementation, sam2_preprocess=obj.preprocess_route,
                   sam2_num_maskmem=obj.config.num_maskmem,
                   sam2_max_object_pointers=obj.config.max_object_pointers_in_encoder)
    return rec


def _table(records: list[dict]) -> str:
    """The markdown table of the run: latency, fps, FLOPs, state and the SAM2 / ausm ratios per model."""
    rows = []
    for r in records:
        rows.append({"model": r["model"].split(" ")[0], "internal": r["internal"], "size rule": r["size_rule"],
                     "frames": r["measured_frames"], "p50 ms": f"{r['p50_ms']:.1f}", "p99 ms": f"{r['p99_ms']:.1f}",
                     "fps": r["fps"],
                     "p50 first/last third ms": f"{r['p50_first_third_ms']:.1f} / {r['p50_last_third_ms']:.1f}",
                     "GFLOP/frame": r["flops_per_frame"] / 1e9, "state MB": r["state_nbytes"] / 2**20,
                     "p50 ratio (SAM2/ausm)": r["ratio_p50"], "p99 ratio (SAM2/ausm)": r["ratio_p99"],
                     "paired ratio first/last third": "-" if r["paired_ratio_p50"] is None else
                     f"{r['paired_ratio_first_third']:.3g} / {r['paired_ratio_last_third']:.3g}"})
    return markdown_table(rows, list(rows[0]))
