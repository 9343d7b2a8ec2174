"""Streaming inference (Algorithm 1): a typed :class:`Session` with a fixed-size state.

Prompt semantics (spec §3 [D]):

* A mask prompt for frame k names a client-chosen object id. A **new** object gets a fresh ID vector
  (drawn uniformly from the free IDs). On the first frame of the stream its mask is also the prompt
  history M_0 painted on the start token X_0, exactly as the prompted Algorithm 1 starts; on a later
  frame it enters the history M_k after frame k (the same path as a new detection).
* On the prompted frame the object's output mask **is** the prompt, and the prompt (not the
  prediction) becomes its history for the next frame. Re-prompting an existing object replaces its
  mask that way.
* Unprompted (``detect_new_objects=True``): detection queries whose foreground probability exceeds
  ``fg_threshold`` (0.5 [P]) become new tracks; when no free ID is left the lowest-scoring new
  detections are dropped. Tracks are never deleted by the model; an absent object keeps its ID with
  an empty mask.

State size: the network state (X_{t-1} and the Mamba states) plus fixed tables of ``num_ids`` slots
(ID index, object id, history mask on the h×w grid, used flag). Nothing grows with the frame count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.inputs import MAX_FRAME_PIXELS, check_geometric_in_frame, frame_to_tensor, prompt_mask_to_bool
from ..model.ausm import AGNOSTIC, AUSMModel, StreamState


#: :meth:`Session.state_dict` format; 2 stores the Mamba states state-major (L, d_state, d_inner)
#: (:class:`~ausm.model.mamba.MambaState`); version-1 states (L, d_inner, d_state) still load.
SESSION_STATE_VERSION = 2


@dataclass
class FrameResult:
    """Output of one :meth:`Session.step`.

    Attributes:
        frame_idx: 0-based index of the frame in the stream.
        obj_ids: client object ids, in track order.
        masks: (n, H, W) bool masks at the input frame's resolution.
        scores: (n,) float32 foreground probabilities of the tracks (1.0 on prompted frames).
        index_mask: (H, W) uint16 VOS index mask: per pixel the object with the highest probability
            among those above 0.5, else 0 (spec §7).
        new_obj_ids: objects that started on this frame (prompts and detections).
        class_ids: (n,) int64 class index of each track in the session's class head: the argmax of
            its class probabilities maxed over the frames seen so far (spec §7, GenVIS); 0 for the
            class-agnostic head.
        class_scores: (n,) float32 the probability of that class (max over frames).
        class_names: the class names (``cfg.class_names[head]``; ``"object"`` for the agnostic head,
            ``"class_<i>"`` when the checkpoint stores no names).
    """

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray
    scores: np.ndarray
    index_mask: np.ndarray
    new_obj_ids: list[int] = field(default_factory=list)
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    class_names: list[str] = field(default_factory=list)

    @property
    def boxes(self) -> np.ndarray:
        """(n, 4) float32 boxes (x0, y0, x1, y1) in pixels of the masks (zeros for empty masks)."""
        if len(self.masks) == 0:
            return np.zeros((0, 4), np.float32)
        return _box_of(torch.from_numpy(self.masks)).numpy().astype(np.float32)


@dataclass
class GeometricPrompt:
    """A box (``data`` = (x0, y0, x1, y1)) or points (``data`` (k, 2) of (x, y), ``labels`` (k,) 0/1) in
    input-frame pixels."""

    kind: str
    data: np.ndarray
    labels: np.ndarray | None = None


def _box_of(masks: torch.Tensor) -> torch.Tensor:
    """(k, H, W) bool → (k, 4) boxes (x0, y0, x1, y1) in pixel-edge coordinates; zeros for empty masks."""
    k, H, W = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    ar_h = torch.arange(H, device=masks.device)
    ar_w = torch.arange(W, device=masks.device)
    big = H + W
    y0 = torch.where(rows, ar_h, big).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    x0 = torch.where(cols, ar_w, big).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    out = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(masks.flatten(1).any(1, keepdim=True), out, torch.zeros_like(out))


def select_candidate(prompt: GeometricPrompt, masks: torch.Tensor, scores: torch.Tensor,
                     min_box_iou: float = 0.5) -> tuple[torch.Tensor, str, int | None]:
    """Choose the model's candidate mask that best fits a box or point prompt (issue: universal prompts).

    Args:
        prompt: the box or points, already scaled to the candidates' resolution.
        masks: (Q, H, W) bool candidate masks (every query of the model on the prompted frame).
        scores: (Q,) foreground probabilities of the candidates.
        min_box_iou: a box prompt accepts a candidate only if the candidate's bounding box has at least
            this IoU with the prompt box.

    Rules:
        box — among the candidates whose bounding box has an IoU of at least ``min_box_iou`` with the
        box, the one with the highest (box IoU + foreground score): the box says where, the score which
        of several fitting candidates is a whole object (measured on 60 DUTS-TR *training* photos:
        55.7 → 72.8 mean IoU for a stage-3 ausm-lite checkpoint, 83.9 either way for stage 2; box IoU
        alone picked fragments that happened to span the box); fallback when no candidate reaches
        ``min_box_iou``: the filled box itself.
        points — candidates containing every positive point and no negative point, the highest
        score wins; else the candidate maximising (#positives inside − #negatives inside), if that is
        positive; else fallback: disks of radius 2 % of the shorter side around the positive points.

    Returns:
        ((H, W) bool mask, ``"candidate"`` or ``"fallback"``, the chosen candidate's index or None).
    """
    Q, H, W = masks.shape
    if prompt.kind == "box":
        x0, y0, x1, y1 = (float(v) for v in prompt.data)
        boxes = _box_of(masks)
        ix = (torch.minimum(boxes[:, 2], torch.tensor(x1)) - torch.maximum(boxes[:, 0], torch.tensor(x0))).clamp(min=0)
        iy = (torch.minimum(boxes[:, 3], torch.tensor(y1)) - torch.maximum(boxes[:, 1], torch.tensor(y0))).clamp(min=0)
        inter = ix * iy
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / (area + (x1 - x0) * (y1 - y0) - inter).clamp(min=1e-9)
        iou = torch.where(masks.flatten(1).any(1), iou, torch.full_like(iou, -1.0))
        if Q and float(iou.max()) >= min_box_iou:
            fit = torch.where(iou >= min_box_iou, iou + scores.float().clamp(0, 1), torch.full_like(iou, -1.0))
            best = int(torch.argmax(fit))
            return masks[best], "candidate", best
        out = torch.zeros(H, W, dtype=torch.bool)
        out[max(0, int(round(y0))):max(0, int(round(y1))), max(0, int(round(x0))):max(0, int(round(x1)))] = True
        return out, "fallback", None
    pts, lab = prompt.data, prompt.labels
    xs = np.clip(np.round(pts[:, 0]).astype(int), 0, W - 1)
    ys = np.clip(np.round(pts[:, 1]).astype(int), 0, H - 1)
    inside = masks[:, ys, xs] if Q else torch.zeros(0, len(pts), dtype=torch.bool)  # (Q, k)
    pos = torch.from_numpy(lab == 1)
    n_pos = (inside & pos).sum(1)
    n_neg = (inside & ~pos).sum(1)
    valid = (n_pos == int(pos.sum())) & (n_neg == 0)
    if bool(valid.any()):
        s = torch.where(valid, scores.float(), torch.full_like(scores.float(), -1.0))
        best = int(torch.argmax(s))
        return masks[best], "candidate", best
    if Q and int((n_pos - n_neg).max()) > 0:
        best = int(torch.argmax((n_pos - n_neg).float() + scores.float().clamp(0, 1) * 1e-3))
        return masks[best], "candidate", best
    r = max(1.0, 0.02 * min(H, W))
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    out = torch.zeros(H, W, dtype=torch.bool)
    for x, y, l in zip(pts[:, 0], pts[:, 1], lab):
        if l == 1:
            out |= (xx - float(x)) ** 2 + (yy - float(y)) ** 2 <= r * r
    return out, "fallback", None


def _resize(t: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of (k, h, w) logits to (k, *size); k may be 0 (no tracks)."""
    if t.shape[0] == 0:
        return t.new_zeros((0, *size))
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0]


class Session:
    """A streaming segmentation session over one video (Algorithm 1).

    Args:
        model: the network (its device and dtype are used).
        detect_new_objects: discover new objects with the detection queries; default: True when the
            session starts without prompts, False when prompts are given before the first frame.
        class_head: class head used for foreground scores (``"agnostic"`` or a dataset name).
        fg_threshold: foreground threshold for new detections (default ``model.cfg.fg_threshold``).
        seed: seed of the ID sampler (reproducible runs).
        finetune: test-time fine-tuning (not in the paper; :mod:`ausm.inference.finetune`): a step count or
            a :class:`~ausm.inference.finetune.FinetuneConfig`; ``None`` / 0 = off. On every frame that
            carries prompts the session adapts its own copy of the weights to the prompted objects before
            processing that frame (mask prompts) or right after it (box / point prompts, once the model's
            candidate is chosen), continuing from the weights adapted so far; :meth:`reset` returns to
            ``model``'s weights. ``model`` itself is never modified; the streaming state stays the same size.
    """

    def __init__(self, model: AUSMModel, detect_new_objects: bool | None = None, class_head: str = AGNOSTIC,
                 fg_threshold: float | None = None, seed: int = 0, finetune=None):
        from .finetune import as_finetune_config

        self.base_model = model
        self.model = model
        self.finetune = as_finetune_config(finetune)
        self.cfg = model.cfg
        if class_head not in model.class_heads:
            raise InputError(f"unknown class head {class_head!r}; have {sorted(model.class_heads)}")
        self.class_head = class_head
        self.fg_threshold = self.cfg.fg_threshold if fg_threshold is None else float(fg_threshold)
        if not 0.0 < self.fg_threshold < 1.0:
            raise InputError(f"fg_threshold must be in (0, 1), got {self.fg_threshold}")
        self._detect_arg = detect_new_objects
        self._seed = seed
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.reset()

    # -- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every object, prompt and frame, and any fine-tuned weights (the session can be reused for
        a new video)."""
        self.model = self.base_model
        N = self.cfg.num_ids
        self._gen = torch.Generator().manual_seed(self._seed)
        self._state: StreamState | None = None
        self._frame_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None
        self._n = 0
        self._slot_id = torch.full((N,), -1, dtype=torch.long)
        self._slot_obj = torch.full((N,), -1, dtype=torch.long)
        self._slot_mask: torch.Tensor | None = None  # (N, h*w), allocated on the first frame
        self._free = torch.ones(N, dtype=torch.bool)
        self._pending: dict[int, dict[int, np.ndarray]] = {}
        self._frame_idx = 0
        self._next_auto_id = 1
        self._any_prompt = False
        K = self.model.class_heads[self.class_head].out_features - 1
        self._cls_max = torch.zeros(N, K)  # per slot: class probabilities maxed over frames
        #: how each box/point prompt was resolved: {(frame_idx, obj_id): "candidate" | "fallback"}
        self.prompt_sources: dict[tuple[int, int], str] = {}

    @property
    def class_names(self) -> list[str]:
        """Names of the classes of the session's class head."""
        if self.class_head == AGNOSTIC:
            return ["object"]
        names = self.cfg.class_names.get(self.class_head)
        K = self.model.class_heads[self.class_head].out_features - 1
        return list(names) if names else [f"class_{i}" for i in range(K)]

    def track_class_scores(self) -> dict[int, np.ndarray]:
        """{obj_id: (K,) float32 class probabilities maxed over the frames so far} — the input of a
        per-video top-k over (track × class) scores (spec §7)."""
        return {o: self._cls_max[i].numpy().astype(np.float32).copy() for i, o in enumerate(self.obj_ids)}

    @property
    def frame_idx(self) -> int:
        """Index of the next frame :meth:`step` will consume."""
        return self._frame_idx

    @property
    def obj_ids(self) -> list[int]:
        return self._slot_obj[: self._n].tolist()

    @property
    def detect_new_objects(self) -> bool:
        if self._detect_arg is not None:
            return bool(self._detect_arg)
        return not self._any_prompt

    def state_nbytes(self) -> int:
        """Bytes of the streaming state: network state + slot tables (constant over time)."""
        n = self._slot_id.numel() * 8 + self._slot_obj.numel() * 8 + self._free.numel()
        n += self._cls_max.numel() * self._cls_max.element_size()
        if self._slot_mask is not None:
            n += self._slot_mask.numel() * self._slot_mask.element_size()
        if self._state is not None:
            n += self._state.nbytes()
        return n

    # -- snapshots ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The complete session state, to continue the stream later (e.g. in another process).

        Returns:
            ``{"tensors": {name: CPU tensor}, "meta": JSON-able dict}``: the network's stream state
            (X_{t-1}, the Mamba states), the slot tables, per-track class scores, the ID sampler's
            generator state and pending prompt masks as tensors; frame index, sizes, options, object
            bookkeeping and pending box / point prompts in ``meta``. Save it with
            :func:`ausm.inference.resume.save_snapshot` (safetensors + JSON, no pickle).

        A session restored with :meth:`load_state_dict` gives exactly the results of the uninterrupted
        one (same model, same device).
        """
        def cpu(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to("cpu").clone().contiguous()

        tensors = {"slot_id": cpu(self._slot_id), "slot_obj": cpu(self._slot_obj), "free": cpu(self._free),
                   "cls_max": cpu(self._cls_max), "rng": cpu(self._gen.get_state())}
        pending = []
        for f, objs in sorted(self._pending.items()):
            for o, p in objs.items():
                if isinstance(p, GeometricPrompt):
                    pending.append({"frame": f, "obj_id": o, "kind": p.kind, "data": p.data.tolist(),
                                    "labels": None if p.labels is None else p.labels.tolist()})
                else:
                    pending.append({"frame": f, "obj_id": o, "kind": "mask"})
                    tensors[f"pending.{f}.{o}"] = torch.from_numpy(np.ascontiguousarray(p, dtype=bool))
        st = self._state
        if st is not None:
            tensors["slot_mask"] = cpu(self._slot_mask)
            tensors["x_prev"] = cpu(st.x_prev)
            for i, m in enumerate(st.mamba):
                tensors[f"mamba.{i}.conv_state"] = cpu(m.conv_state)
                tensors[f"mamba.{i}.ssm_state"] = cpu(m.ssm_state)
        meta = {
            "version": SESSION_STATE_VERSION, "num_ids": int(self.cfg.num_ids), "class_head": self.class_head,
            "fg_threshold": self.fg_threshold, "detect_new_objects": self._detect_arg, "seed": self._seed,
            "frame_idx": self._frame_idx, "n": self._n, "next_auto_id": self._next_auto_id,
            "any_prompt": self._any_prompt,
            "frame_size": list(self._frame_size) if self._frame_size else None,
            "input_size": list(self._input_size) if self._input_size else None,
            "hw": list(st.hw) if st is not None else None, "t": st.t if st is not None else None,
            "mamba_layers": len(st.mamba) if st is not None else None,
            "prompt_sources": [[f, o, how] for (f, o), how in sorted(self.prompt_sources.items())],
            "pending": pending,
        }
        return {"tensors": tensors, "meta": meta}

    @torch.inference_mode()  # the restored tables and states are updated in place inside step
    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict` (of a session over the same model).

        Raises:
            InputError: the state is incomplete or belongs to a model of another shape.
        """
        from ..model.mamba import MambaState

        try:
            meta, tensors = state["meta"], state["tensors"]
            version = meta.get("version")
            if version not in (1, SESSION_STATE_VERSION):
                raise InputError(f"unsupported session state version {meta.get('version')!r}")
            if meta["num_ids"] != self.cfg.num_ids:
                raise InputError(f"the session state has {meta['num_ids']} ID slots, this model has "
                                 f"{self.cfg.num_ids}: it belongs to another model")
            if meta["class_head"] not in self.model.class_heads:
                raise InputError(f"the session state uses class head {meta['class_head']!r}, which this model "
                                 f"lacks ({sorted(self.model.class_heads)})")
            self.class_head = meta["class_head"]
            self.fg_threshold = float(meta["fg_threshold"])
            self._detect_arg = meta["detect_new_objects"]
            self._seed = int(meta["seed"])
            self.reset()
            cls_max = tensors["cls_max"].float()
            if cls_max.shape != self._cls_max.shape:
                raise InputError(f"class scores of shape {tuple(cls_max.shape)} do not fit this model's "
                                 f"{tuple(self._cls_max.shape)}: the state belongs to another model")
            self._slot_id = tensors["slot_id"].long().clone()
            self._slot_obj = tensors["slot_obj"].long().clone()
            self._free = tensors["free"].bool().clone()
            self._cls_max = cls_max.clone()
            self._gen.set_state(tensors["rng"].to(torch.uint8).clone())
            self._frame_idx, self._n = int(meta["frame_idx"]), int(meta["n"])
            self._next_auto_id, self._any_prompt = int(meta["next_auto_id"]), bool(meta["any_prompt"])
            self.prompt_sources = {(int(f), int(o)): str(how) for f, o, how in meta["prompt_sources"]}
            for p in meta["pending"]:
                f, o = int(p["frame"]), int(p["obj_id"])
                if p["kind"] == "mask":
                    entry = tensors[f"pending.{f}.{o}"].numpy().astype(bool)
                else:
                    entry = GeometricPrompt(p["kind"], np.asarray(p["data"], np.float64),
                                            None if p["labels"] is None else np.asarray(p["labels"], np.int64))
                self._pending.setdefault(f, {})[o] = entry
            if meta["frame_size"] is not None:
                hw = tuple(int(v) for v in meta["hw"])
                x_prev = tensors["x_prev"].to(self.device, self.dtype)
                n_layers = int(meta["mamba_layers"])
                ref = self.model.init_state(1, hw, device=self.device, dtype=self.dtype)
                if len(ref.mamba) != n_layers or x_prev.shape != ref.x_prev.shape:
                    raise InputError("the session state does not fit this model (another architecture)")
                mamba = []
                for i, r in enumerate(ref.mamba):
                    c = tensors[f"mamba.{i}.conv_state"].to(self.device, self.dtype)
                    s = tensors[f"mamba.{i}.ssm_state"].to(self.device, self.dtype)
                    if version == 1:  # version 1 stored h as (L, d_inner, d_state)
                        s = s.transpose(-1, -2).contiguous()
                    if c.shape != r.conv_state.shape or s.shape != r.ssm_state.shape:
                        raise InputError("the session state does not fit this model (another architecture)")
                    mamba.append(MambaState(conv_state=c, ssm_state=s))
                self._frame_size = tuple(int(v) for v in meta["frame_size"])
                self._input_size = tuple(int(v) for v in meta["input_size"])
                self._state = StreamState(x_prev=x_prev, mamba=mamba, hw=hw, t=int(meta["t"]))
                self._slot_mask = tensors["slot_mask"].to(self.device, self.dtype).clone()
        except KeyError as e:
            self.reset()
            raise InputError(f"incomplete session state: {e} is missing") from e
        except InputError:
            self.reset()
            raise

    # -- prompts ------------------------------------------------------------------------------
    def add_prompt(self, frame_idx: int, obj_id: int, mask=None, *, box=None, points=None, labels=None) -> None:
        """Prompt object ``obj_id`` on frame ``frame_idx`` (≥ the next frame to process) with exactly one
        of a mask, a box or points.

        Args:
            frame_idx: 0-based frame index, not yet processed.
            obj_id: client object id, 1..65535.
            mask: (H, W) bool / {0,1} array (or torch tensor) at the input frame's resolution.
            box: (x0, y0, x1, y1) in input-frame pixels (x right, y down; x1 > x0, y1 > y0).
            points: (k, 2) array of (x, y) input-frame pixels.
            labels: (k,) 1 = positive (on the object), 0 = negative; default all positive.

        Box and point prompts go through the universal model: after the model has processed the
        frame, the candidate masks of all its queries (detections and tracks) are compared with the
        prompt and the best one becomes the object's mask on that frame (see :func:`select_candidate`).

        Raises:
            InputError: past frame, bad id, not exactly one prompt kind, empty mask, wrong size, a
                degenerate box, points without a positive one.
        """
        if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, bool) or not 0 < int(obj_id) < 65536:
            raise InputError(f"obj_id must be an integer in 1..65535, got {obj_id!r}")
        if frame_idx < self._frame_idx:
            raise InputError(f"frame {frame_idx} was already processed (next frame is {self._frame_idx})")
        given = [x is not None for x in (mask, box, points)]
        if sum(given) != 1:
            raise InputError("give exactly one of mask=, box= or points= per prompt")
        if mask is not None:
            m = prompt_mask_to_bool(mask)
            if not m.any():
                raise InputError(f"prompt mask for object {obj_id} on frame {frame_idx} is empty")
            if self._frame_size is not None and m.shape != self._frame_size:
                raise InputError(f"prompt mask size {m.shape} differs from the frame size {self._frame_size}")
            entry = m
        elif box is not None:
            b = np.asarray(box, dtype=np.float64).reshape(-1)
            if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
                raise InputError(f"box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box!r}")
            entry = GeometricPrompt("box", b)
            if self._frame_size is not None:
                check_geometric_in_frame("box", b, self._frame_size)
        else:
            pts = np.asarray(points, dtype=np.float64)
            if pts.ndim == 1:
                pts = pts[None]
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or not np.isfinite(pts).all():
                raise InputError(f"points must be (k, 2) of (x, y), got shape {pts.shape}")
            lab = np.ones(len(pts), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
            if lab.shape != (len(pts),) or not np.isin(lab, (0, 1)).all():
                raise InputError(f"labels must be k values in {{0, 1}} for the k points, got {labels!r}")
            if not (lab == 1).any():
                raise InputError("point prompts need at least one positive point (label 1)")
            entry = GeometricPrompt("points", pts, lab)
            if self._frame_size is not None:
                check_geometric_in_frame("points", pts, self._frame_size)
        self._pending.setdefault(int(frame_idx), {})[int(obj_id)] = entry
        self._any_prompt = True

    _any_prompt = False

    # -- helpers ------------------------------------------------------------------------------
    def _allocate(self, obj_id: int) -> int:
        free = torch.nonzero(self._free).flatten()
        if len(free) == 0:
            raise InputError(f"no free ID vector left for object {obj_id}: this model tracks at most "
                             f"{self.cfg.num_ids} objects at once; prompt fewer objects, remove() finished ones, or "
                             "use a model with a larger num_ids")
        j = free[torch.randint(len(free), (), generator=self._gen)].item()
        self._free[j] = False
        slot = self._n
        self._slot_id[slot] = j
        self._slot_obj[slot] = obj_id
        self._slot_mask[slot] = 0
        self._cls_max[slot] = 0
        self._n += 1
        self._next_auto_id = max(self._next_auto_id, obj_id + 1)
        return slot

    @torch.inference_mode()  # the slot tables are created inside step's inference mode
    def remove(self, obj_id: int) -> None:
        """Stop tracking ``obj_id`` and free its ID vector.

        Raises:
            InputError: unknown object id.
        """
        objs = self.obj_ids
        if obj_id not in objs:
            raise InputError(f"unknown object id {obj_id}; tracked: {objs}")
        s = objs.index(obj_id)
        self._free[self._slot_id[s]] = True
        keep = [i for i in range(self._n) if i != s]
        n = self._n - 1
        self._slot_id[:n] = self._slot_id[keep].clone()
        self._slot_obj[:n] = self._slot_obj[keep].clone()
        if self._slot_mask is not None:
            self._slot_mask[:n] = self._slot_mask[keep].clone()
        self._slot_id[n], self._slot_obj[n] = -1, -1
        if self._slot_mask is not None:
            self._slot_mask[n] = 0
        self._cls_max[:n] = self._cls_max[keep].clone()
        self._cls_max[n] = 0
        self._n = n

    def _grid_mask(self, m: torch.Tensor) -> torch.Tensor:
        """(k, Hm, Wm) binary masks at the model input → (k, h·w) area-averaged history masks."""
        return AUSMModel.history_masks_from_images(m.float(), self._state.hw).to(self.dtype)

    def _prompt_to_input(self, m: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(m).float()[None, None]
        return F.interpolate(t, size=self._input_size, mode="nearest")[0, 0].to(self.device)

    # -- main loop ----------------------------------------------------------------------------
    def _prepare(self, frame) -> dict:
        """Checks, model input and the prompts of this frame (first-frame prompts enter M_0)."""
        shape = getattr(frame, "shape", None)
        if shape is not None and len(shape) == 3:
            fh, fw = (shape[0], shape[1]) if isinstance(frame, np.ndarray) else (shape[1], shape[2])
            if fh * fw > MAX_FRAME_PIXELS:  # checked before any copy of the frame
                raise InputError(f"frame of {fw}x{fh} pixels is larger than {MAX_FRAME_PIXELS // 10**6} "
                                 f"megapixels; downscale the video first (e.g. ffmpeg -vf scale=-2:1080)")
        img = frame_to_tensor(frame)
        H, W = img.shape[-2:]
        k = self._frame_idx
        for o, m in self._pending.get(k, {}).items():  # before any state changes
            if isinstance(m, np.ndarray) and m.shape != (H, W):
                raise InputError(f"prompt mask size {m.shape} differs from the frame size {(H, W)}")
            if isinstance(m, GeometricPrompt):
                check_geometric_in_frame(m.kind, m.data, (H, W), f"the stream (frame {k}, object {o})")
        if self._frame_size is None:
            self._frame_size = (H, W)
            self._input_size = self.model.input_size(H, W)
            hw = (self._input_size[0] // 8, self._input_size[1] // 8)
            self._state = self.model.init_state(1, hw, device=self.device, dtype=self.dtype)
            self._slot_mask = torch.zeros(self.cfg.num_ids, hw[0] * hw[1], dtype=self.dtype, device=self.device)
        elif (H, W) != self._frame_size:
            raise InputError(f"frame {k} is {H}x{W}, the stream started at {self._frame_size[0]}x{self._frame_size[1]}")
        # check the ID capacity before any state changes; prompted objects take precedence over detections
        new_prompted = [o for o in self._pending.get(k, {}) if o not in self.obj_ids]
        if len(new_prompted) > int(self._free.sum()):
            raise InputError(f"frame {k}: {len(new_prompted)} new prompted objects but only {int(self._free.sum())} "
                             f"free ID vectors: this model tracks at most {self.cfg.num_ids} objects at once; prompt "
                             f"fewer objects (merge or drop ids in the mask) or use a model with a larger num_ids")
        x = F.interpolate(img, size=self._input_size, mode="bilinear", align_corners=False,
                          antialias=True).to(self.device, self.dtype).clamp(0, 1)
        pending = self._pending.pop(k, {})
        prompts = {o: m for o, m in pending.items() if isinstance(m, np.ndarray)}
        geo = {o: g for o, g in pending.items() if isinstance(g, GeometricPrompt)}
        prompt_in = {o: self._prompt_to_input(m) for o, m in prompts.items()}
        new_ids: list[int] = []
        if k == 0:  # prompted Algorithm 1: A_0 = Sampler(B, |y_0|), M_0 = prompt masks
            for o, m in prompt_in.items():
                s = self._allocate(o)
                self._slot_mask[s] = self._grid_mask(m[None])[0]
                new_ids.append(o)
        ctx = dict(k=k, H=H, W=W, x=x, prompts=prompts, geo=geo, prompt_in=prompt_in, new_ids=new_ids,
                   new_prompted=new_prompted)
        return ctx

    @torch.inference_mode()
    def step(self, frame) -> FrameResult:
        """Process the next frame.

        Args:
            frame: (H, W, 3) uint8 RGB numpy array, or a (3, H, W) float tensor in [0, 1].

        Returns:
            :class:`FrameResult` at the frame's resolution.

        Raises:
            InputError: bad frame shape, or a frame size that differs from the first frame's.
        """
        if self.finetune is not None:  # mask prompts of this frame: adapt before processing it
            masks = {o: m for o, m in self._pending.get(self._frame_idx, {}).items() if isinstance(m, np.ndarray)}
            if masks:
                self._finetune(frame, masks)
        ctx = self._prepare(frame)
        n = self._n
        pred, self._state = self.model.step(
            ctx["x"], self._state, self._slot_id[:n].to(self.device)[None],
            torch.ones(1, n, dtype=torch.bool, device=self.device), self._slot_mask[:n][None])
        result = self._finish(ctx, pred.final_masks[0], pred.final_embs[0])
        if self.finetune is not None and ctx["geo"]:  # box / point prompts: adapt to the chosen masks
            self._finetune(frame, {o: ctx["prompts"][o] for o in ctx["geo"]})
        return result

    def _finetune(self, frame, masks: dict[int, np.ndarray]) -> None:
        """Replace ``self.model`` by a copy adapted to ``masks`` on ``frame`` (gradients enabled here,
        although :meth:`step` runs in inference mode)."""
        from .finetune import finetune_on_prompt

        if isinstance(frame, torch.Tensor):  # (3, H, W) float in [0, 1] → (H, W, 3) uint8
            frame = (frame.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        with torch.inference_mode(False), torch.enable_grad():
            self.model = finetune_on_prompt(self.model, np.asarray(frame), masks, self.finetune)

    def _finish(self, ctx: dict, masks: torch.Tensor, embs: torch.Tensor) -> FrameResult:
        """Turn the network's outputs for this stream (masks (n + N_det, H4, W4), embs (n + N_det, D))
        into the frame's result and the history of the next frame."""
        k, H, W = ctx["k"], ctx["H"], ctx["W"]
        prompts, geo, prompt_in, new_ids, new_prompted = (ctx[x] for x in ("prompts", "geo", "prompt_in", "new_ids",
                                                                            "new_prompted"))
        n = self._n
        logits = masks.float()  # (n + N_det, H4, W4)
        probs = self.model.class_logits(embs, self.class_head).float().softmax(-1)  # one head pass
        fg = 1.0 - probs[:, -1]  # foreground probability (spec §4)
        trk_logits, det_logits = logits[:n], logits[n:]
        scores = fg[:n].clone()
        cls_prob = probs[:, :-1].cpu()
        cls_rows = cls_prob[:n]
        # box / point prompts: pick among the model's own candidates on this frame
        taken: set[int] = set()
        self._geo_query: dict[int, int | None] = {}
        if geo:
            cand = _resize(logits, self._input_size) > 0  # (n + N_det, Hm, Wm)
            sy, sx = self._input_size[0] / H, self._input_size[1] / W
            for o, g in geo.items():
                if g.kind == "box":
                    scaled = GeometricPrompt("box", g.data * np.array([sx, sy, sx, sy]))
                else:
                    scaled = GeometricPrompt("points", g.data * np.array([sx, sy]), g.labels)
                m_sel, how, q_sel = select_candidate(scaled, cand.cpu(), fg.cpu())
                self._geo_query[o] = q_sel
                if q_sel is not None and q_sel >= n:
                    taken.add(q_sel - n)  # that detection is this object now, not a new track
                self.prompt_sources[(k, o)] = how
                prompts[o] = _resize(m_sel[None].float(), (H, W))[0].cpu().numpy() > 0.5
                prompt_in[o] = m_sel.to(self.device).float()
        # new detections
        if self.detect_new_objects:
            free = int(self._free.sum()) - (len(new_prompted) if k > 0 else 0)  # keep IDs for prompts
            cand = torch.nonzero(fg[n:] > self.fg_threshold).flatten()
            cand = cand[torch.argsort(fg[n:][cand], descending=True)]
            keep = []
            for q in cand.tolist():
                if len(keep) >= free:
                    break  # no free ID left: the lowest-scoring detections are dropped
                if q not in taken and (det_logits[q] > 0).any():
                    keep.append(q)
            if keep:
                trk_logits = torch.cat([trk_logits, det_logits[keep]], 0)
                scores = torch.cat([scores, fg[n:][keep]], 0)
                cls_rows = torch.cat([cls_rows, cls_prob[n:][keep]], 0)
                for _ in keep:
                    o = self._next_auto_id
                    while o in self.obj_ids or o in prompts or any(o in p for p in self._pending.values()):
                        o += 1
                    self._allocate(o)
                    new_ids.append(o)
        # masks at the model input resolution → history M_k
        up = _resize(trk_logits, self._input_size)
        m_in = (up > 0).float()
        n_all = m_in.shape[0]  # == self._n: tracks + new detections
        # outputs at the frame resolution
        probs = _resize(trk_logits, (H, W)).sigmoid()
        # later-frame prompts: new objects get a slot now; prompted masks override predictions
        objs = self._slot_obj[:n_all].tolist()
        for o, m in prompt_in.items():
            if o in objs:
                s = objs.index(o)
            else:
                s = self._allocate(o)
                new_ids.append(o)
                objs.append(o)
                m_in = torch.cat([m_in, m_in.new_zeros((1, *m_in.shape[1:]))], 0)
                probs = torch.cat([probs, probs.new_zeros((1, *probs.shape[1:]))], 0)
                scores = torch.cat([scores, scores.new_ones(1)], 0)
                q = None
                if o in geo and self._geo_query.get(o) is not None:
                    q = self._geo_query[o]
                cls_rows = torch.cat([cls_rows, cls_prob[q:q + 1] if q is not None else cls_prob.new_zeros(1, cls_prob.shape[1])], 0)
            m_in[s] = m
            probs[s] = torch.from_numpy(prompts[o]).to(probs)
            scores[s] = 1.0
        n_all = self._n
        if n_all:
            self._slot_mask[:n_all] = self._grid_mask(m_in)
        masks = probs > 0.5
        if n_all:
            best = probs.argmax(0)
            idx = torch.where(masks.any(0), self._slot_obj[:n_all].to(best.device)[best], torch.zeros_like(best))
        else:
            idx = torch.zeros(H, W, dtype=torch.long)
        self._frame_idx += 1
        self._cls_max[:n_all] = torch.maximum(self._cls_max[:n_all], cls_rows[:n_all])
        if self._cls_max.shape[1]:
            cls_score, cls_id = self._cls_max[:n_all].max(1)
        else:
            cls_score, cls_id = torch.zeros(n_all), torch.zeros(n_all, dtype=torch.long)
        return FrameResult(frame_idx=k, obj_ids=self._slot_obj[:n_all].tolist(),
                           class_ids=cls_id.numpy().astype(np.int64), class_scores=cls_score.numpy().astype(np.float32),
                           class_names=self.class_names,
                           masks=masks.cpu().numpy(), scores=scores.float().cpu().numpy(),
                           index_mask=idx.cpu().numpy().astype(np.uint16), new_obj_ids=new_ids)


class SessionBatch:
    """Several independent streams advanced together: one network call per step for all of them
    (batched frames, padded track queries), each stream with its own objects, prompts and state.

    Args:
        sessions: the :class:`Session` objects (same model); create them with ``Session(model, ...)``.

    Every stream's frames must map to the same model input size (e.g. the same video resolution).
    Results equal stepping each session alone (tested).
    """

    def __init__(self, sessions: list[Session]):
        if not sessions:
            raise InputError("SessionBatch needs at least one session")
        if len({id(s.model) for s in sessions}) != 1:
            raise InputError("all sessions of a batch must share one model")
        if any(s.finetune is not None for s in sessions):
            raise InputError("test-time fine-tuning gives each session its own weights; it cannot be used in a "
                             "SessionBatch (step those sessions one by one)")
        self.sessions = list(sessions)
        self.model = sessions[0].model

    def __len__(self):
        return len(self.sessions)

    def state_nbytes(self) -> int:
        return sum(s.state_nbytes() for s in self.sessions)

    @torch.inference_mode()
    def step(self, frames: list) -> list[FrameResult]:
        """Advance every stream by one frame (``frames[i]`` for stream i).

        Raises:
            InputError: wrong number of frames, or streams whose model input sizes differ.
        """
        if len(frames) != len(self.sessions):
            raise InputError(f"{len(frames)} frames for {len(self.sessions)} streams")
        ctxs = [s._prepare(f) for s, f in zip(self.sessions, frames)]
        sizes = {tuple(c["x"].shape[-2:]) for c in ctxs}
        if len(sizes) != 1:
            raise InputError(f"streams of one batch need the same model input size, got {sorted(sizes)}")
        B = len(self.sessions)
        ns = [s._n for s in self.sessions]
        n = max(ns)
        s0 = self.sessions[0]
        P = s0._slot_mask.shape[1]
        ids = torch.zeros(B, n, dtype=torch.long, device=s0.device)
        active = torch.zeros(B, n, dtype=torch.bool, device=s0.device)
        hist = torch.zeros(B, n, P, dtype=s0.dtype, device=s0.device)
        for b, (s, nb) in enumerate(zip(self.sessions, ns)):
            ids[b, :nb] = s._slot_id[:nb].to(s0.device)
            active[b, :nb] = True
            hist[b, :nb] = s._slot_mask[:nb]
        states = [s._state for s in self.sessions]
        state = StreamState(
            x_prev=torch.cat([st.x_prev for st in states]),
            mamba=[type(m)(conv_state=torch.cat([st.mamba[i].conv_state for st in states]),
                           ssm_state=torch.cat([st.mamba[i].ssm_state for st in states]))
                   for i, m in enumerate(states[0].mamba)],
            hw=states[0].hw, t=states[0].t)
        pred, new = self.model.step(torch.cat([c["x"] for c in ctxs]), state, ids, active, hist)
        out = []
        for b, (s, c, nb) in enumerate(zip(self.sessions, ctxs, ns)):
            s._state = StreamState(
                x_prev=new.x_prev[b:b + 1],
                mamba=[type(m)(conv_state=m.conv_state[b * P:(b + 1) * P], ssm_state=m.ssm_state[b * P:(b + 1) * P])
                       for m in new.mamba],
                hw=new.hw, t=states[b].t + 1)
            keep = torch.cat([torch.arange(nb), torch.arange(n, pred.final_masks.shape[1])])
            out.append(s._finish(c, pred.final_masks[b, keep], pred.final_embs[b, keep]))
        return out


def replay_order(T: int) -> list[int]:
    """Frame order of test-time replay (paper Table 3): I_1..I_T, I_{T-1}..I_1, I_2..I_T (0-based);
    the last T steps cover every frame once."""
    if T <= 1:
        return list(range(T))
    return list(range(T)) + list(range(T - 2, -1, -1)) + list(range(1, T))


def propagate(model: AUSMModel, frames: Iterable, prompts: dict[int, dict[int, np.ndarray]] | None = None,
              replay: bool = False, **session_kwargs) -> Iterator[FrameResult]:
    """Offline convenience built on :meth:`Session.step`: yields one :class:`FrameResult` per frame,
    in frame order.

    Args:
        frames: an iterable of (H, W, 3) uint8 RGB frames (e.g. a :class:`~ausm.io.FrameReader`).
        prompts: ``{frame_idx: {obj_id: mask (H, W)}}``; ``None`` or empty = unprompted.
        replay: test-time compute scaling (paper Table 3): stream forward, backward, forward
            (:func:`replay_order`) and keep the last T predictions. Buffers the frames; prompts must be
            on frame 0 (a prompt on a later frame would be seen at a different point of the replay).
        session_kwargs: passed to :class:`Session`.

    Raises:
        InputError: ``replay`` with prompts on frames other than 0.
    """
    session = Session(model, **session_kwargs)
    prompts = prompts or {}
    if replay and any(f != 0 for f in prompts):
        raise InputError("test-time replay supports prompts on frame 0 only")
    for f_idx, objs in prompts.items():
        for o, m in objs.items():
            session.add_prompt(f_idx, o, m)
    if not replay:
        for frame in frames:
            yield session.step(frame)
        return
    buf = list(frames)
    order = replay_order(len(buf))
    keep_from = len(order) - len(buf)
    for j, f in enumerate(order):
        res = session.step(buf[f])
        if j >= keep_from:
            res.frame_idx = f
            yield res
