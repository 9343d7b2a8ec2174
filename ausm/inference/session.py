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

State size: the network state (X_{t-1} and the Mamba states) plus the fixed-size object table of
``num_ids`` slots (:mod:`ausm.inference.objects`: ID index, object id, history mask on the h×w grid,
class scores, used flag). Nothing grows with the frame count. Prompt validation and the queue of
prompts waiting for their frame: :mod:`ausm.inference.prompting`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.inputs import check_frame_pixels, frame_to_tensor
from ..model.ausm import AGNOSTIC, AUSMModel, StreamState
from .backends import StepOutput, TorchStep, as_backend
from .objects import ObjectTable
from .prompting import GeometricPrompt, PromptQueue, make_prompt, resolve_geometric
from .results import FrameResult, frame_masks


def _resize(t: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of (k, h, w) logits to (k, *size); k may be 0 (no tracks)."""
    if t.shape[0] == 0:
        return t.new_zeros((0, *size))
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0]


@dataclass
class FrameInput:
    """One frame between :meth:`Session.prepare_frame` and :meth:`Session.finish_frame`.

    Attributes:
        k: 0-based frame index; size: (H, W) of the frame; x: (1, 3, Hm, Wm) model input in [0, 1].
        masks: {obj_id: (H, W) bool} this frame's prompt masks (box / point prompts join once resolved).
        masks_in: the same masks as (Hm, Wm) float {0, 1} at the model input.
        geo: {obj_id: GeometricPrompt} this frame's box / point prompts.
        geo_query: {obj_id: index of the query whose candidate a box / point prompt chose, or None}.
        new_prompted: prompted objects of this frame not tracked before it.
        new_ids: objects that start on this frame (filled while the frame is processed).
    """

    k: int
    size: tuple[int, int]
    x: torch.Tensor
    masks: dict[int, np.ndarray]
    masks_in: dict[int, torch.Tensor]
    geo: dict[int, GeometricPrompt]
    new_prompted: list[int]
    geo_query: dict[int, int | None] = field(default_factory=dict)
    new_ids: list[int] = field(default_factory=list)


class Session:
    """A streaming segmentation session over one video (Algorithm 1).

    Args:
        model: the network (its device and dtype are used), or a step back-end that runs it
            (:mod:`ausm.inference.backends`: :class:`~ausm.inference.backends.TorchStep`, or
            :class:`ausm.export.runtime.OnnxStep` for an exported ``.onnx`` file run by onnxruntime).
            Everything else the session does is the same for every back-end.
        detect_new_objects: discover new objects with the detection queries; default: True when the
            session starts without prompts, False when prompts are given before the first frame.
        class_head: class head used for foreground scores (``"agnostic"`` or a dataset name).
        fg_threshold: foreground threshold for new detections (default ``model.cfg.fg_threshold``).
        seed: seed of the ID sampler (reproducible runs).
        adapt: test-time adaptation (not in the paper), ``None`` = off: a callable
            ``(model, frame (H, W, 3) uint8, {obj_id: (H, W) bool mask}) -> adapted model`` that must not
            modify ``model``, e.g. :class:`ausm.train.finetune.FinetuneConfig` (OSVOS-style fine-tuning;
            :func:`ausm.train.finetune.as_finetune_config` turns a step count into one). On every frame that
            carries prompts the session adapts its own copy of the weights to the prompted objects before
            processing that frame (mask prompts) or right after it (box / point prompts, once the model's
            candidate is chosen), continuing from the weights adapted so far; :meth:`reset` returns to
            ``model``'s weights. ``model`` itself is never modified; the streaming state stays the same size.
            Needs the PyTorch back-end.

    The session is made of: its step back-end ``backend``, the network's :class:`~ausm.model.ausm.StreamState` ``stream_state``
    (X_{t-1}, Mamba states; None before the first frame), the :class:`~ausm.inference.objects.ObjectTable` ``objects`` (ID vectors, history masks, class
    scores) and the :class:`~ausm.inference.prompting.PromptQueue` ``pending``.
    """

    def __init__(self, model, detect_new_objects: bool | None = None, class_head: str = AGNOSTIC,
                 fg_threshold: float | None = None, seed: int = 0, adapt=None):
        if adapt is not None and not callable(adapt):
            raise InputError(f"adapt must be a callable (model, frame, masks) -> model, e.g. "
                             f"ausm.train.finetune.FinetuneConfig(steps=40); got {adapt!r}")
        self.base_backend = as_backend(model)
        self.backend = self.base_backend
        if adapt is not None and self.backend.model is None:
            raise InputError(f"test-time fine-tuning trains the weights: it needs the PyTorch back-end, "
                             f"not {self.backend.kind}")
        self.adapt = adapt
        self.cfg = self.backend.cfg
        if class_head not in self.backend.class_heads:
            raise InputError(f"unknown class head {class_head!r}; have {sorted(self.backend.class_heads)}")
        self.class_head = class_head
        self.fg_threshold = self.cfg.fg_threshold if fg_threshold is None else float(fg_threshold)
        if not 0.0 < self.fg_threshold < 1.0:
            raise InputError(f"fg_threshold must be in (0, 1), got {self.fg_threshold}")
        self._detect_arg = detect_new_objects
        self._seed = seed
        self.device, self.dtype = self.backend.device, self.backend.dtype
        self.reset()

    @property
    def model(self) -> AUSMModel | None:
        """The PyTorch network the session runs (its fine-tuned copy after an adaptation); None for a
        back-end without one (ONNX)."""
        return self.backend.model

    # -- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every object, prompt and frame, and any fine-tuned weights (the session can be reused for
        a new video)."""
        self.backend = self.base_backend
        K = self.backend.class_heads[self.class_head] - 1
        self.objects = ObjectTable(self.cfg.num_ids, K, self._seed)
        self.pending = PromptQueue()
        self.stream_state: StreamState | None = None
        self._frame_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None
        self._frame_idx = 0
        self._any_prompt = False
        #: how each box/point prompt was resolved: {(frame_idx, obj_id): "candidate" | "fallback"}
        self.prompt_sources: dict[tuple[int, int], str] = {}

    @property
    def class_names(self) -> list[str]:
        """Names of the classes of the session's class head."""
        if self.class_head == AGNOSTIC:
            return ["object"]
        names = self.cfg.class_names.get(self.class_head)
        K = self.backend.class_heads[self.class_head] - 1
        return list(names) if names else [f"class_{i}" for i in range(K)]

    def track_class_scores(self) -> dict[int, np.ndarray]:
        """{obj_id: (K,) float32 class probabilities maxed over the frames so far} — the input of a
        per-video top-k over (track × class) scores (spec §7)."""
        return {o: self.objects.cls_max[i].numpy().astype(np.float32).copy() for i, o in enumerate(self.obj_ids)}

    @property
    def frame_idx(self) -> int:
        """Index of the next frame :meth:`step` will consume."""
        return self._frame_idx

    @property
    def obj_ids(self) -> list[int]:
        return self.objects.obj_ids

    @property
    def detect_new_objects(self) -> bool:
        if self._detect_arg is not None:
            return bool(self._detect_arg)
        return not self._any_prompt

    def state_nbytes(self) -> int:
        """Bytes of the streaming state: network state + object table (constant over time)."""
        return self.objects.nbytes() + (self.stream_state.nbytes() if self.stream_state is not None else 0)

    # -- snapshots ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The complete session state, to continue the stream later (e.g. in another process):
        ``{"tensors": {name: CPU tensor}, "meta": JSON-able dict}`` (:func:`~ausm.inference.snapshot.session_state`;
        save it with :func:`ausm.inference.resume.save_snapshot`). A session restored with
        :meth:`load_state_dict` gives exactly the results of the uninterrupted one (same model, device)."""
        from .snapshot import session_state
        return session_state(self)

    @torch.inference_mode()  # the restored tables and states are updated in place inside step
    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict` (of a session over the same model).

        Raises:
            InputError: the state is incomplete or belongs to a model of another shape.
        """
        from .snapshot import restore_session
        restore_session(self, state)

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
        Validation: :func:`~ausm.inference.prompting.make_prompt`.

        Raises:
            InputError: past frame, bad id, not exactly one prompt kind, empty mask, wrong size, a
                degenerate box, points without a positive one, a box or point outside the frame.
        """
        if not isinstance(frame_idx, (int, np.integer)) or isinstance(frame_idx, bool) or frame_idx < 0:
            raise InputError(f"frame_idx must be an integer >= 0, got {frame_idx!r}")
        if frame_idx < self._frame_idx:
            raise InputError(f"frame {frame_idx} was already processed (next frame is {self._frame_idx})")
        entry = make_prompt(obj_id, mask, box, points, labels, frame_size=self._frame_size, frame_idx=frame_idx)
        self.pending.add(frame_idx, obj_id, entry)
        self._any_prompt = True

    @torch.inference_mode()  # the object table is created inside step's inference mode
    def remove(self, obj_id: int) -> None:
        """Stop tracking ``obj_id`` and free its ID vector.

        Raises:
            InputError: unknown object id.
        """
        self.objects.remove(obj_id)

    # -- helpers ------------------------------------------------------------------------------
    def _grid_mask(self, m: torch.Tensor) -> torch.Tensor:
        """(k, Hm, Wm) binary masks at the model input → (k, h·w) area-averaged history masks."""
        return AUSMModel.history_masks_from_images(m.float(), self.stream_state.hw).to(self.dtype)

    def _prompt_to_input(self, m: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(m).float()[None, None]
        return F.interpolate(t, size=self._input_size, mode="nearest")[0, 0].to(self.device)

    def _start_stream(self, H: int, W: int) -> None:
        """First frame: the model input size, the network's initial state and the history grid."""
        self._frame_size = (H, W)
        self._input_size = self.backend.input_size(H, W)
        hw = (self._input_size[0] // 8, self._input_size[1] // 8)
        self.stream_state = self.backend.init_state(1, hw)
        self.objects.init_history(hw[0] * hw[1], self.device, self.dtype)

    # -- main loop ----------------------------------------------------------------------------
    def prepare_frame(self, frame) -> FrameInput:
        """Checks (before any state changes), the model input and this frame's prompts; on frame 0 the
        mask prompts enter M_0 (prompted Algorithm 1: A_0 = Sampler(B, |y_0|))."""
        check_frame_pixels(frame)
        img = frame_to_tensor(frame)
        H, W = img.shape[-2:]
        k = self._frame_idx
        self.pending.check_frame(k, (H, W))
        if self._frame_size is None:
            self._start_stream(H, W)
        elif (H, W) != self._frame_size:
            raise InputError(f"frame {k} is {H}x{W}, the stream started at {self._frame_size[0]}x{self._frame_size[1]}")
        # the ID capacity; prompted objects take precedence over detections
        new_prompted = [o for o in self.pending.at(k) if o not in self.obj_ids]
        if len(new_prompted) > self.objects.free_count():
            raise InputError(f"frame {k}: {len(new_prompted)} new prompted objects but only {self.objects.free_count()} "
                             f"free ID vectors: this model tracks at most {self.cfg.num_ids} objects at once; prompt "
                             f"fewer objects (merge or drop ids in the mask) or use a model with a larger num_ids")
        x = F.interpolate(img, size=self._input_size, mode="bilinear", align_corners=False,
                          antialias=True).to(self.device, self.dtype).clamp(0, 1)
        masks, geo = self.pending.pop(k)
        fi = FrameInput(k=k, size=(H, W), x=x, masks=masks, geo=geo, new_prompted=new_prompted,
                         masks_in={o: self._prompt_to_input(m) for o, m in masks.items()})
        if k == 0:
            for o, m in fi.masks_in.items():
                s = self.objects.allocate(o)
                self.objects.hist[s] = self._grid_mask(m[None])[0]
                fi.new_ids.append(o)
        return fi

    @torch.inference_mode()
    def step(self, frame) -> FrameResult:
        """Process the next frame.

        Args:
            frame: (H, W, 3) uint8 RGB numpy array, or a (3, H, W) float tensor in [0, 1] (other
                layouts and dtypes: :func:`~ausm.io.inputs.frame_to_tensor`).

        Returns:
            :class:`FrameResult` at the frame's resolution.

        Raises:
            InputError: bad frame shape or dtype, or a frame size that differs from the first frame's.
        """
        if self.adapt is not None:  # mask prompts of this frame: adapt before processing it
            masks = {o: m for o, m in self.pending.at(self._frame_idx).items() if isinstance(m, np.ndarray)}
            if masks:
                self._adapt(frame, masks)
        fi = self.prepare_frame(frame)
        ids, hist = self.track_queries()
        active = torch.ones(1, len(ids), dtype=torch.bool, device=self.device)
        out: StepOutput = self.backend.step(fi.x, self.stream_state, ids[None], active, hist[None])
        self.stream_state = out.state
        result = self.finish_frame(fi, out.masks[0], out.class_logits[self.class_head][0])
        if self.adapt is not None and fi.geo:  # box / point prompts: adapt to the chosen masks
            self._adapt(frame, {o: fi.masks[o] for o in fi.geo})
        return result

    def track_queries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The track queries of this frame: ((n,) rows of B, (n, h·w) history masks M_{t-1})."""
        n = self.objects.n
        return self.objects.id_index[:n].to(self.device), self.objects.hist[:n]

    def _adapt(self, frame, masks: dict[int, np.ndarray]) -> None:
        """Replace the session's network by ``adapt``'s copy adapted to ``masks`` on ``frame`` (gradients
        enabled here, although :meth:`step` runs in inference mode)."""
        if isinstance(frame, torch.Tensor):  # (3, H, W) float in [0, 1] → (H, W, 3) uint8
            frame = (frame.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        with torch.inference_mode(False), torch.enable_grad():
            self.backend = TorchStep(self.adapt(self.model, np.asarray(frame), masks))

    def finish_frame(self, fi: FrameInput, masks: torch.Tensor, class_logits: torch.Tensor) -> FrameResult:
        """Turn the network's outputs for this stream (masks (n + N_det, H4, W4) logits, class_logits
        (n + N_det, K + 1) of the session's class head) into the frame's result and the history of the next
        frame (Algorithm 1's loop body after the network call)."""
        n = self.objects.n
        logits = masks.float()
        probs = class_logits.float().softmax(-1)
        fg = 1.0 - probs[:, -1]  # foreground probability (spec §4)
        cls_prob = probs[:, :-1].cpu()
        taken = self._resolve_geometric(fi, logits, fg)
        keep = self._admit_detections(fi, fg[n:], logits[n:], taken) if self.detect_new_objects else []
        keep = torch.tensor(keep, dtype=torch.long)
        trk_logits = torch.cat([logits[:n], logits[n:][keep.to(logits.device)]], 0)
        scores = torch.cat([fg[:n], fg[n:][keep.to(fg.device)]], 0)
        cls_rows = torch.cat([cls_prob[:n], cls_prob[n:][keep]], 0)
        m_in = (_resize(trk_logits, self._input_size) > 0).float()  # history M_k at the model input
        m_in, low, overrides, scores, cls_rows = self._apply_prompts(fi, m_in, trk_logits, scores, cls_rows, cls_prob)
        return self._compose_result(fi, m_in, low, overrides, scores, cls_rows)

    def _resolve_geometric(self, fi: FrameInput, logits: torch.Tensor, fg: torch.Tensor) -> set[int]:
        """Box / point prompts pick among the model's own candidates on this frame
        (:func:`~ausm.inference.prompting.resolve_geometric`); the chosen mask becomes the object's
        prompt mask. Returns the detection queries (0-based among the detections) they took."""
        if not fi.geo:
            return set()
        n = self.objects.n
        cand = (_resize(logits, self._input_size) > 0).cpu()  # (n + N_det, Hm, Wm)
        for o, (m_sel, how, q) in resolve_geometric(fi.geo, cand, fg.cpu(), fi.size).items():
            fi.geo_query[o] = q
            self.prompt_sources[(fi.k, o)] = how
            fi.masks[o] = _resize(m_sel[None].float(), fi.size)[0].cpu().numpy() > 0.5
            fi.masks_in[o] = m_sel.to(self.device).float()
        return {q - n for q in fi.geo_query.values() if q is not None and q >= n}

    def _admit_detections(self, fi: FrameInput, fg_det: torch.Tensor, det_logits: torch.Tensor,
                          taken: set[int]) -> list[int]:
        """New tracks from the detection queries (:meth:`ObjectTable.admit`); this frame's new prompted
        objects keep their IDs, pending prompts their client ids."""
        unallocated = [o for o in fi.new_prompted if o not in self.obj_ids]
        keep, ids = self.objects.admit(fg_det, det_logits, self.fg_threshold, taken, keep_free=len(unallocated),
                                       reserved=set(fi.masks) | self.pending.reserved_ids())
        fi.new_ids.extend(ids)
        return keep

    def _apply_prompts(self, fi: FrameInput, m_in, low, scores, cls_rows, cls_prob):
        """Prompted masks override the predictions on their frame (output and history); objects
        prompted first on a later frame get a slot now (spec §3 [D]).

        Args / returns: m_in (n, Hm, Wm) history masks, low (n, H4, W4) mask logits, scores (n,),
        cls_rows (n, K) with n growing by the new prompted objects; cls_prob (Q, K) of every query;
        returns also the overrides {row: (H, W) bool prompt mask} of the frame-resolution masks.
        """
        objs, overrides = self.obj_ids, {}
        for o, m in fi.masks_in.items():
            if o in objs:
                s = objs.index(o)
            else:
                s = self.objects.allocate(o)
                fi.new_ids.append(o)
                objs.append(o)
                m_in = torch.cat([m_in, m_in.new_zeros((1, *m_in.shape[1:]))], 0)
                low = torch.cat([low, low.new_zeros((1, *low.shape[1:]))], 0)
                scores = torch.cat([scores, scores.new_ones(1)], 0)
                q = fi.geo_query.get(o)  # a box / point prompt inherits its candidate's class scores
                row = cls_prob[q:q + 1] if q is not None else cls_prob.new_zeros(1, cls_prob.shape[1])
                cls_rows = torch.cat([cls_rows, row], 0)
            m_in[s] = m
            overrides[s] = fi.masks[o]
            scores[s] = 1.0
        return m_in, low, overrides, scores, cls_rows

    def _compose_result(self, fi: FrameInput, m_in, low, overrides, scores, cls_rows) -> FrameResult:
        """Store the history M_k, update the class scores, and build the frame's :class:`FrameResult`
        (masks and index mask at the frame resolution: :func:`~ausm.inference.results.frame_masks`, spec §7)."""
        n_all = self.objects.n
        if n_all:
            self.objects.hist[:n_all] = self._grid_mask(m_in)
        masks, idx = frame_masks(low, fi.size, overrides, self.objects.obj[:n_all])
        self._frame_idx += 1
        cls_score, cls_id = self.objects.update_class_scores(cls_rows)
        return FrameResult(frame_idx=fi.k, obj_ids=self.obj_ids,
                           class_ids=cls_id.numpy().astype(np.int64), class_scores=cls_score.numpy().astype(np.float32),
                           class_names=self.class_names,
                           masks=masks.cpu().numpy(), scores=scores.float().cpu().numpy(),
                           index_mask=idx.cpu().numpy().astype(np.uint16), new_obj_ids=fi.new_ids)
