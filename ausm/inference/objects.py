"""The object table of a streaming session: which ID vector each tracked object holds (Algorithm 1's
A_t), its history mask on the stride-8 grid (M_t), and its class scores maxed over the frames so far.

Slots ``0..n-1`` are the tracked objects, in track order (the order of the model's track queries and of
:class:`~ausm.inference.results.FrameResult`'s rows); the rest are empty. Every tensor has ``num_ids``
rows from the start, so the table never grows with the number of frames (spec §3, constant memory).
"""
from __future__ import annotations

import torch

from ..errors import InputError


class ObjectTable:
    """Fixed-size registry of the tracked objects of one stream.

    Args:
        num_ids: N, the size of the ID buffer B (the most objects tracked at once).
        num_classes: K, classes of the session's class head (without "no object").
        seed: seed of the ID sampler (``Sampler(B, ·)`` draws uniformly from the free rows of B).

    Attributes:
        id_index: (N,) int64, per slot the row of B it holds (-1 = empty slot).
        obj: (N,) int64, per slot the client object id (-1 = empty slot).
        free: (N,) bool, per row of B: not held by any object.
        cls_max: (N, K) float32, per slot the class probabilities maxed over frames (spec §7).
        hist: (N, h·w) history masks M_t in [0, 1] in the model's dtype and device; ``None`` until
            :meth:`init_history` (the grid size is known from the first frame).
        n: number of tracked objects.
        next_auto_id: the smallest client id given to the next discovered object (above every id seen).
    """

    def __init__(self, num_ids: int, num_classes: int, seed: int = 0):
        self.num_ids = int(num_ids)
        self.gen = torch.Generator().manual_seed(seed)
        self.id_index = torch.full((num_ids,), -1, dtype=torch.long)
        self.obj = torch.full((num_ids,), -1, dtype=torch.long)
        self.free = torch.ones(num_ids, dtype=torch.bool)
        self.cls_max = torch.zeros(num_ids, num_classes)
        self.hist: torch.Tensor | None = None
        self.n = 0
        self.next_auto_id = 1

    # -- queries ------------------------------------------------------------------------------
    @property
    def obj_ids(self) -> list[int]:
        """Client ids of the tracked objects, in slot (track) order."""
        return self.obj[: self.n].tolist()

    def free_count(self) -> int:
        """Rows of the ID buffer not held by any object."""
        return int(self.free.sum())

    def nbytes(self) -> int:
        """Bytes of the table's tensors (constant over the stream)."""
        n = self.id_index.numel() * 8 + self.obj.numel() * 8 + self.free.numel()
        n += self.cls_max.numel() * self.cls_max.element_size()
        if self.hist is not None:
            n += self.hist.numel() * self.hist.element_size()
        return n

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the table (for memory accounting and tests)."""
        return [t for t in (self.id_index, self.obj, self.hist, self.free, self.cls_max) if t is not None]

    # -- changes ------------------------------------------------------------------------------
    def init_history(self, grid_pixels: int, device, dtype) -> None:
        """Allocate the (N, h·w) history masks (zeros) once the grid size is known."""
        self.hist = torch.zeros(self.num_ids, grid_pixels, dtype=dtype, device=device)

    def allocate(self, obj_id: int) -> int:
        """Give ``obj_id`` a free row of B drawn uniformly (``Sampler``) and the next slot.

        Returns:
            the slot index (== the previous ``n``).

        Raises:
            InputError: no free ID vector left.
        """
        free = torch.nonzero(self.free).flatten()
        if len(free) == 0:
            raise InputError(f"no free ID vector left for object {obj_id}: this model tracks at most "
                             f"{self.num_ids} objects at once; prompt fewer objects, remove() finished ones, or "
                             "use a model with a larger num_ids")
        j = free[torch.randint(len(free), (), generator=self.gen)].item()
        self.free[j] = False
        slot = self.n
        self.id_index[slot] = j
        self.obj[slot] = obj_id
        if self.hist is not None:
            self.hist[slot] = 0
        self.cls_max[slot] = 0
        self.n += 1
        self.next_auto_id = max(self.next_auto_id, obj_id + 1)
        return slot

    def remove(self, obj_id: int) -> None:
        """Drop ``obj_id``: free its row of B and close the gap in the slots (track order kept).

        Raises:
            InputError: unknown object id.
        """
        objs = self.obj_ids
        if obj_id not in objs:
            raise InputError(f"unknown object id {obj_id}; tracked: {objs}")
        s = objs.index(obj_id)
        self.free[self.id_index[s]] = True
        keep = [i for i in range(self.n) if i != s]
        n = self.n - 1
        for t in (self.id_index, self.obj, self.hist, self.cls_max):
            if t is not None:
                t[:n] = t[keep].clone()
        self.id_index[n], self.obj[n] = -1, -1
        if self.hist is not None:
            self.hist[n] = 0
        self.cls_max[n] = 0
        self.n = n

    def auto_id(self, reserved) -> int:
        """The client id of a newly discovered object: ``next_auto_id`` or the first free id above it
        that is neither tracked nor in ``reserved`` (ids of pending prompts)."""
        o = self.next_auto_id
        tracked = set(self.obj_ids)
        while o in tracked or o in reserved:
            o += 1
        return o

    def admit(self, fg: torch.Tensor, det_logits: torch.Tensor, threshold: float, taken: set[int],
              keep_free: int, reserved: set[int]) -> tuple[list[int], list[int]]:
        """Admit detections as new tracks (spec §3): foreground probability above ``threshold`` and a
        non-empty mask, highest first, while more than ``keep_free`` IDs stay free (the rest are
        dropped); each gets a slot and a fresh client id (:meth:`auto_id`).

        Args:
            fg: (Q,) foreground probabilities of the detection queries; det_logits: (Q, h, w) their mask
                logits; taken: detection queries already claimed by prompts.
            keep_free: IDs to keep for this frame's not yet allocated prompted objects.
            reserved: client ids not to give out (pending prompts).

        Returns:
            (admitted detection queries, their new client ids), in slot order.
        """
        cand = torch.nonzero(fg > threshold).flatten()
        cand = cand[torch.argsort(fg[cand], descending=True)]
        keep = []
        for q in cand.tolist():
            if len(keep) >= self.free_count() - keep_free:
                break  # no free ID left: the lowest-scoring detections are dropped
            if q not in taken and (det_logits[q] > 0).any():
                keep.append(q)
        ids = []
        for _ in keep:
            ids.append(self.auto_id(reserved))
            self.allocate(ids[-1])
        return keep, ids

    def update_class_scores(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Max the (n, K) class probabilities of this frame into ``cls_max``.

        Returns:
            ((n,) float best class probability, (n,) int64 its class index) over the frames so far.
        """
        n = self.n
        self.cls_max[:n] = torch.maximum(self.cls_max[:n], rows[:n])
        if self.cls_max.shape[1]:
            return self.cls_max[:n].max(1)
        return torch.zeros(n), torch.zeros(n, dtype=torch.long)

    # -- snapshots ----------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """CPU copies of the table, for :meth:`Session.state_dict`."""
        def cpu(t):
            return t.detach().to("cpu").clone().contiguous()

        out = {"slot_id": cpu(self.id_index), "slot_obj": cpu(self.obj), "free": cpu(self.free),
               "cls_max": cpu(self.cls_max), "rng": cpu(self.gen.get_state())}
        if self.hist is not None:
            out["slot_mask"] = cpu(self.hist)
        return out

    def state_meta(self) -> dict:
        return {"n": self.n, "next_auto_id": self.next_auto_id}

    def load(self, tensors: dict, meta: dict, with_history: bool, device=None, dtype=None) -> None:
        """Restore from :meth:`state_tensors` / :meth:`state_meta`; ``with_history``: the stream had
        started, so ``slot_mask`` is there (moved to ``device`` / ``dtype``).

        Raises:
            InputError: class scores of another shape (the state belongs to another model).
            KeyError: a tensor or field is missing.
        """
        cls_max = tensors["cls_max"].float()
        if cls_max.shape != self.cls_max.shape:
            raise InputError(f"class scores of shape {tuple(cls_max.shape)} do not fit this model's "
                             f"{tuple(self.cls_max.shape)}: the state belongs to another model")
        self.id_index = tensors["slot_id"].long().clone()
        self.obj = tensors["slot_obj"].long().clone()
        self.free = tensors["free"].bool().clone()
        self.cls_max = cls_max.clone()
        self.gen.set_state(tensors["rng"].to(torch.uint8).clone())
        self.n, self.next_auto_id = int(meta["n"]), int(meta["next_auto_id"])
        if with_history:
            self.hist = tensors["slot_mask"].to(device, dtype).clone()
