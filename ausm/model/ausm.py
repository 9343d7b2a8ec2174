"""The AUSM network: two paths through the same weights (paper §3, Algorithms 1 and 2).

* :meth:`AUSMModel.forward` — the **parallel** teacher-forced forward over a clip of T frames
  (Algorithm 2): every module sees the ground-truth history at once; the History Compressor runs
  its Mamba parallel scan over T.
* :meth:`AUSMModel.step` — one **streaming** step (Algorithm 1) from a fixed-size
  :class:`StreamState`. Given the same history, T calls of ``step`` reproduce ``forward``.

Object bookkeeping (which ID vectors are allocated, thresholds, prompts) lives in
:mod:`ausm.inference.session` (streaming) and :mod:`ausm.train.batch` (teacher forcing).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AUSMConfig
from .encoder import build_frame_encoder
from .history import HistoryCompressor, HistoryDecoder, history_marker
from .layers import sine_position_embedding
from .mamba import MambaState
from .pixel_decoder import PixelDecoder

AGNOSTIC = "agnostic"


@dataclass
class Prediction:
    """Pixel Decoder outputs at every prediction point (initial queries + each layer).

    Attributes:
        embs: list of (..., Q, D) normed query embeddings (input of the class heads).
        masks: list of (..., Q, H/4, W/4) mask logits.
        num_tracks: n; queries [0, n) are tracks (one per allocated ID slot), [n, Q) detections.
    The leading dims are (B, T) for :meth:`AUSMModel.forward` and (B,) for :meth:`AUSMModel.step`.
    """

    embs: list[torch.Tensor]
    masks: list[torch.Tensor]
    num_tracks: int

    @property
    def final_masks(self) -> torch.Tensor:
        return self.masks[-1]

    @property
    def final_embs(self) -> torch.Tensor:
        return self.embs[-1]


@dataclass
class StreamState:
    """Fixed-size recurrent state of the network for a batch of B streams.

    Attributes:
        x_prev: (B, h·w, D) X_{t-1}, the previous frame's stride-8 features (X_0 = start token).
        mamba: one :class:`MambaState` per History Compressor layer, for B·h·w pixel sequences.
        hw: (h, w) of the stride-8 grid.
        t: number of frames consumed so far.
    """

    x_prev: torch.Tensor
    mamba: list[MambaState]
    hw: tuple[int, int]
    t: int = 0

    def nbytes(self) -> int:
        """Bytes held by the tensors of this state."""
        return self.x_prev.numel() * self.x_prev.element_size() + sum(m.nbytes() for m in self.mamba)

    @staticmethod
    def cat(states: list["StreamState"]) -> "StreamState":
        """One state for the streams of ``states`` (same grid), batched in their order; ``t`` of the first."""
        return StreamState(
            x_prev=torch.cat([s.x_prev for s in states]),
            mamba=[MambaState(conv_state=torch.cat([s.mamba[i].conv_state for s in states]),
                              ssm_state=torch.cat([s.mamba[i].ssm_state for s in states]))
                   for i in range(len(states[0].mamba))],
            hw=states[0].hw, t=states[0].t)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """CPU copies named ``x_prev``, ``mamba.<i>.conv_state``, ``mamba.<i>.ssm_state`` (for snapshots)."""
        def cpu(t):
            return t.detach().to("cpu").clone().contiguous()

        out = {"x_prev": cpu(self.x_prev)}
        for i, m in enumerate(self.mamba):
            out[f"mamba.{i}.conv_state"] = cpu(m.conv_state)
            out[f"mamba.{i}.ssm_state"] = cpu(m.ssm_state)
        return out

    @staticmethod
    def from_tensors(tensors: dict, ref: "StreamState", t: int, ssm_inner_major: bool = False,
                     conv_inner_major: bool = False) -> "StreamState":
        """The inverse of :meth:`to_tensors`, on ``ref``'s device and dtype, checked against ``ref`` (a fresh
        state of the same model and grid). Older layouts load transposed: ``ssm_inner_major``, the SSM
        states stored (L, d_inner, d_state) (before session-state version 2); ``conv_inner_major``, the
        conv states stored (L, d_inner, d_conv) (before version 3).

        Raises:
            ValueError: shapes of another architecture. KeyError: a missing tensor.
        """
        dev, dt = ref.x_prev.device, ref.x_prev.dtype
        x_prev = tensors["x_prev"].to(dev, dt)
        if x_prev.shape != ref.x_prev.shape:
            raise ValueError(f"x_prev of shape {tuple(x_prev.shape)}, this model has {tuple(ref.x_prev.shape)}")
        mamba = []
        for i, r in enumerate(ref.mamba):
            c = tensors[f"mamba.{i}.conv_state"].to(dev, dt)
            s = tensors[f"mamba.{i}.ssm_state"].to(dev, dt)
            if ssm_inner_major:
                s = s.transpose(-1, -2).contiguous()
            if conv_inner_major:
                c = c.transpose(-1, -2).contiguous()
            if c.shape != r.conv_state.shape or s.shape != r.ssm_state.shape:
                raise ValueError(f"Mamba layer {i} state of another shape")
            mamba.append(MambaState(conv_state=c, ssm_state=s))
        return StreamState(x_prev=x_prev, mamba=mamba, hw=ref.hw, t=t)

    def split(self) -> list["StreamState"]:
        """The inverse of :meth:`cat`: one state per stream (views, no copies)."""
        B = self.x_prev.shape[0]
        P = self.hw[0] * self.hw[1]  # Mamba states hold one sequence per pixel of each stream
        return [StreamState(x_prev=self.x_prev[b:b + 1],
                            mamba=[MambaState(conv_state=m.conv_state[b * P:(b + 1) * P],
                                              ssm_state=m.ssm_state[b * P:(b + 1) * P]) for m in self.mamba],
                            hw=self.hw, t=self.t) for b in range(B)]


class AUSMModel(nn.Module):
    """AUSM: frame encoder, History Marker/Compressor/Decoder, Pixel Decoder, class heads,
    learned start token X_0, ID-vector buffer B and detection queries V (spec §2–§4)."""

    def __init__(self, cfg: AUSMConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.hidden_dim
        self.encoder = build_frame_encoder(cfg)
        self.start_token = nn.Parameter(torch.zeros(D))  # X_0, tiled over h×w
        self.id_vectors = nn.Parameter(torch.randn(cfg.num_ids, D) * 0.5)  # buffer B
        self.compressor = HistoryCompressor(cfg)
        self.history_decoder = HistoryDecoder(cfg)
        self.pixel_decoder = PixelDecoder(cfg)
        heads = {AGNOSTIC: nn.Linear(D, 2)}
        heads.update({name: nn.Linear(D, k + 1) for name, k in cfg.class_heads.items()})
        self.class_heads = nn.ModuleDict(heads)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self._pos_cache: dict = {}

    def compile_modules(self, backend: str = "inductor", **kwargs) -> "AUSMModel":
        """Optional ``torch.compile`` of the per-frame network parts, in place (issue #6).

        Compiles the frame encoder, the spatial attention + FFN of every History Compressor layer, the
        History Decoder and the Pixel Decoder with ``nn.Module.compile`` (parameter names and
        checkpoints are unchanged; the Mamba recurrence stays eager). Shapes are specialised on first use
        and made dynamic on a recompile (a new frame size or object count). Compilation happens on the
        first call and takes minutes on a small CPU (docs/PERFORMANCE.md has the measured cost and gain).

        Args:
            backend: a ``torch.compile`` backend (``"inductor"``; ``"eager"`` only traces, for tests).
            kwargs: other ``torch.compile`` arguments (``mode``, ``dynamic``, ...).

        Returns:
            ``self``.
        """
        mods = [self.encoder, self.history_decoder, self.pixel_decoder]
        for layer in self.compressor.layers:
            mods += [layer.attn, layer.ffn]
        for m in mods:
            m.compile(backend=backend, **kwargs)
        return self

    # -- helpers ------------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The image backbone inside the frame encoder (EfficientNet-Lite / ``AutoBackbone`` of the FPN
        encoder, or the Mask2Former pixel-level module's encoder): the one rule for "backbone
        parameters" (its lr multiplier, freezing, test-time fine-tuning)."""
        enc = self.encoder
        return enc.backbone if hasattr(enc, "backbone") else enc.pixel_level_module.encoder

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input (H', W') for an image of (height, width) pixels: shorter side scaled to
        ``cfg.input_short_side`` (longer side capped at ``cfg.input_max_long_side``), both rounded to a
        multiple of ``cfg.size_divisor`` (at least one multiple)."""
        return self.cfg.input_size(height, width)

    def position(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        key = (h, w, like.device, like.dtype)
        if key not in self._pos_cache:
            self._pos_cache[key] = sine_position_embedding(h, w, self.cfg.hidden_dim, like.device, like.dtype)
        return self._pos_cache[key]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] → ImageNet-normalised."""
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def encode(self, images: torch.Tensor):
        """Frame encoder on (N, 3, H, W) RGB in [0, 1] (H, W multiples of 32).

        Returns X tokens (N, h·w, D), mask features P (N, mask_dim, H/4, W/4) and (h, w)."""
        x, p = self.encoder(self.normalize(images))
        hw = tuple(x.shape[-2:])
        return x.flatten(2).transpose(1, 2), p, hw

    def class_logits(self, embs: torch.Tensor, head: str = AGNOSTIC) -> torch.Tensor:
        """Class logits (..., K+1) of a head; the last class is no-object.

        Raises:
            KeyError: unknown head name.
        """
        if head not in self.class_heads:
            raise KeyError(f"unknown class head {head!r}; have {sorted(self.class_heads)}")
        return self.class_heads[head](embs)

    def foreground_prob(self, embs: torch.Tensor, head: str = AGNOSTIC) -> torch.Tensor:
        """1 − p(no-object) (spec §4), shape (...)."""
        return 1.0 - self.class_logits(embs, head).float().softmax(-1)[..., -1]

    @staticmethod
    def history_masks_from_images(masks: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Area-average masks (..., H, W) in [0, 1] onto the stride-8 grid → (..., h·w) (spec §3 [D])."""
        lead = masks.shape[:-2]
        m = masks.reshape(-1, 1, *masks.shape[-2:]).float()
        m = F.adaptive_avg_pool2d(m, hw)
        return m.reshape(*lead, hw[0] * hw[1])

    # -- parallel path (Algorithm 2) ------------------------------------------------------------
    def forward(self, frames: torch.Tensor, track_ids: torch.Tensor, track_active: torch.Tensor,
                hist_masks: torch.Tensor, scan: str = "auto") -> Prediction:
        """Parallel teacher-forced forward over a clip (Algorithm 2).

        Args:
            frames: (B, T, 3, H, W) float RGB in [0, 1]; H, W multiples of 32.
            track_ids: (B, n) long, index into the ID buffer of each track slot (any value for
                padding slots).
            track_active: (B, T, n) bool, slot i is a track query at frame k (0-based) iff its ID was
                allocated before frame k (A_{t-1} in the paper, t = k + 1).
            hist_masks: (B, T, n, h·w) float in [0, 1], M_{t-1}: the masks painted on X_{t-1} before
                frame k (k = 0: the prompt masks M_0). Rows of inactive slots are ignored (zeroed).
            scan: Mamba scan implementation (:mod:`ausm.model.mamba`: ``"auto"``, ``"recurrent"``,
                ``"associative"``, ``"cuda"``, ``"naive"``).

        Returns:
            :class:`Prediction` with embs (B, T, n+N_det, D) and masks (B, T, n+N_det, H/4, W/4).
        """
        B, T = frames.shape[:2]
        n = track_ids.shape[1]
        x, p, hw = self.encode(frames.flatten(0, 1))
        P, D = x.shape[1], x.shape[2]
        x = x.view(B, T, P, D)
        pos = self.position(*hw, x)
        start = self.start_token.to(x.dtype).view(1, 1, 1, D).expand(B, 1, P, D)
        x_prev = torch.cat([start, x[:, :-1]], dim=1)
        ids = self.id_vectors[track_ids].to(x.dtype)  # (B, n, D)
        m = hist_masks.to(x.dtype) * track_active.unsqueeze(-1).to(x.dtype)
        marker = history_marker(ids.unsqueeze(1).expand(B, T, n, D).reshape(B * T, n, D),
                                m.reshape(B * T, n, P), self.cfg.marker_eps).view(B, T, P, D)
        f = self.compressor(x_prev + marker, pos, scan=scan)
        g = self.history_decoder(x.reshape(B * T, P, D), f.reshape(B * T, P, D), pos)
        outs = self.pixel_decoder(ids.unsqueeze(1).expand(B, T, n, D).reshape(B * T, n, D),
                                  track_active.reshape(B * T, n), g, pos, hw, p,
                                  track_hist=m.reshape(B * T, n, P))
        return Prediction(
            embs=[e.view(B, T, *e.shape[1:]) for e, _ in outs],
            masks=[mk.view(B, T, *mk.shape[1:]) for _, mk in outs],
            num_tracks=n,
        )

    # -- streaming path (Algorithm 1) -----------------------------------------------------------
    def init_state(self, batch: int, hw: tuple[int, int], device=None, dtype=None) -> StreamState:
        """The state before the first frame: X_0 = start token, zero Mamba states."""
        p = self.start_token
        device = device or p.device
        dtype = dtype or p.dtype
        P = hw[0] * hw[1]
        # not detached: in iterative (frame-by-frame) training X_0 receives gradients as in Algorithm 2
        x_prev = self.start_token.to(device, dtype).view(1, 1, -1).expand(batch, P, -1)
        return StreamState(x_prev=x_prev, mamba=self.compressor.init_state(batch * P, device, dtype), hw=hw)

    def step(self, frame: torch.Tensor, state: StreamState, track_ids: torch.Tensor,
             track_active: torch.Tensor, hist_masks: torch.Tensor):
        """One streaming step (Algorithm 1, one iteration of the loop).

        Args:
            frame: (B, 3, H, W) float RGB in [0, 1]; the stride-8 grid must equal ``state.hw``.
            state: the state after the previous frame (not modified).
            track_ids: (B, n) long ID-buffer indices of the allocated objects A_{t-1}.
            track_active: (B, n) bool, False for padding slots.
            hist_masks: (B, n, h·w) float in [0, 1], M_{t-1}.

        Returns:
            (:class:`Prediction` with embs (B, n+N_det, D) and masks (B, n+N_det, H/4, W/4),
            the new :class:`StreamState` of the same size).

        Raises:
            ValueError: when the frame's grid differs from the state's.
        """
        x, p, hw = self.encode(frame)
        if tuple(hw) != tuple(state.hw):
            raise ValueError(f"frame grid {hw} differs from the stream's grid {state.hw}")
        B, P, D = x.shape
        pos = self.position(*hw, x)
        ids = self.id_vectors[track_ids].to(x.dtype)
        m = hist_masks.to(x.dtype) * track_active.unsqueeze(-1).to(x.dtype)
        e = state.x_prev.to(x.dtype) + history_marker(ids, m, self.cfg.marker_eps)
        f, mamba = self.compressor.step(e, pos, state.mamba)
        g = self.history_decoder(x, f, pos)
        outs = self.pixel_decoder(ids, track_active, g, pos, hw, p,
                                  track_hist=m)
        new_state = StreamState(x_prev=x.to(state.x_prev.dtype), mamba=mamba, hw=state.hw, t=state.t + 1)
        return Prediction(embs=[e_ for e_, _ in outs], masks=[mk for _, mk in outs],
                          num_tracks=track_ids.shape[1]), new_state
